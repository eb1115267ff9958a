//! The library of built-in functions: each call is checked against its signature and desugared
//! into IR primitives.
//!
//! Non-smooth points (documented in docs/language.md): relu, leaky_relu, elu, abs, clamp,
//! maximum and minimum take the derivative of the branch chosen by the forward value, with ties
//! and zero going to the left-hand or "off" branch: relu'(0) = 0, abs'(0) = 0, maximum(a, b)
//! passes the derivative to `a` on ties; max/min reductions share it equally among ties.

use super::{Checker, reciprocal_count, shaping};
use crate::diagnostics::{Diagnostic, Span};
use crate::ir::{Dim, Graph, NodeId, Op, Shape};
use crate::syntax::ast;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Any expression.
    Array,
    /// A constant number, with a default when optional.
    Num(Option<f64>),
    /// An optional axis (a constant whole number, negative counts from the end).
    Axis(Option<i64>),
    /// A required axis.
    AxisRequired,
    /// `true` or `false`, default false.
    Flag,
    /// A shape: a tuple `(a, b, -1)` of whole numbers and dimension names, or one of them.
    ShapeSpec,
    /// A list of arrays, `[a, b, c]`.
    Arrays,
    /// A whole number, or the name of a symbolic dimension (`n`); optional when `false`.
    Length(bool),
    /// A shape: a length, or an array literal of lengths (`[n, 3]`).
    Dims,
    /// An optional tuple of axes, each a constant whole number: `(0, 2, 1)`.
    Axes,
    /// A string literal: `einsum`'s spec.
    Spec,
    /// An expression that may be left out.
    OptionalArray,
}

use Kind::*;

const X: &[(&str, Kind)] = &[("x", Array)];
const REDUCE: &[(&str, Kind)] = &[("x", Array), ("axis", Axis(None)), ("keepdims", Flag)];
const ARG_REDUCE: &[(&str, Kind)] = &[("x", Array), ("axis", AxisRequired)];
const SOFTMAX: &[(&str, Kind)] = &[("x", Array), ("axis", Axis(Some(-1)))];
const BCE: &[(&str, Kind)] = &[("logits", Array), ("targets", Array)];
const PAIR: &[(&str, Kind)] = &[("a", Array), ("b", Array)];
const SPLIT: &[(&str, Kind)] = &[("x", Array), ("parts", ShapeSpec), ("axis", Axis(Some(0)))];
const FILLED: &[(&str, Kind)] = &[("shape", Dims)];

/// How a call becomes IR.
enum Lowering {
    /// One primitive applied to the one argument.
    Primitive(Op),
    LeakyRelu,
    Elu,
    Maximum,
    Minimum,
    Clamp,
    Where,
    Reduce(Reduction),
    ArgMax,
    ArgMin,
    Softmax,
    LogSoftmax,
    CrossEntropy,
    BceWithLogits,
    Mse,
    OneHot,
    ExpandDims,
    Reshape,
    BroadcastTo,
    Unslice,
    Concat,
    Stack,
    Split,
    Gelu,
    Silu,
    LayerNorm,
    /// An array of one value everywhere (`ones`, `zeros`).
    Filled(f64),
    Arange,
    CausalMask,
    Transpose,
    Einsum,
    Take,
    ScatterAdd,
    Dropout,
}

/// The reductions with an optional axis and `keepdims`.
#[derive(Clone, Copy)]
enum Reduction {
    Sum,
    Mean,
    Max,
    Min,
    LogSumExp,
}

/// One built-in function: its name, parameters and lowering.
struct Builtin {
    name: &'static str,
    params: &'static [(&'static str, Kind)],
    lowering: Lowering,
}

const fn builtin(
    name: &'static str,
    params: &'static [(&'static str, Kind)],
    lowering: Lowering,
) -> Builtin {
    Builtin {
        name,
        params,
        lowering,
    }
}

