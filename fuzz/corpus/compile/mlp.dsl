# a two-layer network on data with a symbolic row count.
dtype f64
input X[n, 3]
input t[n]
param W1[3, 5] ~ xavier_uniform
param b1[5] ~ zeros
param w2[5] ~ normal(0, 0.5)
param b2 ~ zeros
let h = tanh(X @ W1 + b1)
let p = sigmoid(h @ w2 + b2)
loss mean((p - t)^2)
