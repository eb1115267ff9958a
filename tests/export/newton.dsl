# Newton's method has no exact export: `adjoint export --to jax` refuses it, naming the line.
dtype f64

param x = 1
param y = 2

loss f = (x - 1)^2 + 10 * (y - x^2)^2

optimizer newton(lr = 1)
