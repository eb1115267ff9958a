# The square root's argument turns negative at step 6.
dtype f64
param x = 2
param y = 1
let r = sqrt(x - y)
loss f = r + y^2
optimizer sgd(lr = 0.7)
train steps = 20
