input X[n, 3]
param w[3] ~ zeros
let a = dropout(X, 1)
let b = dropout(X, -0.1)
loss mean(a @ w) + mean(b @ w) + mean(dropout(X, 0.5, 2) @ w)
