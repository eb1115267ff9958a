input x[n]
param w = 0
fn scale(a, b) = a * b
loss mean(scale(a = w, b = x)^2)
