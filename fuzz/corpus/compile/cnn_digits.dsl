# A convolutional network on the 8×8 handwritten digits as [n, 1, 8, 8] images:
# conv 3×3 1→16 (padded) → relu → max-pool 2×2 → conv 3×3 16→32 (padded) → relu → max-pool 2×2
# → dense 128 → 10, softmax cross-entropy, He-normal kernels, Adam on minibatches of 32, with a
# seeded fifth of the rows held out for validation.
input pixels[n, 64] from p0..p63
input label[n]: int

param k1[16, 1, 3, 3] ~ he_normal
param c1[16] ~ zeros
param k2[32, 16, 3, 3] ~ he_normal
param c2[32] ~ zeros
param W[128, 10] ~ xavier_uniform
param b[10] ~ zeros

let img = reshape(pixels / 16, (n, 1, 8, 8))
let h1 = max_pool2d(relu(conv2d(img, k1, padding=1) + c1[:, None, None]), 2)
let h2 = max_pool2d(relu(conv2d(h1, k2, padding=1) + c2[:, None, None]), 2)
let logits = reshape(h2, (n, 128)) @ W + b
loss cross_entropy(logits, label)
metric accuracy = mean(argmax(logits, axis=1) == label)

optimizer adam(lr = 0.002)
train epochs = 30, batch = 32, seed = 0, validation = 0.2, log_every = 450
data "data/digits.csv"
