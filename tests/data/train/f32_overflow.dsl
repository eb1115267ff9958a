# In f32, exp(-x^2) at x = 9 is 6.6e-36 and its reciprocal 1.5e35, near the largest f32; the
# derivative of the division squares the denominator, which underflows, and is infinite.
param x = 9
loss 1 / exp(-x^2)
optimizer sgd(lr = 0.001)
train steps = 10
