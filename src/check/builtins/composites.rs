//! Builtins written as several primitives: `dropout`, `gelu`, `layer_norm`, `arange`,
//! permutations, class indices and gathers, means, `split`.

use super::*;
use args::Length;

/// `x · mask` in a training graph, a mask element being 0 with probability `p` and 1/(1 − p)
/// otherwise; `x` itself in an evaluation graph. Each call with `p` > 0 is a site of its own,
/// numbered in the order the checker meets them, so that two calls draw different masks.
pub(super) fn dropout(
    cx: &mut Checker,
    g: &mut Graph,
    x: NodeId,
    p: f64,
    span: Span,
) -> Option<NodeId> {
    if !(0.0..1.0).contains(&p) {
        cx.error(
            Diagnostic::error(format!("`dropout` needs 0 ≤ p < 1, found {p}"))
                .with_label(span, "here")
                .with_note("p is the probability that an element is dropped"),
        );
        return None;
    }
    if p == 0.0 {
        return Some(x);
    }
    let site = cx.modes.dropout_sites;
    cx.modes.dropout_sites += 1;
    if cx.modes.mode == crate::check::Mode::Evaluation {
        return Some(x);
    }
    let shape = g.shape(x).clone();
    let mask = g.build(
        Op::DropMask {
            shape,
            p: p.to_bits(),
            site,
        },
        &[],
    );
    g.set_span(mask, span);
    let out = g.build(Op::Mul, &[x, mask]);
    g.set_span(out, span);
    Some(out)
}

/// gelu(x) = x·Φ(x), Φ the standard normal CDF: exactly, x/2 · (1 + erf(x/√2)); or as
/// x/2 · (1 + tanh(√(2/π) · (x + 0.044715·x³))) (`approximate=true`, GPT-2's form).
pub(super) fn gelu(g: &mut Graph, x: NodeId, approximate: bool) -> NodeId {
    let half = g.constant(0.5);
    let half_x = g.build(Op::Mul, &[half, x]);
    let one = g.constant(1.0);
    let inner = if approximate {
        let three = g.constant(3.0);
        let cube = g.build(Op::Pow, &[x, three]);
        let k = g.constant(0.044715);
        let cubic = g.build(Op::Mul, &[k, cube]);
        let arg = g.build(Op::Add, &[x, cubic]);
        let scale = g.constant((2.0 / std::f64::consts::PI).sqrt());
        let arg = g.build(Op::Mul, &[scale, arg]);
        g.build(Op::Tanh, &[arg])
    } else {
        let scale = g.constant(std::f64::consts::FRAC_1_SQRT_2);
        let arg = g.build(Op::Mul, &[scale, x]);
        g.build(Op::Erf, &[arg])
    };
    let cdf = g.build(Op::Add, &[one, inner]);
    g.build(Op::Mul, &[half_x, cdf])
}

/// (x − mean) / √(variance + eps) · gain + bias over the last axis, in primitives, so that its
/// derivative is more graph and prints.
pub(super) fn layer_norm(
    cx: &mut Checker,
    g: &mut Graph,
    (x, xs): (NodeId, Span),
    (gain, gs): (NodeId, Span),
    (bias, bs): (NodeId, Span),
    eps: f64,
    span: Span,
) -> Option<NodeId> {
    let shape = g.shape(x).clone();
    let Some(&d) = shape.0.last() else {
        cx.error(
            Diagnostic::error("`layer_norm` normalizes over the last axis; a scalar has none")
                .with_label(xs, "has shape []"),
        );
        return None;
    };
    let features = Shape(vec![d]);
    for (what, id, s) in [("gain", gain, gs), ("bias", bias, bs)] {
        if g.shape(id) != &features {
            cx.error(
                Diagnostic::error(format!(
                    "`layer_norm` needs `{what}` shaped like the last axis of `x`, {}",
                    g.shape_text(&features)
                ))
                .with_label(s, format!("has shape {}", g.shape_text(g.shape(id))))
                .with_label(xs, format!("has shape {}", g.shape_text(&shape))),
            );
            return None;
        }
    }
    if eps < 0.0 {
        cx.error(
            Diagnostic::error(format!("`layer_norm` needs `eps` ≥ 0, found {eps}"))
                .with_label(span, "here"),
        );
        return None;
    }
    let last = Some((shape.rank() - 1) as u32);
    let kept = keepdims_shape(&shape, last);
    let normed = standardized(g, x, eps, last, d, &kept);
    let scaled = g.build(Op::Mul, &[normed, gain]);
    Some(g.build(Op::Add, &[scaled, bias]))
}

