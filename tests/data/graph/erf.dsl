# erf: the derivative 2/√π·e^(−x²); inline and vectorized in loops, like exp; a call once
# per step for a scalar.
dtype f64
input x[n, 3]
param w[3] ~ normal(0, 1)
param s = 0.3
loss mean(erf(x * w) * x) + erf(s)^2
