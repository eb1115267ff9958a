# The parser recovers and goes on after each syntax error.
param a[3] ~ zeros
let u = a + * 2
let v = (a
loss sum(a) +
