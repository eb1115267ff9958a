# A scalar term inside a mean over rows: its derivative sums n copies of a scalar, which the
# printed derivative must count (n · c), not sum as one value.
dtype f64
input x[n, 2]
param w[2] ~ normal(0, 1)
param s = 0.5
loss mean(erf(x * w) - 0.5 * erf(s) + s^2)
