# A bigram character model: the next character's logits are a row of W picked by this one.
dtype f64
input x[n, 16]: int from text "tiny.txt"
input y[n, 16]: int from text "tiny.txt" offset 1
param W[45, 45] ~ zeros
let logits = sum(expand_dims(one_hot(x, 45), -1) * W, axis=2)
loss -mean(sum(one_hot(y, 45) * log_softmax(logits, axis=-1), axis=-1))
output next = logits
optimizer adam(lr = 0.1)
train steps = 60, batch = 8, seed = 3, log_every = 20
