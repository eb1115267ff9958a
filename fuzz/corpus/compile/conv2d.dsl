# A 2-d convolution of a batch of images with stride, padding and dilation: the patches are
# a view (`windows`), im2col is the copy of their reshape, and the product is one batched `@`;
# the derivative for the input adds the patches back (`unwindows`).
dtype f64
input X[n, 90]
param w[4, 3, 3, 2] ~ he_normal
param b[4] ~ normal(0, 0.1)
param k[2, 4, 1, 3] ~ normal(0, 0.5)
let img = reshape(X, (n, 3, 6, 5))
let y = tanh(conv2d(img, w, stride=(2, 1), padding=1, dilation=(1, 2)) + b[:, None, None])
loss mean(conv2d(y, k, padding="same")^2) + mean(y^2)
