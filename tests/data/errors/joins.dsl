# concat and stack need lists of arrays that agree off the joined axis.
input x[n, 2]
param A[2, 3] = 0
param B[3, 3] = 0
let a = concat([A, B], axis=1)
let b = stack([A, B])
let c = concat(A, axis=0)
let d = concat([x, x], axis=0)
let e = unslice(A, 3, start=2, axis=0)
let f = [A, B]
let g = stack([A, A], axis=3)
loss sum(concat([A, B], axis=0))
