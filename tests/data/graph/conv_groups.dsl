# Grouped convolutions (each group of channels with its own kernels) in 1-d and 2-d, a
# padding per axis and "valid"; the input is a parameter, so its derivative is checked too.
dtype f64
param x[2, 4, 7, 6] ~ normal(0, 1)
param w[6, 2, 2, 3] ~ normal(0, 0.5)
param s[3, 6, 9] ~ normal(0, 1)
param v[4, 3, 3] ~ normal(0, 0.5)
let a = conv2d(x, w, stride=2, padding=(1, 0), groups=2)
let c = conv1d(s, v, padding="same", dilation=2, groups=2)
let d = conv1d(s, v[:2, :, :], stride=3, padding="valid", groups=2)
loss sum(sin(a)) + sum(c^2) / 10 + sum(d * d[:, ::-1, :])
