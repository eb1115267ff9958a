# A split names each of its parts, which fill the axis exactly.
param X[4, 6] = 0
let a, b = split(X, 4, axis=1)
let c, d = split(X, (1, 2), axis=0)
let e, f = exp(X)
let g = split(X, 2)
let h, i, j = split(X, 2, axis=-1)
loss sum(X)