/// (x − mean) / √(variance + eps), with the mean and the biased variance taken over `axis` of
/// `x` (of length `len`) and reshaped to `kept` to broadcast against `x`: layer norm's rows,
/// group norm's groups.
pub(super) fn standardized(
    g: &mut Graph,
    x: NodeId,
    eps: f64,
    axis: Option<u32>,
    len: Dim,
    kept: &Shape,
) -> NodeId {
    let mean_of = |g: &mut Graph, v: NodeId| {
        let s = g.build(Op::Sum { axis }, &[v]);
        let scale = reciprocal_count(g, &[len]);
        let m = g.build(Op::Mul, &[s, scale]);
        g.build(Op::Reshape(kept.clone()), &[m])
    };
    let mean = mean_of(g, x);
    let centered = g.build(Op::Sub, &[x, mean]);
    let two = g.constant(2.0);
    let squares = g.build(Op::Pow, &[centered, two]);
    let variance = mean_of(g, squares);
    let eps = g.constant(eps);
    let shifted = g.build(Op::Add, &[variance, eps]);
    let root = g.build(Op::Sqrt, &[shifted]);
    let one = g.constant(1.0);
    let inv = g.build(Op::Div, &[one, root]);
    g.build(Op::Mul, &[centered, inv])
}

/// Checks that `gain` and `bias` of a normalization `func` each hold one element per channel
/// of `x` (`features`, `[C]`), reporting the first that does not.
pub(super) fn checked_per_channel(
    cx: &mut Checker,
    g: &Graph,
    func: &str,
    features: &Shape,
    (x, xs): (NodeId, Span),
    operands: [(&str, (NodeId, Span)); 2],
) -> Option<()> {
    for (what, (id, s)) in operands {
        if g.shape(id) != features {
            cx.error(
                Diagnostic::error(format!(
                    "`{func}` needs `{what}` with one element per channel of `x`, {}",
                    g.shape_text(features)
                ))
                .with_label(s, format!("has shape {}", g.shape_text(g.shape(id))))
                .with_label(xs, format!("has shape {}", g.shape_text(g.shape(x)))),
            );
            return None;
        }
    }
    Some(())
}

/// `arange(n)`: 0, 1, …, n − 1 (`n` a whole number ≥ 1 or a dimension); `arange(a, b)`:
/// a, a + 1, …, b − 1 (whole numbers, a < b).
pub(super) fn arange(
    cx: &mut Checker,
    g: &mut Graph,
    first: &Value,
    second: &Value,
) -> Option<NodeId> {
    let Value::Length(Some((first, fspan))) = *first else {
        unreachable!("a required length")
    };
    let Value::Length(second) = *second else {
        unreachable!("an optional length")
    };
    let Some((stop, sspan)) = second else {
        let len = axis_length(cx, first, fspan)?;
        return Some(g.build(Op::Iota(len), &[]));
    };
    let (Length::Whole(a), Length::Whole(b)) = (first, stop) else {
        cx.error(
            Diagnostic::error("`arange(a, b)` needs whole numbers for `a` and `b`")
                .with_label(
                    Span::new(fspan.start, sspan.end),
                    "a dimension's size is known only at run time",
                )
                .with_note("`arange(n)` takes a dimension"),
        );
        return None;
    };
    if b <= a {
        cx.error(
            Diagnostic::error(format!(
                "`arange(a, b)` needs a < b, found a = {a} and b = {b}"
            ))
            .with_label(Span::new(fspan.start, sspan.end), "empty"),
        );
        return None;
    }
    let iota = g.build(Op::Iota(Dim::Fixed((b - a) as u64)), &[]);
    if a == 0 {
        return Some(iota);
    }
    let start = g.constant(a as f64);
    Some(g.build(Op::Add, &[iota, start]))
}

/// The axes of `transpose(x, axes)` as a permutation of `0..rank`, negative axes counted from
/// the end; every axis must appear exactly once.
pub(super) fn permutation(
    cx: &mut Checker,
    g: &Graph,
    x: NodeId,
    xs: Span,
    axes: &[(i64, Span)],
    tspan: Span,
) -> Option<Vec<u32>> {
    let shape = g.shape_text(g.shape(x));
    let rank = g.shape(x).rank();
    if axes.len() != rank {
        cx.error(
            Diagnostic::error(format!(
                "`transpose` needs {rank} axes for an operand of rank {rank}, found {}",
                axes.len()
            ))
            .with_label(tspan, format!("{} axes", axes.len()))
            .with_label(xs, format!("has shape {shape}")),
        );
        return None;
    }
    let mut perm: Vec<u32> = Vec::with_capacity(rank);
    let mut first_at: Vec<Option<Span>> = vec![None; rank];
    for &(a, aspan) in axes {
        let at = if a < 0 { a + rank as i64 } else { a };
        if !(0..rank as i64).contains(&at) {
            cx.error(
                Diagnostic::error(format!("axis {a} is out of range"))
                    .with_label(aspan, format!("the operand has rank {rank}"))
                    .with_label(xs, format!("has shape {shape}")),
            );
            return None;
        }
        if let Some(before) = first_at[at as usize] {
            cx.error(
                Diagnostic::error(format!(
                    "axis {at} appears twice in the axes of `transpose`"
                ))
                .with_label(
                    aspan,
                    if a < 0 {
                        format!("again here ({a} counts from the end)")
                    } else {
                        "again here".to_string()
                    },
                )
                .with_label(before, "first here")
                .with_note("the axes must name every axis of the operand once"),
            );
            return None;
        }
        first_at[at as usize] = Some(aspan);
        perm.push(at as u32);
    }
    Some(perm)
}

