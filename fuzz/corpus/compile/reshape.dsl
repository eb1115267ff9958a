# Reshapes that merge and split axes, one inferred (-1); a strided operand is copied first, a
# contiguous block at an offset is a view.
dtype f64
param T[2, 3, 4] ~ normal(0, 1)
param w[6] ~ normal(0, 1)
let M = reshape(T, (4, -1))
let S = reshape(transpose(M), (3, 2, 4))
loss sum(M * w^2) + sum(tanh(S) * T[0, 0, :]) + sum(reshape(T[1:, :, :], (4, 3))^2)
