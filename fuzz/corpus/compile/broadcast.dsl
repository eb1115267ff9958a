# a row vector and a column broadcast against a matrix.
dtype f64
param M[3, 4] ~ normal(0, 1)
param r[4] ~ normal(0, 1)
param c[3, 1] ~ normal(0, 1)
loss sum((M + r) * c)
