# A function that does not exist.
param x = 1
loss softplus2(x)
