# Three separate mistakes are reported in one run.
param a[3] ~ zeros
param b[4] ~ zeros
let u = a + b
let v = a @ b
loss sum(undefined)
