# a variable exponent: d/dy x^y = x^y log x.
dtype f64
param x[3] ~ normal(0, 1)
param y ~ normal(0, 1)
loss sum((x^2 + 1)^y)
