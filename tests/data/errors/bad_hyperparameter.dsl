# Adam has no momentum argument.
param x = 1
loss x^2
optimizer adam(lr = 0.1, momentum = 0.9)