/// Every built-in function, in the order the "unknown function" note lists them.
static BUILTINS: &[Builtin] = &[
    builtin("exp", X, Lowering::Primitive(Op::Exp)),
    builtin("log", X, Lowering::Primitive(Op::Log)),
    builtin("sqrt", X, Lowering::Primitive(Op::Sqrt)),
    builtin("tanh", X, Lowering::Primitive(Op::Tanh)),
    builtin("sigmoid", X, Lowering::Primitive(Op::Sigmoid)),
    builtin("relu", X, Lowering::Primitive(Op::Relu)),
    builtin("log1p", X, Lowering::Primitive(Op::Log1p)),
    builtin("expm1", X, Lowering::Primitive(Op::Expm1)),
    builtin("abs", X, Lowering::Primitive(Op::Abs)),
    builtin("sin", X, Lowering::Primitive(Op::Sin)),
    builtin("cos", X, Lowering::Primitive(Op::Cos)),
    builtin("softplus", X, Lowering::Primitive(Op::Softplus)),
    builtin("erf", X, Lowering::Primitive(Op::Erf)),
    builtin("sign", X, Lowering::Primitive(Op::Sign)),
    builtin(
        "transpose",
        &[("x", Array), ("axes", Axes)],
        Lowering::Transpose,
    ),
    builtin(
        "einsum",
        &[("spec", Spec), ("a", Array), ("b", OptionalArray)],
        Lowering::Einsum,
    ),
    builtin(
        "leaky_relu",
        &[("x", Array), ("slope", Num(Some(0.01)))],
        Lowering::LeakyRelu,
    ),
    builtin(
        "elu",
        &[("x", Array), ("alpha", Num(Some(1.0)))],
        Lowering::Elu,
    ),
    builtin("maximum", PAIR, Lowering::Maximum),
    builtin("minimum", PAIR, Lowering::Minimum),
    builtin(
        "clamp",
        &[("x", Array), ("low", Array), ("high", Array)],
        Lowering::Clamp,
    ),
    builtin(
        "where",
        &[("condition", Array), ("a", Array), ("b", Array)],
        Lowering::Where,
    ),
    builtin("sum", REDUCE, Lowering::Reduce(Reduction::Sum)),
    builtin("mean", REDUCE, Lowering::Reduce(Reduction::Mean)),
    builtin("max", REDUCE, Lowering::Reduce(Reduction::Max)),
    builtin("min", REDUCE, Lowering::Reduce(Reduction::Min)),
    builtin("logsumexp", REDUCE, Lowering::Reduce(Reduction::LogSumExp)),
    builtin("argmax", ARG_REDUCE, Lowering::ArgMax),
    builtin("argmin", ARG_REDUCE, Lowering::ArgMin),
    builtin("softmax", SOFTMAX, Lowering::Softmax),
    builtin("log_softmax", SOFTMAX, Lowering::LogSoftmax),
    builtin(
        "cross_entropy",
        &[("logits", Array), ("labels", Array)],
        Lowering::CrossEntropy,
    ),
    builtin(
        "binary_cross_entropy_with_logits",
        BCE,
        Lowering::BceWithLogits,
    ),
    builtin("bce_with_logits", BCE, Lowering::BceWithLogits),
    builtin(
        "mse",
        &[("prediction", Array), ("target", Array)],
        Lowering::Mse,
    ),
    builtin(
        "one_hot",
        &[("labels", Array), ("classes", Num(None))],
        Lowering::OneHot,
    ),
    builtin(
        "expand_dims",
        &[("x", Array), ("axis", AxisRequired)],
        Lowering::ExpandDims,
    ),
    builtin(
        "reshape",
        &[("x", Array), ("shape", ShapeSpec)],
        Lowering::Reshape,
    ),
    builtin(
        "broadcast_to",
        &[("x", Array), ("shape", ShapeSpec)],
        Lowering::BroadcastTo,
    ),
    builtin(
        "unslice",
        &[
            ("x", Array),
            ("size", Num(None)),
            ("start", Num(Some(0.0))),
            ("step", Num(Some(1.0))),
            ("axis", Axis(Some(0))),
        ],
        Lowering::Unslice,
    ),
    builtin(
        "concat",
        &[("arrays", Arrays), ("axis", Axis(Some(0)))],
        Lowering::Concat,
    ),
    builtin("split", SPLIT, Lowering::Split),
    builtin(
        "stack",
        &[("arrays", Arrays), ("axis", Axis(Some(0)))],
        Lowering::Stack,
    ),
    builtin(
        "take",
        &[("x", Array), ("indices", Array), ("axis", Axis(Some(0)))],
        Lowering::Take,
    ),
    builtin(
        "scatter_add",
        &[
            ("values", Array),
            ("indices", Array),
            ("size", Num(None)),
            ("axis", Axis(Some(0))),
        ],
        Lowering::ScatterAdd,
    ),
    builtin(
        "gelu",
        &[("x", Array), ("approximate", Flag)],
        Lowering::Gelu,
    ),
    builtin("silu", X, Lowering::Silu),
    builtin(
        "layer_norm",
        &[
            ("x", Array),
            ("gain", Array),
            ("bias", Array),
            ("eps", Num(Some(1e-5))),
        ],
        Lowering::LayerNorm,
    ),
    builtin("ones", FILLED, Lowering::Filled(1.0)),
    builtin("zeros", FILLED, Lowering::Filled(0.0)),
    builtin(
        "arange",
        &[("start", Length(true)), ("stop", Length(false))],
        Lowering::Arange,
    ),
    builtin(
        "causal_mask",
        &[("size", Length(true))],
        Lowering::CausalMask,
    ),
    builtin(
        "dropout",
        &[("x", Array), ("p", Num(None))],
        Lowering::Dropout,
    ),
];

