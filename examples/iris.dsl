# Softmax (multinomial logistic) regression on Fisher's iris flowers: 4 measurements,
# 3 species. The loss is the mean cross-entropy, written with a stable log-sum-exp.
input X[n, 4] from sepal_length, sepal_width, petal_length, petal_width
input species[n]: int

param W[4, 3] ~ zeros
param b[3] ~ zeros

let logits = X @ W + b
loss mean(logsumexp(logits, axis=1) - sum(one_hot(species, 3) * logits, axis=1))
metric accuracy = mean(argmax(logits, axis=1) == species)
output probability = softmax(logits, axis=1)
output predicted = argmax(logits, axis=1)

optimizer adam(lr = 0.05)
train steps = 2000, log_every = 500
data "data/iris.csv"
