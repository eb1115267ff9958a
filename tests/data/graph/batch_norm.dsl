# Batch normalization of a dense layer and of a convolution's channels, beside dropout: training
# steps normalize with the batch's statistics and output the running ones' next values,
# evaluation normalizes with the running statistics.
dtype f64
input X[n, 8]
input y[n]: int
param K[2, 1, 2, 2] ~ normal(0, 0.5)
param g1[2] ~ ones
param b1[2] ~ zeros
param W[8, 3] ~ normal(0, 0.5)
param g2[3] ~ ones
param b2[3] ~ zeros
let img = reshape(X, (n, 1, 2, 4))
let c = batch_norm(conv2d(img, K, padding=1), g1, b1)
let h = dropout(tanh(reshape(c[:, :, :2, :3], (n, 12))), 0.25)
let z = batch_norm(X @ W, g2, b2, eps=0.001, momentum=0.2)
let logits = z + h[:, :3]
loss cross_entropy(logits, y)
metric accuracy = mean(argmax(logits, axis=1) == y)
