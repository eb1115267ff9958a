//! Convolutions and pooling: `conv1d`, `conv2d`, `max_pool1d/2d`, `avg_pool1d/2d`,
//! `global_avg_pool2d`, and the `windows`/`unwindows` primitives they are built from.
//!
//! Each is checked here and desugared into primitives: padding is an `unslice` (embedding
//! into zeros) per padded axis, the patches are one `windows` view `[N, C, K…, O…]`, and
//! - a convolution reshapes them to `[N, groups, C/groups·ΠK, ΠO]` (the copy is im2col) and
//!   multiplies by the kernel reshaped to `[groups, O/groups, C/groups·ΠK]`: one batched
//!   product, so the derivatives are products and an `unwindows`;
//! - pooling merges the window axes and reduces them (`max`, or `sum` times 1/ΠK).

use super::Checker;
use crate::diagnostics::{Diagnostic, Span};
use crate::ir::shape::window_count;
use crate::ir::{Dim, Graph, NodeId, Op, Shape};
use crate::syntax::ast;

/// Numbers as written for a per-axis argument: one number for every axis, or a tuple of one
/// per axis; checked by `per_axis` once the number of axes is known.
#[derive(Clone)]
pub(super) struct Sizes {
    pub values: Vec<f64>,
    pub span: Span,
}

/// A convolution's or pooling's padding as written.
#[derive(Clone)]
pub(super) enum Padding {
    /// Zeros on both sides of each spatial axis: one amount for every axis, or one per axis.
    Amounts(Sizes),
    /// `"same"`: the output as long as the input (stride 1), the odd element on the right as
    /// in PyTorch.
    Same(Span),
    /// `"valid"`: no padding.
    Valid,
}

/// Reads a whole number or a tuple of numbers.
pub(super) fn sizes(cx: &mut Checker, e: &ast::Expr, pname: &str) -> Option<Sizes> {
    let items: Vec<&ast::Expr> = match &e.kind {
        ast::ExprKind::Tuple(items) => items.iter().collect(),
        _ => vec![e],
    };
    let values: Option<Vec<f64>> = items.iter().map(|i| super::const_eval(i)).collect();
    match values {
        Some(values) => Some(Sizes {
            values,
            span: e.span,
        }),
        None => {
            cx.error(
                Diagnostic::error(format!(
                    "`{pname}` must be a whole number or a tuple of them, such as `(2, 2)`"
                ))
                .with_label(e.span, "not a constant number"),
            );
            None
        }
    }
}

/// Reads a padding: a number, a tuple, `"same"` or `"valid"`.
pub(super) fn padding(cx: &mut Checker, e: &ast::Expr) -> Option<Padding> {
    match &e.kind {
        ast::ExprKind::Str(s) if s == "same" => Some(Padding::Same(e.span)),
        ast::ExprKind::Str(s) if s == "valid" => Some(Padding::Valid),
        ast::ExprKind::Str(s) => {
            cx.error(
                Diagnostic::error(format!("unknown padding \"{s}\""))
                    .with_label(e.span, "not a padding")
                    .with_note("padding is a whole number, a tuple such as `(1, 2)`, \"same\" or \"valid\""),
            );
            None
        }
        _ => sizes(cx, e, "padding").map(Padding::Amounts),
    }
}

/// One whole number per spatial axis, each at least `min`: a single number stands for every
/// axis.
fn per_axis(
    cx: &mut Checker,
    name: &str,
    pname: &str,
    s: &Sizes,
    axes: usize,
    min: u64,
) -> Option<Vec<u64>> {
    if s.values.len() != 1 && s.values.len() != axes {
        cx.error(
            Diagnostic::error(format!(
                "`{name}` takes one `{pname}` or {axes} of them, one per spatial axis"
            ))
            .with_label(s.span, format!("{} numbers", s.values.len())),
        );
        return None;
    }
    let bad = s
        .values
        .iter()
        .find(|&&v| !(v.fract() == 0.0 && v >= min as f64 && v < 1e9));
    if let Some(v) = bad {
        cx.error(
            Diagnostic::error(format!(
                "`{pname}` of `{name}` must be a whole number ≥ {min}, found {v}"
            ))
            .with_label(s.span, "here"),
        );
        return None;
    }
    let each: Vec<u64> = s.values.iter().map(|&v| v as u64).collect();
    Some(if each.len() == 1 {
        vec![each[0]; axes]
    } else {
        each
    })
}

