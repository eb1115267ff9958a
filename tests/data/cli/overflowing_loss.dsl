# exp(1000) overflows f64: the loss and its derivative are infinite.
dtype f64
param x = 1000
loss exp(x)
