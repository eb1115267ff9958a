# transpose permutes the axes of any rank (reversing them without axes); a view, and its
# derivative is the inverse permutation. Two transposes compose into one.
dtype f64
param A[2, 3, 4] ~ normal(0, 1)
param B[4, 2, 3] ~ normal(0, 1)
param C[2, 1, 3, 2, 2] ~ normal(0, 1)
param D[2, 2, 3, 1, 2] ~ normal(0, 1)
param E[4, 3, 2] ~ normal(0, 1)
param F[2, 4, 3] ~ normal(0, 1)
loss sum(transpose(A, (2, 0, 1)) * B) + sum(transpose(C, (-1, 0, 2, 1, 3)) * D)
    + sum(tanh(transpose(A)) * E) + sum(transpose(transpose(A, (1, 2, 0))) * F)
