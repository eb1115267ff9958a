# group_norm's arguments: groups that do not divide the channels, a gain of the wrong length,
# an operand without channels, no groups at all.
input X[n, 12]
param g[6] ~ ones
param b[6] ~ zeros
param g4[4] ~ ones
let img = reshape(X, (n, 6, 2))
let a = group_norm(img, 4, g, b)
let c = group_norm(img, 3, g4, b)
let d = group_norm(g, 2, g, b)
let e = group_norm(img, 0, g, b)
loss sum(a) + sum(c) + sum(d) + sum(e)
