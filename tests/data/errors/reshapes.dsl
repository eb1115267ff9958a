# Reshapes keep the element count; -1 is inferred once, from what the other entries leave.
input x[n, 4]
param T[2, 3, 4] = 0
let a = reshape(T, (5, -1))
let b = reshape(T, (4, 5))
let c = reshape(T, (-1, -1))
let d = reshape(T, (0, 24))
let e = reshape(x, (n, 2, -1))
let f = reshape(x, (8, -1))
let g = (1, 2) + T
loss sum(T) + sum(e)
