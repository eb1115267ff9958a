//! The model state of a module whose model trains and evaluates differently (`dropout`,
//! `batch_norm`): the running statistics, the run's dropout key and the step count, one dict
//! that `load` and `initial_state` make and `train_step` threads through beside the parameters
//! and the optimizer's state, so nothing is kept on the Python side and `jax.jit` applies.

use super::*;

/// The dict of running statistics, and the functions that make the model state.
pub(super) fn model_state_fn(src: &Source, out: &mut String) {
    let g = src.model.graph();
    out.push_str(
        "\n\n# The running statistics: name -> (shape, value before the first step).\nSTATE = {\n",
    );
    for s in &g.states {
        let shape = s.shape.as_fixed().unwrap_or_default();
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let tuple = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        let _ = writeln!(
            out,
            "    {}: ({tuple}, {}),",
            quoted(&s.name),
            literal(s.initial).text
        );
    }
    out.push_str("}\n");
    out.push_str(MODEL_STATE);
}

const MODEL_STATE: &str = r#"

def _run_key(seed):
    """The dropout key of a run, as (hi, lo), from the 32-byte seed of its data stream
    (`ir::dropout::run_key`: SplitMix64's mix of each little-endian word into the last)."""
    k, full = 0, (1 << 64) - 1
    for i in range(0, 32, 8):
        k ^= int.from_bytes(seed[i : i + 8], "little")
        k = (k ^ (k >> 30)) * 0xBF58476D1CE4E5B9 & full
        k = (k ^ (k >> 27)) * 0x94D049BB133111EB & full
        k ^= k >> 31
    return jnp.asarray([k >> 32, k & 0xFFFFFFFF], jnp.uint32)


def _stream_seed(seed):
    """The 32-byte seed of adjoint's data stream in a run with `seed`: ChaCha8 seeded from
    seed ^ γ by rand_core's `seed_from_u64` (eight PCG32 outputs)."""
    full = (1 << 64) - 1
    state, out = (seed ^ 0x9E3779B97F4A7C15) & full, b""
    for _ in range(8):
        state = (state * 0x5851F42D4C957F2D + 0xA17654E46FBE17F3) & full
        x = (((state >> 18) ^ state) >> 27) & 0xFFFFFFFF
        rot = state >> 59
        out += (((x >> rot) | (x << (32 - rot))) & 0xFFFFFFFF).to_bytes(4, "little")
    return out


def initial_state(seed):
    """The model state before the first step of a run with `seed`: the running statistics'
    initial values, and the dropout key adjoint's run with that seed draws its masks from."""
    return {
        "run_key": _run_key(_stream_seed(seed)),
        "step": jnp.uint32(0),
        **{name: jnp.full(shape, value, DTYPE) for name, (shape, value) in STATE.items()},
    }


def model_state(path, meta, tensors, step):
    """The model state of a checkpoint: its running statistics (`state.<name>`), the dropout
    key of its data stream (`adjoint.rng`, `chacha8 <seed> ...`) and its step count."""
    missing = [name for name in STATE if f"state.{name}" not in tensors]
    if missing:
        raise ValueError(f"{path}: no running statistic {', '.join(missing)}")
    if "adjoint.rng" not in meta:
        raise ValueError(f"{path}: no data stream (adjoint.rng), which the dropout masks come from")
    seed = bytes.fromhex(meta["adjoint.rng"].split()[1])
    return {
        "run_key": _run_key(seed),
        "step": jnp.asarray(step, jnp.uint32),
        **{name: jnp.asarray(tensors[f"state.{name}"]) for name in STATE},
    }
"#;

/// What `load` returns after the optimizer's state.
pub(super) fn state_return(modes: bool) -> &'static str {
    match modes {
        true => ", model_state(path, meta, tensors, step)",
        false => "",
    }
}

/// A template of the module (training step, `main`, `load`) for a model with state: the
/// state passed to `loss` and the metrics and returned by `train_step`.
pub(super) fn with_model_state(template: &str) -> String {
    const EDITS: &[(&str, &str)] = &[
        (
            "new parameters, new state, the loss before.",
            "new parameters, optimizer state\n    and model state, the loss before.",
        ),
        (
            "def train_step(params, opt_state, batch):\n        value, grads = jax.value_and_grad(loss)(params, batch)",
            "def train_step(params, opt_state, state, batch):\n        (value, state), grads = jax.value_and_grad(loss, has_aux=True)(params, batch, state)",
        ),
        (
            "return optax.apply_updates(params, updates), opt_state, value",
            "return optax.apply_updates(params, updates), opt_state, state, value",
        ),
        (
            "    state = opt.init(params)\n",
            "    state = opt.init(params)\n    model_state = initial_state(SEED)\n",
        ),
        (
            "params, state, value = step_fn(params, state, batch)",
            "params, state, model_state, value = step_fn(params, state, model_state, batch)",
        ),
        (
            "metrics(params, data).items()",
            "metrics(params, data, model_state).items()",
        ),
        (
            "value = loss(params, windows(held, tiled_starts(held)))",
            "value = eval_loss(params, windows(held, tiled_starts(held)), model_state)",
        ),
        (
            "\"\"\"Parameters and optimizer state from adjoint's checkpoint",
            "\"\"\"Parameters, optimizer state and model state from adjoint's checkpoint",
        ),
    ];
    EDITS
        .iter()
        .fold(template.to_string(), |t, (from, to)| t.replace(from, to))
}
