# Joining arrays along any axis: the derivative of each part is its slice of the joined one.
dtype f64
param A[2, 3] ~ normal(0, 1)
param B[2, 2] ~ normal(0, 1)
param v[3] ~ normal(0, 1)
let C = concat([A, B, A^2], axis=1)
let S = stack([v, exp(v)], axis=-1)
loss sum(tanh(C)^2) + sum(S * S[::-1, :]) + sum(stack([A, A], axis=0)[1, ...] * A)
