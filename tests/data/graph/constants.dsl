# Array literals, ones, zeros and arange, used where arrays are.
dtype f64
input x[n, 2]
param w[2, 2] ~ normal(0, 1)
let K = [[1, 2], [3, -4.5]]
let v = [pi, -1]
loss sum((2 * K - 1) * w) + sum(K * w) + sum((K @ w) * [K, K]) + sum(ones([2, 2]) * w + zeros(2)) + sum(w @ v) + mean(tanh(x @ w)) + sum(arange(1, 3) * w) + mean(arange(n) * (x @ w[0, :]))
