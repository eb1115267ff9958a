# matrix times vector, vector times matrix, vector dot vector.
dtype f64
param A[3, 4] ~ normal(0, 1)
param v[4] ~ normal(0, 1)
param u[3] ~ normal(0, 1)
loss sum((A @ v) * u) + sum(u @ A) * 0.5 + v @ v
