# An embedding-bag classifier: each row's four tokens are looked up in a table of 12
# embeddings, averaged, and classified into 3 classes.
dtype f64
input tok[n, 4]: int
input y[n]: int
param E[12, 8] ~ normal(0, 0.5)
param W[8, 3] ~ normal(0, 0.5)
loss cross_entropy(mean(E[tok], axis=1) @ W, y)
metric accuracy = mean(argmax(mean(E[tok], axis=1) @ W, axis=1) == y)
optimizer adam(lr = 0.05)
train steps = 60, seed = 1
data "bag.csv"
