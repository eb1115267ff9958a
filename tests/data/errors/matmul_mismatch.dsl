# Inner dimensions of a matrix product differ.
input X[n, 4]
param W[3, 2] ~ xavier_uniform
loss mean(X @ W)
