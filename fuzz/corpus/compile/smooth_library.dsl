# log1p, expm1, sin, cos, softplus.
dtype f64
param x[4] ~ normal(0, 1)
param c[4] ~ normal(0, 1)
loss sum((log1p(x^2) + expm1(x) + sin(x) * cos(x) + softplus(x)) * c)
