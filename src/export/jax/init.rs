//! The module's data and parameters: declarations, the data reader, and `init(seed)` with the
//! model's initializers.

use super::*;

/// The dimension's text in generated code: its size, or the symbol's local.
pub(super) fn dim_text(d: Dim, syms: &[String]) -> String {
    match d {
        Dim::Fixed(k) => k.to_string(),
        Dim::Sym(s) => syms[s as usize].clone(),
    }
}

pub(super) fn shape_tuple(shape: &Shape, syms: &[String]) -> String {
    let items: Vec<String> = shape.0.iter().map(|&d| dim_text(d, syms)).collect();
    tuple(&items)
}

pub(super) fn quoted(s: &str) -> String {
    format!("{s:?}")
}

pub(super) fn optional_int(v: Option<u64>) -> String {
    v.map_or("None".into(), |v| v.to_string())
}

pub(super) fn declarations(src: &Source, out: &mut String) {
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
                _ if b.text.is_some() => {
                    format!("(\"text\", {})", b.text.as_ref().map_or(0, |t| t.offset))
                }
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
    if crate::data::text::text_inputs(model).is_some() {
        out.push_str("# (\"text\", k): windows of TEXT, shifted by k characters.\n");
    }
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
    if let Some((file, window, _)) = crate::data::text::text_inputs(model) {
        let _ = writeln!(
            out,
            "TEXT = {}  # relative to this module: each row of the text-bound inputs is a window of it\n\
             WINDOW = {window}\nVALIDATION = {}  # the held-out tail of the text",
            quoted(&file),
            literal(t.validation).text,
        );
    }
}

pub(super) const READ_CSV: &str = r#"

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
"#;

/// The reader of a model whose rows are windows of a text, in place of `READ_CSV`.
pub(super) const READ_TEXT: &str = r#"

def read_text(path):
    """The text's characters as tokens, as adjoint reads them: a token is the character's index
    in the vocabulary, the text's distinct characters sorted by code point (line ends included)."""
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    vocabulary = sorted(set(text))
    token = {c: i for i, c in enumerate(vocabulary)}
    return np.fromiter((token[c] for c in text), np.int64, len(text)), vocabulary


# The characters a window and its shifted copies cover together.
SPAN = WINDOW + max(offset for kind, offset in SOURCES.values() if kind == "text")


def split_text(tokens):
    """The training text and its held-out tail: the last VALIDATION of the characters."""
    held = int(np.floor(len(tokens) * VALIDATION + 0.5))
    return tokens[: len(tokens) - held], tokens[len(tokens) - held :]


def tiled_starts(tokens):
    """The windows that tile the text from its start (0, WINDOW, 2 WINDOW, ...): the rows that
    adjoint's `eval`, `predict`, `export --values` and validation read."""
    return np.arange(0, max(len(tokens) + 1 - SPAN, 0), WINDOW)


def windows(tokens, starts):
    """The inputs at the windows starting at `starts`, each shifted by its offset."""
    here = os.path.dirname(os.path.abspath(__file__))
    at = np.asarray(starts, np.int64)[:, None] + np.arange(WINDOW)
    batch = {}
    for name, (kind, source) in SOURCES.items():
        if kind == "text":
            batch[name] = jnp.asarray(tokens[at + source], DTYPE)
        else:
            batch[name] = jnp.asarray(np.load(os.path.join(here, source)), DTYPE)
    return batch


def read_data(path):
    """The inputs over the tiled windows of the whole text at `path`."""
    tokens, _ = read_text(path)
    return windows(tokens, tiled_starts(tokens))
"#;

pub(super) const DATA_HELPERS: &str = r#"

def _rows(batch):
    return next(iter(batch.values())).shape[0] if batch else None


def _data_stat(batch, name):
    if batch is None:
        raise ValueError(f"the initializer of a parameter is computed from input `{name}`: pass init(seed, batch)")
    return np.asarray(batch[name], np.float64)
"#;

pub(super) fn init_expr(init: &Init, shape: &[usize], key: &str) -> String {
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

pub(super) fn init_fn(src: &Source, out: &mut String) {
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

pub(super) const SPARSE: &str = r#"

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

pub(super) const LOG_ODDS: &str = r#"

def _log_odds(values):
    p = min(max(np.mean(values), 1e-12), 1 - 1e-12)
    return np.log(p / (1 - p))
"#;

pub(super) const LOG_PRIOR: &str = r#"

def _log_prior(values, classes):
    counts = np.array([np.sum(values == c) for c in range(classes)], np.float64)
    # A class absent from the data gets a small prior instead of log 0.
    return np.log(np.maximum(counts, 0.5) / max(len(values), 1))
"#;
