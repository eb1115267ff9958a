# Functions are inlined, so they cannot call themselves.
fn f(x) = f(x) + 1
param x = 1
loss f(x)
