# `True` and `False` are Python's; adjoint writes flags in lowercase.
input X[n, 2] from a, b
param w[2] ~ zeros
let centered = X - mean(X, axis=0, keepdims=True)
loss sum(centered @ w) * False
train steps = 10, drop_last = True
