# Slices: each bound is checked against its axis where it is written.
input x[n]
param v[5] = 0
param M[3, 4] = 0
let a = v[1:9]
let b = v[::0]
let c = v[3:1]
let d = x[1:]
let e = M[..., 0, ...]
let f = M[None, 0]
let g = v[0.5:]
loss sum(v)
