# An error in a function's body is reported once, however many times the function is called.
param w[3] ~ zeros
fn f(x) = x * q
let a = f(w)
let b = f(w) + f(2 * w)
loss sum(a + b)
