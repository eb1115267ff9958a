# Rosenbrock's banana: a narrow curved valley, the classic test of an optimizer.
# The minimum is f(1, 1) = 0; gradient descent crawls along the valley floor.
dtype f64

param x = -1.2
param y = 1.0

loss f = (1 - x)^2 + 100 * (y - x^2)^2

optimizer adam(lr = 0.01)
train steps = 20000, log_every = 2000
