# Reshapes between shapes with as many elements whose symbol sits elsewhere ([n, 2, 3] and
# [2, n, 3]): row-major order puts their elements in other places, so a symbol never pairs
# with fixed axes when a reshape is planned as a view, neither for a strided operand nor for a
# product written into a merge's layout.
dtype f64
input x[n, 8]
param W[4, 3] ~ normal(0, 1)
let a = transpose(reshape(x, (n, 2, 4)), (1, 0, 2))
let p = a @ W
let r = reshape(transpose(p, (1, 0, 2)), (2, n, 3))
let s = reshape(transpose(r, (1, 0, 2)), (2, n, 3))
loss sum(tanh(r) * s)
