# A schedule missing its argument, and an unknown framework.
param x = 1
loss x^2
optimizer adam(defaults = torch)
schedule step(gamma = 0.5)
