"""JAX reference for examples/charlm.dsl: the same model, split, initial parameters and step count.

    cargo run --release -- train examples/charlm.dsl --steps 0 --save init.safetensors   # initial parameters
    python bench/charlm_jax.py --init init.safetensors   # 300 steps of 16 windows, lr 3e-4, validation 0.1

Model (as the .dsl writes it): token + learned positional embeddings, two pre-LayerNorm blocks of
causal multi-head self-attention (4 heads of 32, softmax(QKᵀ/√32) with -inf above the diagonal)
and a GELU (tanh form) MLP 128→512→128 with residuals, a final LayerNorm (eps 1e-5) and an
untied output projection; mean next-character cross-entropy. f32.

Data: examples/data/tinyshakespeare.txt as characters, the vocabulary its distinct characters
sorted by code point; the last `validation` of its characters held out (round(len·F)). Training
draws `batch` windows of T characters per step at uniform random starts in the training part
(numpy's generator, seeded: adjoint draws its own starts, so the two runs see different but
identically distributed windows); validation reads the windows that tile the held-out tail from
its start, as adjoint's does. Adam in the textbook form (β 0.9, 0.999, ε 1e-8, bias-corrected).
"""
import argparse
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
T, D, H, DH, LAYERS, EPS = 64, 128, 4, 32, 2, 1e-5


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F32": np.float32, "F64": np.float64}[meta["dtype"]]
        lo, hi = meta["data_offsets"]
        out[name] = np.frombuffer(data[lo:hi], dtype=dtype).reshape(meta["shape"]).copy()
    return out


def load_text(path, validation):
    text = open(path, encoding="utf-8").read()
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    tokens = np.array([index[c] for c in text], dtype=np.int32)
    held = int(round(len(tokens) * validation))
    return vocab, tokens[: len(tokens) - held], tokens[len(tokens) - held:]


def tiled(tokens):
    starts = len(tokens) + 1 - (T + 1)
    count = 0 if starts <= 0 else (starts - 1) // T + 1
    idx = np.arange(count)[:, None] * T + np.arange(T)
    return tokens[idx], tokens[idx + 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--init", required=True, help="adjoint's initial checkpoint (train --steps 0 --save)")
    ap.add_argument("--text", default=os.path.join(HERE, "..", "examples", "data", "tinyshakespeare.txt"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--validation", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp

    vocab, train, val = load_text(args.text, args.validation)
    # adjoint's checkpoints name a parameter `param/NAME` (its optimizer state `state/…`).
    params = {k[len("param/"):]: jnp.asarray(v) for k, v in read_safetensors(args.init).items()
              if k.startswith("param/")}

    def layer_norm(x, g, b):
        mu = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mu), axis=-1, keepdims=True)
        return (x - mu) / jnp.sqrt(var + EPS) * g + b

    def heads(t):
        n = t.shape[0]
        return t.reshape(n, T, H, DH).transpose(0, 2, 1, 3)

    causal = jnp.tril(jnp.ones((T, T), bool))

    def logits_of(p, x):
        n = x.shape[0]
        h = p["wte"][x] + p["wpe"]
        for b in range(LAYERS):
            qkv = layer_norm(h, p[f"ln1g{b}"], p[f"ln1b{b}"]) @ p[f"wqkv{b}"] + p[f"bqkv{b}"]
            q, k, v = heads(qkv[..., :D]), heads(qkv[..., D:2 * D]), heads(qkv[..., 2 * D:])
            s = jnp.where(causal, q @ k.transpose(0, 1, 3, 2) / np.sqrt(DH), -jnp.inf)
            o = (jax.nn.softmax(s, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(n, T, D)
            h = h + o @ p[f"wo{b}"] + p[f"bo{b}"]
            a = layer_norm(h, p[f"ln2g{b}"], p[f"ln2b{b}"]) @ p[f"w1{b}"] + p[f"b1{b}"]
            h = h + jax.nn.gelu(a, approximate=True) @ p[f"w2{b}"] + p[f"b2{b}"]
        return layer_norm(h, p["lnfg"], p["lnfb"]) @ p["whead"] + p["bhead"]

    def loss(p, x, y):
        z = logits_of(p, x)
        lse = jax.nn.logsumexp(z, axis=-1)
        return jnp.mean(lse - jnp.take_along_axis(z, y[..., None], axis=-1)[..., 0])

    b1, b2, eps = 0.9, 0.999, 1e-8

    @jax.jit
    def step(p, m, v, t, x, y):
        value, g = jax.value_and_grad(loss)(p, x, y)
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        p = jax.tree.map(lambda p, m, v: p - args.lr * (m / c1) / (jnp.sqrt(v / c2) + eps), p, m, v)
        return p, m, v, value

    rng = np.random.default_rng(args.seed)
    m = jax.tree.map(jnp.zeros_like, params)
    v = jax.tree.map(jnp.zeros_like, params)
    starts = len(train) + 1 - (T + 1)
    for t in range(1, args.steps + 1):
        s = rng.integers(0, starts, size=args.batch)
        idx = s[:, None] + np.arange(T)
        params, m, v, value = step(params, m, v, float(t), train[idx], train[idx + 1])
        if t % 100 == 0 or t == args.steps:
            print(f"step {t}: loss {float(value):.4f}", flush=True)

    xv, yv = tiled(val)
    eval_loss = jax.jit(loss)
    total = sum(float(eval_loss(params, xv[i:i + 64], yv[i:i + 64])) * len(xv[i:i + 64])
                for i in range(0, len(xv), 64))
    print(f"validation loss {total / len(xv):.4f} nats/char over {len(xv)} windows "
          f"({len(vocab)} characters, {args.steps} steps of {args.batch} windows)")


if __name__ == "__main__":
    main()
