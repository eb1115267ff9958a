# max and min reductions, over an axis and everything.
dtype f64
param X[3, 4] ~ normal(0, 1)
param c[3] ~ normal(0, 1)
loss sum(max(X, axis=1) * c) + min(X) + sum(max(X, axis=0, keepdims=true) * X)
