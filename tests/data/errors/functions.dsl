# A function defined twice, one named like a built-in, and a data-bias init of nothing.
fn f(x) = x
fn f(x) = 2 * x
fn exp(x) = x
param b ~ log_prior(labels)
loss f(b)
