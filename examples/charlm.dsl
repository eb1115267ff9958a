# A decoder-only character transformer on Shakespeare: token and positional embeddings, two
# pre-LayerNorm blocks of causal multi-head self-attention and a GELU MLP with residuals, a final
# LayerNorm and an output projection. x holds windows of 64 characters, y the next ones.
dtype f32

input x[n, 64]: int from text "data/tinyshakespeare.txt"
input y[n, 64]: int from text "data/tinyshakespeare.txt" offset 1

param wte[65, 128] ~ normal(0, 0.02)
param wpe[64, 128] ~ normal(0, 0.02)

param ln1g0[128] ~ ones
param ln1b0[128] ~ zeros
param wqkv0[128, 384] ~ normal(0, 0.02)
param bqkv0[384] ~ zeros
param wo0[128, 128] ~ normal(0, 0.02)
param bo0[128] ~ zeros
param ln2g0[128] ~ ones
param ln2b0[128] ~ zeros
param w10[128, 512] ~ normal(0, 0.02)
param b10[512] ~ zeros
param w20[512, 128] ~ normal(0, 0.02)
param b20[128] ~ zeros

param ln1g1[128] ~ ones
param ln1b1[128] ~ zeros
param wqkv1[128, 384] ~ normal(0, 0.02)
param bqkv1[384] ~ zeros
param wo1[128, 128] ~ normal(0, 0.02)
param bo1[128] ~ zeros
param ln2g1[128] ~ ones
param ln2b1[128] ~ zeros
param w11[128, 512] ~ normal(0, 0.02)
param b11[512] ~ zeros
param w21[512, 128] ~ normal(0, 0.02)
param b21[128] ~ zeros

param lnfg[128] ~ ones
param lnfb[128] ~ zeros
param whead[128, 65] ~ normal(0, 0.02)
param bhead[65] ~ zeros

# [n, T, D] → [n, heads, T, 32]
fn heads(t) = transpose(reshape(t, (n, 64, 4, 32)), (0, 2, 1, 3))
fn attention(q, k, v) = softmax(where(causal_mask(64), q @ transpose(k, (0, 1, 3, 2)) / sqrt(32), -inf)) @ v
fn merge(o) = reshape(transpose(o, (0, 2, 1, 3)), (n, 64, 128))

let h0 = wte[x] + wpe
let qkv0 = layer_norm(h0, ln1g0, ln1b0) @ wqkv0 + bqkv0
let a0 = h0 + merge(attention(heads(qkv0[:, :, :128]), heads(qkv0[:, :, 128:256]), heads(qkv0[:, :, 256:]))) @ wo0 + bo0
let h1 = a0 + gelu(layer_norm(a0, ln2g0, ln2b0) @ w10 + b10, approximate=true) @ w20 + b20
let qkv1 = layer_norm(h1, ln1g1, ln1b1) @ wqkv1 + bqkv1
let a1 = h1 + merge(attention(heads(qkv1[:, :, :128]), heads(qkv1[:, :, 128:256]), heads(qkv1[:, :, 256:]))) @ wo1 + bo1
let h2 = a1 + gelu(layer_norm(a1, ln2g1, ln2b1) @ w11 + b11, approximate=true) @ w21 + b21
output logits = layer_norm(h2, lnfg, lnfb) @ whead + bhead
loss nll = cross_entropy(logits, y)

optimizer adam(lr = 3e-4)
train steps = 300, batch = 16, validation = 0.1, log_every = 100
