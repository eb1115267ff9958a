# Ranges with steps, reversed axes, integer indices mixed with slices; the derivative of a
# slice embeds back into zeros (`unslice`).
dtype f64
param X[4, 6] ~ normal(0, 1)
param v[5] ~ normal(0, 1)
let head = X[:, 2:5]
let rev = v[::-1] * v
loss sum(head^2) + sum(rev[1:] * v[1:]) + sum(v[:-1] * v[::2][1]) + sum(X[0, 1:3] * X[1::2, -2])
