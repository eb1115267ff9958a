# log on a positive argument.
dtype f64
param x[4] ~ normal(0, 1)
param c[4] ~ normal(0, 1)
loss sum(log(x^2 + 1) * c)