fn lookup(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

pub fn is_builtin(name: &str) -> bool {
    lookup(name).is_some()
}

#[derive(Clone)]
enum Value {
    Array(NodeId, Span),
    Num(f64),
    Axis(Option<i64>, Span),
    Flag(bool),
    /// Each entry of a shape: a dimension, or `None` for the one inferred (`-1`); whether it
    /// was written as a tuple.
    Shape(Vec<Option<Dim>>, Span, bool),
    Arrays(Vec<(NodeId, Span)>, Span),
    /// Each axis with its place in the source, and the place of the whole tuple; `None` when
    /// not given.
    Axes(Option<(Vec<(i64, Span)>, Span)>),
    /// A string and its place in the source, quotes included.
    Spec(String, Span),
    /// An optional argument left out.
    Absent,
    Length(Option<(Length, Span)>),
    Dims(Vec<Dim>),
}

/// A length argument: a whole number (any sign; each function checks its range) or a
/// symbolic dimension.
#[derive(Clone, Copy)]
enum Length {
    Whole(i64),
    Sym(u32),
}

impl Value {
    fn array(&self) -> (NodeId, Span) {
        match self {
            Value::Array(id, s) => (*id, *s),
            _ => unreachable!(),
        }
    }
    fn num(&self) -> f64 {
        match self {
            Value::Num(v) => *v,
            _ => unreachable!(),
        }
    }
    fn axis(&self) -> (Option<i64>, Span) {
        match self {
            Value::Axis(a, s) => (*a, *s),
            _ => unreachable!(),
        }
    }
}

pub(super) fn call(
    cx: &mut Checker,
    g: &mut Graph,
    func: &ast::Ident,
    args: &[ast::Arg],
    span: Span,
) -> Option<NodeId> {
    let name = func.name.as_str();
    let Some(builtin) = lookup(name) else {
        let names: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
        cx.error(
            Diagnostic::error(format!("unknown function `{name}`"))
                .with_label(func.span, "not defined")
                .with_note(format!("built-in functions: {}", names.join(", "))),
        );
        return None;
    };
    let v = bind(cx, g, name, builtin.params, args, span)?;
    let node = |cx: &mut Checker, g: &mut Graph, op: Op, ids: &[NodeId], spans: &[Span]| {
        cx.node(g, op, ids, spans, name, span)
    };
    match &builtin.lowering {
        Lowering::Primitive(op) => {
            let (x, xs) = v[0].array();
            node(cx, g, op.clone(), &[x], &[xs])
        }
        lowering @ (Lowering::LeakyRelu | Lowering::Elu) => {
            let (x, _) = v[0].array();
            let k = g.constant(v[1].num());
            let zero = g.constant(0.0);
            let pos = g.build(Op::Gt, &[x, zero]);
            // elu's negative branch reads min(x, 0): where x is large the branch is not taken,
            // and its derivative exp(x) would be inf, and 0 · inf is NaN.
            let neg = if matches!(lowering, Lowering::Elu) {
                let clipped = g.build(Op::Min, &[x, zero]);
                g.build(Op::Expm1, &[clipped])
            } else {
                x
            };
            let neg = g.build(Op::Mul, &[k, neg]);
            Some(g.build(Op::Select, &[pos, x, neg]))
        }
        lowering @ (Lowering::Maximum | Lowering::Minimum) => {
            let ((a, sa), (b, sb)) = (v[0].array(), v[1].array());
            node(
                cx,
                g,
                if matches!(lowering, Lowering::Maximum) {
                    Op::Max
                } else {
                    Op::Min
                },
                &[a, b],
                &[sa, sb],
            )
        }
        Lowering::Clamp => {
            let ((x, sx), (lo, sl), (hi, sh)) = (v[0].array(), v[1].array(), v[2].array());
            if let (Some(low), Some(high)) = (constant_of(g, lo), constant_of(g, hi))
                && low > high
            {
                cx.error(
                    Diagnostic::error(format!(
                        "`clamp` needs `low` ≤ `high`, found low = {low} and high = {high}"
                    ))
                    .with_label(sl, "low")
                    .with_label(sh, "high"),
                );
                return None;
            }
            let m = node(cx, g, Op::Max, &[x, lo], &[sx, sl])?;
            node(cx, g, Op::Min, &[m, hi], &[sx, sh])
        }
        Lowering::Where => {
            let ((c, sc), (a, sa), (b, sb)) = (v[0].array(), v[1].array(), v[2].array());
            node(cx, g, Op::Select, &[c, a, b], &[sc, sa, sb])
        }
        Lowering::Reduce(reduction) => {
            let (x, xs) = v[0].array();
            let Value::Axis(axis, aspan) = v[1] else {
                unreachable!()
            };
            let axis = normalize_axis(cx, g, x, xs, axis, aspan)?;
            let keepdims = matches!(v[2], Value::Flag(true));
            let op = match reduction {
                Reduction::Sum | Reduction::Mean => Op::Sum { axis },
                Reduction::Max => Op::ReduceMax { axis },
                Reduction::Min => Op::ReduceMin { axis },
                Reduction::LogSumExp => Op::LogSumExp { axis },
            };
            let mut r = node(cx, g, op, &[x], &[xs])?;
            if matches!(reduction, Reduction::Mean) {
                let dims = reduced_dims(g.shape(x), axis);
                let scale = reciprocal_count(g, &dims);
                r = g.build(Op::Mul, &[r, scale]);
            }
            if keepdims {
                let kept = keepdims_shape(g.shape(x), axis);
                r = g.build(Op::Reshape(kept), &[r]);
            }
            Some(r)
        }
        lowering @ (Lowering::ArgMax | Lowering::ArgMin) => {
            let (x, xs) = v[0].array();
            let Value::Axis(axis, aspan) = v[1] else {
                unreachable!()
            };
            let axis = normalize_axis(cx, g, x, xs, axis, aspan)?.expect("required axis");
            let x = if matches!(lowering, Lowering::ArgMin) {
                g.build(Op::Neg, &[x])
            } else {
                x
            };
            node(cx, g, Op::ArgMax { axis }, &[x], &[xs])
        }
        lowering @ (Lowering::Softmax | Lowering::LogSoftmax) => {
            let (x, xs) = v[0].array();
            let Value::Axis(axis, aspan) = v[1] else {
                unreachable!()
            };
            let axis = normalize_axis(cx, g, x, xs, axis, aspan)?;
            let lse = node(cx, g, Op::LogSumExp { axis }, &[x], &[xs])?;
            let lse = g.build(Op::Reshape(keepdims_shape(g.shape(x), axis)), &[lse]);
            let shifted = g.build(Op::Sub, &[x, lse]);
            Some(if matches!(lowering, Lowering::Softmax) {
                g.build(Op::Exp, &[shifted])
            } else {
                shifted
            })
        }
        Lowering::CrossEntropy => {
            let ((z, sz), (y, sy)) = (v[0].array(), v[1].array());
            let zshape = g.shape(z).clone();
            let Some(&Dim::Fixed(k)) = zshape.0.last() else {
                cx.error(
                    Diagnostic::error("`cross_entropy` needs logits whose last axis (the classes) has a fixed length")
                        .with_label(sz, format!("has shape {}", g.shape_text(&zshape))),
                );
                return None;
            };
            let last = (zshape.rank() - 1) as u32;
            class_indices(cx, g, "cross_entropy", y, sy)?;
            // One label per position of the logits: labels that broadcast instead would give
            // every row of a batch the same labels, silently.
            let positions = Shape(zshape.0[..zshape.rank() - 1].to_vec());
            let yshape = g.shape(y).clone();
            if !yshape.is_scalar() && yshape != positions {
                cx.error(
                    Diagnostic::error(format!(
                        "`cross_entropy` needs one label per row of logits: labels of shape {}",
                        g.shape_text(&positions)
                    ))
                    .with_label(sy, format!("has shape {}", g.shape_text(&yshape)))
                    .with_label(sz, format!("has shape {}", g.shape_text(&zshape)))
                    .with_note("the logits' last axis holds the classes; the labels have the logits' other axes"),
                );
                return None;
            }
            let oh = node(cx, g, Op::OneHot { classes: k as u32 }, &[y], &[sy])?;
            let picked = node(cx, g, Op::Mul, &[oh, z], &[sy, sz])?;
            let picked = g.build(Op::Sum { axis: Some(last) }, &[picked]);
            let lse = g.build(Op::LogSumExp { axis: Some(last) }, &[z]);
            let per_row = g.build(Op::Sub, &[lse, picked]);
            Some(mean_all(g, per_row))
        }
        Lowering::BceWithLogits => {
            // softplus(z) − t·z = −[t log σ(z) + (1 − t) log(1 − σ(z))], stable for any z.
            let ((z, sz), (t, st)) = (v[0].array(), v[1].array());
            let tz = node(cx, g, Op::Mul, &[t, z], &[st, sz])?;
            let sp = g.build(Op::Softplus, &[z]);
            let per = node(cx, g, Op::Sub, &[sp, tz], &[sz, st])?;
            Some(mean_all(g, per))
        }
        Lowering::Mse => {
            let ((p, sp), (t, st)) = (v[0].array(), v[1].array());
            let d = node(cx, g, Op::Sub, &[p, t], &[sp, st])?;
            let two = g.constant(2.0);
            let sq = g.build(Op::Pow, &[d, two]);
            Some(mean_all(g, sq))
        }
        Lowering::OneHot => {
            let (y, sy) = v[0].array();
            let k = v[1].num();
            if !(k >= 1.0 && k.fract() == 0.0 && k <= MAX_CLASSES) {
                let why = if k > MAX_CLASSES {
                    format!("at most {MAX_CLASSES}")
                } else {
                    "a whole number ≥ 1".to_string()
                };
                cx.error(
                    Diagnostic::error(format!("the number of classes must be {why}, found {k}"))
                        .with_label(span, "here"),
                );
                return None;
            }
            class_indices(cx, g, "one_hot", y, sy)?;
            node(cx, g, Op::OneHot { classes: k as u32 }, &[y], &[sy])
        }
        Lowering::Take => {
            let (x, i) = (v[0].array(), v[1].array());
            let Value::Axis(axis, aspan) = v[2] else {
                unreachable!("an axis with a default")
            };
            let axis = normalize_axis(cx, g, x.0, x.1, axis, aspan)?.expect("an axis");
            gather(cx, g, Some("take"), x, i, axis, span)
        }
        Lowering::ScatterAdd => {
            let ((x, xs), (i, is)) = (v[0].array(), v[1].array());
            let size = v[2].num();
            if !(size >= 1.0 && size.fract() == 0.0 && size <= MAX_CLASSES) {
                cx.error(
                    Diagnostic::error(format!(
                        "the size of `scatter_add`'s axis must be a whole number from 1 to {MAX_CLASSES}, found {size}"
                    ))
                    .with_label(span, "here"),
                );
                return None;
            }
            let Value::Axis(axis, aspan) = v[3] else {
                unreachable!("an axis with a default")
            };
            // The axis is the result's: its rank is the values' less the indices' plus one.
            let rank = g.shape(x).rank() as i64 - g.shape(i).rank() as i64 + 1;
            let a = axis.expect("an axis with a default");
            let at = if a < 0 { a + rank } else { a };
            if !(0..rank).contains(&at) {
                cx.error(
                    Diagnostic::error(format!("axis {a} is out of range"))
                        .with_label(aspan, format!("the result has rank {}", rank.max(0)))
                        .with_label(xs, format!("has shape {}", g.shape_text(g.shape(x))))
                        .with_label(is, format!("has shape {}", g.shape_text(g.shape(i)))),
                );
                return None;
            }
            let axis = at as u32;
            whole_indices(cx, g, Some("scatter_add"), i, is)?;
            let op = Op::ScatterAdd {
                axis,
                size: size as u64,
            };
            node(cx, g, op, &[x, i], &[xs, is])
        }
        Lowering::Gelu => {
            let (x, _) = v[0].array();
            let approximate = matches!(v[1], Value::Flag(true));
            Some(gelu(g, x, approximate))
        }
        Lowering::Silu => {
            let (x, _) = v[0].array();
            let s = g.build(Op::Sigmoid, &[x]);
            Some(g.build(Op::Mul, &[x, s]))
        }
        Lowering::LayerNorm => {
            let ((x, xs), (gain, gs), (bias, bs)) = (v[0].array(), v[1].array(), v[2].array());
            layer_norm(cx, g, (x, xs), (gain, gs), (bias, bs), v[3].num(), span)
        }
        Lowering::Dropout => {
            let (x, _) = v[0].array();
            dropout(cx, g, x, v[1].num(), span)
        }
        Lowering::Filled(value) => {
            let Value::Dims(dims) = &v[0] else {
                unreachable!("a shape argument")
            };
            let c = g.constant(*value);
            Some(g.build(Op::Expand(Shape(dims.clone())), &[c]))
        }
        Lowering::Arange => arange(cx, g, &v[0], &v[1]),
        Lowering::CausalMask => {
            let Value::Length(Some((size, sspan))) = v[0] else {
                unreachable!("a required length")
            };
            let t = axis_length(cx, size, sspan)?;
            // 1 where the row index ≥ the column index: computed from two index vectors.
            let cols = g.build(Op::Iota(t), &[]);
            let rows = g.build(Op::Reshape(Shape(vec![t, Dim::Fixed(1)])), &[cols]);
            Some(g.build(Op::Ge, &[rows, cols]))
        }
        Lowering::ExpandDims => {
            // numpy's: a unit axis inserted before `axis`; `axis` may be the rank (after the
            // last) or negative, counted from the end of the result.
            let (x, xs) = v[0].array();
            let Value::Axis(Some(a), aspan) = v[1] else {
                unreachable!("a required axis")
            };
            let mut dims = g.shape(x).0.clone();
            let rank = dims.len() as i64 + 1;
            let at = if a < 0 { a + rank } else { a };
            if !(0..rank).contains(&at) {
                cx.error(
                    Diagnostic::error(format!("axis {a} is out of range"))
                        .with_label(aspan, format!("the result has rank {rank}"))
                        .with_label(xs, format!("has shape {}", g.shape_text(g.shape(x)))),
                );
                return None;
            }
            dims.insert(at as usize, Dim::Fixed(1));
            Some(g.build(Op::Reshape(Shape(dims)), &[x]))
        }
        Lowering::Einsum => {
            let Value::Spec(text, spec_span) = &v[0] else {
                unreachable!("a spec")
            };
            let mut operands = vec![v[1].array()];
            if let Value::Array(b, bs) = v[2] {
                operands.push((b, bs));
            }
            super::einsum::einsum(cx, g, text, *spec_span, &operands)
        }
        Lowering::Reshape => {
            let (x, xs) = v[0].array();
            let Value::Shape(entries, ss, _) = &v[1] else {
                unreachable!("a shape")
            };
            let to = shaping::reshape_target(cx, g, x, xs, entries, *ss)?;
            node(cx, g, Op::Reshape(to), &[x], &[xs])
        }
        Lowering::BroadcastTo => {
            let (x, xs) = v[0].array();
            let Value::Shape(entries, ss, _) = &v[1] else {
                unreachable!("a shape")
            };
            let Some(dims) = entries.iter().copied().collect::<Option<Vec<Dim>>>() else {
                cx.error(
                    Diagnostic::error("`broadcast_to` takes a shape without -1")
                        .with_label(*ss, "an entry is inferred"),
                );
                return None;
            };
            node(cx, g, Op::Expand(Shape(dims)), &[x], &[xs])
        }
        Lowering::Unslice => {
            let (x, xs) = v[0].array();
            let (axis, aspan) = v[4].axis();
            let axis = normalize_axis(cx, g, x, xs, axis, aspan)?.expect("an axis by default");
            let [size, start, step] = [1, 2, 3].map(|k| v[k].num());
            let whole = |n: f64| n.fract() == 0.0 && n.abs() < 1e15;
            if !(whole(size) && whole(start) && whole(step) && size >= 1.0 && start >= 0.0) {
                cx.error(
                    Diagnostic::error(
                        "`unslice` takes whole numbers: a size ≥ 1, a start ≥ 0 and a step",
                    )
                    .with_label(span, "here"),
                );
                return None;
            }
            let op = Op::Unslice {
                axis,
                start: start as u64,
                step: step as i64,
                size: size as u64,
            };
            node(cx, g, op, &[x], &[xs])
        }
        Lowering::Split => {
            cx.error(
                Diagnostic::error("`split` gives several arrays")
                    .with_label(span, "not one value")
                    .with_note("name each part: `let a, b = split(x, 2, axis=1)`"),
            );
            None
        }
        lowering @ (Lowering::Concat | Lowering::Stack) => {
            let Value::Arrays(arrays, list_span) = &v[0] else {
                unreachable!("a list")
            };
            let (axis, aspan) = v[1].axis();
            let stacked = matches!(lowering, Lowering::Stack);
            shaping::join(cx, g, name, arrays, *list_span, axis, aspan, stacked, span)
        }
        Lowering::Transpose => {
            let (x, xs) = v[0].array();
            let Value::Axes(axes) = &v[1] else {
                unreachable!("an axes tuple")
            };
            let rank = g.shape(x).rank();
            let perm = match axes {
                None => (0..rank as u32).rev().collect(),
                Some((axes, tspan)) => permutation(cx, g, x, xs, axes, *tspan)?,
            };
            // An identity permutation (a vector's, or given as such) is the operand itself.
            if perm.iter().enumerate().all(|(i, &a)| a as usize == i) {
                return Some(x);
            }
            node(cx, g, Op::Transpose { perm }, &[x], &[xs])
        }
    }
}

/// The longest axis a length argument makes (`arange(n)`, `ones([n, 3])`).
const MAX_LENGTH: f64 = 1e9;

/// The most elements a shape argument (`ones([a, b])`) makes, besides its dimensions.
const MAX_SHAPE_ELEMENTS: f64 = 2147483648.0;

/// A length argument: the name of a symbolic dimension, or a constant whole number.
fn length(cx: &mut Checker, g: &mut Graph, e: &ast::Expr) -> Option<Length> {
    if let ast::ExprKind::Name(n) = &e.kind
        && let Some(sym) = cx.dim_symbol(n)
    {
        return Some(Length::Sym(sym));
    }
    let id = cx.expr(g, e)?;
    match super::literal::constant_value(g, id) {
        Some(v) if v.fract() == 0.0 && v.abs() <= MAX_LENGTH => Some(Length::Whole(v as i64)),
        _ => {
            cx.error(
                Diagnostic::error("a length must be a whole number or a dimension's name")
                    .with_label(e.span, "not a whole number")
                    .with_note(format!(
                        "a constant such as `8` or `T` (`let T = 8`), at most {MAX_LENGTH:e}, or a dimension such as `n`"
                    )),
            );
            None
        }
    }
}

/// A length that is an axis: at least 1.
fn axis_length(cx: &mut Checker, l: Length, span: Span) -> Option<Dim> {
    match l {
        Length::Sym(s) => Some(Dim::Sym(s)),
        Length::Whole(n) if n >= 1 => Some(Dim::Fixed(n as u64)),
        Length::Whole(n) => {
            cx.error(
                Diagnostic::error(format!("an axis needs a length of at least 1, found {n}"))
                    .with_label(span, "here"),
            );
            None
        }
    }
}

/// A shape argument: one length, or an array literal of lengths (`[n, 3]`).
fn dims(cx: &mut Checker, g: &mut Graph, e: &ast::Expr) -> Option<Vec<Dim>> {
    let parts: Vec<&ast::Expr> = match &e.kind {
        ast::ExprKind::List(elements) => elements.iter().collect(),
        _ => vec![e],
    };
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let l = length(cx, g, p)?;
        out.push(axis_length(cx, l, p.span)?);
    }
    // A constant costs no memory, but every loop over it visits each element.
    let fixed: f64 = out
        .iter()
        .map(|d| match d {
            Dim::Fixed(k) => *k as f64,
            Dim::Sym(_) => 1.0,
        })
        .product();
    if fixed > MAX_SHAPE_ELEMENTS {
        cx.error(
            Diagnostic::error(format!(
                "a shape holds at most 2^31 elements, found {fixed:e}"
            ))
            .with_label(e.span, "too large"),
        );
        return None;
    }
    Some(out)
}

