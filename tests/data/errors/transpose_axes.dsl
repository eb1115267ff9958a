# transpose's axes: one per axis of the operand, each in range and named once; a tuple is no value.
param A[2, 3, 4] ~ zeros
let a = transpose(A, (0, 1))
let b = transpose(A, (0, 3, 1))
let c = transpose(A, (2, -1, 0))
let d = transpose(A, (0, 1.5, 2))
let e = A * (1, 2)
loss sum(A)
