# einsum's spec is checked against its operands, each error pointing into the string.
param A[2, 3] ~ zeros
param B[3, 4] ~ zeros
let unknown = einsum("ij,jk->iz", A, B)
let count = einsum("ij,jk,kl->il", A, B)
let rank = einsum("ijk,jk->i", A, B)
let size = einsum("ij,ik->jk", A, B)
let repeated = einsum("ij,jk->iki", A, B)
let diagonal = einsum("ii->i", A)
let ellipsis = einsum("...j,jk->k", A, B)
let notstring = einsum(A, B)
let astring = A + "ij"
loss sum(A)