/// gelu(x) = x·Φ(x), Φ the standard normal CDF: exactly, x/2 · (1 + erf(x/√2)); or as
/// x/2 · (1 + tanh(√(2/π) · (x + 0.044715·x³))) (`approximate=true`, GPT-2's form).
fn gelu(g: &mut Graph, x: NodeId, approximate: bool) -> NodeId {
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

/// `x · mask` in a training graph, a mask element being 0 with probability `p` and 1/(1 − p)
/// otherwise; `x` itself in an evaluation graph. Each call with `p` > 0 is a site of its own,
/// numbered in the order the checker meets them, so that two calls draw different masks.
fn dropout(cx: &mut Checker, g: &mut Graph, x: NodeId, p: f64, span: Span) -> Option<NodeId> {
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
    if cx.modes.mode == super::Mode::Evaluation {
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

/// (x − mean) / √(variance + eps) · gain + bias over the last axis, in primitives, so that its
/// derivative is more graph and prints.
fn layer_norm(
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
    let row_mean = |g: &mut Graph, v: NodeId| {
        let s = g.build(Op::Sum { axis: last }, &[v]);
        let scale = reciprocal_count(g, &[d]);
        let m = g.build(Op::Mul, &[s, scale]);
        g.build(Op::Reshape(kept.clone()), &[m])
    };
    let mean = row_mean(g, x);
    let centered = g.build(Op::Sub, &[x, mean]);
    let two = g.constant(2.0);
    let sq = g.build(Op::Pow, &[centered, two]);
    let variance = row_mean(g, sq);
    let eps = g.constant(eps);
    let shifted = g.build(Op::Add, &[variance, eps]);
    let root = g.build(Op::Sqrt, &[shifted]);
    let one = g.constant(1.0);
    let inv = g.build(Op::Div, &[one, root]);
    let normed = g.build(Op::Mul, &[centered, inv]);
    let scaled = g.build(Op::Mul, &[normed, gain]);
    Some(g.build(Op::Add, &[scaled, bias]))
}

/// `arange(n)`: 0, 1, …, n − 1 (`n` a whole number ≥ 1 or a dimension); `arange(a, b)`:
/// a, a + 1, …, b − 1 (whole numbers, a < b).
fn arange(cx: &mut Checker, g: &mut Graph, first: &Value, second: &Value) -> Option<NodeId> {
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
fn permutation(
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
const MAX_CLASSES: f64 = 1e9 - 1.0;

/// A value known while checking: a constant, or the negation of one (`-1` parses as that).
fn constant_of(g: &Graph, id: NodeId) -> Option<f64> {
    match g.op(id) {
        Op::Neg => g.const_value(g.node(id).inputs[0]).map(|v| -v),
        op => op.const_value(),
    }
}

/// Labels must be class indices, whole numbers by construction: an `int` input, an `argmax`, or
/// a constant whole number ≥ 0 (printed derivatives select a fixed index with `one_hot(2, 3)`).
/// A float expression would pick no class (or a wrong one) and give a meaningless loss.
fn class_indices(cx: &mut Checker, g: &Graph, what: &str, y: NodeId, span: Span) -> Option<()> {
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
pub(super) fn gather(
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
fn whole_indices(
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

fn mean_all(g: &mut Graph, x: NodeId) -> NodeId {
    let dims = g.shape(x).0.clone();
    let s = g.build(Op::Sum { axis: None }, &[x]);
    let scale = reciprocal_count(g, &dims);
    g.build(Op::Mul, &[s, scale])
}

fn reduced_dims(shape: &Shape, axis: Option<u32>) -> Vec<Dim> {
    match axis {
        None => shape.0.clone(),
        Some(a) => vec![shape.0[a as usize]],
    }
}

fn keepdims_shape(shape: &Shape, axis: Option<u32>) -> Shape {
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

pub(super) fn normalize_axis(
    cx: &mut Checker,
    g: &Graph,
    x: NodeId,
    xs: Span,
    axis: Option<i64>,
    aspan: Span,
) -> Option<Option<u32>> {
    let Some(a) = axis else { return Some(None) };
    let rank = g.shape(x).rank() as i64;
    let a2 = if a < 0 { a + rank } else { a };
    if a2 < 0 || a2 >= rank {
        cx.error(
            Diagnostic::error(format!("axis {a} is out of range"))
                .with_label(aspan, format!("the operand has rank {rank}"))
                .with_label(xs, format!("has shape {}", g.shape_text(g.shape(x)))),
        );
        return None;
    }
    Some(Some(a2 as u32))
}

/// A tuple or list of whole numbers (or one whole number), each with its place in the source.
fn axes_tuple(cx: &mut Checker, e: &ast::Expr) -> Option<(Vec<(i64, Span)>, Span)> {
    let items = match &e.kind {
        ast::ExprKind::Tuple(items) | ast::ExprKind::List(items) => items.as_slice(),
        _ => std::slice::from_ref(e),
    };
    let mut axes = Vec::with_capacity(items.len());
    for item in items {
        match super::const_eval(item) {
            Some(v) if v.fract() == 0.0 && v.abs() < 1e6 => axes.push((v as i64, item.span)),
            _ => {
                cx.error(
                    Diagnostic::error("an axis must be a whole number")
                        .with_label(item.span, "not an axis")
                        .with_note("axes are written as a tuple: `transpose(x, (0, 2, 1))`"),
                );
                return None;
            }
        }
    }
    Some((axes, e.span))
}

/// Matches arguments (positional, then by name) to a signature and evaluates them.
fn bind(
    cx: &mut Checker,
    g: &mut Graph,
    name: &str,
    sig: &[(&str, Kind)],
    args: &[ast::Arg],
    span: Span,
) -> Option<Vec<Value>> {
    let mut slots: Vec<Option<&ast::Arg>> = vec![None; sig.len()];
    let mut next = 0;
    for a in args {
        let i = match &a.name {
            Some(n) => match sig.iter().position(|p| p.0 == n.name) {
                Some(i) => i,
                None => {
                    let known: Vec<_> = sig.iter().map(|p| format!("`{}`", p.0)).collect();
                    cx.error(
                        Diagnostic::error(format!("`{name}` has no argument `{}`", n.name))
                            .with_label(n.span, "unknown argument")
                            .with_note(format!("`{name}` takes {}", known.join(", "))),
                    );
                    return None;
                }
            },
            None => {
                if next >= sig.len() {
                    cx.error(
                        Diagnostic::error(format!(
                            "`{name}` takes at most {} argument(s)",
                            sig.len()
                        ))
                        .with_label(a.value.span, "extra argument"),
                    );
                    return None;
                }
                next += 1;
                next - 1
            }
        };
        if slots[i].is_some() {
            cx.error(
                Diagnostic::error(format!("argument `{}` given twice", sig[i].0))
                    .with_label(a.value.span, "again here"),
            );
            return None;
        }
        slots[i] = Some(a);
    }
    let mut values = Vec::with_capacity(sig.len());
    let mut ok = true;
    for ((pname, kind), slot) in sig.iter().zip(slots) {
        let value = match (kind, slot) {
            (Array, Some(a)) => cx
                .expr(g, &a.value)
                .map(|id| Value::Array(id, a.value.span)),
            (Num(_), Some(a)) => cx.const_value(&a.value).map(Value::Num),
            (Num(Some(d)), None) => Some(Value::Num(*d)),
            (Axis(_) | AxisRequired, Some(a)) => match super::const_eval(&a.value) {
                Some(v) if v.fract() == 0.0 && v.abs() < 1e6 => {
                    Some(Value::Axis(Some(v as i64), a.value.span))
                }
                _ => {
                    cx.error(
                        Diagnostic::error("an axis must be a whole number")
                            .with_label(a.value.span, "not an axis"),
                    );
                    None
                }
            },
            (Axis(d), None) => Some(Value::Axis(*d, span)),
            (Flag, Some(a)) => match &a.value.kind {
                ast::ExprKind::Name(n) if n == "true" || n == "false" => {
                    Some(Value::Flag(n == "true"))
                }
                _ => match super::const_eval(&a.value) {
                    Some(v) if v == 0.0 || v == 1.0 => Some(Value::Flag(v == 1.0)),
                    _ => {
                        let mut d =
                            Diagnostic::error(format!("`{pname}` must be `true` or `false`"))
                                .with_label(a.value.span, "here");
                        if let ast::ExprKind::Name(n) = &a.value.kind {
                            d.notes.extend(super::python_literal_note(n));
                        }
                        cx.error(d);
                        None
                    }
                },
            },
            (Flag, None) => Some(Value::Flag(false)),
            (ShapeSpec, Some(a)) => {
                let tuple = matches!(a.value.kind, ast::ExprKind::Tuple(_));
                shaping::shape_spec(cx, &a.value).map(|(d, s)| Value::Shape(d, s, tuple))
            }
            (Arrays, Some(a)) => match &a.value.kind {
                ast::ExprKind::List(items) if !items.is_empty() => {
                    let ids: Vec<Option<(NodeId, Span)>> = items
                        .iter()
                        .map(|e| cx.expr(g, e).map(|id| (id, e.span)))
                        .collect();
                    ids.into_iter()
                        .collect::<Option<Vec<_>>>()
                        .map(|ids| Value::Arrays(ids, a.value.span))
                }
                _ => {
                    cx.error(
                        Diagnostic::error(format!("`{name}` takes a list of arrays, `[a, b]`"))
                            .with_label(a.value.span, "not a list of arrays"),
                    );
                    None
                }
            },
            (Axes, Some(a)) => axes_tuple(cx, &a.value).map(|t| Value::Axes(Some(t))),
            (Axes, None) => Some(Value::Axes(None)),
            (Spec, Some(a)) => match &a.value.kind {
                ast::ExprKind::Str(text) => Some(Value::Spec(text.clone(), a.value.span)),
                _ => {
                    cx.error(
                        Diagnostic::error(format!("`{pname}` must be a string"))
                            .with_label(a.value.span, "not a string")
                            .with_note(format!("for example `{name}(\"ij,jk->ik\", a, b)`")),
                    );
                    None
                }
            },
            (OptionalArray, Some(a)) => cx
                .expr(g, &a.value)
                .map(|id| Value::Array(id, a.value.span)),
            (OptionalArray, None) => Some(Value::Absent),
            (Length(_), Some(a)) => {
                length(cx, g, &a.value).map(|l| Value::Length(Some((l, a.value.span))))
            }
            (Length(false), None) => Some(Value::Length(None)),
            (Dims, Some(a)) => dims(cx, g, &a.value).map(Value::Dims),
            (
                Array | Num(None) | AxisRequired | ShapeSpec | Arrays | Length(true) | Dims | Spec,
                None,
            ) => {
                cx.error(
                    Diagnostic::error(format!("`{name}` needs an argument `{pname}`"))
                        .with_label(span, "missing argument"),
                );
                None
            }
        };
        match value {
            Some(v) => values.push(v),
            None => ok = false,
        }
    }
    ok.then_some(values)
}

/// The parts of `split(x, parts, axis)`: `parts` equal parts, or parts of the sizes in a tuple,
/// each a slice of `x` along the axis.
pub(super) fn split(
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
