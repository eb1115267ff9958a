# one value used twice: the cotangents of both uses add up.
dtype f64
param x ~ normal(0, 1)
loss x * x
