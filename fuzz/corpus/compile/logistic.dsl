# Logistic regression: is an iris flower Iris virginica, from its petal measurements?
# The loss is the binary cross-entropy written from its definition; the compiler rewrites
# log(sigmoid(z)) and log(1 - sigmoid(z)) into softplus forms, stable for any logit.
input petal[n, 2] from petal_length, petal_width
input species[n]: int

param w[2] ~ zeros
param b = 0

let z = petal @ w + b
let t = species == 2
loss -mean(t * log(sigmoid(z)) + (1 - t) * log(1 - sigmoid(z)))
metric accuracy = mean((z > 0) == t)

optimizer adam(lr = 0.1)
train steps = 3000, log_every = 500
data "data/iris.csv"
