# Products written where their reader wants them: two heads cut from one projection and
# merged back after attention (`reshape(transpose(...))` of a product), whose gradients join
# into the projection's, and concats of batched and of plain products.
dtype f64
input rows[n, 12]
param W[4, 12] ~ normal(0, 0.5)
param U[4, 2] ~ normal(0, 0.5)
param V[4, 3] ~ normal(0, 0.5)
param P[12, 2] ~ normal(0, 0.5)
param Q[12, 3] ~ normal(0, 0.5)
fn heads(t) = transpose(reshape(t, (n, 3, 2, 2)), (0, 2, 1, 3))
fn merge(o) = reshape(transpose(o, (0, 2, 1, 3)), (n, 3, 4))
let x = reshape(rows, (n, 3, 4))
let qkv = x @ W
let q = heads(qkv[:, :, :4])
let k = heads(qkv[:, :, 4:8])
let v = heads(qkv[:, :, 8:])
let o = merge(softmax(q @ transpose(k, (0, 1, 3, 2))) @ v)
let c = concat([x @ U, x @ V], axis=2)
let d = concat([rows @ P, rows @ Q], axis=1)
loss sum(tanh(o)^2) + sum(c * c) / 3 + sum(sin(d))
