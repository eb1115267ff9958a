# log1p has no exact ONNX operator: `adjoint export --to onnx` refuses it, naming the line.
input x[n]
input y[n]
param a = 0.5
let z = a * x
loss mean((z - y)^2)
output growth = log1p(z)
