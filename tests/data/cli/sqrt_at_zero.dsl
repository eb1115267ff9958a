# sqrt at 0: the loss is finite, its derivative is infinite.
dtype f64
param x = 0
loss sqrt(x)
