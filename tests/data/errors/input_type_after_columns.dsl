# `: int` goes before or after the columns, but not on both sides.
input X[n, 2] from a, b
input y[n] from label: int
input z[n]: int from label2: int
param w[2] ~ zeros
loss mean((X @ w - y)^2)
