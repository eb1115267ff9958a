# erf: the derivative 2/√π·e^(−x²); inline and vectorized in loops, like exp.
dtype f64
input x[n, 3]
param w[3] ~ normal(0, 1)
loss mean(erf(x * w) * x)
