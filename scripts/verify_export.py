"""Checks that exported models compute what adjoint computes.

For every example (and the optimizer model of tests/export under every optimizer, dialect and
schedule): `adjoint export --to jax`, then
  - JAX `loss` and `jax.grad(loss)` at adjoint's initial parameters and at its parameters after
    20 steps equal `adjoint export --values` there (f64 ≤ 1e-12 relative, f32 ≤ 1e-5);
  - 20 steps of the exported `train_step` from adjoint's checkpoint reach the parameters of
    adjoint's 20 steps from it (f64 ≤ 1e-10, f32 ≤ 1e-4): for the optimizer model from its
    initial checkpoint; for the examples from the checkpoint after 20 steps (`train --resume`,
    so `load`'s optimizer state is checked too), because at iris's and symmetry.dsl's initial
    parameters a bias's exact gradient is 0, and Adam turns the rounding noise there into
    steps of ±lr whose sign no two summation orders share.
  - for an example with outputs or metrics, onnxruntime on `adjoint export --to onnx` at the
    20-step checkpoint gives `adjoint predict`'s outputs and adjoint's metrics (f32 ≤ 1e-5,
    f64 ≤ 1e-12).
Every fixture of tests/data/graph (one or a few ops each) is checked the same way for its
loss and gradient at adjoint's initial parameters, on random rows written for it (whole
numbers 0 and 1 for `int` inputs, so every index lies on every axis it indexes). A model with
`dropout` or `batch_norm` has model state (running statistics, the dropout key and step count):
its JAX `loss` is the training step's, with adjoint's masks of the step after the checkpoint's
and the batch's statistics, checked with the running statistics after it against `export
--values`' `train/...` (adjoint's own values, f32 ones too), its evaluation loss and metrics
against adjoint's, and its 20 steps reach adjoint's parameters and running
statistics; a fixture with either is checked so from adjoint's checkpoint after 3 steps on rows
of whole numbers 0 and 1, with its ONNX export (the evaluation graph) against adjoint's metrics.
Full-batch runs only: a minibatch run is checked with one batch of all rows, since the exported
module shuffles with numpy's generator, not adjoint's. A model of a text (examples/charlm.dsl) is
checked on a copy of its first TEXT_CHARS characters: loss, gradient and ONNX outputs on the
text's tiled windows at adjoint's initial parameters and after 20 steps. Its training steps are
compared on a copy of the text's first window alone: adjoint draws random windows from a
generator numpy does not have, and where only one window exists every draw is that one.
The exported dropout masks' bits are checked on both sides of element 2³² against adjoint's
generator computed on Python's integers. Exit status 1 on any failure.

Usage: python scripts/verify_export.py ADJOINT_BINARY
"""

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from safetensors.numpy import load_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 20
TEXT_CHARS = 4000  # of a text model's corpus: 62 tiled windows of 64 characters
TEXT_STEPS_OPTIMIZER = "optimizer sgd(lr = 0.1)"  # see verify_text_steps
TOLERANCES = {  # (value and gradient, parameters after STEPS steps)
    "f64": (1e-12, 1e-10),
    "f32": (1e-5, 1e-4),
}
OPTIMIZERS = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]
DIALECTS = [None, "pytorch", "keras", "optax"]
EXTRAS = [  # (optimizer arguments, schedule)
    ("adam(lr = 0.05, weight_decay = 0.01, clip_norm = 0.5)", None),
    ("sgd(lr = 0.01, clip_norm = 1)", "step(every = 5, gamma = 0.5)"),
    ("momentum(lr = 0.01)", "exponential(gamma = 0.9)"),
    ("adamw(lr = 0.05, defaults = optax)", "cosine(min = 0.001, warmup = 5)"),
]

failures = []


