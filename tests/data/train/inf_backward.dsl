# The loss is finite at x = 0 but the derivative of sqrt is not.
dtype f64
param x = 0
loss sqrt(x) + x^2
optimizer sgd(lr = 0.1)
train steps = 5
