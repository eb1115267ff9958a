# Log-sum-exps written out: three terms, a mixture with sigmoid weights, a constant-weighted
# mixture, a softmax-weighted sum and a log-mean-exp; each is rewritten to a stable form
# (`graph --explain`).
dtype f64
param a[2] ~ normal(0, 1)
param b[2] ~ normal(0, 1)
param c[2] ~ normal(0, 1)
param z ~ normal(0, 1)
param v[2] ~ normal(0, 1)
let three = log(exp(a) + exp(b) + exp(c))
let mix = log(sigmoid(z) * exp(a) + (1 - sigmoid(z)) * exp(b))
let fixed = log(0.3 * exp(b) + exp(c) * 0.7)
let weighted = log(sum(softmax(v) * exp(a)))
let averaged = log(mean(exp(c)))
loss sum(three) + sum(mix * c) - sum(fixed) + weighted + averaged
