# Inputs whose column count is a symbol bound from the data (`X0, X1, …` in the file).
dtype f64
input X[n, d]
input Y[n, d]
input t[n]
param a ~ normal(0, 1)
param b ~ normal(0, 1)
loss mean((a * mean(X * Y, axis=1) + b - t)^2) + mean(sum(X, axis=0)^2) * b^2
