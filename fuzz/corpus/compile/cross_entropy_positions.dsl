# cross_entropy over logits [n, T, V] with labels [n, T]: the mean over every position.
dtype f64
input X[n, 3]
input y[n, 3]: int
param W[5] ~ normal(0, 1)
param B[3, 5] ~ normal(0, 1)
loss cross_entropy(expand_dims(X, 2) * W + B, y)
