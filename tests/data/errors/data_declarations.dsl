# Inputs without rows, texts and their windows: what is checked where they are declared.
input K[3]
input M[2, d] from "m.npy"
input img[n, 1, 28, 28]
input tok[n, 16] from text "corpus.txt"
input lab[n, 16]: int from words "corpus.txt"
input nxt[n, 16]: int from text "corpus.txt" shift 1
input half[n, 16]: int from text "corpus.txt" offset 0.5
input seq[n]: int from text "corpus.txt"
input short[n, 8]: int from text "corpus.txt"
input other[n, 8]: int from text "other.txt"
input ok[n, 16]: int from text "corpus.txt"
input y[n]
param w = 0
loss mean(w * y)
