# abs, leaky_relu, elu, maximum, minimum and clamp take the derivative of the chosen branch.
dtype f64
param x[5] ~ normal(0, 1)
param y[5] ~ normal(0, 1)
param c[5] ~ normal(0, 1)
loss sum((abs(x) + leaky_relu(x, 0.1) + elu(y) + maximum(x, y) + minimum(x, 0.3) + clamp(y, -0.5, 0.5)) * c)
