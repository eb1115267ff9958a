# Gathers need whole-number indices along an axis of fixed length: a float input, a
# computed float, a data axis, a scatter-add whose values do not have the indices' shape, a
# bad size, and axes out of range.
input x[n, 3]
input tok[n]: int
param E[5, 4] ~ normal(0, 1)
let a = E[x[:, 0]]
let b = take(E, tok * 2, axis=1)
let c = take(x, tok)
let d = scatter_add(E, tok, 7)
let e = scatter_add(E, tok, 2.5)
let f = take(E, tok, axis=2)
let h = scatter_add(E, tok, 7, axis=-3)
loss sum(a) + sum(b) + sum(c) + sum(d) + sum(e) + sum(f) + sum(h)
