# `@` broadcasts the axes before the last two; a scalar is no operand of a product.
param A[2, 3, 4, 5] ~ zeros
param B[3, 5, 2] ~ zeros
param C[4, 5, 2] ~ zeros
param s ~ zeros
let ok = A @ B
let bad = A @ C
let scalar = s @ B
let inner = A @ transpose(B, (0, 2, 1))
loss sum(ok)
