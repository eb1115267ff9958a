//! The library of built-in functions: each call is checked against its signature and desugared
//! into IR primitives.
//!
//! Non-smooth points (documented in docs/language.md): relu, leaky_relu, elu, abs, clamp,
//! maximum and minimum take the derivative of the branch chosen by the forward value, with ties
//! and zero going to the left-hand or "off" branch: relu'(0) = 0, abs'(0) = 0, maximum(a, b)
//! passes the derivative to `a` on ties; max/min reductions share it equally among ties.

use super::{Checker, conv, reciprocal_count, shaping};
use crate::diagnostics::{Diagnostic, Span};
use crate::ir::{Dim, Graph, NodeId, Op, Shape};
use crate::syntax::ast;

mod args;
mod batch_norm;
mod composites;
mod group_norm;

pub(super) use args::normalize_axis;
use args::*;
use composites::*;
pub(super) use composites::{gather, split};

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
    /// A whole number or a tuple of them, one per spatial axis (`stride`, `kernel`), with a
    /// default when optional.
    Sizes(Option<f64>),
    /// As `Sizes`, left out when absent (pooling's stride: the kernel).
    OptionalSizes,
    /// A convolution's or pooling's padding: a number, a tuple, `"same"` or `"valid"`.
    Padding,
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
const CONV: &[(&str, Kind)] = &[
    ("x", Array),
    ("w", Array),
    ("stride", Sizes(Some(1.0))),
    ("padding", Padding),
    ("dilation", Sizes(Some(1.0))),
    ("groups", Sizes(Some(1.0))),
];
const POOL: &[(&str, Kind)] = &[
    ("x", Array),
    ("kernel", Sizes(None)),
    ("stride", OptionalSizes),
    ("padding", Padding),
];

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
    /// `conv1d` (1 spatial axis) and `conv2d` (2).
    Conv(usize),
    Pool(usize, conv::Pool),
    GlobalAvgPool,
    Windows,
    Unwindows,
    Dropout,
    BatchNorm,
    GroupNorm,
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
    builtin("erfc", X, Lowering::Primitive(Op::Erfc)),
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
    builtin("conv1d", CONV, Lowering::Conv(1)),
    builtin("conv2d", CONV, Lowering::Conv(2)),
    builtin("max_pool1d", POOL, Lowering::Pool(1, conv::Pool::Max)),
    builtin("max_pool2d", POOL, Lowering::Pool(2, conv::Pool::Max)),
    builtin("avg_pool1d", POOL, Lowering::Pool(1, conv::Pool::Average)),
    builtin("avg_pool2d", POOL, Lowering::Pool(2, conv::Pool::Average)),
    builtin("global_avg_pool2d", X, Lowering::GlobalAvgPool),
    builtin(
        "windows",
        &[
            ("x", Array),
            ("kernel", Sizes(None)),
            ("stride", Sizes(Some(1.0))),
            ("dilation", Sizes(Some(1.0))),
        ],
        Lowering::Windows,
    ),
    builtin(
        "unwindows",
        &[
            ("x", Array),
            ("size", Sizes(None)),
            ("kernel", Sizes(None)),
            ("stride", Sizes(Some(1.0))),
            ("dilation", Sizes(Some(1.0))),
        ],
        Lowering::Unwindows,
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
    builtin(
        "batch_norm",
        &[
            ("x", Array),
            ("gain", Array),
            ("bias", Array),
            ("eps", Num(Some(1e-5))),
            ("momentum", Num(Some(0.1))),
        ],
        Lowering::BatchNorm,
    ),
    builtin(
        "group_norm",
        &[
            ("x", Array),
            ("groups", Length(true)),
            ("gain", Array),
            ("bias", Array),
            ("eps", Num(Some(1e-5))),
        ],
        Lowering::GroupNorm,
    ),
];

fn lookup(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

pub fn is_builtin(name: &str) -> bool {
    lookup(name).is_some()
}

/// Whether `name` is a built-in of one argument applied element by element (`exp`, `tanh`, …).
pub(super) fn is_elementwise_unary(name: &str) -> bool {
    matches!(lookup(name), Some(b) if matches!(b.lowering, Lowering::Primitive(_)) && b.params == X)
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
        Lowering::Conv(axes) => conv::conv(
            cx,
            g,
            name,
            *axes,
            v[0].array(),
            v[1].array(),
            v[2].sizes(),
            v[3].padding(),
            v[4].sizes(),
            v[5].sizes(),
            span,
        ),
        Lowering::Pool(axes, pool) => {
            let stride = match &v[2] {
                Value::Sizes(s) => Some(s),
                _ => None,
            };
            let (kernel, padding) = (v[1].sizes(), v[3].padding());
            conv::pool(
                cx,
                g,
                name,
                *axes,
                *pool,
                v[0].array(),
                kernel,
                stride,
                padding,
                span,
            )
        }
        Lowering::GlobalAvgPool => conv::global_avg_pool(cx, g, name, v[0].array()),
        Lowering::Windows => {
            let (kernel, stride, dilation) = (v[1].sizes(), v[2].sizes(), v[3].sizes());
            conv::windows(cx, g, v[0].array(), kernel, stride, dilation, span)
        }
        Lowering::Unwindows => {
            let (size, kernel) = (v[1].sizes(), v[2].sizes());
            let (stride, dilation) = (v[3].sizes(), v[4].sizes());
            conv::unwindows(cx, g, v[0].array(), size, kernel, stride, dilation, span)
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
        Lowering::BatchNorm => batch_norm::batch_norm(
            cx,
            g,
            batch_norm::BatchNorm {
                x: v[0].array(),
                gain: v[1].array(),
                bias: v[2].array(),
                eps: v[3].num(),
                momentum: v[4].num(),
                span,
            },
        ),
        Lowering::GroupNorm => {
            let Value::Length(Some(groups)) = v[1] else {
                unreachable!("a required length")
            };
            group_norm::group_norm(
                cx,
                g,
                group_norm::GroupNorm {
                    x: v[0].array(),
                    groups,
                    gain: v[2].array(),
                    bias: v[3].array(),
                    eps: v[4].num(),
                    span,
                },
            )
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
