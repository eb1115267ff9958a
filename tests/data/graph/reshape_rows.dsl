# A reshape of data rows with the symbolic row count kept (`n`) and an inferred axis.
dtype f64
input X[n, 6]
param W[3, 2] ~ normal(0, 1)
let Y = reshape(X, (n, 2, -1))
let Z = reshape(tanh(Y * transpose(W)), (n, 6))
loss mean(Z^2) + mean(reshape(Z, (n, 3, 2))[:, ::-2, 1])
