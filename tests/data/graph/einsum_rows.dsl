# einsum over the rows of data: letters of fixed length are merged into one axis of the
# product; a contraction over the rows `n` and another letter cannot be merged (n is known
# only at run time), so n becomes a batch axis of the product, summed after it.
dtype f64
input X[n, 2]
input Z[n, 4]
param W[4, 2, 3] ~ normal(0, 1)
let Y = tanh(einsum("nk,kij->nij", Z, W))
loss sum(sin(einsum("ni,nij->j", X, Y))) + mean(einsum("nij,nij->n", Y, Y))
