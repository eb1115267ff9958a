# Max pooling (padded with -inf, so a pad is never the maximum), average pooling (padded with
# zeros, divided by the whole window) and global average pooling, in 1-d and 2-d.
dtype f64
param x[2, 3, 7, 6] ~ normal(0, 1)
param s[2, 2, 9] ~ normal(0, 1)
let m = max_pool2d(x, 3, stride=2, padding=1)
let a = avg_pool2d(x, (2, 3), stride=(1, 2))
let g = global_avg_pool2d(x * x)
loss sum(m^2) + sum(sin(a)) + sum(g^2) + sum(max_pool1d(s, 2)^2) + sum(avg_pool1d(s, 3, padding=1))
