# cross-entropy with class labels, and an accuracy metric that is not differentiated.
dtype f64
input X[n, 3]
input y[n]: int
param W[3, 4] ~ normal(0, 1)
param b[4] ~ zeros
let logits = X @ W + b
loss mean(logsumexp(logits, axis=1) - sum(one_hot(y, 4) * logits, axis=1))
metric accuracy = mean(argmax(logits, axis=1) == y)
