# A character the language does not use.
param x = 1
loss x $ 2
