# exp: the derivative reuses the forward value.
dtype f64
param x[2, 3] ~ normal(0, 1)
param c[2, 3] ~ normal(0, 1)
loss sum(exp(x) * c)
