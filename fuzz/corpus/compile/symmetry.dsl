# Symmetry breaking: a hidden layer whose weights start equal never learns more than one
# feature. Every hidden unit computes the same value, gets the same gradient, and stays equal
# to the others (the next layer starts at zero, so it cannot tell them apart either); the
# compiler warns. Replace `constant(0.1)` by `xavier_uniform` to fix it.
input X[n, 4] from sepal_length, sepal_width, petal_length, petal_width
input species[n]: int

param W1[4, 8] ~ constant(0.1)
param b1[8] ~ zeros
param W2[8, 3] ~ zeros
param b2[3] ~ log_prior(species)

let h = tanh(X @ W1 + b1)
let logits = h @ W2 + b2
loss cross_entropy(logits, species)
metric accuracy = mean(argmax(logits, axis=1) == species)

optimizer adam(lr = 0.01)
train steps = 1000, log_every = 250
data "data/iris.csv"
