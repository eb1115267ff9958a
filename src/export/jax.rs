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
use crate::ir::{DType, Dim, Graph, NodeId, Op, Shape};
use crate::model::GraphFn;
use crate::optim::{Dialect, E, OptimizerKind, Schedule, StepScalar, Target};
use std::fmt::Write;

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
];

/// Python's binding strengths, loosest first, for parenthesizing inlined expressions.
const CMP: u8 = 1;
const ADD: u8 = 2;
const MUL: u8 = 3;
const UNARY: u8 = 4;
const POW: u8 = 5;
const ATOM: u8 = 6;

/// A Python expression and how tightly it binds.
#[derive(Clone, Debug)]
struct Expr {
    text: String,
    prec: u8,
}

fn atom(text: impl Into<String>) -> Expr {
    Expr {
        text: text.into(),
        prec: ATOM,
    }
}

impl Expr {
    /// The text, parenthesized unless it binds at least as tightly as `prec`.
    fn at(&self, prec: u8) -> String {
        if self.prec >= prec {
            self.text.clone()
        } else {
            format!("({})", self.text)
        }
    }
}

/// `a op b` for a left-associative operator of strength `prec`: the right operand is
/// parenthesized at equal strength, so floating-point evaluation order is the graph's.
fn infix(a: &Expr, op: &str, b: &Expr, prec: u8) -> Expr {
    Expr {
        text: format!("{} {op} {}", a.at(prec), b.at(prec + 1)),
        prec,
    }
}

fn call(f: &str, args: &[String]) -> Expr {
    atom(format!("{f}({})", args.join(", ")))
}

/// A float literal that reads back as the same f64.
fn literal(v: f64) -> Expr {
    if v.is_nan() {
        atom("jnp.nan")
    } else if v == f64::INFINITY {
        atom("jnp.inf")
    } else if v == f64::NEG_INFINITY {
        Expr {
            text: "-jnp.inf".into(),
            prec: UNARY,
        }
    } else {
        let text = format!("{v:?}");
        let prec = if text.starts_with('-') { UNARY } else { ATOM };
        Expr { text, prec }
    }
}

fn axis_arg(axis: Option<u32>) -> String {
    match axis {
        Some(a) => format!("axis={a}"),
        None => "axis=None".into(),
    }
}