/// The fixed lengths of the last `axes` axes of `x`, which must have rank `rank`.
fn spatial_lengths(
    cx: &mut Checker,
    g: &Graph,
    name: &str,
    (x, xs): (NodeId, Span),
    rank: usize,
    layout: &str,
) -> Option<Vec<u64>> {
    let shape = g.shape(x);
    if shape.rank() != rank {
        cx.error(
            Diagnostic::error(format!("`{name}` needs an input of rank {rank}, {layout}"))
                .with_label(xs, format!("has shape {}", g.shape_text(shape))),
        );
        return None;
    }
    let fixed: Option<Vec<u64>> = shape.0[1..]
        .iter()
        .map(|d| match d {
            Dim::Fixed(k) => Some(*k),
            Dim::Sym(_) => None,
        })
        .collect();
    let Some(fixed) = fixed else {
        cx.error(
            Diagnostic::error(format!(
                "`{name}` needs the channel and spatial axes of its input to have fixed lengths"
            ))
            .with_label(xs, format!("has shape {}", g.shape_text(shape))),
        );
        return None;
    };
    Some(fixed[1..].to_vec())
}

/// The zeros before and after each spatial axis.
struct Pads(Vec<(u64, u64)>);

/// Resolves a padding against the kernel's extent (`dilation·(k − 1) + 1`) of each axis.
fn pads(
    cx: &mut Checker,
    name: &str,
    padding: &Padding,
    extents: &[u64],
    stride: &[u64],
    stride_span: Span,
) -> Option<Pads> {
    match padding {
        Padding::Valid => Some(Pads(vec![(0, 0); extents.len()])),
        Padding::Same(span) => {
            if stride.iter().any(|&s| s != 1) {
                cx.error(
                    Diagnostic::error(format!("padding \"same\" needs a stride of 1 in `{name}`"))
                        .with_label(*span, "padding \"same\"")
                        .with_label(stride_span, "stride")
                        .with_note("with a larger stride, give the padding as numbers"),
                );
                return None;
            }
            Some(Pads(
                extents
                    .iter()
                    .map(|&e| ((e - 1) / 2, e - 1 - (e - 1) / 2))
                    .collect(),
            ))
        }
        Padding::Amounts(s) => {
            let each = per_axis(cx, name, "padding", s, extents.len(), 0)?;
            Some(Pads(each.into_iter().map(|p| (p, p)).collect()))
        }
    }
}

/// `x` embedded into zeros of its spatial axes (the last `pads.len()`), padded as `pads` says.
fn embed(g: &mut Graph, mut x: NodeId, pads: &Pads) -> NodeId {
    let lead = g.shape(x).rank() - pads.0.len();
    for (i, &(before, after)) in pads.0.iter().enumerate() {
        if before + after == 0 {
            continue;
        }
        let axis = (lead + i) as u32;
        let Dim::Fixed(len) = g.shape(x).0[lead + i] else {
            unreachable!("spatial axes are fixed")
        };
        let op = Op::Unslice {
            axis,
            start: before,
            step: 1,
            size: len + before + after,
        };
        x = g.build(op, &[x]);
    }
    x
}

/// The number of windows along each axis, or an error that names the axis.
#[allow(clippy::too_many_arguments)]
fn output_lengths(
    cx: &mut Checker,
    name: &str,
    lengths: &[u64],
    pads: &Pads,
    kernel: &[u64],
    stride: &[u64],
    dilation: &[u64],
    (xs, ks): (Span, Span),
) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for i in 0..lengths.len() {
        let padded = lengths[i] + pads.0[i].0 + pads.0[i].1;
        let Some(count) = window_count(padded, kernel[i], stride[i], dilation[i]) else {
            let extent = dilation[i] * (kernel[i] - 1) + 1;
            cx.error(
                Diagnostic::error(format!(
                    "`{name}` has no output along spatial axis {i}: a kernel spanning {extent} does not fit {padded} elements"
                ))
                .with_label(xs, format!("spatial length {} (padded: {padded})", lengths[i]))
                .with_label(ks, format!("kernel length {}", kernel[i])),
            );
            return None;
        };
        out.push(count);
    }
    Some(out)
}

