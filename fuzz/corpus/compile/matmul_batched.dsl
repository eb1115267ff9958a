# Batched products: the axes before the last two broadcast as numpy's matmul; a vector is a row
# on the left and a column on the right; a transposed operand is read through its strides.
dtype f64
param Q[2, 3, 4, 5] ~ normal(0, 1)
param K[2, 3, 6, 5] ~ normal(0, 1)
param V[3, 6, 2] ~ normal(0, 1)
param W[5, 2] ~ normal(0, 1)
param u[5] ~ normal(0, 1)
param X[2, 1, 3, 2, 4] ~ normal(0, 1)
param Y[4, 1, 4, 3] ~ normal(0, 1)
let S = tanh(Q @ transpose(K, (0, 1, 3, 2)))
let O = S @ V
loss sum(tanh(O)) + sum(tanh(Q @ W)) + sum((Q @ u)^2) + sum(sin(u @ transpose(K, (0, 1, 3, 2))))
    + sum(tanh(X @ Y))
