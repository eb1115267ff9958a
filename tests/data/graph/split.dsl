# `let a, b = split(...)`: equal parts or given sizes, each a slice; the gradient joins them.
dtype f64
param X[4, 6] ~ normal(0, 1)
let a, b = split(X, 2, axis=1)
let p, q, r = split(X, (1, 2, 1))
loss sum(a * tanh(b)) + sum(p * r) + sum(q^2)
