//! `group_norm(x, groups, gain, bias, eps)`: normalization per sample and group of channels,
//! PyTorch's `GroupNorm`. Written in primitives (a reshape to `[N, G, C/G·S]`, the mean and
//! biased variance over the last axis, a reshape back and a per-channel gain and bias), so
//! its derivative, native code and both exports are those of the primitives.

use super::*;
use args::Length;

/// What a `group_norm` call was given, its operands with their spans.
pub(super) struct GroupNorm {
    pub x: (NodeId, Span),
    pub groups: (Length, Span),
    pub gain: (NodeId, Span),
    pub bias: (NodeId, Span),
    pub eps: f64,
    pub span: Span,
}

/// Lowers one call; `None` after reporting a located error.
pub(super) fn group_norm(cx: &mut Checker, g: &mut Graph, call: GroupNorm) -> Option<NodeId> {
    let Grouping { channels, groups } = checked_grouping(cx, g, &call)?;
    let (x, _) = call.x;
    let shape = g.shape(x).clone();
    let rank = shape.rank();
    // Every axis after the batch axis is fixed (checked), so each group's elements are known.
    let spatial: u64 = shape.0[2..].iter().map(fixed).product();
    let per_group = channels / groups * spatial;
    let grouped = Shape(vec![shape.0[0], Dim::Fixed(groups), Dim::Fixed(per_group)]);
    let kept = Shape(vec![shape.0[0], Dim::Fixed(groups), Dim::Fixed(1)]);
    let rows = g.build(Op::Reshape(grouped), &[x]);
    let group_mean = |g: &mut Graph, v: NodeId| {
        let s = g.build(Op::Sum { axis: Some(2) }, &[v]);
        let scale = reciprocal_count(g, &[Dim::Fixed(per_group)]);
        let m = g.build(Op::Mul, &[s, scale]);
        g.build(Op::Reshape(kept.clone()), &[m])
    };
    let mean = group_mean(g, rows);
    let centered = g.build(Op::Sub, &[rows, mean]);
    let two = g.constant(2.0);
    let squares = g.build(Op::Pow, &[centered, two]);
    let variance = group_mean(g, squares);
    let eps = g.constant(call.eps);
    let shifted = g.build(Op::Add, &[variance, eps]);
    let root = g.build(Op::Sqrt, &[shifted]);
    let one = g.constant(1.0);
    let inv = g.build(Op::Div, &[one, root]);
    let normed = g.build(Op::Mul, &[centered, inv]);
    let normed = g.build(Op::Reshape(shape), &[normed]);
    // Gain and bias `[C]` as `[1, C, 1, …]`, broadcast along the batch and spatial axes.
    let mut per_channel = vec![Dim::Fixed(1); rank];
    per_channel[1] = Dim::Fixed(channels);
    let per_channel = Shape(per_channel);
    let gain = g.build(Op::Reshape(per_channel.clone()), &[call.gain.0]);
    let scaled = g.build(Op::Mul, &[normed, gain]);
    let bias = g.build(Op::Reshape(per_channel), &[call.bias.0]);
    let out = g.build(Op::Add, &[scaled, bias]);
    g.set_span(out, call.span);
    Some(out)
}

/// The channels of `x` and the number of groups they are split into.
struct Grouping {
    channels: u64,
    groups: u64,
}

fn fixed(d: &Dim) -> u64 {
    match d {
        Dim::Fixed(k) => *k,
        Dim::Sym(_) => unreachable!("checked fixed"),
    }
}

/// Checks `x` (`[N, C, …]`, every axis after N fixed), the group count (a whole number ≥ 1
/// that divides C), `gain` and `bias` (`[C]`) and `eps` (≥ 0).
fn checked_grouping(cx: &mut Checker, g: &Graph, call: &GroupNorm) -> Option<Grouping> {
    let (x, xs) = call.x;
    let shape = g.shape(x).clone();
    let shape_label = format!("has shape {}", g.shape_text(&shape));
    if shape.rank() < 2 {
        cx.error(
            Diagnostic::error(
                "`group_norm` normalizes a batch `[N, C, …]` by groups of channels (axis 1)",
            )
            .with_label(xs, shape_label),
        );
        return None;
    }
    if shape.0[1..].iter().any(|d| matches!(d, Dim::Sym(_))) {
        cx.error(
            Diagnostic::error(
                "`group_norm` needs a fixed number of channels and fixed spatial axes (every axis after the first)",
            )
            .with_label(xs, shape_label),
        );
        return None;
    }
    let channels = fixed(&shape.0[1]);
    let (groups, gspan) = call.groups;
    let groups = match groups {
        Length::Whole(k) if k >= 1 => k as u64,
        Length::Whole(k) => {
            cx.error(
                Diagnostic::error(format!("`group_norm` needs at least 1 group, found {k}"))
                    .with_label(gspan, "here"),
            );
            return None;
        }
        Length::Sym(_) => {
            cx.error(
                Diagnostic::error("`group_norm` needs a whole number of groups")
                    .with_label(gspan, "a dimension's size is known only at run time"),
            );
            return None;
        }
    };
    if !channels.is_multiple_of(groups) {
        cx.error(
            Diagnostic::error(format!(
                "`group_norm` splits the {channels} channels of `x` into {groups} groups, which does not divide them"
            ))
            .with_label(gspan, format!("{groups} groups"))
            .with_label(xs, shape_label)
            .with_note("the number of channels (axis 1) must be a multiple of `groups`"),
        );
        return None;
    }
    let features = Shape(vec![Dim::Fixed(channels)]);
    for (what, (id, s)) in [("gain", call.gain), ("bias", call.bias)] {
        if g.shape(id) != &features {
            cx.error(
                Diagnostic::error(format!(
                    "`group_norm` needs `{what}` with one element per channel of `x`, {}",
                    g.shape_text(&features)
                ))
                .with_label(s, format!("has shape {}", g.shape_text(g.shape(id))))
                .with_label(xs, shape_label.clone()),
            );
            return None;
        }
    }
    if call.eps.is_nan() || call.eps < 0.0 {
        cx.error(
            Diagnostic::error(format!("`group_norm` needs `eps` ≥ 0, found {}", call.eps))
                .with_label(call.span, "here"),
        );
        return None;
    }
    Some(Grouping { channels, groups })
}
