# The model every optimizer, dialect and schedule is exported with, in the equality checks of
# scripts/verify_export.py: a few parameters of different shapes, a curved loss, f64.
dtype f64

param w[4] ~ normal(0, 0.5)
param b = 0.3

loss f = sum((w - 1)^2 * (1 + w^2)) + (b - sum(w))^2 / 4 + softplus(b)

optimizer adam(lr = 0.05)
train steps = 20
