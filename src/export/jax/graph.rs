//! A graph as a Python function over `jax.numpy`: one local per named value, one expression per
//! node, and the few helper functions some ops need.

use super::*;

/// The helper functions generated code calls, written once each when used.
#[derive(Default)]
pub(super) struct Helpers {
    pub(super) sum_to: bool,
    pub(super) put: bool,
    pub(super) erf: bool,
    pub(super) gather: bool,
    pub(super) scatter_add: bool,
    pub(super) unslice: bool,
    pub(super) windows: bool,
    pub(super) unwindows: bool,
    pub(super) dropout: bool,
}

impl Helpers {
    pub(super) fn write(&self, out: &mut String) {
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
        if self.windows || self.unwindows {
            out.push_str(
                r#"

def _window_places(shape, kernel, stride, dilation):
    """For each place (j1, ..., jk) of a window, the slices of the last k axes of an array of
    `shape` that the windows read there."""
    lead = len(shape) - len(kernel)
    counts = [(n - d * (k - 1) - 1) // s + 1 for n, k, s, d in zip(shape[lead:], kernel, stride, dilation)]
    for place in np.ndindex(*kernel):
        yield place, (slice(None),) * lead + tuple(
            slice(j * d, j * d + s * (c - 1) + 1, s) for j, c, s, d in zip(place, counts, stride, dilation)
        )
"#,
            );
        }
        if self.windows {
            out.push_str(
                r#"

def _windows(x, kernel, stride, dilation):
    """Patches: x[..., S1..Sk] as [..., K1..Kk, O1..Ok], element [.., j, o] = x[.., o*stride + j*dilation]."""
    lead = x.ndim - len(kernel)
    parts = [x[where] for _, where in _window_places(x.shape, kernel, stride, dilation)]
    stacked = jnp.stack(parts, axis=lead)
    return stacked.reshape(x.shape[:lead] + tuple(kernel) + stacked.shape[lead + 1 :])
"#,
            );
        }
        if self.unwindows {
            out.push_str(
                r#"

def _unwindows(p, size, kernel, stride, dilation):
    """The adjoint of `_windows`: each patch element added back into its place in zeros."""
    lead = p.ndim - 2 * len(kernel)
    out = jnp.zeros(p.shape[:lead] + tuple(size), p.dtype)
    for place, where in _window_places(out.shape, kernel, stride, dilation):
        out = out.at[where].add(p[(slice(None),) * lead + place])
    return out
"#,
            );
        }
        if self.dropout {
            out.push_str(DROPOUT);
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

/// What a generated function returns.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Returns {
    /// The first root alone (the loss).
    Scalar,
    /// Every root, in a dict by name.
    Dict,
    /// The first root (the training step's loss) and the model state after the step: the
    /// other roots are the running statistics' next values (`state.<name>`), and the step
    /// count goes up by one.
    LossAndState,
}

/// The body of a function of `(params, batch)` (and `state`, a model's running statistics and
/// dropout key, where it reads them) returning the values of `roots` as `returns` says.
pub(super) fn function(
    src: &Source,
    f: &GraphFn,
    roots: &[(String, NodeId)],
    returns: Returns,
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
            Op::State(i) => (&g.states[i as usize].name, "state"),
            _ => continue,
        };
        let name = names.fresh(local);
        lines.push(format!("    {name} = {from}[{}]", quoted(local)));
        exprs[id.index()] = Some(atom(name));
    }
    let syms = symbol_locals(g, &live, &mut names, &mut lines)?;
    let draws = g
        .ids()
        .any(|id| live[id.index()] && matches!(g.op(id), Op::DropMask { .. }));
    let key = if draws {
        names.fresh("step_key")
    } else {
        String::new()
    };
    if draws {
        // The masks are those of the step after the `state["step"]` steps taken.
        lines.push(format!(
            "    {key} = _step_key(state[\"run_key\"], state[\"step\"] + 1)"
        ));
    }

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
        let expr = op_expr(g, id, &args, &syms, &key, helpers)?;
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
    match returns {
        Returns::Scalar => lines.push(format!("    return {}", value(ids[0]))),
        Returns::Dict => {
            lines.push("    return {".into());
            for (name, id) in roots {
                lines.push(format!("        {}: {},", quoted(name), value(*id)));
            }
            lines.push("    }".into());
        }
        Returns::LossAndState => {
            lines.push(format!("    return {}, {{", value(ids[0])));
            lines.push("        **state,".into());
            lines.push("        \"step\": state[\"step\"] + 1,".into());
            for (name, id) in &roots[1..] {
                let name = name.strip_prefix("state.").unwrap_or(name);
                lines.push(format!("        {}: {},", quoted(name), value(*id)));
            }
            lines.push("    }".into());
        }
    }
    Ok(lines)
}

/// A local for each symbolic dimension the function reads, from an input that has it.
pub(super) fn symbol_locals(
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
pub(super) fn op_expr(
    g: &Graph,
    id: NodeId,
    a: &[Expr],
    syms: &[String],
    step_key: &str,
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
        Op::State(_) => unreachable!("leaves are bound before the body"),
        Op::DropMask { shape, p, site } => {
            helpers.dropout = true;
            let p = f64::from_bits(*p);
            let site_bits = (u64::from(*site) + 1).wrapping_mul(dropout::SITE_MULTIPLIER);
            call(
                "_dropout_mask",
                &[
                    step_key.to_string(),
                    format!("0x{site_bits:016X}"),
                    shape_tuple(shape, syms),
                    dropout::threshold(p).to_string(),
                    literal(dropout::scale(p)).text,
                ],
            )
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
        Op::Erfc => {
            helpers.erf = true;
            unary("jax.scipy.special.erfc")
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
        Op::Windows {
            kernel,
            stride,
            dilation,
        } => {
            helpers.windows = true;
            call(
                "_windows",
                &[x(), py_tuple(kernel), py_tuple(stride), py_tuple(dilation)],
            )
        }
        Op::Unwindows {
            kernel,
            stride,
            dilation,
            size,
        } => {
            helpers.unwindows = true;
            call(
                "_unwindows",
                &[
                    x(),
                    py_tuple(size),
                    py_tuple(kernel),
                    py_tuple(stride),
                    py_tuple(dilation),
                ],
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
pub(super) fn slice_text(start: u64, step: i64, len: u64) -> String {
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
pub(super) fn pow_expr(g: &Graph, exponent: NodeId, base: &Expr, e: &Expr) -> Expr {
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

/// Whole numbers as a Python tuple: `(3, 3)`, `(5,)`.
fn py_tuple(values: &[u64]) -> String {
    let texts: Vec<String> = values.iter().map(u64::to_string).collect();
    match texts.as_slice() {
        [one] => format!("({one},)"),
        _ => format!("({})", texts.join(", ")),
    }
}

/// adjoint's dropout masks (`ir::dropout`), SplitMix64 on pairs `(hi, lo)` of uint32 arrays:
/// JAX computes in 64-bit integers only with `jax_enable_x64`, which would change an f32
/// model's arithmetic, so 64-bit products are built from 16-bit halves.
const DROPOUT: &str = r#"

_GAMMA = 0x9E3779B97F4A7C15  # SplitMix64's increment
_MIX = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)  # its output multipliers


def _pair(c):
    """A 64-bit constant as (hi, lo)."""
    return np.uint32(c >> 32), np.uint32(c & 0xFFFFFFFF)


def _mul_wide(a, b):
    """The 64-bit product of uint32 a and b as (hi, lo), from products of 16-bit halves."""
    a0, a1, b0, b1 = a & 0xFFFF, a >> 16, b & 0xFFFF, b >> 16
    low, cross1, cross2, high = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (low >> 16) + (cross1 & 0xFFFF) + (cross2 & 0xFFFF)
    return high + (cross1 >> 16) + (cross2 >> 16) + (mid >> 16), (mid << 16) | (low & 0xFFFF)


def _mul64(x, c):
    """x·c mod 2⁶⁴, for a pair x and a constant c."""
    (xh, xl), (ch, cl) = x, _pair(c)
    hi, lo = _mul_wide(xl, cl)
    return hi + xl * ch + xh * cl, lo


def _add64(x, y):
    """x + y mod 2⁶⁴."""
    lo = x[1] + y[1]
    return x[0] + y[0] + (lo < y[1]).astype(jnp.uint32), lo


def _xorshift(x, s):
    """x ^ (x >> s), 0 < s < 32."""
    hi, lo = x
    return hi ^ (hi >> s), lo ^ ((lo >> s) | (hi << (32 - s)))


def _mix64(x):
    """SplitMix64's output function."""
    x = _mul64(_xorshift(x, 30), _MIX[0])
    x = _mul64(_xorshift(x, 27), _MIX[1])
    return _xorshift(x, 31)


def _step_key(run_key, t):
    """The key of step t (counted from 1): run + t·γ (`ir::dropout::step_key`)."""
    return _add64((run_key[0], run_key[1]), _mul64((jnp.uint32(0), jnp.asarray(t, jnp.uint32)), _GAMMA))


def _counts(first, size):
    """The counts i + 1 of elements i = first, ..., first + size − 1 as pairs (hi, lo) of uint32,
    carried into the high word from 2³² on (`ir::dropout::element_bits` counts in 64 bits): a
    mask of 2³² elements or more does not wrap."""
    if first + size < 1 << 31:
        lo = jnp.arange(first + 1, first + size + 1, dtype=jnp.uint32)
        return jnp.zeros_like(lo), lo
    # Rows of 2¹⁶ elements: row r's element c is r·2¹⁶ + c, whose high word is r >> 16 and low
    # word (r << 16) | c, so no index needs more than 32 bits.
    rows = -(-size // (1 << 16))
    r = jnp.arange(rows, dtype=jnp.uint32)[:, None]
    c = jnp.arange(1 << 16, dtype=jnp.uint32)[None, :]
    hi, lo = _add64((r >> 16, (r << 16) | c), _pair(first + 1))
    return hi.reshape(-1)[:size], lo.reshape(-1)[:size]


def _dropout_bits(step, site, first, size):
    """The high 32 bits of mix64(key + (i + 1)·γ) for elements i = first, ..., first + size − 1
    of one `dropout` call in the step whose key is `step`, the call's key being
    mix64(step ^ site) (`ir::dropout::element_bits`)."""
    hi, lo = _pair(site)
    key = _mix64((step[0] ^ hi, step[1] ^ lo))
    return _mix64(_add64(key, _mul64(_counts(first, size), _GAMMA)))[0]


def _dropout_mask(step, site, shape, threshold, scale):
    """The mask of one `dropout` call in the step whose key is `step`: element i is 0 when its
    bits (`_dropout_bits`) are below `threshold`, else `scale` (`ir::dropout::mask`)."""
    if threshold >= 1 << 32:
        return jnp.zeros(shape, DTYPE)
    kept = _dropout_bits(step, site, 0, int(np.prod(shape))) >= np.uint32(threshold)
    return jnp.where(kept, jnp.asarray(scale, DTYPE), jnp.asarray(0, DTYPE)).reshape(shape)
"#;
