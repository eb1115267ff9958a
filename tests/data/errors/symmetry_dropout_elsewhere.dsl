# Dropouts before a constant layer and past the next one leave its units tied for the whole of
# training: each unit still reads the same inputs and gets the same gradient (warned as without
# dropout). `W2`'s units feed a random layer: not warned.
input X[n, 4]
input y[n]: int
param W1[4, 6] ~ constant(0.1)
param W2[6, 5] ~ constant(0.5)
param W3[5, 3] ~ xavier_uniform
loss cross_entropy(dropout(tanh(dropout(X, 0.2) @ W1) @ W2, 0.5) @ W3, y)