fn tuple(items: &[String]) -> String {
    match items {
        [one] => format!("({one},)"),
        _ => format!("({})", items.join(", ")),
    }
}

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
    let loss_fn = function(
        src,
        training,
        &[("loss".into(), loss_id)],
        true,
        &mut helpers,
    );
    let metrics_fn = function(src, &src.graphs.forward, &metric_roots, false, &mut helpers);
    let outputs_fn = match &src.graphs.predict {
        Some(p) => function(src, p, &p.outputs, false, &mut helpers),
        None => Ok(vec!["    return {}".into()]),
    };
    let optimizer_fn = optimizer(src);
    for part in [&loss_fn, &metrics_fn, &outputs_fn] {
        if let Err(e) = part {
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
    out.push_str(READ_DATA);
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
    write_def(
        &mut out,
        "loss(params, batch)",
        &loss_doc,
        &loss_fn.unwrap(),
    );
    write_def(
        &mut out,
        "metrics(params, batch)",
        "The metrics on a batch, by name.",
        &metrics_fn.unwrap(),
    );
    write_def(
        &mut out,
        "outputs(params, batch)",
        "The `output` values of each row of a batch, by name (what `adjoint predict` writes).",
        &outputs_fn.unwrap(),
    );
    out.push_str(&optimizer_fn.unwrap());
    load_fn(src, &mut out);
    out.push_str(&TRAIN.replace(
        "return 1000",
        &format!("return {}", crate::train::DEFAULT_STEPS),
    ));
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

/// The dimension's text in generated code: its size, or the symbol's local.
fn dim_text(d: Dim, syms: &[String]) -> String {
    match d {
        Dim::Fixed(k) => k.to_string(),
        Dim::Sym(s) => syms[s as usize].clone(),
    }
}

fn shape_tuple(shape: &Shape, syms: &[String]) -> String {
    let items: Vec<String> = shape.0.iter().map(|&d| dim_text(d, syms)).collect();
    tuple(&items)
}

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

fn optional_int(v: Option<u64>) -> String {
    v.map_or("None".into(), |v| v.to_string())
}

fn declarations(src: &Source, out: &mut String) {
    let model = src.model;
    let g = model.graph();
    let sym_names: Vec<String> = g.syms.iter().map(|s| quoted(s)).collect();
    out.push_str(
        "\n# Parameters and inputs with their shapes; a string is a dimension bound by data.\n",
    );
    let params: Vec<String> = g
        .params
        .iter()
        .map(|p| format!("{}: {}", quoted(&p.name), shape_tuple(&p.shape, &sym_names)))
        .collect();
    let _ = writeln!(out, "PARAMS = {{{}}}", params.join(", "));
    let inputs: Vec<String> = g
        .inputs
        .iter()
        .map(|i| format!("{}: {}", quoted(&i.name), shape_tuple(&i.shape, &sym_names)))
        .collect();
    let _ = writeln!(out, "INPUTS = {{{}}}", inputs.join(", "));
    let ints: Vec<String> = g
        .inputs
        .iter()
        .filter(|i| i.is_int)
        .map(|i| quoted(&i.name))
        .collect();
    let _ = writeln!(
        out,
        "INT_INPUTS = {}  # whole numbers (class labels, indices), stored as DTYPE",
        if ints.is_empty() {
            "set()".to_string()
        } else {
            format!("{{{}}}", ints.join(", "))
        }
    );
    out.push_str(
        "# Where each input's values come from: CSV columns, numbered columns `prefix0`,\n\
         # `prefix1`, ..., or a .npy file (relative to this module).\n",
    );
    let sources: Vec<String> = model
        .bindings
        .iter()
        .zip(&g.inputs)
        .map(|(b, i)| {
            let source = match (&b.file, &b.prefix) {
                (Some(f), _) => format!("(\"file\", {})", quoted(f)),
                (None, Some(p)) => format!("(\"prefix\", {})", quoted(p)),
                (None, None) => {
                    let cols: Vec<String> = b.columns.iter().map(|c| quoted(c)).collect();
                    format!("(\"columns\", [{}])", cols.join(", "))
                }
            };
            format!("{}: {source}", quoted(&i.name))
        })
        .collect();
    let _ = writeln!(out, "SOURCES = {{{}}}", sources.join(", "));
    let t = &model.train;
    let _ = writeln!(
        out,
        "\n# Training, as the model file says (`train` and `data`).\n\
         DATA = {}  # relative to this module\n\
         STEPS = {}\nEPOCHS = {}\nBATCH = {}\nDROP_LAST = {}\nSEED = {}\nLOG_EVERY = {}",
        model.data.as_deref().map_or("None".into(), quoted),
        optional_int(t.steps),
        optional_int(t.epochs),
        optional_int(t.batch),
        if t.drop_last { "True" } else { "False" },
        t.seed,
        t.log_every,
    );
}

const READ_DATA: &str = r#"

def read_data(path):
    """The inputs from a CSV file with a header row, bound to columns as adjoint binds them."""
    with open(path, encoding="utf-8-sig") as f:
        header = [c.strip() for c in f.readline().rstrip("\r\n").split(",")]
        table = np.loadtxt(f, delimiter=",", ndmin=2, dtype=np.float64)
    where = {c: i for i, c in enumerate(header)}
    here = os.path.dirname(os.path.abspath(__file__))
    batch = {}
    for name, (kind, source) in SOURCES.items():
        if kind == "file":
            values = np.load(os.path.join(here, source))
        else:
            if kind == "prefix":
                columns = []
                while f"{source}{len(columns)}" in where:
                    columns.append(f"{source}{len(columns)}")
            else:
                columns = source
            values = table[:, [where[c] for c in columns]]
            if len(INPUTS[name]) == 1:
                values = values[:, 0]
        batch[name] = jnp.asarray(values, DTYPE)
    return batch


def _rows(batch):
    return next(iter(batch.values())).shape[0] if batch else None


def _data_stat(batch, name):
    if batch is None:
        raise ValueError(f"the initializer of a parameter is computed from input `{name}`: pass init(seed, batch)")
    return np.asarray(batch[name], np.float64)
"#;

fn init_expr(init: &Init, shape: &[usize], key: &str) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let s = tuple(&dims);
    let n: usize = shape.iter().product();
    let (fan_in, fan_out) = crate::init::fans(shape);
    let uniform = |a: f64| {
        format!(
            "jax.random.uniform({key}, {s}, DTYPE, {}, {})",
            literal(-a).text,
            literal(a).text
        )
    };
    let normal = |mean: f64, std: f64| {
        let z = format!("jax.random.normal({key}, {s}, DTYPE)");
        let scaled = if std == 1.0 {
            z
        } else {
            format!("{} * {z}", literal(std).at(MUL))
        };
        if mean == 0.0 {
            scaled
        } else {
            format!("{} + {scaled}", literal(mean).text)
        }
    };
    match *init {
        Init::Zeros => format!("jnp.zeros({s}, DTYPE)"),
        Init::Ones => format!("jnp.ones({s}, DTYPE)"),
        Init::Constant(v) => format!("jnp.full({s}, {}, DTYPE)", literal(v).text),
        Init::Normal { mean, std } => normal(mean, std),
        Init::Uniform { low, high } => format!(
            "jax.random.uniform({key}, {s}, DTYPE, {}, {})",
            literal(low).text,
            literal(high).text
        ),
        Init::TruncatedNormal { mean, std } => {
            let z = format!("jax.random.truncated_normal({key}, -2.0, 2.0, {s}, DTYPE)");
            format!("{} + {} * {z}", literal(mean).text, literal(std).at(MUL))
        }
        Init::XavierUniform { gain } => uniform(gain * (6.0 / (fan_in + fan_out) as f64).sqrt()),
        Init::XavierNormal { gain } => normal(0.0, gain * (2.0 / (fan_in + fan_out) as f64).sqrt()),
        Init::HeUniform { gain } => uniform(gain * (3.0 / fan_in as f64).sqrt()),
        Init::HeNormal { gain } => normal(0.0, gain / (fan_in as f64).sqrt()),
        Init::LecunUniform => uniform((3.0 / fan_in as f64).sqrt()),
        Init::LecunNormal => normal(0.0, (1.0 / fan_in as f64).sqrt()),
        Init::Orthogonal { gain } => {
            // adjoint makes the first axis orthogonal against all the others together.
            let (rows, cols) = match shape {
                [] => (1, 1),
                [k] => (1, *k),
                [r, rest @ ..] => (*r, rest.iter().product()),
            };
            format!(
                "jax.nn.initializers.orthogonal({})({key}, ({rows}, {cols}), DTYPE).reshape({s})",
                literal(gain).text
            )
        }
        Init::Sparse { k } => format!("_sparse({key}, {s}, {k})"),
        Init::FromData { stat, ref input } => {
            let values = format!("_data_stat(batch, {})", quoted(input));
            match stat {
                DataStat::Mean => format!("jnp.full({s}, np.mean({values}), DTYPE)"),
                DataStat::LogOdds => format!("jnp.full({s}, _log_odds({values}), DTYPE)"),
                DataStat::LogPrior => format!("jnp.asarray(_log_prior({values}, {n}), DTYPE)"),
            }
        }
    }
}

fn init_fn(src: &Source, out: &mut String) {
    let model = src.model;
    let g = model.graph();
    let inits = &model.inits;
    let uses = |f: fn(&Init) -> bool| inits.iter().any(f);
    if uses(|i| matches!(i, Init::Sparse { .. })) {
        out.push_str(SPARSE);
    }
    if uses(|i| {
        matches!(
            i,
            Init::FromData {
                stat: DataStat::LogOdds,
                ..
            }
        )
    }) {
        out.push_str(LOG_ODDS);
    }
    if uses(|i| {
        matches!(
            i,
            Init::FromData {
                stat: DataStat::LogPrior,
                ..
            }
        )
    }) {
        out.push_str(LOG_PRIOR);
    }
    out.push_str(
        "\n\ndef init(seed, batch=None):\n    \"\"\"Parameters drawn from the model's initializers \
         (the same distributions; adjoint's own draws\n    come from `load`). `batch` is needed \
         by initializers computed from data.\"\"\"\n",
    );
    let _ = writeln!(
        out,
        "    keys = jax.random.split(jax.random.PRNGKey(seed), {})",
        g.params.len().max(1)
    );
    out.push_str("    return {\n");
    for (i, (p, init)) in g.params.iter().zip(inits).enumerate() {
        let shape = p.shape.as_fixed().unwrap_or_default();
        let expr = init_expr(init, &shape, &format!("keys[{i}]"));
        let _ = writeln!(
            out,
            "        {}: {expr},  # {}",
            quoted(&p.name),
            src.cite(model.param_spans[i])
        );
    }
    out.push_str("    }\n");
}

const SPARSE: &str = r#"

def _sparse(key, shape, k):
    """Each unit (column) gets exactly k non-zero N(0, 1) incoming weights."""
    fan_in = shape[0] if shape else 1
    units = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    k = min(k, fan_in)
    rows_key, values_key = jax.random.split(key)
    order = jnp.argsort(jax.random.uniform(rows_key, (units, fan_in)), axis=1)[:, :k]
    mask = jnp.zeros((units, fan_in), bool).at[jnp.arange(units)[:, None], order].set(True)
    values = jnp.where(mask.T, jax.random.normal(values_key, (fan_in, units), DTYPE), 0)
    return values.reshape(shape)
"#;

const LOG_ODDS: &str = r#"

def _log_odds(values):
    p = min(max(np.mean(values), 1e-12), 1 - 1e-12)
    return np.log(p / (1 - p))
"#;

const LOG_PRIOR: &str = r#"

def _log_prior(values, classes):
    counts = np.array([np.sum(values == c) for c in range(classes)], np.float64)
    # A class absent from the data gets a small prior instead of log 0.
    return np.log(np.maximum(counts, 0.5) / max(len(values), 1))
"#;

/// The helper functions generated code calls, written once each when used.
#[derive(Default)]
struct Helpers {
    sum_to: bool,
    put: bool,
    erf: bool,
    gather: bool,
    scatter_add: bool,
    unslice: bool,
}

impl Helpers {
    fn write(&self, out: &mut String) {
        if self.sum_to {
            out.push_str(
                r#"

def _sum_to(x, shape):
    """The adjoint of broadcasting: x summed over the axes broadcasting added or stretched."""
    lead = x.ndim - len(shape)
    stretched = tuple(lead + i for i, d in enumerate(shape) if d == 1 and x.shape[lead + i] != 1)
    return jnp.sum(x, axis=tuple(range(lead)) + stretched).reshape(shape)
"#,
            );
        }
        if self.gather || self.scatter_add {
            out.push_str(
                r#"

def _rows_of(indices, size):
    """Indices as rows: the nearest whole number (ties to even); one off the axis becomes
    `size`, which no row has."""
    r = jnp.round(indices)
    return jnp.where((r >= 0) & (r < size), r, size).astype(jnp.int32)
"#,
            );
        }
        if self.gather {
            out.push_str(
                r#"

def _gather(x, indices, axis):
    """The rows of x along `axis` that `indices` name, NaN for an index off the axis."""
    rows = _rows_of(indices, x.shape[axis])
    return jnp.take(x, rows, axis=axis, mode="fill", fill_value=jnp.nan)
"#,
            );
        }
        if self.scatter_add {
            out.push_str(
                r#"

def _scatter_add(values, indices, axis, size):
    """The adjoint of `_gather`: each slice of `values` added into the row its index names."""
    rows = _rows_of(indices, size)
    shape = values.shape[:axis] + (size,) + values.shape[axis + indices.ndim :]
    zeros = jnp.zeros(shape, values.dtype)
    return zeros.at[(slice(None),) * axis + (rows,)].add(values, mode="drop")
"#,
            );
        }
        if self.unslice {
            out.push_str(
                r#"

def _unslice(x, axis, size, start, step):
    """The adjoint of a slice: element i of x at start + i·step along an axis of `size` zeros."""
    zeros = jnp.zeros(x.shape[:axis] + (size,) + x.shape[axis + 1 :], x.dtype)
    where = start + step * jnp.arange(x.shape[axis])
    return zeros.at[(slice(None),) * axis + (where,)].set(x)
"#,
            );
        }
        if self.put {
            out.push_str(
                r#"

def _put(x, axis, index, size):
    """x embedded at `index` of a new axis of zeros of length `size`."""
    zeros = jnp.zeros(x.shape[:axis] + (size,) + x.shape[axis:], x.dtype)
    return zeros.at[(slice(None),) * axis + (index,)].set(x)
"#,
            );
        }
    }
}

/// The body of a function of `(params, batch)` returning the values of `roots`: the loss alone
/// when `scalar`, else a dict by name.
fn function(
    src: &Source,
    f: &GraphFn,
    roots: &[(String, NodeId)],
    scalar: bool,
    helpers: &mut Helpers,
) -> Result<Vec<String>, Diagnostic> {
    let g = &f.graph;
    let ids: Vec<NodeId> = roots.iter().map(|r| r.1).collect();
    let live = g.reachable(&ids);
    let uses = g.use_counts(&live);
    let mut names = Identifiers::new(RESERVED);
    let mut lines = vec![];

    // Leaves first: parameters and inputs as locals, then the symbolic dimensions.
    let mut exprs: Vec<Option<Expr>> = vec![None; g.len()];
    for id in g.ids().filter(|id| live[id.index()]) {
        let (local, from) = match *g.op(id) {
            Op::Param(i) => (&g.params[i as usize].name, "params"),
            Op::Input(i) => (&g.inputs[i as usize].name, "batch"),
            _ => continue,
        };
        let name = names.fresh(local);
        lines.push(format!("    {name} = {from}[{}]", quoted(local)));
        exprs[id.index()] = Some(atom(name));
    }
    let syms = symbol_locals(g, &live, &mut names, &mut lines)?;

    for id in g.ids().filter(|id| live[id.index()]) {
        if exprs[id.index()].is_some() {
            continue;
        }
        let args: Vec<Expr> = g
            .node(id)
            .inputs
            .iter()
            .map(|i| exprs[i.index()].clone().expect("operands come first"))
            .collect();
        let expr = op_expr(g, id, &args, &syms, helpers)?;
        let leaf = matches!(g.op(id), Op::Const(_) | Op::DimSize(_) | Op::Iota(_));
        let keep = !leaf && (g.name(id).is_some() || uses[id.index()] > 1 || ids.contains(&id));
        if keep {
            // An unnamed result takes its output's name: `accuracy = ...; return {"accuracy": accuracy}`.
            let output = roots.iter().find(|r| r.1 == id && g.name(id).is_none());
            let name = match output {
                Some((o, _)) => names.fresh(o),
                None => names.for_node(g, id),
            };
            let cite = g.span(id).map(|s| format!("  # {}", src.cite(s)));
            lines.push(format!(
                "    {name} = {}{}",
                expr.text,
                cite.unwrap_or_default()
            ));
            exprs[id.index()] = Some(atom(name));
        } else {
            exprs[id.index()] = Some(expr);
        }
    }

    let value = |id: NodeId| exprs[id.index()].clone().expect("root evaluated").text;
    if scalar {
        lines.push(format!("    return {}", value(ids[0])));
    } else {
        lines.push("    return {".into());
        for (name, id) in roots {
            lines.push(format!("        {}: {},", quoted(name), value(*id)));
        }
        lines.push("    }".into());
    }
    Ok(lines)
}

/// A local for each symbolic dimension the function reads, from an input that has it.
fn symbol_locals(
    g: &Graph,
    live: &[bool],
    names: &mut Identifiers,
    lines: &mut Vec<String>,
) -> Result<Vec<String>, Diagnostic> {
    let mut read = vec![false; g.syms.len()];
    for id in g.ids().filter(|id| live[id.index()]) {
        let dims: &[Dim] = match g.op(id) {
            Op::DimSize(s) => {
                read[*s as usize] = true;
                &[]
            }
            Op::SumTo(s) | Op::Expand(s) | Op::Reshape(s) => &s.0,
            Op::Iota(d) => std::slice::from_ref(d),
            _ => &[],
        };
        for d in dims {
            if let Dim::Sym(s) = d {
                read[*s as usize] = true;
            }
        }
    }
    let mut locals = vec![String::new(); g.syms.len()];
    for (s, sym) in g.syms.iter().enumerate().filter(|(s, _)| read[*s]) {
        let found = g.inputs.iter().find_map(|i| {
            i.shape
                .0
                .iter()
                .position(|&d| d == Dim::Sym(s as u32))
                .map(|axis| (i, axis))
        });
        let Some((input, axis)) = found else {
            return Err(unsupported(
                "JAX",
                &format!("the dimension `{sym}`"),
                None,
                "no input has this dimension, so the exported code cannot read its size",
            ));
        };
        let name = names.fresh(sym);
        lines.push(format!(
            "    {name} = batch[{}].shape[{axis}]",
            quoted(&input.name)
        ));
        locals[s] = name;
    }
    Ok(locals)
}

/// The JAX expression of one node, from its operands' expressions.
fn op_expr(
    g: &Graph,
    id: NodeId,
    a: &[Expr],
    syms: &[String],
    helpers: &mut Helpers,
) -> Result<Expr, Diagnostic> {
    let x = || a[0].text.clone();
    let unary = |f: &str| call(f, &[a[0].text.clone()]);
    let as_dtype = |e: Expr| atom(format!("{}.astype(DTYPE)", e.at(ATOM)));
    let node = g.node(id);
    Ok(match &node.op {
        Op::Input(_) | Op::Param(_) => unreachable!("leaves are bound before the body"),
        Op::Const(bits) => literal(f64::from_bits(*bits)),
        Op::DimSize(s) => atom(syms[*s as usize].clone()),
        Op::Iota(d) => call("jnp.arange", &[dim_text(*d, syms), "dtype=DTYPE".into()]),
        Op::Literal(data) => {
            let values: Vec<String> = data.values().map(|v| literal(v).text).collect();
            atom(format!(
                "jnp.array([{}], DTYPE).reshape({})",
                values.join(", "),
                shape_tuple(&data.shape, syms)
            ))
        }
        Op::DropMask { .. } => {
            return Err(unsupported(
                "JAX",
                "`dropout`",
                g.span(id),
                "the exported `loss` trains, and its masks would need a `jax.random` key \
                 argument drawing adjoint's own generator; remove `dropout` to export the model",
            ));
        }
        Op::Neg => Expr {
            text: format!("-{}", a[0].at(UNARY)),
            prec: UNARY,
        },
        Op::Exp => unary("jnp.exp"),
        Op::Log => unary("jnp.log"),
        Op::Sqrt => unary("jnp.sqrt"),
        Op::Tanh => unary("jnp.tanh"),
        Op::Sigmoid => unary("jax.nn.sigmoid"),
        Op::Relu => unary("jax.nn.relu"),
        Op::Step => as_dtype(infix(&a[0], ">", &literal(0.0), CMP)),
        Op::Log1p => unary("jnp.log1p"),
        Op::Expm1 => unary("jnp.expm1"),
        Op::Abs => unary("jnp.abs"),
        Op::Sign => unary("jnp.sign"),
        Op::Sin => unary("jnp.sin"),
        Op::Cos => unary("jnp.cos"),
        Op::Softplus => unary("jax.nn.softplus"),
        Op::Erf => {
            helpers.erf = true;
            unary("jax.scipy.special.erf")
        }
        Op::Add => infix(&a[0], "+", &a[1], ADD),
        Op::Sub => infix(&a[0], "-", &a[1], ADD),
        Op::Mul => infix(&a[0], "*", &a[1], MUL),
        Op::Div => infix(&a[0], "/", &a[1], MUL),
        Op::Pow => pow_expr(g, node.inputs[1], &a[0], &a[1]),
        Op::Eq => as_dtype(infix(&a[0], "==", &a[1], CMP)),
        Op::Ne => as_dtype(infix(&a[0], "!=", &a[1], CMP)),
        Op::Lt => as_dtype(infix(&a[0], "<", &a[1], CMP)),
        Op::Le => as_dtype(infix(&a[0], "<=", &a[1], CMP)),
        Op::Gt => as_dtype(infix(&a[0], ">", &a[1], CMP)),
        Op::Ge => as_dtype(infix(&a[0], ">=", &a[1], CMP)),
        // The first operand wins ties (and NaN), in the value and in the derivative.
        Op::Max => call(
            "jnp.where",
            &[infix(&a[1], ">", &a[0], CMP).text, a[1].text.clone(), x()],
        ),
        Op::Min => call(
            "jnp.where",
            &[infix(&a[1], "<", &a[0], CMP).text, a[1].text.clone(), x()],
        ),
        Op::Select => call(
            "jnp.where",
            &[
                infix(&a[0], "!=", &literal(0.0), CMP).text,
                a[1].text.clone(),
                a[2].text.clone(),
            ],
        ),
        Op::MatMul => infix(&a[0], "@", &a[1], MUL),
        Op::Transpose { perm } => {
            let axes: Vec<String> = perm.iter().map(|p| p.to_string()).collect();
            call("jnp.transpose", &[x(), tuple(&axes)])
        }
        Op::Sum { axis } => call("jnp.sum", &[x(), axis_arg(*axis)]),
        Op::LogSumExp { axis } => call("jax.nn.logsumexp", &[x(), axis_arg(*axis)]),
        Op::ReduceMax { axis } => call("jnp.max", &[x(), axis_arg(*axis)]),
        Op::ReduceMin { axis } => call("jnp.min", &[x(), axis_arg(*axis)]),
        Op::ArgMax { axis } => as_dtype(call("jnp.argmax", &[x(), format!("axis={axis}")])),
        Op::Take { axis, index } => atom(format!(
            "{}[{}{index}]",
            a[0].at(ATOM),
            ":, ".repeat(*axis as usize)
        )),
        Op::Put { axis, index, size } => {
            helpers.put = true;
            call(
                "_put",
                &[x(), axis.to_string(), index.to_string(), size.to_string()],
            )
        }
        Op::Gather { axis } => {
            helpers.gather = true;
            call("_gather", &[x(), a[1].text.clone(), axis.to_string()])
        }
        Op::ScatterAdd { axis, size } => {
            helpers.scatter_add = true;
            call(
                "_scatter_add",
                &[x(), a[1].text.clone(), axis.to_string(), size.to_string()],
            )
        }
        Op::OneHot { classes } => call(
            "jax.nn.one_hot",
            &[x(), classes.to_string(), "dtype=DTYPE".into()],
        ),
        Op::SumTo(s) => {
            helpers.sum_to = true;
            call("_sum_to", &[x(), shape_tuple(s, syms)])
        }
        Op::Expand(s) => call("jnp.broadcast_to", &[x(), shape_tuple(s, syms)]),
        Op::Reshape(s) => call("jnp.reshape", &[x(), shape_tuple(s, syms)]),
        Op::Slice {
            axis,
            start,
            step,
            len,
        } => atom(format!(
            "{}[{}{}]",
            a[0].at(ATOM),
            ":, ".repeat(*axis as usize),
            slice_text(*start, *step, *len)
        )),
        Op::Unslice {
            axis,
            start,
            step,
            size,
        } => {
            helpers.unslice = true;
            call(
                "_unslice",
                &[
                    x(),
                    axis.to_string(),
                    size.to_string(),
                    start.to_string(),
                    step.to_string(),
                ],
            )
        }
    })
}

/// `start:stop:step` for `len` elements from `start`, `stop` left out where a backward slice
/// runs to the axis's first element (Python reads a stop of −1 as the last).
fn slice_text(start: u64, step: i64, len: u64) -> String {
    let stop = if len == 0 {
        start as i64
    } else {
        start as i64 + (len as i64 - 1) * step + step.signum()
    };
    if stop < 0 {
        format!("{start}::{step}")
    } else {
        format!("{start}:{stop}:{step}")
    }
}

/// `x ** k` with an integer constant k (JAX multiplies, as adjoint does), `jnp.sqrt` for
/// ½, `x ** y` otherwise.
fn pow_expr(g: &Graph, exponent: NodeId, base: &Expr, e: &Expr) -> Expr {
    match g.const_value(exponent) {
        Some(0.5) => call("jnp.sqrt", std::slice::from_ref(&base.text)),
        Some(k) if k.fract() == 0.0 && k.abs() < 1e9 => Expr {
            text: format!("{} ** {}", base.at(POW + 1), k as i64),
            prec: POW,
        },
        _ => Expr {
            text: format!("{} ** {}", base.at(POW + 1), e.at(UNARY)),
            prec: POW,
        },
    }
}

/// The names of the per-step scalars other than constants, as the rule reads them.
fn scalar_expr(s: StepScalar) -> Expr {
    match s {
        StepScalar::Lr => atom("lr"),
        StepScalar::Const(c) => literal(c),
        StepScalar::LrTimes(c) => infix(&atom("lr"), "*", &literal(c), MUL),
        StepScalar::InvBias1 => atom("inv_bias1"),
        StepScalar::InvBias2 => atom("inv_bias2"),
        StepScalar::KerasLr => atom("keras_lr"),
    }
}

fn rule_expr(e: &E, scalars: &[StepScalar], state: &[&str]) -> Expr {
    let r = |x: &E| rule_expr(x, scalars, state);
    match e {
        E::P => atom("p"),
        E::G => atom("g"),
        E::S(i) => atom(state[*i]),
        E::K(i) => scalar_expr(scalars[*i]),
        E::Add(a, b) => infix(&r(a), "+", &r(b), ADD),
        E::Sub(a, b) => infix(&r(a), "-", &r(b), ADD),
        E::Mul(a, b) => infix(&r(a), "*", &r(b), MUL),
        E::Div(a, b) => infix(&r(a), "/", &r(b), MUL),
        E::Sqrt(a) => call("jnp.sqrt", &[r(a).text]),
    }
}

/// Which per-step scalars a rule reads.
fn reads(e: &E, out: &mut Vec<usize>) {
    match e {
        E::P | E::G | E::S(_) => {}
        E::K(i) => out.push(*i),
        E::Add(a, b) | E::Sub(a, b) | E::Mul(a, b) | E::Div(a, b) => {
            reads(a, out);
            reads(b, out);
        }
        E::Sqrt(a) => reads(a, out),
    }
}

fn schedule_lines(src: &Source, lines: &mut Vec<String>) {
    let model = src.model;
    let base = literal(model.optimizer.get("lr"));
    let lr = match model.schedule.schedule {
        Schedule::Constant => base.text.clone(),
        Schedule::Step { every, gamma } => format!(
            "{} * {} ** ((step - 1) // {every})",
            base.at(MUL),
            literal(gamma).at(POW + 1)
        ),
        Schedule::Exponential { gamma } => format!(
            "{} * {} ** (step - 1)",
            base.at(MUL),
            literal(gamma).at(POW + 1)
        ),
        Schedule::Cosine { min } => {
            lines.push("        frac = jnp.minimum((step - 1) / max(total_steps, 1), 1.0)".into());
            let m = literal(min);
            format!(
                "{} + ({} - {}) * 0.5 * (1 + jnp.cos(jnp.pi * frac))",
                m.text,
                base.text,
                m.at(MUL)
            )
        }
    };
    lines.push(format!("        lr = {lr}  # {}", model.schedule));
    if model.schedule.warmup > 0 {
        let w = model.schedule.warmup;
        lines.push(format!(
            "        lr = jnp.where(step <= {w}, lr * step / {w}, lr)  # linear warm-up"
        ));
    }
}

/// `optimizer()`: optax's own transformation where it computes adjoint's update exactly, else
/// adjoint's update program written out as an optax `GradientTransformation`.
fn optimizer(src: &Source) -> Result<String, Diagnostic> {
    let model = src.model;
    let spec = &model.optimizer;
    if spec.kind == OptimizerKind::Newton {
        return Err(unsupported(
            "JAX",
            "the optimizer `newton`",
            model.optimizer_span,
            "Newton's method solves with the exact Hessian of adjoint's symbolic graph; \
             choose a first-order optimizer to export the model",
        ));
    }
    let mut out = String::new();
    let (wd, clip) = (spec.get("weight_decay"), spec.get("clip_norm"));
    let _ = writeln!(
        out,
        "\n\nclass OptState(NamedTuple):\n    \"\"\"adjoint's optimizer state: the step count, \
         β1ᵗ and β2ᵗ, and per-parameter arrays.\"\"\"\n\n    step: jax.Array\n    \
         pow1: jax.Array\n    pow2: jax.Array\n    slots: tuple"
    );
    let _ = writeln!(
        out,
        "\n\ndef _next_power(power, beta):\n    \"\"\"βᵗ⁺¹ from βᵗ, flushed to zero below the \
         normal range as adjoint does.\"\"\"\n    q = power * beta\n    return jnp.where(q < \
         jnp.finfo(q.dtype).tiny, 0.0, q)"
    );
    let _ = writeln!(
        out,
        "\n\ndef optimizer(total_steps=None):\n    \"\"\"{spec}, {} schedule: adjoint's update \
         rule.",
        model.schedule
    );
    let exact_optax =
        spec.kind == OptimizerKind::Sgd && model.schedule.is_constant() && wd == 0.0 && clip == 0.0;
    if exact_optax {
        out.push_str("\n    optax's sgd computes p − lr·g, adjoint's rule, exactly.\n    \"\"\"\n");
        let _ = writeln!(
            out,
            "    return optax.sgd({})",
            literal(spec.get("lr")).text
        );
        return Ok(out);
    }
    out.push_str(
        "\n    Written out rather than taken from optax: optax's transformations round differently\n    \
         (they divide by the bias corrections where adjoint multiplies by their reciprocals,\n    \
         and place ε, the weight decay and the clipping where each framework does), and this\n    \
         module computes what adjoint computes. `total_steps` is the schedule's horizon.\n    \"\"\"\n",
    );
    let state = spec.kind.state_names();
    let c = spec.constants();
    let scalars = spec.step_scalars(&c);
    let rule = spec.rule();
    let adam = matches!(spec.kind, OptimizerKind::Adam | OptimizerKind::AdamW);

    out.push_str("    if total_steps is None:\n        total_steps = _total_steps(None)\n\n");
    out.push_str("    def init_fn(params):\n");
    let _ = writeln!(
        out,
        "        slots = tuple(\n            {{name: jnp.full_like(p, {}) for name, p in \
         params.items()}}\n            for _ in range({})\n        )",
        literal(spec.initial_state()).text,
        state.len()
    );
    out.push_str(
        "        one = jnp.asarray(1.0, DTYPE)\n        return OptState(jnp.asarray(0), one, one, slots)\n\n",
    );
    out.push_str("    def update_fn(grads, state, params):\n        step = state.step + 1\n");
    let mut lines = vec![];
    if adam {
        lines.push(format!(
            "        pow1 = _next_power(state.pow1, {})",
            literal(c.beta1).text
        ));
        lines.push(format!(
            "        pow2 = _next_power(state.pow2, {})",
            literal(c.beta2).text
        ));
    } else {
        lines.push("        pow1, pow2 = state.pow1, state.pow2".into());
    }
    schedule_lines(src, &mut lines);
    if wd != 0.0 {
        lines.push(format!(
            "        grads = {{name: g + {} * params[name] for name, g in grads.items()}}  # L2 weight decay",
            literal(wd).at(MUL)
        ));
    }
    if clip != 0.0 {
        let cl = literal(clip);
        lines.push("        norm = jnp.sqrt(sum(jnp.sum(g * g) for g in grads.values()))".into());
        lines.push(format!(
            "        scale = jnp.where(norm > {0}, {0} / norm, 1.0)  # clipped to a global norm of {0}",
            cl.text
        ));
        lines.push("        grads = {name: g * scale for name, g in grads.items()}".into());
    }
    let mut read = vec![];
    for (_, e) in &rule {
        reads(e, &mut read);
    }
    for (i, s) in scalars.iter().enumerate() {
        if !read.contains(&i) {
            continue;
        }
        match s {
            StepScalar::InvBias1 => lines.push("        inv_bias1 = 1 / (1 - pow1)".into()),
            StepScalar::InvBias2 => lines.push("        inv_bias2 = 1 / (1 - pow2)".into()),
            StepScalar::KerasLr => lines.push(
                "        keras_lr = lr * jnp.sqrt(1 - pow2) / (1 - pow1)  # both bias corrections in the step size"
                    .into(),
            ),
            StepScalar::Lr | StepScalar::Const(_) | StepScalar::LrTimes(_) => {}
        }
    }
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    let news: Vec<String> = state.iter().map(|s| format!("new_{s}")).collect();
    let mut targets = vec!["new_params".to_string()];
    targets.extend(news.iter().cloned());
    let _ = writeln!(
        out,
        "        {} = {}",
        targets.join(", "),
        vec!["{}"; targets.len()].join(", ")
    );
    out.push_str("        for name, p in params.items():\n            g = grads[name]\n");
    for (i, s) in state.iter().enumerate() {
        let _ = writeln!(out, "            {s} = state.slots[{i}][name]");
    }
    let dialect = if spec.dialect == Dialect::Lecture {
        String::new()
    } else {
        format!(" ({} dialect)", spec.dialect.name())
    };
    let _ = writeln!(out, "            # {} rule{dialect}", spec.kind.name());
    for (target, e) in &rule {
        let lhs = match target {
            Target::P => "p",
            Target::S(i) => state[*i],
        };
        let _ = writeln!(
            out,
            "            {lhs} = {}",
            rule_expr(e, &scalars, state).text
        );
    }
    out.push_str("            new_params[name] = p\n");
    for (s, n) in state.iter().zip(&news) {
        let _ = writeln!(out, "            {n}[name] = {s}");
    }
    let _ = writeln!(
        out,
        "        updates = {{name: new_params[name] - params[name] for name in params}}\n        \
         return updates, OptState(step, pow1, pow2, {})",
        tuple(&news)
    );
    out.push_str("\n    return optax.GradientTransformation(init_fn, update_fn)\n");
    Ok(out)
}

fn load_fn(src: &Source, out: &mut String) {
    let spec = &src.model.optimizer;
    let dtype = src.model.graph().dtype.name();
    let _ = writeln!(
        out,
        "\n\nOPTIMIZER_TEXT = {}\nCHECKPOINT_DTYPE = {}",
        quoted(&spec.to_string()),
        quoted(dtype)
    );
    out.push_str(LOAD);
    let exact_optax = spec.kind == OptimizerKind::Sgd
        && src.model.schedule.is_constant()
        && spec.get("weight_decay") == 0.0
        && spec.get("clip_norm") == 0.0;
    if exact_optax {
        out.push_str("    return params, optimizer().init(params)\n");
    } else {
        let _ = writeln!(
            out,
            "    slots = tuple(\n        {{name: jnp.asarray(tensors[f\"state/{{name}}/{{k}}\"]) for name in PARAMS}}\n        for k in range({})\n    )\n    return params, OptState(jnp.asarray(step), jnp.asarray(pow1, DTYPE), jnp.asarray(pow2, DTYPE), slots)",
            spec.kind.state_arrays()
        );
    }
}

const LOAD: &str = r#"

def load(path):
    """Parameters and optimizer state from adjoint's checkpoint (`adjoint train --save`)."""
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("adjoint.dtype") != CHECKPOINT_DTYPE:
        raise ValueError(f"{path}: a checkpoint of {meta.get('adjoint.dtype')} values, this model computes in {CHECKPOINT_DTYPE}")
    if meta.get("adjoint.optimizer", OPTIMIZER_TEXT) != OPTIMIZER_TEXT:
        raise ValueError(f"{path}: its optimizer state is {meta['adjoint.optimizer']}'s, this model trains with {OPTIMIZER_TEXT}")
    missing = [name for name in PARAMS if f"param/{name}" not in tensors]
    if missing:
        raise ValueError(f"{path}: no parameter {', '.join(missing)}")
    params = {name: jnp.asarray(tensors[f"param/{name}"]) for name in PARAMS}
    step = int(meta.get("adjoint.step", "0"))
    powers = meta.get("adjoint.beta_powers", "3ff0000000000000 3ff0000000000000").split()
    pow1, pow2 = (struct.unpack(">d", bytes.fromhex(h))[0] for h in powers)
"#;

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


if __name__ == "__main__":
    main(sys.argv)
"#;
