# Selecting columns and elements; the derivative embeds back into zeros.
dtype f64
param X[3, 4] ~ normal(0, 1)
param v[4] ~ normal(0, 1)
loss sum(X[:, 1] * X[:, 2]) + X[0, 3] * v[-1] + sum(X[2, :] * v)
