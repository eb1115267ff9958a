# The ready-made losses: cross_entropy, bce_with_logits, mse.
dtype f64
input X[n, 2]
input y[n]: int
input t[n]
param W[2, 3] ~ normal(0, 1)
param v[2] ~ normal(0, 1)
loss cross_entropy(X @ W, y) + bce_with_logits(X @ v, t > 0) + mse(X @ v, t)
