# The attention vocabulary's arguments are checked where they are written.
input X[n, 4]
input y[n, 2]: int
param W[4, 3] ~ zeros
param g[3] ~ ones
param b[4] ~ zeros
loss cross_entropy(X @ W, y) + sum(layer_norm(X, g, b)) + sum(layer_norm(X, b, b, eps=-1)) + sum(gelu(X, approximate=2)) + layer_norm(sum(X), 1, 0)
