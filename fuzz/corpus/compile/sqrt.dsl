# sqrt: d sqrt(u) = du / (2 sqrt(u)).
dtype f64
param x[3] ~ normal(0, 1)
loss sum(sqrt(x^2 + 0.5))
