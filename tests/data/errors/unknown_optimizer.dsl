# A misspelt optimizer and hyperparameter.
param x = 1
loss x^2
optimizer adma(lr = 0.1)
