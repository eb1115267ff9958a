# where selects per element; the condition is not differentiated.
dtype f64
param x[2, 3] ~ normal(0, 1)
param y[3] ~ normal(0, 1)
loss sum(where(x > y, x * y, exp(y)))
