# Beale's function: flat plateaus and steep ridges; global minimum f(3, 0.5) = 0.
dtype f64

param x = 1
param y = 1

loss f = (1.5 - x + x*y)^2 + (2.25 - x + x*y^2)^2 + (2.625 - x + x*y^3)^2

optimizer adam(lr = 0.01)
train steps = 10000, log_every = 1000
