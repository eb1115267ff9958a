# erfc: the derivative −2/√π·e^(−x²); computed without 1 − erf, so that its tail keeps its
# digits (the log of erfc far out); inline and vectorized in loops, like exp; a call once per
# step for a scalar.
dtype f64
input x[n, 3]
param w[3] ~ normal(0, 1)
param s = 0.3
loss mean(erfc(x * w) * x) + erfc(s)^2 + mean(log(erfc(4 + abs(x * w))))
