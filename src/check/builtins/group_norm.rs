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
    let normed = composites::standardized(g, rows, call.eps, Some(2), Dim::Fixed(per_group), &kept);
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
    let operands = [("gain", call.gain), ("bias", call.bias)];
    composites::checked_per_channel(cx, g, "group_norm", &features, call.x, operands)?;
    if call.eps.is_nan() || call.eps < 0.0 {
        cx.error(
            Diagnostic::error(format!("`group_norm` needs `eps` ≥ 0, found {}", call.eps))
                .with_label(call.span, "here"),
        );
        return None;
    }
    Some(Grouping { channels, groups })
}
