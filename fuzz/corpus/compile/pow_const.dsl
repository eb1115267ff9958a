# integer and fractional constant exponents.
dtype f64
param x[3] ~ normal(0, 1)
loss sum(x^3) + sum((x^2 + 1)^1.5)
