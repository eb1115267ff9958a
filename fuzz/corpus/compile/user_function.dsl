# A user function is inlined at each call.
dtype f64
fn affine(x, w, b) = x * w + b
fn square(u) = u * u
param w ~ normal(0, 1)
param b ~ normal(0, 1)
param xs[4] ~ normal(0, 1)
loss sum(square(affine(xs, w, b))) + square(w)