/// `conv1d(x, w, …)` and `conv2d(x, w, …)`: cross-correlation as PyTorch's, with `x` of shape
/// `[N, C, S…]` and `w` of shape `[O, C/groups, K…]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv(
    cx: &mut Checker,
    g: &mut Graph,
    name: &str,
    axes: usize,
    (x, xs): (NodeId, Span),
    (w, ws): (NodeId, Span),
    stride: &Sizes,
    padding: &Padding,
    dilation: &Sizes,
    groups: &Sizes,
    span: Span,
) -> Option<NodeId> {
    let layout = if axes == 1 {
        "[N, C, L]"
    } else {
        "[N, C, H, W]"
    };
    let lengths = spatial_lengths(cx, g, name, (x, xs), axes + 2, layout)?;
    let wshape = g.shape(w).clone();
    let kernel_layout = if axes == 1 {
        "[out, in/groups, k]"
    } else {
        "[out, in/groups, kh, kw]"
    };
    let wfixed = wshape.as_fixed().filter(|d| d.len() == axes + 2);
    let Some(wdims) = wfixed.map(|d| d.iter().map(|&k| k as u64).collect::<Vec<u64>>()) else {
        cx.error(
            Diagnostic::error(format!(
                "`{name}` needs a kernel of rank {} with fixed lengths, {kernel_layout}",
                axes + 2
            ))
            .with_label(ws, format!("has shape {}", g.shape_text(&wshape))),
        );
        return None;
    };
    let Dim::Fixed(channels) = g.shape(x).0[1] else {
        unreachable!("checked fixed")
    };
    let (outs, per_group, kernel) = (wdims[0], wdims[1], wdims[2..].to_vec());
    let groups = per_axis(cx, name, "groups", groups, 1, 1)?[0];
    if kernel.contains(&0) || outs == 0 || per_group == 0 {
        cx.error(
            Diagnostic::error(format!("`{name}` needs a kernel with no empty axis"))
                .with_label(ws, format!("has shape {}", g.shape_text(&wshape))),
        );
        return None;
    }
    if channels % groups != 0 || outs % groups != 0 || channels / groups != per_group {
        let why = if channels % groups != 0 || outs % groups != 0 {
            format!(
                "{groups} groups must divide both the input's {channels} channels and the kernel's {outs} outputs"
            )
        } else {
            format!(
                "the kernel's axis 1 ({per_group}) must be the input's channels divided by the groups ({channels}/{groups} = {})",
                channels / groups
            )
        };
        cx.error(
            Diagnostic::error(format!("channel mismatch in `{name}`: {why}"))
                .with_label(xs, format!("has shape {}", g.shape_text(g.shape(x))))
                .with_label(ws, format!("has shape {}", g.shape_text(&wshape))),
        );
        return None;
    }
    let stride_v = per_axis(cx, name, "stride", stride, axes, 1)?;
    let dilation = per_axis(cx, name, "dilation", dilation, axes, 1)?;
    let extents: Vec<u64> = (0..axes)
        .map(|i| dilation[i] * (kernel[i] - 1) + 1)
        .collect();
    let pads = pads(cx, name, padding, &extents, &stride_v, stride.span)?;
    if let Some(i) = (0..axes).find(|&i| pads.0[i].0.max(pads.0[i].1) >= extents[i]) {
        cx.error(
            Diagnostic::error(format!(
                "padding larger than the kernel in `{name}`: {} zeros on spatial axis {i}, where the kernel spans {}",
                pads.0[i].0.max(pads.0[i].1),
                extents[i]
            ))
            .with_label(padding_span(padding, span), "padding")
            .with_label(ws, format!("has shape {}", g.shape_text(&wshape)))
            .with_note("some outputs would read only padding"),
        );
        return None;
    }
    let out = output_lengths(
        cx,
        name,
        &lengths,
        &pads,
        &kernel,
        &stride_v,
        &dilation,
        (xs, ws),
    )?;
    let padded = embed(g, x, &pads);
    let patches = g.build(
        Op::Windows {
            kernel: kernel.clone(),
            stride: stride_v,
            dilation,
        },
        &[padded],
    );
    g.set_span(patches, span);
    // im2col: [N, groups, C/groups·ΠK, ΠO], one column per output place.
    let n = g.shape(x).0[0];
    let taps: u64 = per_group * kernel.iter().product::<u64>();
    let places: u64 = out.iter().product();
    let columns = g.build(
        Op::Reshape(Shape(vec![
            n,
            Dim::Fixed(groups),
            Dim::Fixed(taps),
            Dim::Fixed(places),
        ])),
        &[patches],
    );
    let rows = g.build(
        Op::Reshape(Shape(vec![
            Dim::Fixed(groups),
            Dim::Fixed(outs / groups),
            Dim::Fixed(taps),
        ])),
        &[w],
    );
    let product = g.build(Op::MatMul, &[rows, columns]);
    g.set_span(product, span);
    let mut shape = vec![n, Dim::Fixed(outs)];
    shape.extend(out.iter().map(|&o| Dim::Fixed(o)));
    Some(g.build(Op::Reshape(Shape(shape)), &[product]))
}

