# sqrt of a negative number: the loss and its derivative are NaN.
dtype f64
param x = -1
loss sqrt(x)
