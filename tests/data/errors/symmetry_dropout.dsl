# A dropout between two layers that start constant gives each hidden unit its own mask: the
# units start identical and only the masks separate them, slowly (warned, with that note).
input X[n, 4]
input y[n]: int
param W1[4, 6] ~ zeros
param W2[6, 3] ~ constant(0.5)
loss cross_entropy(dropout(tanh(X @ W1), 0.5) @ W2, y)
