# transpose is a view: no copy, and its derivative is a transpose.
dtype f64
param A[2, 3] ~ normal(0, 1)
param B[2, 3] ~ normal(0, 1)
loss sum(transpose(A) @ B)
