# Windows two wide with stride 2 along the last axis, whose gradients place both columns of a
# window next to each other (in vectors, interleaved): rows of five windows (a vector and one
# left over in f32, two and one in f64), and windows three tall with stride 1, whose rows
# overlap and sum in order.
dtype f64
param x[2, 2, 6, 10] ~ normal(0, 1)
let m = max_pool2d(x, (3, 2), stride=(1, 2))
let a = avg_pool2d(x, 2)
loss sum(m^2) + sum(sin(a))
