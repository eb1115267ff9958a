# softmax, log_softmax and logsumexp over any axis of ranks 3 to 5, negative axes, keepdims.
dtype f64
input X[n, 4]
param Z[2, 1, 3, 2, 4] ~ normal(0, 1)
param C[2, 3, 1, 4] ~ normal(0, 1)
param A[3, 1] ~ normal(0, 1)
let h = expand_dims(X, 1) * A
loss sum(softmax(Z, axis=2) * C) + sum(log_softmax(Z, axis=-3) * C) + sum(logsumexp(Z, axis=3)) + sum(softmax(Z, axis=0) * C) + sum(logsumexp(Z, axis=-1, keepdims=true) * C) + mean(log_softmax(h) * A) + mean(logsumexp(h, axis=1))
