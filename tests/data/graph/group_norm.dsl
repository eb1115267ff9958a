# Group normalization of a convolution's 4 channels in 2 groups and of a dense layer's 6
# features in 3 groups: statistics per sample and group, the same in training and evaluation
# (the dropout makes the export checks compare the ONNX evaluation graph too).
dtype f64
input X[n, 8]
input y[n]: int
param K[4, 1, 2, 2] ~ normal(0, 0.5)
param g1[4] ~ normal(1, 0.2)
param b1[4] ~ normal(0, 0.2)
param V[60, 3] ~ normal(0, 0.2)
param W[8, 6] ~ normal(0, 0.5)
param g2[6] ~ normal(1, 0.2)
param b2[6] ~ normal(0, 0.2)
let c = group_norm(conv2d(reshape(X, (n, 1, 2, 4)), K, padding=1), 2, g1, b1)
let z = group_norm(X @ W, 3, g2, b2, eps=0.001)
let logits = z[:, :3] + dropout(tanh(reshape(c, (n, 60))), 0.25) @ V
loss cross_entropy(logits, y)
metric accuracy = mean(argmax(logits, axis=1) == y)
