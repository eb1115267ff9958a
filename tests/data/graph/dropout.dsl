# Dropout on the inputs and on a hidden layer: training steps draw masks, evaluation is the
# identity, so the training and evaluation graphs differ.
dtype f64
input X[n, 4]
input y[n]: int
param W1[4, 6] ~ normal(0, 0.5)
param b1[6] ~ zeros
param W2[6, 3] ~ normal(0, 0.5)
let h = dropout(tanh(dropout(X, 0.2) @ W1 + b1), 0.5)
loss cross_entropy(h @ W2, y)
metric accuracy = mean(argmax(h @ W2, axis=1) == y)
