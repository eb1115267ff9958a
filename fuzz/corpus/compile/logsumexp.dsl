# log-sum-exp over rows; its derivative is the softmax.
dtype f64
param X[3, 4] ~ normal(0, 1)
param c[3] ~ normal(0, 1)
loss sum(logsumexp(X, axis=1) * c) + logsumexp(X)
