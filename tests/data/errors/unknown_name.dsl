# A typo in a name.
param w[3] ~ zeros
let r = w * 2
loss sum(q)
