# softmax and log_softmax over the last axis.
dtype f64
param Z[2, 3] ~ normal(0, 1)
param C[2, 3] ~ normal(0, 1)
loss sum(softmax(Z) * C) + sum(log_softmax(Z, axis=0) * C)
