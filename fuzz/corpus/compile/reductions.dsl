# sums and means over one axis and over everything.
dtype f64
param X[3, 4] ~ normal(0, 1)
param a[4] ~ normal(0, 1)
param b[3] ~ normal(0, 1)
loss sum(sum(X, axis=0) * a) + sum(mean(X, axis=1) * b) + mean(X^2)
