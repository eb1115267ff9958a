# No loss at all.
param x = 1
