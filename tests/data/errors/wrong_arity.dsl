# A built-in and a user function called with the wrong arguments.
fn sq(x) = x * x
param x = 1
let a = sq(x, x)
loss sum(x, 0, 1, 2) + softmax(axis=0)