def run(adjoint, *args):
    done = subprocess.run([adjoint, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"adjoint {' '.join(args)} failed:\n{done.stderr}")


def import_module(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def relative_error(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if not (np.all(np.isfinite(got)) and np.all(np.isfinite(want))):
        return np.inf  # a non-finite value is a failure, never a match
    scale = max(np.linalg.norm(want), 1e-300)
    return np.linalg.norm(got - want) / scale if want.size else 0.0


def check(label, got, want, tolerance, scale=None):
    err = relative_error(got, want)
    if scale is not None and np.isfinite(err):
        # Normwise over the whole gradient: a component that is 0 up to rounding (a bias's at
        # a balanced start) is measured against the gradient, not against its own noise.
        own = np.linalg.norm(np.asarray(want, np.float64))
        err = err * own / max(scale, 1e-300)
    if not err <= tolerance:
        failures.append(f"{label}: relative error {err:.3g} > {tolerance:g}")


def verify(adjoint, model, work, label, from_step):
    """Exports `model` and checks values, gradients and 20 training steps against adjoint."""
    module_path = os.path.join(work, "exported.py")
    run(adjoint, "export", model, "--to", "jax", "-o", module_path)
    m = import_module(module_path)
    dtype = "f64" if m.DTYPE == m.jnp.float64 else "f32"
    value_tol, step_tol = TOLERANCES[dtype]
    data = {}
    if m.DATA:
        data = m.read_data(os.path.join(os.path.dirname(model), m.DATA))
    reads_text = getattr(m, "TEXT", None) is not None
    if reads_text:
        # The tiled windows of the whole text, as `export --values` and `predict` read it.
        data = m.read_data(os.path.join(os.path.dirname(model), m.TEXT))
    # A text's batches are random windows of any size; rows are checked in one batch of all.
    batch = ["--batch", str(m._rows(data))] if m.BATCH and not reads_text else []
    start, end = os.path.join(work, "start.safetensors"), os.path.join(work, "end.safetensors")
    run(adjoint, "train", model, "--steps", "0", "--save", start, *batch)
    run(adjoint, "train", model, "--steps", str(STEPS), "--save", end, *batch)
    later = os.path.join(work, "later.safetensors")
    run(adjoint, "train", model, "--resume", end, "--steps", str(STEPS), "--save", later, *batch)

    if modes(m):
        # `initial_state(SEED)`, which `__main__` trains from, is the state of adjoint's run.
        initial, loaded = m.initial_state(m.SEED), m.load(start)[2]
        for name in ["run_key", "step", *m.STATE]:
            if not np.array_equal(initial[name], loaded[name]):
                failures.append(f"{label}: initial_state(SEED)[{name!r}] is {initial[name]}, "
                                f"adjoint's {loaded[name]}")
    for point, ckpt in (("initial", start), (f"after {STEPS} steps", end)):
        values = os.path.join(work, "values.safetensors")
        run(adjoint, "export", model, "--values", "--checkpoint", ckpt, "-o", values)
        want = load_file(values)
        params, *state = m.load(ckpt)[::2] if modes(m) else m.load(ckpt)[:1]
        check_loss_and_gradient(m, f"{label}: at the {point} parameters", params, data,
                                state, want, value_tol)
        for name, got in m.metrics(params, data, *state).items():
            check(f"{label}: metric {name} at the {point} parameters", got,
                  want[f"metric/{name}"], value_tol)

    if from_step and (m.metrics(params, data, *state) or m.outputs(params, data, *state)):
        verify_onnx(adjoint, model, work, label, m, data, end, value_tol)

    if reads_text:
        verify_text_steps(adjoint, model, work, label, m)
        return
    first, last = (start, end) if from_step == 0 else (end, later)
    verify_steps(m, label, data, first, last, f"steps {from_step + 1}..{from_step + STEPS}",
                 step_tol)


def modes(m):
    """Whether the module's model trains and evaluates differently (dropout, batch_norm): its
    functions take the model state and its `loss` returns the state after the step."""
    return hasattr(m, "initial_state")


def check_loss_and_gradient(m, label, params, data, state, want, tolerance):
    """JAX's loss and gradient against `export --values`: the training step's (`train/...`,
    with the masks of the step after the checkpoint's and the batch's statistics) and the
    running statistics after it, for a model with modes; else the one loss there is."""
    if modes(m):
        (value, after), grads = m.jax.value_and_grad(m.loss, has_aux=True)(params, data, *state)
        check(f"{label}: evaluation loss", m.eval_loss(params, data, *state), want["loss"],
              tolerance)
        prefix = "train/"
        for name in m.STATE:
            check(f"{label}: running statistic {name} after the step", after[name],
                  want[f"train/state.{name}"], tolerance)
    else:
        value, grads = m.jax.value_and_grad(m.loss)(params, data)
        prefix = ""
    check(f"{label}: loss", value, want[f"{prefix}loss"], tolerance)
    norm = np.sqrt(sum(np.sum(np.square(want[f"{prefix}grad/{n}"])) for n in m.PARAMS))
    for name in m.PARAMS:
        check(f"{label}: gradient of {name}", grads[name], want[f"{prefix}grad/{name}"],
              tolerance, scale=norm)


def verify_steps(m, label, data, first, last, steps, tolerance):
    """STEPS steps of the exported `train_step` from checkpoint `first` against adjoint's
    parameters (and running statistics) in checkpoint `last`."""
    step = m.make_train_step(m.optimizer(STEPS))
    if modes(m):
        params, opt_state, state = m.load(first)
        for _ in range(STEPS):
            params, opt_state, state, _ = step(params, opt_state, state, data)
        want, _, want_state = m.load(last)
        for name in m.STATE:
            check(f"{label}: running statistic {name} after {steps}", state[name],
                  want_state[name], tolerance)
        if int(state["step"]) != int(want_state["step"]):
            failures.append(f"{label}: step count {int(state['step'])} after {steps}, "
                            f"adjoint's {int(want_state['step'])}")
    else:
        params, opt_state = m.load(first)
        for _ in range(STEPS):
            params, opt_state, _ = step(params, opt_state, data)
        want, _ = m.load(last)
    for name in m.PARAMS:
        check(f"{label}: {name} after {steps}", params[name], want[name], tolerance)


def verify_text_steps(adjoint, model, work, label, m):
    """20 training steps of a model of a text, on a copy of its first SPAN characters: the one
    window there is, so adjoint's random starts and the module's `batches` all draw start 0 and
    both train on the same batches (of BATCH copies of that window). Without validation, which
    would need a second window. From adjoint's checkpoint after 20 steps, as for the examples,
    and with plain SGD: an attention's key bias has a gradient of 0 up to rounding (softmax
    ignores a shift that all keys share), which Adam turns into steps of ±lr whose signs no two
    summation orders share. Every optimizer is compared on the optimizer model."""
    one = text_copy(model, work, m.SPAN, "one_window", TEXT_STEPS_OPTIMIZER)
    module_path = os.path.join(work, "one_window.py")
    run(adjoint, "export", one, "--to", "jax", "-o", module_path)
    m = import_module(module_path)
    flags = ["--validation", "0"]
    end, later = os.path.join(work, "end.safetensors"), os.path.join(work, "later.safetensors")
    run(adjoint, "train", one, "--steps", str(STEPS), "--save", end, *flags)
    run(adjoint, "train", one, "--resume", end, "--steps", str(STEPS), "--save", later, *flags)
    tokens, _ = m.read_text(os.path.join(os.path.dirname(one), m.TEXT))
    if len(tokens) + 1 - m.SPAN != 1:
        failures.append(f"{label}: the copy of the text has {len(tokens)} characters, not {m.SPAN}")
        return
    params, state = m.load(end)
    step = m.make_train_step(m.optimizer(STEPS))
    for _, batch in zip(range(STEPS), m.batches(tokens)):
        params, state, _ = step(params, state, batch)
    want, _ = m.load(later)
    _, value_tol = TOLERANCES["f64" if m.DTYPE == m.jnp.float64 else "f32"]
    for name in m.PARAMS:
        check(f"{label}: {name} after steps {STEPS + 1}..{2 * STEPS} on one window",
              params[name], want[name], value_tol)


def verify_onnx(adjoint, model, work, label, m, data, ckpt, tolerance):
    """onnxruntime on the ONNX export against `adjoint predict` and adjoint's metrics."""
    import onnxruntime

    path = os.path.join(work, "exported.onnx")
    run(adjoint, "export", model, "--to", "onnx", "--checkpoint", ckpt, "-o", path)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    types = {"tensor(int64)": np.int64, "tensor(float)": np.float32, "tensor(double)": np.float64}
    feed = {i.name: np.asarray(data[i.name]).astype(types[i.type]) for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, feed)))
    values = os.path.join(work, "values.safetensors")
    run(adjoint, "export", model, "--values", "--checkpoint", ckpt, "-o", values)
    want = load_file(values)
    params, *state = m.load(ckpt)[::2] if modes(m) else m.load(ckpt)[:1]
    for name in m.metrics(params, data, *state):
        check(f"{label}: ONNX metric {name}", got[name], want[f"metric/{name}"], tolerance)
    outputs = m.outputs(params, data, *state)
    if outputs:
        csv = os.path.join(work, "predicted.csv")
        run(adjoint, "predict", model, "--checkpoint", ckpt, "--out", csv)
        with open(csv) as f:
            header = f.readline().strip().split(",")
        table = np.loadtxt(csv, delimiter=",", skiprows=1, ndmin=2)
        for name, value in outputs.items():
            cols = [i for i, c in enumerate(header)
                    if c == name or (c.startswith(name) and c[len(name):].isdigit())]
            want_out = table[:, cols].reshape(np.shape(value))
            check(f"{label}: ONNX output {name}", got[name], want_out, tolerance)


def splitmix_bits(step, site, i):
    """`ir::dropout::element_bits(site_key(step, site), i) >> 32` on Python's integers."""
    full = (1 << 64) - 1

    def mix64(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & full
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & full
        return z ^ (z >> 31)

    key = mix64(step ^ site)
    return mix64((key + (i + 1) * 0x9E3779B97F4A7C15) & full) >> 32


def verify_dropout_counts(adjoint, work):
    """The exported masks' bits on both sides of element 2³², where a count of elements held in
    one uint32 word would wrap (a mask of 2³² elements or more), against `splitmix_bits`."""
    module_path = os.path.join(work, "dropout.py")
    model = os.path.join(REPO, "tests", "data", "graph", "dropout.dsl")
    run(adjoint, "export", model, "--to", "jax", "-o", module_path)
    m = import_module(module_path)
    step, site, first = 0x0123456789ABCDEF, 0xFF51AFD7ED558CCD, (1 << 32) - 3
    key = (m.jnp.uint32(step >> 32), m.jnp.uint32(step & 0xFFFFFFFF))
    for start, size in ((first, 6), (0, 5)):
        got = [int(b) for b in m._dropout_bits(key, site, start, size)]
        want = [splitmix_bits(step, site, i) for i in range(start, start + size)]
        if got != want:
            failures.append(f"dropout bits of elements {start}..{start + size - 1}: {got}, "
                            f"adjoint's {want}")


def random_rows(m, path, rows=7, seed=0):
    """A CSV table of random rows for the module's inputs; False when an input is a file."""
    rng = np.random.default_rng(seed)
    columns = []
    for name, (kind, source) in m.SOURCES.items():
        if kind == "file":
            return False
        names = [f"{source}{i}" for i in range(3)] if kind == "prefix" else source
        columns += [(c, name in m.INT_INPUTS) for c in names]
    with open(path, "w") as f:
        f.write(",".join(c for c, _ in columns) + "\n")
        for _ in range(rows):
            row = [str(rng.integers(0, 2)) if is_int else f"{rng.normal():.6f}"
                   for _, is_int in columns]
            f.write(",".join(row) + "\n")
    return True


MODE_FUNCTIONS = ["dropout", "batch_norm"]  # what makes training and evaluation differ


def mode_functions(model):
    """The functions of MODE_FUNCTIONS the model calls."""
    with open(model, encoding="utf-8") as f:
        code = [line.split("#")[0] for line in f]
    return [fn for fn in MODE_FUNCTIONS if any(f"{fn}(" in line for line in code)]


def verify_modes(adjoint, model, work, label):
    """A fixture with dropout or batch_norm, on rows of whole numbers 0 and 1, from adjoint's
    checkpoint after 3 steps (so that the running statistics are not their initial values):
    JAX's training loss, gradient and running statistics after the step equal `export
    --values`' (the masks of step 4), its STEPS training steps reach adjoint's parameters and
    running statistics after steps 4..3+STEPS, and ONNX computes adjoint's metrics from the
    evaluation graph."""
    import onnxruntime

    # Rows of 0 and 1 for the inputs as declared (`input X[n, 4]` reads X0..X3, `input
    # pixels[n, 64] from p0..p63` reads p0..p63, `input y[n]` reads y): whole numbers, so they
    # serve `int` inputs too.
    rng = np.random.default_rng(0)
    rows, columns, inputs = 7, [], {}
    with open(model, encoding="utf-8") as f:
        for line in f:
            found = re.match(r"input (\w+)\[n(?:, (\d+))?\](?:: int)?(?: from (\w+?)0\.\.)?",
                             line)
            if found:
                name, width = found.group(1), int(found.group(2) or 0)
                prefix = found.group(3) or name
                values = rng.integers(0, 2, size=(rows, width or 1)).astype(np.float64)
                names = [f"{prefix}{k}" for k in range(width)] if width else [name]
                columns += list(zip(names, values.T))
                inputs[name] = values if width else values[:, 0]
    table = os.path.join(work, "rows.csv")
    with open(table, "w") as f:
        f.write(",".join(n for n, _ in columns) + "\n")
        for r in range(rows):
            f.write(",".join(str(int(v[r])) for _, v in columns) + "\n")
    start = os.path.join(work, "start.safetensors")
    later = os.path.join(work, "later.safetensors")
    path = os.path.join(work, "exported.onnx")
    flags = ["--batch", str(rows), "--data", table]
    run(adjoint, "train", model, "--steps", "3", "--save", start, *flags)
    run(adjoint, "train", model, "--resume", start, "--steps", str(STEPS), "--save", later,
        *flags)
    module_path = os.path.join(work, "exported.py")
    run(adjoint, "export", model, "--to", "jax", "-o", module_path)
    m = import_module(module_path)
    value_tol, step_tol = TOLERANCES["f64" if m.DTYPE == m.jnp.float64 else "f32"]
    if not modes(m):
        failures.append(f"{label}: the JAX module takes no model state")
        return
    data = m.read_data(table)
    values = os.path.join(work, "values.safetensors")
    run(adjoint, "export", model, "--values", "--checkpoint", start, "-o", values,
        "--data", table)
    want = load_file(values)
    params, _, state = m.load(start)
    check_loss_and_gradient(m, f"{label}: after 3 steps", params, data, [state], want,
                            value_tol)
    for name, got in m.metrics(params, data, state).items():
        check(f"{label}: metric {name} after 3 steps", got, want[f"metric/{name}"], value_tol)
    verify_steps(m, label, data, start, later, f"steps 4..{3 + STEPS}", step_tol)
    run(adjoint, "export", model, "--to", "onnx", "--checkpoint", start, "-o", path)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    types = {"tensor(int64)": np.int64, "tensor(float)": np.float32, "tensor(double)": np.float64}
    feed = {i.name: inputs[i.name].astype(types[i.type]) for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, feed)))
    metrics = [k[len("metric/"):] for k in want if k.startswith("metric/")]
    if not metrics:
        failures.append(f"{label}: no metric to compare the ONNX export with")
    for name in metrics:
        tolerance = TOLERANCES["f64" if want[f"metric/{name}"].dtype == np.float64 else "f32"][0]
        check(f"{label}: ONNX metric {name}", got[name], want[f"metric/{name}"], tolerance)


