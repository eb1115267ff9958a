# A layer norm over rows of 20: its row sums join the loops of their operands, forward and
# backward (the plan shows `[row] +=`).
dtype f64
input X[n, 3]
param W[3, 20] ~ normal(0, 1)
param gain[20] ~ normal(1, 0.1)
param bias[20] ~ normal(0, 0.1)
loss mean(tanh(layer_norm(X @ W, gain, bias)))
