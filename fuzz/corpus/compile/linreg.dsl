# Least squares: minimize the mean of (A w - z)^2 over 4000 rows.
# The minimizer solves the normal equations AᵀA w = Aᵀz; full-batch gradient descent
# converges to it at a rate set by the condition number of AᵀA.
dtype f64

input A[n, 3] from a0..a2
input z[n]

param w[3] ~ zeros

let residual = A @ w - z
loss mean(residual^2)

optimizer sgd(lr = 0.1)
train steps = 300, log_every = 50
data "data/linreg.csv"
