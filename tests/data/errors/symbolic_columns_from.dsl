# A symbolic column count cannot also name its columns.
input X[n, d] from a, b
param w = 1
loss mean(X * w)
