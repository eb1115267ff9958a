# Constant convolution kernels: channels fed by one constant kernel into another constant
# layer stay identical (warned); a random next layer breaks the tie (not warned).
input X[n, 64]
input y[n]: int
param k1[4, 1, 3, 3] ~ constant(0.1)
param k2[6, 4, 3, 3] ~ zeros
param k3[3, 1, 3, 3] ~ zeros
param W[24, 10] ~ xavier_uniform
let h = relu(conv2d(reshape(X, (n, 1, 8, 8)), k1))
let h2 = max_pool2d(relu(conv2d(h, k2)), 2)
loss cross_entropy(reshape(h2, (n, 24)) @ W, y) + sum(conv2d(reshape(X, (n, 1, 8, 8)), k3))
