//! Products written where their reader wants them, instead of into a slot of their own that a
//! copy then rearranges.
//!
//! Two shapes of graph get this, both from attention:
//!
//! - **A merge.** `reshape(transpose(p, …), …)` of a product `p` whose axes the reshape merges
//!   across the transposition (the heads `[n, h, T, d]` back to `[n, T, h·d]`). Read as a view
//!   that merge has no single stride, so the plan used to copy it. Instead the product writes
//!   its `[n, h, T, d]` through the strides of the merged array's slot, and the reshape is a
//!   view of that slot.
//! - **A join.** A sum of `unslice`s along one axis whose ranges cover it without overlap:
//!   `concat`, and the gradient of slices of one array (q, k and v cut from one projection,
//!   whose gradients are embedded back into zeros of its width and summed). Each part is a
//!   product, reached through transposes and reshapes; each product writes its range of the
//!   joined array's slot, and the sum is that slot. No zeros written, no copies, no sum.
//!
//! Everything between a product and its reader is used once, so no one else sees the
//! intermediate layouts, and a product's operands never live in the slot it writes (the slot
//! is new). The parts of a join are disjoint ranges that cover the slot: the verifier checks
//! both (`verify`).

use super::*;
use std::collections::{HashMap, HashSet};

/// A product that writes into another node's slot: that node, and the product's view of the
/// slot (strides and offset, in the node's own contiguous layout).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Destination {
    pub root: NodeId,
    pub strides: Vec<Stride>,
    pub offset: Vec<Stride>,
}

/// Where the products of a graph write, and the nodes planned as nothing because of it.
#[derive(Clone, Debug, Default)]
pub(super) struct Destinations {
    pub of_product: HashMap<NodeId, Destination>,
    /// The sums of a join: each is a view of the slot its parts wrote.
    pub joins: HashSet<NodeId>,
    /// The unslices and partial sums inside joins: nothing reads them but their join.
    pub absorbed: HashSet<NodeId>,
}

/// Whether a computed node writes a view of its slot rather than all of it in row-major
/// order: a product written into its reader's layout.
pub fn writes_a_view(g: &Graph, plan: &Plan, node: NodeId) -> bool {
    matches!(
        &plan.values[node.index()],
        Some(Val::View { strides, offset, .. })
            if !offset.is_empty() || *strides != contiguous(g.shape(node))
    )
}

pub(super) fn find(
    g: &Graph,
    roots: &[NodeId],
    live: &[bool],
    summed: &HashMap<NodeId, NodeId>,
) -> Destinations {
    let mut uses = g.use_counts(live);
    for r in roots {
        uses[r.index()] += 1;
    }
    let once = |id: NodeId| uses[id.index()] == 1;
    let mut found = Destinations::default();
    // Latest first, so that a join is found whole before its inner sums are looked at.
    for id in g.ids().rev().filter(|id| live[id.index()]) {
        if found.absorbed.contains(&id) {
            continue;
        }
        match g.op(id) {
            Op::Add => {
                if let Some((inner, parts)) = join(g, id, &once, summed) {
                    found.absorbed.extend(inner);
                    found.joins.insert(id);
                    found.of_product.extend(parts);
                }
            }
            Op::Reshape(to) if !reshapes_as_view(g.shape(g.node(id).inputs[0]), to) => {
                // Only a merge across a transposition: a reshape of a product's own layout
                // is a view already.
                let below = g.node(id).inputs[0];
                if !matches!(g.op(below), Op::Transpose { .. }) {
                    continue;
                }
                let Some(strides) = reshaped_view(to, &contiguous(to), g.shape(below)) else {
                    continue;
                };
                if let Some((product, strides, offset)) =
                    product_below(g, below, g.shape(below), strides, vec![], &once, summed)
                {
                    // A part of a join (found first) writes the join's slot already.
                    found.of_product.entry(product).or_insert(Destination {
                        root: id,
                        strides,
                        offset,
                    });
                }
            }
            _ => {}
        }
    }
    found
}

