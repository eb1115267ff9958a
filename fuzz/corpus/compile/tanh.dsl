# tanh: 1 - tanh^2.
dtype f64
param x[2, 2] ~ normal(0, 1)
param c[2, 2] ~ normal(0, 1)
loss sum(tanh(x) * c)