fn padding_span(padding: &Padding, call: Span) -> Span {
    match padding {
        Padding::Amounts(s) => s.span,
        Padding::Same(span) => *span,
        Padding::Valid => call,
    }
}

/// Which reduction a pooling takes over each window.
#[derive(Clone, Copy)]
pub(super) enum Pool {
    Max,
    Average,
}

/// `max_pool2d(x, kernel, stride, padding)` and friends: `stride` defaults to the kernel
/// (windows side by side). Max pooling pads with −∞ (a pad is never the maximum); average
/// pooling pads with zeros and divides by the whole window (PyTorch's `count_include_pad`).
#[allow(clippy::too_many_arguments)]
pub(super) fn pool(
    cx: &mut Checker,
    g: &mut Graph,
    name: &str,
    axes: usize,
    pool: Pool,
    (x, xs): (NodeId, Span),
    kernel: &Sizes,
    stride: Option<&Sizes>,
    padding: &Padding,
    span: Span,
) -> Option<NodeId> {
    let layout = if axes == 1 {
        "[N, C, L]"
    } else {
        "[N, C, H, W]"
    };
    let lengths = spatial_lengths(cx, g, name, (x, xs), axes + 2, layout)?;
    let k = per_axis(cx, name, "kernel", kernel, axes, 1)?;
    let stride_v = match stride {
        Some(s) => per_axis(cx, name, "stride", s, axes, 1)?,
        None => k.clone(),
    };
    let stride_span = stride.map_or(span, |s| s.span);
    let pads = pads(cx, name, padding, &k, &stride_v, stride_span)?;
    // PyTorch's rule: a window that held only padding would have no maximum.
    if let Some(i) = (0..axes).find(|&i| pads.0[i].0.max(pads.0[i].1) > k[i] / 2) {
        cx.error(
            Diagnostic::error(format!(
                "padding larger than the kernel in `{name}`: {} on spatial axis {i}, at most half the kernel ({}) is allowed",
                pads.0[i].0.max(pads.0[i].1),
                k[i] / 2
            ))
            .with_label(padding_span(padding, span), "padding")
            .with_label(kernel.span, format!("kernel length {}", k[i])),
        );
        return None;
    }
    let ones = vec![1; axes];
    let out = output_lengths(
        cx,
        name,
        &lengths,
        &pads,
        &k,
        &stride_v,
        &ones,
        (xs, kernel.span),
    )?;
    let mut padded = embed(g, x, &pads);
    if matches!(pool, Pool::Max) && padded != x {
        let one = g.constant(1.0);
        let ones = g.build(Op::Expand(g.shape(x).clone()), &[one]);
        let inside = embed(g, ones, &pads);
        let low = g.constant(f64::NEG_INFINITY);
        padded = g.build(Op::Select, &[inside, padded, low]);
    }
    let patches = g.build(
        Op::Windows {
            kernel: k.clone(),
            stride: stride_v,
            dilation: ones,
        },
        &[padded],
    );
    g.set_span(patches, span);
    // The window axes merged into one, so that max pooling's ties share the derivative among
    // the whole window (two reductions in turn would share it unevenly).
    let lead = g.shape(x).0[..2].to_vec();
    let mut merged = lead.clone();
    merged.push(Dim::Fixed(k.iter().product()));
    merged.extend(out.iter().map(|&o| Dim::Fixed(o)));
    let flat = if axes == 1 {
        patches
    } else {
        g.build(Op::Reshape(Shape(merged)), &[patches])
    };
    match pool {
        Pool::Max => Some(g.build(Op::ReduceMax { axis: Some(2) }, &[flat])),
        Pool::Average => {
            let sum = g.build(Op::Sum { axis: Some(2) }, &[flat]);
            let scale = g.constant(1.0 / k.iter().product::<u64>() as f64);
            Some(g.build(Op::Mul, &[sum, scale]))
        }
    }
}

