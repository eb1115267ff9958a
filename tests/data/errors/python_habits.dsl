# Habits from Python and numpy: each error says what adjoint writes instead.
input X[n, 2] from a, b
param w[2] ~ zeros
let gram = X.T @ X + (X @ w).T
let colsum = X.sum(axis=0) + X.mean() + X.shape
loss mean((X @ w) ** 2)
