# Adding a length-3 vector to a length-4 one.
param a[3] ~ zeros
param b[4] ~ zeros
loss sum(a + b)
