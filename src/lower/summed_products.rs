//! Batched products summed over their batch axes in one product: a weight's gradient.
//!
//! The adjoint of a layer `[B, T, d] @ W` for `W` is `sum_to(xᵀ @ g, [d, e])`: B products of
//! `[d, T] @ [T, e]`, stored and then summed over B. Where the product's only reader is that
//! sum, it sums only batch axes (the innermost ones), and its operands' columns (A) and rows
//! (B) continue across them (A's stride along the axis is T times its column stride), the sum
//! is one product whose inner dimension runs over B·T: `[d, B·T] @ [B·T, e]`, read through the
//! same views, no copy. The plan then holds the product as an operand of the sum
//! (`Val::Inline`), written `s3 ← sum_to(matmul batch=[n](…))`, and the code generator runs it
//! as a batched product whose result's stride along the summed axes is 0
//! (`kernels::gemm::fold_sums`). The terms are added in another order than the stored
//! products and their sum add them (exact in real arithmetic, not in floating point).

use super::*;

/// The batched products whose only reader is a `sum_to` over some of their batch axes, each
/// with that sum: the products that may be summed in one (`folds_into_sum` decides once their
/// operands' views are known).
pub(super) fn summed_candidates(
    g: &Graph,
    roots: &[NodeId],
    live: &[bool],
) -> std::collections::HashMap<NodeId, NodeId> {
    let mut uses = g.use_counts(live);
    for r in roots {
        uses[r.index()] += 1;
    }
    g.ids()
        .filter(|id| live[id.index()] && matches!(g.op(*id), Op::SumTo(_)))
        .filter_map(|sum| {
            let product = g.node(sum).inputs[0];
            let only_reader = uses[product.index()] == 1;
            (only_reader && summed_axes(g, product, sum).is_some()).then_some((product, sum))
        })
        .collect()
}

/// The batch axes of `product` (`a @ b`, both of rank 2 or more) that `sum` sums over, when
/// that is all it sums and they are the innermost batch axes of length other than 1, each an
/// axis of both operands (neither is broadcast along it).
pub(super) fn summed_axes(g: &Graph, product: NodeId, sum: NodeId) -> Option<Vec<usize>> {
    let node = g.node(product);
    if node.op != Op::MatMul {
        return None;
    }
    let (a, b) = (g.shape(node.inputs[0]), g.shape(node.inputs[1]));
    let (out, to) = (g.shape(product), g.shape(sum));
    let (r, batch) = (out.rank(), out.rank().checked_sub(2)?);
    if a.rank() < 2 || b.rank() < 2 || batch == 0 || to.rank() < 2 || to.rank() > r {
        return None;
    }
    if to.0[to.rank() - 2..] != out.0[r - 2..] {
        return None;
    }
    let missing = r - to.rank();
    let summed =
        |i: usize| i < missing || (to.0[i - missing] == Dim::Fixed(1) && out.0[i] != Dim::Fixed(1));
    let axes: Vec<usize> = (0..batch).filter(|&i| summed(i)).collect();
    let first = *axes.first()?;
    let innermost = (first..batch).all(|i| summed(i) || out.0[i] == Dim::Fixed(1));
    // An operand's own axis for batch axis i of the result, which must be of the same length.
    let has = |s: &Shape, i: usize| {
        (i + s.rank() - 2)
            .checked_sub(batch)
            .is_some_and(|j| s.0[j] == out.0[i])
    };
    let both = axes.iter().all(|&i| has(a, i) && has(b, i));
    (innermost && both).then_some(axes)
}

/// Whether `product`, read only by `sum` (`summed_candidates`), runs as one product over the
/// summed axes with its operands' views in `values`: along each summed axis, from the
/// innermost out, A's stride is its column stride and B's its row stride times the inner
/// length so far (the inner dimension times the summed axes inside this one), under every
/// binding of the symbolic dimensions.
pub(super) fn folds_into_sum(
    g: &Graph,
    values: &[Option<Val>],
    product: NodeId,
    sum: NodeId,
) -> bool {
    let Some(axes) = summed_axes(g, product, sum) else {
        return false;
    };
    let node = g.node(product);
    let view = |k: usize| match &values[node.inputs[k].index()] {
        Some(v @ Val::View { strides, .. }) if is_plain_view(v) => Some(strides.clone()),
        _ => None,
    };
    let (Some(sa), Some(sb)) = (view(0), view(1)) else {
        return false;
    };
    let (a, b) = (g.shape(node.inputs[0]), g.shape(node.inputs[1]));
    let batch = g.shape(product).rank() - 2;
    let (col_a, row_b) = (&sa[a.rank() - 1], &sb[b.rank() - 2]);
    let mut inner = vec![a.0[a.rank() - 1]];
    for &i in axes.iter().rev() {
        if g.shape(product).0[i] == Dim::Fixed(1) {
            continue;
        }
        let own = |s: &Shape| i + s.rank() - 2 - batch;
        let continues = |strides: &[Stride], s: &Shape, unit: &Stride| {
            product_form(&strides[own(s)]) == times(product_form(unit), &inner)
        };
        if !continues(&sa, a, col_a) || !continues(&sb, b, row_b) {
            return false;
        }
        inner.push(g.shape(product).0[i]);
    }
    true
}

/// The product the sum `sum` runs, when the plan sums that product in one (its operand is
/// the product, fused into it: `Val::Inline`), given the plan's `values`.
pub fn summed_product(g: &Graph, values: &[Option<Val>], sum: NodeId) -> Option<NodeId> {
    if !matches!(g.op(sum), Op::SumTo(_)) {
        return None;
    }
    let product = g.node(sum).inputs[0];
    let fused = matches!(values[product.index()], Some(Val::Inline(p)) if p == product);
    (fused && g.op(product) == &Op::MatMul).then_some(product)
}

/// A stride as a whole-number factor and the symbols it multiplies, sorted: equal forms are
/// equal strides under every binding.
pub(super) fn product_form(s: &Stride) -> (i128, Vec<u32>) {
    match s {
        Stride::Zero => (0, vec![]),
        Stride::Prod(dims) => times((1, vec![]), dims),
        Stride::Scaled(k, dims) => times((*k as i128, vec![]), dims),
    }
}

/// Whether `step` computes a sum that runs its operand's product (`summed_product`).
pub(super) fn runs_product(g: &Graph, values: &[Option<Val>], step: &Step) -> bool {
    matches!(step, Step::Compute { node, .. } if summed_product(g, values, *node).is_some())
}

/// A product form times some dimensions.
pub(super) fn times((mut factor, mut syms): (i128, Vec<u32>), dims: &[Dim]) -> (i128, Vec<u32>) {
    for d in dims {
        match *d {
            Dim::Fixed(k) => factor = factor.saturating_mul(k as i128),
            Dim::Sym(s) => syms.push(s),
        }
    }
    if factor == 0 {
        return (0, vec![]);
    }
    syms.sort_unstable();
    (factor, syms)
}
