# Array literals hold constants, in rows of one length; lengths are whole numbers or dimensions.
input X[n, 2]
param w[2] ~ zeros
let ragged = [[1, 2], [3]]
let empty = []
let moving = [1, w[0]]
let bad_nan = [0 / 0]
let big = ones([100000, 100000, 100000])
loss sum(big) + sum(X @ w) + sum(ones([n, 2.5])) + sum(arange(0)) + sum(arange(3, 1)) + sum(arange(1, n)) + sum(causal_mask(-2)) + sum(zeros(w))
