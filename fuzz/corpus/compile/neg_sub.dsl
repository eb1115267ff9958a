# negation and subtraction, with broadcasting of a scalar.
dtype f64
param x[3] ~ normal(0, 1)
param s ~ normal(0, 1)
loss sum((s - x) * -x)
