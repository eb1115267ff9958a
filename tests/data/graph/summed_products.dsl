# Weight gradients summed over the batch in one product (`lower::summed_products`): the
# adjoint of `[n, T, d] @ W` for W is a product per row of data summed over n, run as one
# `[d, n·T] @ [n·T, e]` where the operands continue across the summed axes: one summed axis,
# two, a unit axis, and a kept outer batch axis. A transposed operand that does not continue
# across n, and a sum over an outer batch axis with an inner one kept, stay a product and a
# sum.
dtype f64
input X[n, 12]
param W[3, 2] ~ normal(0, 1)
param U[2, 1, 3, 5] ~ normal(0, 1)
param V[2, 3, 4] ~ normal(0, 1)
let x = reshape(X, (n, 4, 3))
let x4 = reshape(X, (n, 2, 2, 3))
let outer = sin(transpose(x4, (1, 0, 2, 3)))
loss sum(tanh(x @ W)) + sum(sin(x4 @ W)) + sum(cos(reshape(X, (n, 1, 4, 3)) @ W))
    + sum(tanh(outer @ U)) + sum(tanh(transpose(x4, (1, 0, 2, 3)) @ U)) + sum(sin(x4 @ V))
