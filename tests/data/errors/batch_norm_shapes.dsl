# batch_norm normalizes [N, C] or [N, C, H, W] per channel: a rank-3 array, a gain of the wrong
# length and a momentum outside [0, 1] are each refused at the call.
input X[n, 4]
param g[4] ~ ones
param b[4] ~ zeros
param g3[3] ~ ones
let a = batch_norm(reshape(X, (n, 2, 2)), g, b)
let c = batch_norm(X, g3, b)
let d = batch_norm(X, g, b, momentum=1.5)
loss sum(a) + sum(c) + sum(d)
