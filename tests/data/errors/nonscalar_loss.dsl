# The loss must be a single number.
param w[3] ~ zeros
loss w * 2
