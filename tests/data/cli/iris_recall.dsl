# iris with a per-class metric: the recall of each species (a vector of 3).
input X[n, 4] from sepal_length, sepal_width, petal_length, petal_width
input species[n]: int

param W[4, 3] ~ zeros
param b[3] ~ zeros

let logits = X @ W + b
let truth = one_hot(species, 3)
loss mean(logsumexp(logits, axis=1) - sum(truth * logits, axis=1))
metric accuracy = mean(argmax(logits, axis=1) == species)
metric recall = sum(truth * one_hot(argmax(logits, axis=1), 3), axis=0) / sum(truth, axis=0)
output predicted = argmax(logits, axis=1)

optimizer adam(lr = 0.05)
train steps = 100, log_every = 50
data "../../../examples/data/iris.csv"
