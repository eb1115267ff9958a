# A `let` that fails to check is still known: its later uses add no errors of their own.
param a[3] ~ zeros
param b[4] ~ zeros
let h = a @ b
let y = tanh(h) * 2
metric m = sum(h, axis=0)
loss sum(y) + mean(h) + m
