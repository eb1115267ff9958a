# An index out of range is one error: the value it defines is not "unknown" after it.
param W[2, 2] ~ zeros
let z = W[0, 3]
let u = z * 2
loss sum(u) + z
