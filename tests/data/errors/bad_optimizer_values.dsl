input x[n]
param w = 0
loss mean((w * x - 1)^2)
optimizer newton(lr = 1e999, damping = -1)