def verify_values(adjoint, model, work, label):
    """Exports `model` and checks its loss and gradient at adjoint's initial parameters."""
    if mode_functions(model):
        verify_modes(adjoint, model, work, label)
        return True
    module_path = os.path.join(work, "exported.py")
    run(adjoint, "export", model, "--to", "jax", "-o", module_path)
    m = import_module(module_path)
    value_tol = TOLERANCES["f64" if m.DTYPE == m.jnp.float64 else "f32"][0]
    data, flags = {}, []
    if m.INPUTS:
        table = os.path.join(work, "rows.csv")
        if not random_rows(m, table):
            return False
        data, flags = m.read_data(table), ["--data", table]
    start = os.path.join(work, "start.safetensors")
    values = os.path.join(work, "values.safetensors")
    run(adjoint, "train", model, "--steps", "0", "--save", start, *flags)
    run(adjoint, "export", model, "--values", "--checkpoint", start, "-o", values, *flags)
    want = load_file(values)
    params, _ = m.load(start)
    value, grads = m.jax.value_and_grad(m.loss)(params, data)
    check(f"{label}: loss", value, want["loss"], value_tol)
    norm = np.sqrt(sum(np.sum(np.square(want[f"grad/{n}"])) for n in m.PARAMS))
    for name in m.PARAMS:
        check(f"{label}: gradient of {name}", grads[name], want[f"grad/{name}"], value_tol,
              scale=norm)
    return True


