# Dropout on a [n, c, h, w] array, as a convolutional network's feature maps are: the mask has
# one element per element of the array.
dtype f64
input X[n, 3]
param K[3, 4, 4] ~ normal(0, 0.5)
param w[3] ~ normal(0, 0.5)
let maps = expand_dims(expand_dims(X, -1), -1) * K
let h = dropout(tanh(maps), 0.3)
let s = sum(sum(h, axis=3), axis=2) @ w
loss mean(s^2)
metric mean_s = mean(s)
