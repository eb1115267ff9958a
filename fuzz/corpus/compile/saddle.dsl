# A saddle: f = x² − y² + y⁴/4 curves up along x and down along y at the origin, with
# minima at (0, ±√2). Started almost on the saddle's ridge, gradient descent must escape it.
dtype f64

param x = 1
param y = 0.001

loss f = x^2 - y^2 + y^4 / 4

optimizer sgd(lr = 0.05)
train steps = 400, log_every = 50
