# Iris with a one-hot encoding over ten million classes: each [n, 10000000] value of the
# forward pass, the gradient and the outputs takes 5.6 GiB at the data's 150 rows.
input X[n, 4] from sepal_length, sepal_width, petal_length, petal_width
input species[n]: int

param W[4, 3] ~ zeros

let logits = X @ W
let wide = one_hot(species, 10000000)
loss mean(logsumexp(logits, axis=1)) + mean(sum(wide, axis=1) * logits[:, 0])
output indicator = wide

optimizer adam(lr = 0.05)
train steps = 20
data "../../../examples/data/iris.csv"
