//! `batch_norm(x, gain, bias, eps, momentum)`: normalization per channel over the batch (and
//! spatial) axes, whose running statistics are model state (`Graph::states`).
//!
//! A training graph normalizes with the batch's own mean and biased variance (the derivative
//! flows through both) and outputs each running statistic's next value, PyTorch's
//! `(1 − momentum)·running + momentum·batch` with the unbiased variance; the step stores them
//! (`Trainer::store_model_state`, and the fused loop itself). An evaluation graph normalizes
//! with the running statistics, read as `Op::State` leaves.

use super::*;
use crate::check::Mode;
use crate::ir::StateInfo;

/// What a `batch_norm` call was given, its operands with their spans.
pub(super) struct BatchNorm {
    pub x: (NodeId, Span),
    pub gain: (NodeId, Span),
    pub bias: (NodeId, Span),
    pub eps: f64,
    pub momentum: f64,
    pub span: Span,
}

/// Lowers one call; `None` after reporting a located error.
pub(super) fn batch_norm(cx: &mut Checker, g: &mut Graph, call: BatchNorm) -> Option<NodeId> {
    let channels = checked_channels(cx, g, &call)?;
    let (x, _) = call.x;
    let shape = g.shape(x).clone();
    // Every axis but the channels' is reduced: the batch axis, and H and W of `[N, C, H, W]`.
    let axes: Vec<u32> = (0..shape.rank() as u32).filter(|&a| a != 1).collect();
    let counted: Vec<Dim> = axes.iter().map(|&a| shape.0[a as usize]).collect();
    let per_channel = Shape(vec![channels]);
    let mut kept = vec![Dim::Fixed(1); shape.rank()];
    kept[1] = channels;
    let kept = Shape(kept);
    let (mean_state, var_state) = declare_states(g, &per_channel);
    let spread = |g: &mut Graph, v: NodeId| g.build(Op::Reshape(kept.clone()), &[v]);
    let (centered, variance) = if cx.modes.mode == Mode::Training {
        let channel_sum = |g: &mut Graph, v: NodeId| {
            axes.iter()
                .rev()
                .fold(v, |s, &a| g.build(Op::Sum { axis: Some(a) }, &[s]))
        };
        let inv_count = reciprocal_count(g, &counted);
        let sum = channel_sum(g, x);
        let mean = g.build(Op::Mul, &[sum, inv_count]);
        let spread_mean = spread(g, mean);
        let centered = g.build(Op::Sub, &[x, spread_mean]);
        let two = g.constant(2.0);
        let squares = g.build(Op::Pow, &[centered, two]);
        let squares = channel_sum(g, squares);
        let variance = g.build(Op::Mul, &[squares, inv_count]);
        // The running variance takes the unbiased estimate, squares / (count − 1), as PyTorch.
        let count = element_count(g, &counted);
        let one = g.constant(1.0);
        let dof = g.build(Op::Sub, &[count, one]);
        let unbiased = g.build(Op::Div, &[squares, dof]);
        for (state, batch) in [(mean_state, mean), (var_state, unbiased)] {
            let next = running_update(g, state, batch, call.momentum, call.span);
            g.set_span(next, call.span);
            let name = format!("state.{}", g.states[state as usize].name);
            cx.modes.state_updates.push((name, next));
        }
        (centered, variance)
    } else {
        let [mean, variance] = [mean_state, var_state].map(|k| {
            let running = g.build(Op::State(k), &[]);
            g.set_span(running, call.span);
            running
        });
        let spread_mean = spread(g, mean);
        let centered = g.build(Op::Sub, &[x, spread_mean]);
        (centered, variance)
    };
    let eps = g.constant(call.eps);
    let shifted = g.build(Op::Add, &[variance, eps]);
    let root = g.build(Op::Sqrt, &[shifted]);
    let one = g.constant(1.0);
    let inv = g.build(Op::Div, &[one, root]);
    let inv = spread(g, inv);
    let normed = g.build(Op::Mul, &[centered, inv]);
    let gain = spread(g, call.gain.0);
    let scaled = g.build(Op::Mul, &[normed, gain]);
    let bias = spread(g, call.bias.0);
    let out = g.build(Op::Add, &[scaled, bias]);
    g.set_span(out, call.span);
    Some(out)
}