/// `global_avg_pool2d(x)`: the mean over the spatial axes of `[N, C, H, W]`, giving `[N, C]`.
pub(super) fn global_avg_pool(
    cx: &mut Checker,
    g: &mut Graph,
    name: &str,
    (x, xs): (NodeId, Span),
) -> Option<NodeId> {
    let lengths = spatial_lengths(cx, g, name, (x, xs), 4, "[N, C, H, W]")?;
    let rows = g.build(Op::Sum { axis: Some(3) }, &[x]);
    let sum = g.build(Op::Sum { axis: Some(2) }, &[rows]);
    let count: u64 = lengths.iter().product();
    let scale = g.constant(1.0 / count as f64);
    Some(g.build(Op::Mul, &[sum, scale]))
}

/// `windows(x, kernel, stride, dilation)`: the `Windows` primitive over the last axes, as many
/// as the kernel has lengths.
pub(super) fn windows(
    cx: &mut Checker,
    g: &mut Graph,
    (x, xs): (NodeId, Span),
    kernel: &Sizes,
    stride: &Sizes,
    dilation: &Sizes,
    span: Span,
) -> Option<NodeId> {
    let axes = kernel.values.len();
    let kernel = per_axis(cx, "windows", "kernel", kernel, axes, 1)?;
    let stride = per_axis(cx, "windows", "stride", stride, axes, 1)?;
    let dilation = per_axis(cx, "windows", "dilation", dilation, axes, 1)?;
    let op = Op::Windows {
        kernel,
        stride,
        dilation,
    };
    cx.node(g, op, &[x], &[xs], "windows", span)
}

/// `unwindows(p, size, kernel, stride, dilation)`: the adjoint of `windows`, as `adjoint grad`
/// prints it.
#[allow(clippy::too_many_arguments)]
pub(super) fn unwindows(
    cx: &mut Checker,
    g: &mut Graph,
    (x, xs): (NodeId, Span),
    size: &Sizes,
    kernel: &Sizes,
    stride: &Sizes,
    dilation: &Sizes,
    span: Span,
) -> Option<NodeId> {
    let axes = size.values.len();
    let size = per_axis(cx, "unwindows", "size", size, axes, 1)?;
    let kernel = per_axis(cx, "unwindows", "kernel", kernel, axes, 1)?;
    let stride = per_axis(cx, "unwindows", "stride", stride, axes, 1)?;
    let dilation = per_axis(cx, "unwindows", "dilation", dilation, axes, 1)?;
    let op = Op::Unwindows {
        kernel,
        stride,
        dilation,
        size,
    };
    cx.node(g, op, &[x], &[xs], "unwindows", span)
}
