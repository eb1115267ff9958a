# Class labels must be class indices: an `int` input (checked when loaded) or an argmax.
input X[n, 4]
input y[n]
input k[n]: int
param W[4, 3] ~ zeros
loss cross_entropy(X @ W, y) + mean(one_hot(X[:, 0], 3)) + mean(one_hot(k, 1e9))
