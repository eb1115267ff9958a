# New axes with `None` and `...`: a three-component mixture written as in the math.
dtype f64
input x[n]
param mu[3] ~ normal(0, 1)
param logit[3] = 0
let d = x[:, None] - mu
loss -mean(logsumexp(log_softmax(logit) - 0.5 * d^2, axis=1)) + sum(mu[None, ...]^2) * 0.01
