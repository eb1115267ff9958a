# An unknown initializer, a bad setting, and a loss given twice.
param W[2, 2] ~ glorot_magic
param v[2] ~ normal(0, 1, 2)
loss sum(v)
loss sum(v^2)
train steps = 10.5, speed = 3
