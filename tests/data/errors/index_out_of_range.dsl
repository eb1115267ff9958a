# Indexing past the end of an axis, and indexing a data axis.
input X[n, 3]
param W[3, 2] ~ zeros
loss sum(W[:, 2]) + X[0, 0]
