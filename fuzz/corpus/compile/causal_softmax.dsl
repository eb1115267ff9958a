# Causal attention weights: a mask of index vectors, -inf where masked; softmax, its log and
# their derivatives stay finite.
dtype f64
input X[n, 4]
param Q[4, 4] ~ normal(0, 1)
let scores = expand_dims(X, 2) * expand_dims(X @ Q, 1)
let masked = where(causal_mask(4), scores, -inf)
loss mean(softmax(masked) * arange(4)) + mean(where(causal_mask(4), log_softmax(masked), 0)) + mean(logsumexp(masked, axis=1))
