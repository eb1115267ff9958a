# A single-head causal self-attention block on a [n, T, d] sequence (T = 4, d = 3), with
# pre-LayerNorm, a GELU MLP and residuals; products are broadcasts and sums.
dtype f64
input tok[n, 4]
input next[n, 4]: int
param E[3] ~ normal(0, 1)
param P[4, 3] ~ normal(0, 0.5)
param Wq[3, 3] ~ normal(0, 0.5)
param Wk[3, 3] ~ normal(0, 0.5)
param Wv[3, 3] ~ normal(0, 0.5)
param g1[3] ~ ones
param b1[3] ~ zeros
param W1[3, 6] ~ normal(0, 0.5)
param W2[6, 3] ~ normal(0, 0.5)
param g2[3] ~ ones
param b2[3] ~ zeros
param Wo[3, 5] ~ normal(0, 0.5)
fn proj(h, W) = sum(expand_dims(h, 3) * W, axis=2)
let x = expand_dims(tok, 2) * E + P
let a = layer_norm(x, g1, b1)
let q = proj(a, Wq)
let k = proj(a, Wk)
let v = proj(a, Wv)
let scores = sum(expand_dims(q, 2) * expand_dims(k, 1), axis=-1) / sqrt(3)
let p = softmax(where(causal_mask(4), scores, -inf))
let h = x + sum(expand_dims(p, 3) * expand_dims(v, 1), axis=2)
let m = h + proj(gelu(proj(layer_norm(h, g2, b2), W1)), W2)
loss cross_entropy(proj(m, Wo), next)
