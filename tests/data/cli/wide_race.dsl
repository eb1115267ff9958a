# Two scalar parameters and a constant one-hot row of 900 million values (3.4 GiB in f32),
# computed at every step.
param a = 1
param b = 2
loss a^2 + b^2 + a * sum(one_hot(0, 900000000) * b)
