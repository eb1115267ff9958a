# Embedding lookups: parameter tables gathered by int tokens with indices of rank 1 to 3,
# along axis 0 and axis 1, from a transposed view and from a computed table; the derivative
# scatter-adds into the tables, summing the rows of repeated tokens.
dtype f64
input tok[n, 3]: int
input y[n]: int
param E[5, 4] ~ normal(0, 1)
param W[2, 5, 3] ~ normal(0, 1)
let h = E[tok]
let c = take(W, y, axis=1)
let d = take(E, expand_dims(tok, 2))
let t = take(transpose(E), y, axis=1)
let s = tanh(E)[:, y]
loss sum(tanh(h) ^ 2) + sum(sigmoid(c) * c) + sum(exp(0.1 * d)) + sum(t * sin(t)) + sum(s ^ 3)
