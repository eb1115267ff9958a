# Reducing over an axis the operand does not have.
param X[2, 3] ~ zeros
loss sum(sum(X, axis=2))
