# Ranges with steps, reversed axes, integer indices mixed with slices; the derivative of a
# slice embeds back into zeros (`unslice`). Slices are views: a row wider than a vector reads
# a slice at an offset in vectors.
dtype f64
param X[4, 6] ~ normal(0, 1)
param v[5] ~ normal(0, 1)
param Y[3, 21] ~ normal(0, 1)
let head = X[:, 2:5]
let rev = v[::-1] * v
loss sum(head^2) + sum(rev[1:] * v[1:]) + sum(v[:-1] * v[::2][1]) + sum(X[0, 1:3] * X[1::2, -2]) + sum(tanh(Y[::-1, 2:19]) * Y[:, 1:18]) + sum(logsumexp(Y[1:, ::-2], axis=-1)) + sum(log_softmax(reshape(Y[:, 3:], (3, 2, 9)), axis=-1)[:, :, 0])
