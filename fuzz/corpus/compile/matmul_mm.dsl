# matrix times matrix.
dtype f64
param A[2, 3] ~ normal(0, 1)
param B[3, 4] ~ normal(0, 1)
param C[2, 4] ~ normal(0, 1)
loss sum((A @ B) * C)
