# einsum desugars into transposes, unit-axis reshapes, sums and one batched product: attention's
# scores and weighted values, an outer product, a contraction over two letters, a broadcast batch.
dtype f64
param Q[2, 2, 3, 4] ~ normal(0, 1)
param K[2, 2, 5, 4] ~ normal(0, 1)
param V[2, 2, 5, 3] ~ normal(0, 1)
param u[3] ~ normal(0, 1)
param v[4] ~ normal(0, 1)
param T[3, 4, 2] ~ normal(0, 1)
param W[4, 2, 5] ~ normal(0, 1)
let S = tanh(einsum("bhqd,bhkd->bhqk", Q, K))
let O = einsum("bhqk,bhkd->bhqd", S, V)
loss sum(tanh(O)) + sum(einsum("i,j->ij", u, v) * T[:, :, 0]) + sum(sin(einsum("ijk,jkl->il", T, W)))
    + sum(tanh(einsum("bhqd,dk->bhqk", Q, W[:, 0, :]))) + sum(einsum("ijk->kj", T)^2)
