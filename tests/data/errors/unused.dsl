# Warnings: a parameter and an input that the loss ignores.
input X[n, 2]
input y[n]
param w[2] ~ zeros
param unused_bias ~ zeros
loss mean((X @ w)^2)
