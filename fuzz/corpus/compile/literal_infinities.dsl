param w[2, 3] ~ normal(0, 1)
let m = [[[1, -inf], [inf, 2 * pi]], [[e, 0], [1, 1]]]
loss sum(softmax(where(causal_mask(2), m, -inf), axis=-2)) + sum(w * arange(3)) + sum(gelu(w, approximate=true) * ones([2, 3]))
