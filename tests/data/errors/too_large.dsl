# Shapes larger than memory are refused when the model is checked.
param W[1000000, 1000000] ~ zeros
loss sum(W)
