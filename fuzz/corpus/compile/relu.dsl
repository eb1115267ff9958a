# relu: subgradient 0 at 0.
dtype f64
param x[6] ~ normal(0, 1)
param c[6] ~ normal(0, 1)
loss sum(relu(x) * c)
