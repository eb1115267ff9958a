# A loss far from zero: its finite differences carry rounding error in proportion to 1e6.
dtype f64
param w[10] ~ normal(0, 1)
loss 1000000 + sum(w^2)
