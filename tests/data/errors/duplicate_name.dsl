# A name defined twice.
param w = 1
let w = 2
loss w^2