/// The unslices and inner sums of the join `root`, and the destination of each of its
/// products, when `root` is a join whose every part reaches a product.
#[allow(clippy::type_complexity)]
fn join(
    g: &Graph,
    root: NodeId,
    once: &dyn Fn(NodeId) -> bool,
    summed: &HashMap<NodeId, NodeId>,
) -> Option<(Vec<NodeId>, Vec<(NodeId, Destination)>)> {
    let shape = g.shape(root).clone();
    let (mut inner, mut leaves) = (Vec::new(), Vec::new());
    let mut stack = vec![root];
    while let Some(x) = stack.pop() {
        for &a in &g.node(x).inputs {
            if !once(a) || g.shape(a) != &shape {
                return None;
            }
            match g.op(a) {
                Op::Add => stack.push(a),
                Op::Unslice { .. } => leaves.push(a),
                _ => return None,
            }
            inner.push(a);
        }
    }
    // One axis, step 1, ranges that tile it in some order.
    let range = |u: NodeId| match *g.op(u) {
        Op::Unslice {
            axis,
            start,
            step: 1,
            ..
        } => match g.shape(g.node(u).inputs[0]).0[axis as usize] {
            Dim::Fixed(len) => Some((axis, start, len)),
            Dim::Sym(_) => None,
        },
        _ => None,
    };
    let mut ranges: Vec<(u32, u64, u64, NodeId)> = leaves
        .iter()
        .map(|&u| range(u).map(|(a, s, n)| (a, s, n, u)))
        .collect::<Option<_>>()?;
    ranges.sort_unstable_by_key(|r| r.1);
    let axis = ranges[0].0;
    let Dim::Fixed(len) = shape.0[axis as usize] else {
        return None;
    };
    let mut next = 0;
    for &(a, start, size, _) in &ranges {
        if a != axis || start != next {
            return None;
        }
        next += size;
    }
    if next != len {
        return None;
    }
    let whole = contiguous(&shape);
    let mut parts = Vec::with_capacity(ranges.len());
    for &(_, start, _, u) in &ranges {
        let first = whole[axis as usize].times(start as i64);
        let offset = if first == Stride::Zero {
            vec![]
        } else {
            vec![first]
        };
        let part = g.node(u).inputs[0];
        let (product, strides, offset) =
            product_below(g, part, g.shape(part), whole.clone(), offset, once, summed)?;
        parts.push((
            product,
            Destination {
                root,
                strides,
                offset,
            },
        ));
    }
    Some((inner, parts))
}

/// The product that `x` is, through transposes and reshapes each read once, and the view it
/// writes so that `x` reads as `strides` and `offset` (of `x`'s `shape`).
fn product_below(
    g: &Graph,
    mut x: NodeId,
    shape: &Shape,
    mut strides: Vec<Stride>,
    offset: Vec<Stride>,
    once: &dyn Fn(NodeId) -> bool,
    summed: &HashMap<NodeId, NodeId>,
) -> Option<(NodeId, Vec<Stride>, Vec<Stride>)> {
    let mut shape = shape.clone();
    loop {
        if !once(x) {
            return None;
        }
        let node = g.node(x);
        match &node.op {
            Op::MatMul => {
                let ranks_two = node.inputs.iter().all(|a| g.shape(*a).rank() >= 2);
                return (ranks_two && !summed.contains_key(&x)).then_some((x, strides, offset));
            }
            Op::Transpose { perm } => {
                // x's axis k is its operand's axis perm[k].
                let mut below = vec![Stride::Zero; perm.len()];
                for (k, &p) in perm.iter().enumerate() {
                    below[p as usize] = strides[k].clone();
                }
                strides = below;
            }
            Op::Reshape(_) => {
                strides = reshaped_view(&shape, &strides, g.shape(node.inputs[0]))?;
            }
            _ => return None,
        }
        x = node.inputs[0];
        shape = g.shape(x).clone();
    }
}
