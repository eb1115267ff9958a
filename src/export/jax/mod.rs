//! `adjoint export --to jax`: one self-contained Python module (numpy, jax, optax, safetensors)
//! that computes what the model computes: `init`, `load`, `loss`, `metrics`, `outputs`,
//! `optimizer`, `train_step`, and a `__main__` that trains on the model's data.
//!
//! Invariant: the loss, metrics and outputs are the simplified graphs op for op (one exhaustive
//! `match` over `Op`, `op_expr`); the optimizer is adjoint's own update program (`optim::E`),
//! so a step in JAX is adjoint's step up to rounding.

use super::{Identifiers, Source, unsupported};
use crate::diagnostics::Diagnostic;
use crate::init::{DataStat, Init};
use crate::ir::{DType, Dim, Graph, NodeId, Op, Shape, dropout};
use crate::model::GraphFn;
use crate::optim::{Dialect, E, OptimizerKind, Schedule, StepScalar, Target};
use std::fmt::Write;

mod expr;
use expr::*;
mod graph;
use graph::*;
mod init;
use init::*;
mod optimizer;
use optimizer::*;
mod state;
use state::*;

/// Names the generated module defines or imports: a value of the model never takes one.
const RESERVED: &[&str] = &[
    "False",
    "None",
    "True",
    "and",
    "as",
    "assert",
    "async",
    "await",
    "break",
    "class",
    "continue",
    "def",
    "del",
    "elif",
    "else",
    "except",
    "finally",
    "for",
    "from",
    "global",
    "if",
    "import",
    "in",
    "is",
    "lambda",
    "nonlocal",
    "not",
    "or",
    "pass",
    "raise",
    "return",
    "try",
    "while",
    "with",
    "yield",
    "np",
    "jax",
    "jnp",
    "optax",
    "os",
    "struct",
    "sys",
    "safe_open",
    "NamedTuple",
    "params",
    "batch",
    "DTYPE",
    "name",
    "p",
    "g",
    "state",
];

