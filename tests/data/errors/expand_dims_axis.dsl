# `expand_dims` inserts a unit axis; the result of a vector has rank 2, so axis 3 is out of range.
param v[3] ~ zeros
loss sum(expand_dims(v, axis=3))
