# Tabs and wide characters before an error: the caret still points at it.
input x[n] from "日本.npy" 	junk
param w ~ zeros
	loss sum(w) + 名
