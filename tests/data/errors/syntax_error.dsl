# A missing operand.
param w[3] ~ zeros
loss sum(w * )
