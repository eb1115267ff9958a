# Negations leave sums (sum(-x) = -sum(x)) and fold into constants (-(c*x) = (-c)*x), and
# x + k*y with k < 0 becomes x - (-k)*y: all exact, and each removes an op per element.
param x[4] ~ normal(0, 1)
param y[4] ~ normal(0, 1)
param s ~ normal(0, 1)
loss sum(-(x * y)) - sum(-(3 * x)) + mean(x + (-2) * y) + s * sum(-(y^2))