/// The number of channels of `x` (`[N, C]` or `[N, C, H, W]`, C fixed), after checking the
/// other arguments against it.
fn checked_channels(cx: &mut Checker, g: &Graph, call: &BatchNorm) -> Option<Dim> {
    let (x, xs) = call.x;
    let shape = g.shape(x).clone();
    let channels = match shape.0.as_slice() {
        [_, c] | [_, c, _, _] => *c,
        _ => {
            cx.error(
                Diagnostic::error(
                    "`batch_norm` normalizes a batch `[N, C]` or `[N, C, H, W]` per channel",
                )
                .with_label(xs, format!("has shape {}", g.shape_text(&shape))),
            );
            return None;
        }
    };
    if !matches!(channels, Dim::Fixed(_)) {
        cx.error(
            Diagnostic::error("`batch_norm` needs a fixed number of channels (axis 1)")
                .with_label(xs, format!("has shape {}", g.shape_text(&shape))),
        );
        return None;
    }
    let features = Shape(vec![channels]);
    let operands = [("gain", call.gain), ("bias", call.bias)];
    composites::checked_per_channel(cx, g, "batch_norm", &features, call.x, operands)?;
    if call.eps.is_nan() || call.eps < 0.0 {
        cx.error(
            Diagnostic::error(format!("`batch_norm` needs `eps` ≥ 0, found {}", call.eps))
                .with_label(call.span, "here"),
        );
        return None;
    }
    if !(0.0..=1.0).contains(&call.momentum) {
        cx.error(
            Diagnostic::error(format!(
                "`batch_norm` needs 0 ≤ momentum ≤ 1, found {}",
                call.momentum
            ))
            .with_label(call.span, "here")
            .with_note("momentum is the weight of each batch's statistics in the running ones"),
        );
        return None;
    }
    Some(channels)
}

/// Declares the call's running mean (initially 0) and variance (initially 1), named by the
/// call's place among the model's `batch_norm` calls; returns their state numbers.
fn declare_states(g: &mut Graph, shape: &Shape) -> (u32, u32) {
    let call = g.states.len() / 2;
    let first = g.states.len() as u32;
    for (stat, initial) in [("running_mean", 0.0), ("running_var", 1.0)] {
        g.states.push(StateInfo {
            name: format!("batch_norm{call}.{stat}"),
            shape: shape.clone(),
            initial,
        });
    }
    (first, first + 1)
}

/// The product of the reduced axes' lengths, as a scalar node.
fn element_count(g: &mut Graph, dims: &[Dim]) -> NodeId {
    let fixed: u64 = dims
        .iter()
        .map(|d| if let Dim::Fixed(k) = d { *k } else { 1 })
        .product();
    let mut count = g.constant(fixed as f64);
    for d in dims {
        if let Dim::Sym(s) = d {
            let size = g.build(Op::DimSize(*s), &[]);
            count = g.build(Op::Mul, &[count, size]);
        }
    }
    count
}

/// `(1 − momentum)·running + momentum·batch`.
fn running_update(g: &mut Graph, state: u32, batch: NodeId, momentum: f64, span: Span) -> NodeId {
    let running = g.build(Op::State(state), &[]);
    g.set_span(running, span);
    let keep = g.constant(1.0 - momentum);
    let kept = g.build(Op::Mul, &[keep, running]);
    let weight = g.constant(momentum);
    let added = g.build(Op::Mul, &[weight, batch]);
    g.build(Op::Add, &[kept, added])
}
