# A model that chooses its own SGD learning rate.
dtype f64
param x = 3
loss x^2
optimizer sgd(lr = 0.004)
schedule step(every = 2, gamma = 0.5)
train steps = 3