/// Writes the JAX module for a model, or the errors for what has no exact JAX counterpart.
pub fn module(src: &Source) -> Result<String, Vec<Diagnostic>> {
    let model = src.model;
    let mut out = String::new();
    let mut helpers = Helpers::default();
    let mut errors = vec![];

    // `loss` trains, so it is the training step's loss (which differs with `dropout`); the
    // metrics and outputs are the evaluation graph's.
    let training = src
        .graphs
        .training
        .as_ref()
        .map_or(&src.graphs.forward, |t| &t.forward);
    let loss_id = training.outputs[0].1;
    let metric_roots = src.graphs.forward.outputs[1..].to_vec();
    // A model with dropout or batch_norm trains and evaluates differently: its functions take
    // the model state (running statistics, the dropout key and step count) and `loss` returns
    // the state after the step.
    let modes = src.graphs.training.is_some();
    let mut loss_roots = vec![("loss".to_string(), loss_id)];
    if modes {
        let updates = training.outputs.len() - training.graph.states.len();
        loss_roots.extend(training.outputs[updates..].iter().cloned());
    }
    let loss_returns = if modes {
        Returns::LossAndState
    } else {
        Returns::Scalar
    };
    let loss_fn = function(src, training, &loss_roots, loss_returns, &mut helpers);
    let eval_loss_fn = modes.then(|| {
        let loss = src.graphs.forward.outputs[0].clone();
        function(
            src,
            &src.graphs.forward,
            &[loss],
            Returns::Scalar,
            &mut helpers,
        )
    });
    let metrics_fn = function(
        src,
        &src.graphs.forward,
        &metric_roots,
        Returns::Dict,
        &mut helpers,
    );
    let outputs_fn = match &src.graphs.predict {
        Some(p) => function(src, p, &p.outputs, Returns::Dict, &mut helpers),
        None => Ok(vec!["    return {}".into()]),
    };
    let optimizer_fn = optimizer(src);
    for part in [&loss_fn, &metrics_fn, &outputs_fn]
        .into_iter()
        .chain(eval_loss_fn.as_ref())
    {
        if let Err(e) = part
            && !errors.contains(e)
        {
            errors.push(e.clone());
        }
    }
    if let Err(e) = &optimizer_fn {
        errors.push(e.clone());
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    header(src, &helpers, &mut out);
    declarations(src, &mut out);
    let reads_text = crate::data::text::text_inputs(model).is_some();
    out.push_str(if reads_text { READ_TEXT } else { READ_CSV });
    out.push_str(DATA_HELPERS);
    init_fn(src, &mut out);
    helpers.write(&mut out);

    let loss_doc = if model.loss_name == "loss" {
        "The loss on a batch: the simplified forward graph, stability rewrites applied.".to_string()
    } else {
        format!(
            "The loss (`{}` in the model) on a batch: the simplified forward graph, stability rewrites applied.",
            model.loss_name
        )
    };
    let args = if modes {
        "params, batch, state"
    } else {
        "params, batch"
    };
    if modes {
        model_state_fn(src, &mut out);
        let loss_doc = format!(
            "{loss_doc}\n    As the training step computes it (dropout with adjoint's masks of step `state[\"step\"] + 1`,\n    \
             batch_norm with the batch's statistics), with the model state after the step."
        );
        write_def(
            &mut out,
            "loss(params, batch, state)",
            &loss_doc,
            &loss_fn.unwrap(),
        );
        write_def(
            &mut out,
            "eval_loss(params, batch, state)",
            "The loss as evaluation computes it: no dropout, batch_norm with the running statistics.",
            &eval_loss_fn.expect("a model with modes").unwrap(),
        );
    } else {
        write_def(
            &mut out,
            "loss(params, batch)",
            &loss_doc,
            &loss_fn.unwrap(),
        );
    }
    write_def(
        &mut out,
        &format!("metrics({args})"),
        "The metrics on a batch, by name.",
        &metrics_fn.unwrap(),
    );
    write_def(
        &mut out,
        &format!("outputs({args})"),
        "The `output` values of each row of a batch, by name (what `adjoint predict` writes).",
        &outputs_fn.unwrap(),
    );
    out.push_str(&optimizer_fn.unwrap());
    load_fn(src, modes, &mut out);
    let train = TRAIN.replace(
        "return 1000",
        &format!("return {}", crate::train::DEFAULT_STEPS),
    );
    let main = if reads_text { MAIN_TEXT } else { MAIN_ROWS };
    if modes {
        out.push_str(&with_model_state(&train));
        out.push_str(&with_model_state(main));
    } else {
        out.push_str(&train);
        out.push_str(main);
    }
    out.push_str(RUN);
    Ok(out)
}

fn write_def(out: &mut String, signature: &str, doc: &str, body: &[String]) {
    let _ = writeln!(out, "\n\ndef {signature}:\n    \"\"\"{doc}\"\"\"");
    for line in body {
        out.push_str(line);
        out.push('\n');
    }
}

fn header(src: &Source, helpers: &Helpers, out: &mut String) {
    let name = src.file_name();
    let _ = writeln!(
        out,
        "\"\"\"{name}, exported by adjoint to JAX.\n\n\
         Generated by `adjoint export {name} --to jax` from the simplified graphs of the model:\n\
         edit the model and export again rather than editing this file. Comments cite the\n\
         model's lines. `python {stem}.py [data.csv]` trains as the model file says.\n\"\"\"\n",
        stem = name.strip_suffix(".dsl").unwrap_or(name),
    );
    out.push_str("import os\nimport struct\nimport sys\nfrom typing import NamedTuple\n\n");
    out.push_str("import jax\nimport jax.numpy as jnp\nimport numpy as np\nimport optax\n");
    if helpers.erf {
        out.push_str("import jax.scipy.special\n");
    }
    out.push_str("from safetensors import safe_open\n\n");
    match src.model.graph().dtype {
        DType::F64 => {
            out.push_str("# The model computes in f64: JAX needs 64-bit floats enabled.\n");
            out.push_str("jax.config.update(\"jax_enable_x64\", True)\nDTYPE = jnp.float64\n");
        }
        DType::F32 => out.push_str("DTYPE = jnp.float32\n"),
    }
}

const TRAIN: &str = r#"

def _total_steps(rows):
    """The run's length as adjoint counts it: `steps`, or `epochs` passes over the rows."""
    if STEPS is not None:
        return STEPS
    if EPOCHS is None or rows is None:
        return 1000
    if BATCH is None:
        return EPOCHS
    return EPOCHS * (rows // BATCH if DROP_LAST else -(-rows // BATCH))


def make_train_step(opt):
    """One step of `opt` on a batch under `jax.jit`: new parameters, new state, the loss before."""

    @jax.jit
    def train_step(params, opt_state, batch):
        value, grads = jax.value_and_grad(loss)(params, batch)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return train_step


train_step = make_train_step(optimizer())
"#;

/// Batches of rows and the command line of a model whose data is a table.
const MAIN_ROWS: &str = r#"

def batches(data, seed=SEED):
    """The batches of a run: all rows each step, or minibatches of a fresh shuffle each epoch."""
    rows = _rows(data)
    if BATCH is None or rows is None:
        while True:
            yield data
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(rows)
        for start in range(0, rows, BATCH):
            idx = order[start : start + BATCH]
            if len(idx) < BATCH and DROP_LAST:
                break
            yield {k: v[idx] for k, v in data.items()}


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    path = argv[1] if len(argv) > 1 else (os.path.join(here, DATA) if DATA else None)
    data = read_data(path) if path else {}
    total = _total_steps(_rows(data))
    opt = optimizer(total)
    step_fn = make_train_step(opt)
    params = init(SEED, data)
    state = opt.init(params)
    every = LOG_EVERY or max(total // 10, 1)
    for step, batch in zip(range(1, total + 1), batches(data)):
        params, state, value = step_fn(params, state, batch)
        if step % every == 0 or step == total:
            print(f"step {step}: loss = {float(value):.7g}")
    for name, value in metrics(params, data).items():
        print(f"{name} = {float(value):.7g}")
"#;

/// Batches of random windows and the command line of a model of a text.
const MAIN_TEXT: &str = r#"

def batches(tokens, seed=SEED):
    """Batches of BATCH windows at random starts, drawn afresh each step. adjoint draws its
    starts from its own generator (ChaCha8), which numpy does not reproduce: the windows here
    are different ones, drawn from the same uniform distribution over the same starts."""
    rng = np.random.default_rng(seed)
    while True:
        yield windows(tokens, rng.integers(0, len(tokens) + 1 - SPAN, BATCH))


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    path = argv[1] if len(argv) > 1 else os.path.join(here, TEXT)
    tokens, vocabulary = read_text(path)
    train, held = split_text(tokens)
    total = _total_steps(len(tiled_starts(train)))
    opt = optimizer(total)
    step_fn = make_train_step(opt)
    params = init(SEED, windows(train, tiled_starts(train)))
    state = opt.init(params)
    every = LOG_EVERY or max(total // 10, 1)
    for step, batch in zip(range(1, total + 1), batches(train)):
        params, state, value = step_fn(params, state, batch)
        if step % every == 0 or step == total:
            print(f"step {step}: loss = {float(value):.7g}")
    if len(held) >= SPAN:
        value = loss(params, windows(held, tiled_starts(held)))
        print(f"validation loss = {float(value):.7g} ({len(vocabulary)} characters)")
"#;

const RUN: &str = r#"

if __name__ == "__main__":
    main(sys.argv)
"#;
