# Maximum likelihood for a two-component Gaussian mixture on 1-D data (2000 draws from
# 0.3·N(−2, 0.5²) + 0.7·N(1.5, 1²)). The negative log-likelihood is non-convex: it has a
# symmetric twin minimum (components swapped) and degenerate spikes where a variance → 0.
# Parameters are unconstrained: a mixing logit and log standard deviations.
# `log(exp(l1) + exp(l2))` is rewritten to a stable log-add-exp before differentiation.
dtype f64

input x[n]

param a = 0       # logit of the first component's weight
param mu1 = -1
param mu2 = 1
param ls1 = 0     # log standard deviations
param ls2 = 0

fn log_normal(x, mu, ls) = -0.5 * ((x - mu) / exp(ls))^2 - ls - 0.5 * log(2 * pi)

let l1 = log(sigmoid(a)) + log_normal(x, mu1, ls1)
let l2 = log(1 - sigmoid(a)) + log_normal(x, mu2, ls2)
loss nll = -mean(log(exp(l1) + exp(l2)))

metric weight1 = sigmoid(a)
metric sigma1 = exp(ls1)
metric sigma2 = exp(ls2)

optimizer adam(lr = 0.05)
train steps = 1500, log_every = 250
data "data/gmm.csv"
