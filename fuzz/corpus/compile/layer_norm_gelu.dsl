# layer_norm, gelu (exact and tanh forms) and silu over the last axis of a rank-3 array.
dtype f64
input X[n, 4]
param A[3, 4] ~ normal(0, 1)
param gain[4] ~ normal(1, 0.1)
param bias[4] ~ normal(0, 1)
let h = expand_dims(X, 1) * A
loss mean(layer_norm(h, gain, bias) * gelu(h)) + mean(gelu(h, approximate=true) * silu(h)) + mean(layer_norm(X, bias, gain, eps=0.1))
