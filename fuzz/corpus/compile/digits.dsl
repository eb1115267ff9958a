# A two-layer network on 8×8 handwritten digits (1797 images, 10 classes): 64 → 128 tanh → 10,
# softmax cross-entropy, Glorot-uniform weights and zero biases, Adam on minibatches of 32.
input pixels[n, 64] from p0..p63
input label[n]: int

param W1[64, 128] ~ xavier_uniform
param b1[128] ~ zeros
param W2[128, 10] ~ xavier_uniform
param b2[10] ~ zeros

let x = pixels / 16
let h = tanh(x @ W1 + b1)
let logits = h @ W2 + b2
loss cross_entropy(logits, label)
metric accuracy = mean(argmax(logits, axis=1) == label)

optimizer adam(lr = 0.001)
train epochs = 50, batch = 32, seed = 0, log_every = 285
data "data/digits.csv"
