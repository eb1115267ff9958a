# division: both operands depend on params.
dtype f64
param x[2, 3] ~ normal(0, 1)
param y[3] ~ normal(0, 1)
loss sum(x / (y^2 + 1))
