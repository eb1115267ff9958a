# Values a model file gives are checked as the command line's are, each at its place.
dtype f64
dtype f32
input x[n]
input y[n]
param w ~ normal(0, -1)
param b ~ uniform(1, -1)
param c ~ he_normal(gain = -2)
loss mean((clamp(w * x + b * c, 1, -1) - y)^2) + 1e999
optimizer adam(lr = -1, beta1 = 1.5, eps = 0)
train steps = 1e20, batch = -3, drop_last = 2
