# sigmoid: s (1 - s).
dtype f64
param x[5] ~ normal(0, 1)
param c[5] ~ normal(0, 1)
loss sum(sigmoid(x) * c)
