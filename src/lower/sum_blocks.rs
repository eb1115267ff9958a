//! Sums of many terms in blocks: whether a sum step adds its terms in blocks of its first axis,
//! each block into a partial sum of its own that is then added to the total, and how many
//! items of that axis a block holds.
//!
//! Added in order into one accumulator, the n terms of a sum carry a rounding error that grows
//! with n (up to (n − 1)·u·Σ|x|, u the unit roundoff). In blocks of b terms, each block's sum
//! carries up to (b − 1)·u·Σ_block|x| and the n/b block sums add up to (n/b)·u·Σ|x| more, so
//! the bound falls from n·u to (b + n/b)·u. In f32 this matters where a sum is then
//! subtracted from its terms: examples/cnn_digits.dsl's batch norm means over N·H·W ≈ 115k
//! elements were 6e-7 off in order, 1e-7 in blocks, and one pre-activation there lies within
//! two ulps of zero, so the mean's last bits decided its relu (the gradient of `k2` moved by
//! 1.8e-4 of its norm). Blocks are whole items of the first axis (the batch axis of every sum
//! over rows), so their order, like the order within each block, is fixed by the shape alone,
//! never by the thread count. A sum of at most one block runs exactly as it always did: its
//! terms, in their order, into the zeroed output, bit for bit.
//!
//! The partial sums live in the generated function's stack frame, one per output element, so
//! only sums with a fixed output of at most [`MAX_PARTIAL_ELEMENTS`] elements are blocked.

use super::{Plan, Step, Stride, broadcast_strides, contiguous, summed_product};
use crate::ir::{Dim, Graph, Op, Shape};

/// The terms of one output element a block adds at most: (b + n/b) is smallest at b = √n, and
/// 512 = √(2^18) lies between the sums of 10^4 and 10^6 terms this is for (a batch norm's
/// channel over a data set, a weight's gradient summed over its rows).
pub const SUM_BLOCK: u64 = 512;

/// The most output elements a blocked sum keeps partial sums for (128 KiB of f32 on the stack).
pub const MAX_PARTIAL_ELEMENTS: u64 = 1 << 15;

/// A sum step that adds its terms in blocks of `items` items of its operand's first axis (a
/// power of two, so the generated code counts blocks with a shift).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SumBlocks {
    pub items: u64,
}

/// The blocks of a step: for a sum (not a summed product) over its operand's first axis with
/// more than [`SUM_BLOCK`] terms per output element, whose output has a fixed size of at most
/// [`MAX_PARTIAL_ELEMENTS`] and whose terms per item of the first axis are fixed.
pub fn decide(g: &Graph, plan: &Plan, step: &Step) -> Option<SumBlocks> {
    let Step::Compute { node, .. } = step else {
        return None;
    };
    let n = g.node(*node);
    let reduced = match &n.op {
        Op::SumTo(_) if summed_product(g, &plan.values, *node).is_some() => return None,
        Op::Sum { .. } | Op::SumTo(_) => reduced_axes(&n.op, &n.shape, g.shape(n.inputs[0])),
        _ => return None,
    };
    let x = g.shape(n.inputs[0]);
    if !reduced.first().copied().unwrap_or(false) {
        return None;
    }
    let outputs = n.shape.fixed_elements()? as u64;
    if outputs > MAX_PARTIAL_ELEMENTS {
        return None;
    }
    // Terms of one output element per item of the first axis.
    let mut per_item: u64 = 1;
    for (d, _) in x.0.iter().zip(&reduced).skip(1).filter(|(_, r)| **r) {
        match d {
            Dim::Fixed(k) => per_item = per_item.saturating_mul(*k),
            Dim::Sym(_) => return None,
        }
    }
    let items = prev_power_of_two((SUM_BLOCK / per_item.max(1)).max(1));
    match x.0[0] {
        Dim::Fixed(len) if len <= items => None,
        _ => Some(SumBlocks { items }),
    }
}

/// Checks a step's blocks against the rule: present exactly where `decide` gives them.
pub fn check(
    g: &Graph,
    plan: &Plan,
    step: &Step,
    blocks: Option<&SumBlocks>,
) -> Result<(), String> {
    match (decide(g, plan, step), blocks) {
        (want, got) if want.as_ref() == got => Ok(()),
        (None, Some(_)) => Err("a step the rule does not block has blocks".to_string()),
        (Some(want), _) => Err(format!("the rule's blocks are {} items", want.items)),
        (None, None) => Ok(()),
    }
}

/// For each axis of a sum's operand, whether it is summed over.
fn reduced_axes(op: &Op, out: &Shape, x: &Shape) -> Vec<bool> {
    match op {
        Op::Sum { axis: None } => vec![true; x.rank()],
        Op::Sum { axis: Some(a) } => (0..x.rank()).map(|k| k == *a as usize).collect(),
        _ => broadcast_strides(out, &contiguous(out), x)
            .iter()
            .map(|s| *s == Stride::Zero)
            .collect(),
    }
}

fn prev_power_of_two(k: u64) -> u64 {
    1 << (63 - k.leading_zeros())
}
