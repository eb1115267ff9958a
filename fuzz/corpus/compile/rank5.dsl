# Arrays of rank 5: broadcasting, reductions over negative axes with keepdims, views.
dtype f64
param W[2, 3, 1, 2, 3] ~ normal(0, 1)
param b[3] ~ normal(0, 1)
param c[2, 1, 4, 1, 1] ~ normal(0, 1)
let h = tanh(W * b + c)
loss sum(sum(h, axis=-2, keepdims=true) * exp(max(h, axis=1, keepdims=true))) + sum(logsumexp(h, axis=2)^2) + sum(reshape(h, (6, -1))[::2, 1:] * 0.5)