/// The most classes `one_hot` takes (a class count is held in 32 bits, and a row of a billion
/// classes is already 4 GB).
pub(super) const MAX_CLASSES: f64 = 1e9 - 1.0;

/// A value known while checking: a constant, or the negation of one (`-1` parses as that).
pub(super) fn constant_of(g: &Graph, id: NodeId) -> Option<f64> {
    match g.op(id) {
        Op::Neg => g.const_value(g.node(id).inputs[0]).map(|v| -v),
        op => op.const_value(),
    }
}

/// Labels must be class indices, whole numbers by construction: an `int` input, an `argmax`, or
/// a constant whole number ≥ 0 (printed derivatives select a fixed index with `one_hot(2, 3)`).
/// A float expression would pick no class (or a wrong one) and give a meaningless loss.
pub(super) fn class_indices(
    cx: &mut Checker,
    g: &Graph,
    what: &str,
    y: NodeId,
    span: Span,
) -> Option<()> {
    let whole = match g.op(y) {
        Op::Input(i) => g.inputs[*i as usize].is_int,
        op => match op.const_value() {
            Some(v) => v >= 0.0 && v.fract() == 0.0,
            None => matches!(op, Op::ArgMax { .. }),
        },
    };
    if whole {
        return Some(());
    }
    cx.error(
        Diagnostic::error(format!("the labels of `{what}` must be class indices"))
            .with_label(span, "not an `int` input, an `argmax` or a whole number")
            .with_note(
                "declare the labels as `input y[n]: int` (whole numbers ≥ 0, checked when loaded)",
            ),
    );
    None
}

/// `x` gathered along `axis` by `indices`: `take(x, indices, axis)`, and `x[indices]` (with
/// `call` `None`).
pub(in crate::check) fn gather(
    cx: &mut Checker,
    g: &mut Graph,
    call: Option<&str>,
    (x, xs): (NodeId, Span),
    (i, is): (NodeId, Span),
    axis: u32,
    span: Span,
) -> Option<NodeId> {
    whole_indices(cx, g, call, i, is)?;
    let what = call.unwrap_or("index");
    cx.node(g, Op::Gather { axis }, &[x, i], &[xs, is], what, span)
}

/// Indices must be whole numbers by construction, so that binding data can check each one
/// against the axis it indexes: an `int` input, an `argmax` or a whole constant, or a view of
/// one.
/// `call` names the function that reads them (`None`: an index, `E[tok]`).
pub(super) fn whole_indices(
    cx: &mut Checker,
    g: &Graph,
    call: Option<&str>,
    i: NodeId,
    span: Span,
) -> Option<()> {
    if crate::ir::indices::index_source(g, i).is_some() {
        return Some(());
    }
    let message = match call {
        None => "an array used as an index must hold whole numbers".to_string(),
        Some(name) => format!("the indices of `{name}` must be whole numbers"),
    };
    cx.error(
        Diagnostic::error(message)
            .with_label(span, "not an `int` input, an `argmax` or a whole number")
            .with_note(
                "declare the indices as `input tok[n, T]: int` (whole numbers ≥ 0, checked against the axis when loaded)",
            ),
    );
    None
}

pub(super) fn mean_all(g: &mut Graph, x: NodeId) -> NodeId {
    let dims = g.shape(x).0.clone();
    let s = g.build(Op::Sum { axis: None }, &[x]);
    let scale = reciprocal_count(g, &dims);
    g.build(Op::Mul, &[s, scale])
}

pub(super) fn reduced_dims(shape: &Shape, axis: Option<u32>) -> Vec<Dim> {
    match axis {
        None => shape.0.clone(),
        Some(a) => vec![shape.0[a as usize]],
    }
}

pub(super) fn keepdims_shape(shape: &Shape, axis: Option<u32>) -> Shape {
    Shape(
        shape
            .0
            .iter()
            .enumerate()
            .map(|(i, d)| {
                if axis.is_none_or(|a| a as usize == i) {
                    Dim::Fixed(1)
                } else {
                    *d
                }
            })
            .collect(),
    )
}

/// The parts of `split(x, parts, axis)`: `parts` equal parts, or parts of the sizes in a tuple,
/// each a slice of `x` along the axis.
pub(in crate::check) fn split(
    cx: &mut Checker,
    g: &mut Graph,
    func: &ast::Ident,
    args: &[ast::Arg],
    span: Span,
) -> Option<Vec<NodeId>> {
    let v = bind(cx, g, "split", SPLIT, args, span)?;
    let (x, xs) = v[0].array();
    let Value::Shape(entries, ps, tuple) = &v[1] else {
        unreachable!("a shape")
    };
    let (axis, aspan) = v[2].axis();
    let axis = normalize_axis(cx, g, x, xs, axis, aspan)?.expect("an axis by default");
    shaping::split(cx, g, func, x, xs, entries, *ps, *tuple, axis)
}
