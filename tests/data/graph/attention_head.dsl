# A single-head causal self-attention block as a transformer writes it: token and position
# embeddings gathered into [n, T, d] (T = 6, d = 4), pre-LayerNorm, q k^T by batched products,
# a causal mask with -inf, a GELU MLP, residuals, a final LayerNorm and cross_entropy over
# [n, T, V] with next-token labels [n, T].
dtype f64
input tok[n, 6]: int
input next[n, 6]: int
param E[5, 4] ~ normal(0, 0.5)
param P[6, 4] ~ normal(0, 0.5)
param Wq[4, 4] ~ normal(0, 0.5)
param Wk[4, 4] ~ normal(0, 0.5)
param Wv[4, 4] ~ normal(0, 0.5)
param Wo[4, 4] ~ normal(0, 0.5)
param g1[4] ~ ones
param b1[4] ~ zeros
param W1[4, 8] ~ normal(0, 0.5)
param W2[8, 4] ~ normal(0, 0.5)
param g2[4] ~ ones
param b2[4] ~ zeros
param g3[4] ~ ones
param b3[4] ~ zeros
param U[4, 5] ~ normal(0, 0.5)
let x = E[tok] + P
let a = layer_norm(x, g1, b1)
let q = a @ Wq
let k = a @ Wk
let v = a @ Wv
let scores = q @ transpose(k, (0, 2, 1)) / sqrt(4)
let p = softmax(where(causal_mask(6), scores, -inf))
let h = x + (p @ v) @ Wo
let m = h + gelu(layer_norm(h, g2, b2) @ W1) @ W2
loss cross_entropy(layer_norm(m, g3, b3) @ U, next)