def optimizer_variants(work):
    """The optimizer model under every optimizer and dialect, and a few schedules."""
    source = open(os.path.join(REPO, "tests", "export", "optimizers.dsl")).read()
    original = "optimizer adam(lr = 0.05)"
    variants = []
    for kind in OPTIMIZERS:
        for dialect in DIALECTS:
            args = f"defaults = {dialect}" if dialect else ""
            variants.append((f"{kind}({args})", None))
    for opt, schedule in variants + EXTRAS:
        text = source.replace(original, f"optimizer {opt}")
        if schedule:
            text += f"schedule {schedule}\n"
        path = os.path.join(work, "optimizers.dsl")
        with open(path, "w") as f:
            f.write(text)
        yield f"{opt}" + (f", schedule {schedule}" if schedule else ""), path


def text_copy(model, work, chars=TEXT_CHARS, folder="text", optimizer=None):
    """A copy of a model of a text, in `folder` of `work`, beside the first `chars` characters
    of its text (the same relative path), with its `optimizer` line replaced when one is
    given; or the model itself when it reads no text."""
    with open(model, encoding="utf-8") as f:
        source = f.read()
    if optimizer:
        source = "".join(f"{optimizer}\n" if line.startswith("optimizer ") else line
                         for line in source.splitlines(True))
    texts = {line.split(" from text ")[1].split('"')[1] for line in source.splitlines()
             if line.startswith("input ") and " from text " in line}
    if not texts:
        return model
    folder = os.path.join(work, folder)
    for text in texts:
        with open(os.path.join(os.path.dirname(model), text), encoding="utf-8", newline="") as f:
            head = f.read(chars)
        os.makedirs(os.path.dirname(os.path.join(folder, text)), exist_ok=True)
        with open(os.path.join(folder, text), "w", encoding="utf-8", newline="") as f:
            f.write(head)
    copy = os.path.join(folder, os.path.basename(model))
    with open(copy, "w", encoding="utf-8") as f:
        f.write(source)
    return copy


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    adjoint = os.path.abspath(argv[1])
    began = time.time()
    examples = sorted(
        os.path.join(REPO, "examples", f)
        for f in os.listdir(os.path.join(REPO, "examples"))
        if f.endswith(".dsl")
    )
    checked = 0
    with tempfile.TemporaryDirectory() as work:
        verify_dropout_counts(adjoint, work)
        for model in examples:
            label = os.path.relpath(model, REPO)
            verify(adjoint, text_copy(model, work), work, label, from_step=STEPS)
            checked += 1
        for label, model in optimizer_variants(work):
            verify(adjoint, model, work, label, from_step=0)
            checked += 1
        fixtures = os.path.join(REPO, "tests", "data", "graph")
        for f in sorted(os.listdir(fixtures)):
            if f.endswith(".dsl"):
                label = os.path.relpath(os.path.join(fixtures, f), REPO)
                checked += verify_values(adjoint, os.path.join(fixtures, f), work, label)
    for f in failures:
        print(f"FAIL {f}")
    print(f"{checked} exports checked in {time.time() - began:.1f} s: "
          f"{'all equal' if not failures else f'{len(failures)} failures'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
