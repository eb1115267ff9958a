//! Reverse-mode differentiation as a graph-to-graph pass: the gradient is more graph.
//!
//! Invariant: nothing here evaluates numbers. The driver walks node ids downwards from the loss
//! (operands have smaller ids, so this is a reverse topological order), sums the cotangents of
//! nodes with several users, and asks `vjp` for each node's contribution to its operands.

use crate::ir::shape::MatMulParts;
use crate::ir::{Graph, NodeId, Op, Shape};
use crate::model::GraphFn;

/// Extends a copy of the forward graph with the gradient of `loss` with respect to every param.
/// Outputs: the loss, then `d<loss>/d<param>` for each param, in declaration order.
pub fn grad(forward: &GraphFn) -> GraphFn {
    let mut g = forward.graph.clone();
    let (loss_name, loss) = forward.outputs[0].clone();
    let grads = gradients(&mut g, loss);
    let mut outputs = vec![(loss_name.clone(), loss)];
    for (i, p) in forward.graph.params.iter().enumerate() {
        outputs.push((format!("d{loss_name}/d{}", p.name), grads[i]));
    }
    GraphFn { graph: g, outputs }
}

/// The gradient node of every param (a zero constant when the loss does not depend on it).
pub fn gradients(g: &mut Graph, loss: NodeId) -> Vec<NodeId> {
    let depends = depends_on_params(g);
    let mut cotangent: Vec<Option<NodeId>> = vec![None; g.len()];
    cotangent[loss.index()] = Some(g.constant(1.0));
    for id in (0..=loss.0).rev().map(NodeId) {
        let Some(ct) = cotangent[id.index()] else {
            continue;
        };
        if let Some(name) = g.name(id).map(str::to_string) {
            g.set_derivative_of(ct, &name);
        }
        let node = g.node(id).clone();
        let first_new = g.len();
        let contributions = vjp(g, id, ct);
        // Every node the rule built carries the rule's name and the forward node's location,
        // so a wrong or non-finite derivative can be traced to the source.
        for new in first_new..g.len() {
            let new = crate::ir::NodeId(new as u32);
            g.set_rule(new, node.op.name());
            if let Some(span) = g.span(id) {
                g.set_span(new, span);
            }
        }
        for (k, contribution) in contributions.into_iter().enumerate() {
            let Some(c) = contribution else { continue };
            let input = node.inputs[k];
            if !depends[input.index()] {
                continue;
            }
            cotangent[input.index()] = Some(match cotangent[input.index()] {
                None => c,
                Some(acc) => g.build(Op::Add, &[acc, c]),
            });
        }
    }
    let n_params = g.params.len();
    let mut res = Vec::with_capacity(n_params);
    for i in 0..n_params {
        let p = g.build(Op::Param(i as u32), &[]);
        res.push(match cotangent.get(p.index()).copied().flatten() {
            Some(ct) => ct,
            None => {
                let zero = g.constant(0.0);
                let shape = g.params[i].shape.clone();
                g.build(Op::Expand(shape), &[zero])
            }
        });
    }
    res
}

/// Marks nodes whose value depends on a parameter: only those need cotangents.
fn depends_on_params(g: &Graph) -> Vec<bool> {
    let mut dep = vec![false; g.len()];
    for id in g.ids() {
        let node = g.node(id);
        dep[id.index()] =
            matches!(node.op, Op::Param(_)) || node.inputs.iter().any(|i| dep[i.index()]);
    }
    dep
}

/// Reduces a broadcast contribution back to the operand's shape.
fn unbroadcast(g: &mut Graph, c: NodeId, to: &Shape) -> NodeId {
    if g.shape(c) == to {
        c
    } else {
        g.build(Op::SumTo(to.clone()), &[c])
    }
}

/// Broadcasts `c` (the cotangent of a reduction over `axis`) back to `shape`.
fn expand_reduced(g: &mut Graph, c: NodeId, axis: Option<u32>, shape: &Shape) -> NodeId {
    let c = match axis {
        None => c,
        Some(a) => {
            let mut kept = shape.clone();
            kept.0[a as usize] = crate::ir::Dim::Fixed(1);
            g.build(Op::Reshape(kept), &[c])
        }
    };
    g.build(Op::Expand(shape.clone()), &[c])
}

thread_local! {
    static PLANTED: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Makes the derivative rule of the named op wrong (doubled) on the current thread, so that
/// tests can show that gradient checking catches and locates a wrong rule. `None` restores it.
#[doc(hidden)]
pub fn plant_wrong_rule(op: Option<&'static str>) {
    PLANTED.with(|p| p.set(op));
}

#[doc(hidden)]
pub fn planted_rule() -> Option<&'static str> {
    PLANTED.with(|p| p.get())
}

/// The vector-Jacobian product of one node: given the cotangent `ct` of `id`, the contribution
/// to each operand's cotangent (`None`: no contribution, the op is not differentiable there).
pub fn vjp(g: &mut Graph, id: NodeId, ct: NodeId) -> Vec<Option<NodeId>> {
    let res = vjp_rule(g, id, ct);
    match PLANTED.with(|p| p.get()) {
        Some(op) if op == g.op(id).name() => {
            let two = g.constant(2.0);
            res.into_iter()
                .map(|c| c.map(|c| g.build(Op::Mul, &[two, c])))
                .collect()
        }
        _ => res,
    }
}

fn vjp_rule(g: &mut Graph, id: NodeId, ct: NodeId) -> Vec<Option<NodeId>> {
    let node = g.node(id).clone();
    let out = id;
    let x = node.inputs.first().copied();
    let y = node.inputs.get(1).copied();
    let b = |g: &mut Graph, op: Op, args: &[NodeId]| g.build(op, args);
    match &node.op {
        Op::Input(_) | Op::Param(_) | Op::Const(_) | Op::DimSize(_) => vec![],
        // Constants: nothing to differentiate.
        Op::Iota(_) | Op::Literal(_) => vec![],
        // A mask is drawn, not computed from the parameters: `x * mask`'s rule multiplies the
        // cotangent by the same node.
        Op::DropMask { .. } => vec![],
        // Read, not computed from the parameters: the gradient does not flow into state.
        Op::State(_) => vec![],
        Op::Neg => vec![Some(b(g, Op::Neg, &[ct]))],
        Op::Exp => vec![Some(b(g, Op::Mul, &[ct, out]))],
        Op::Log => vec![Some(b(g, Op::Div, &[ct, x.unwrap()]))],
        Op::Sqrt => {
            // d√x = 1 / (2√x): reuse the forward value.
            let two = g.constant(2.0);
            let denom = b(g, Op::Mul, &[two, out]);
            vec![Some(b(g, Op::Div, &[ct, denom]))]
        }
        Op::Tanh => {
            let one = g.constant(1.0);
            let two = g.constant(2.0);
            let sq = b(g, Op::Pow, &[out, two]);
            let d = b(g, Op::Sub, &[one, sq]);
            vec![Some(b(g, Op::Mul, &[ct, d]))]
        }
        Op::Sigmoid => {
            let one = g.constant(1.0);
            let rest = b(g, Op::Sub, &[one, out]);
            let d = b(g, Op::Mul, &[out, rest]);
            vec![Some(b(g, Op::Mul, &[ct, d]))]
        }
        Op::Relu => {
            // Subgradient 0 at 0, as in PyTorch and JAX.
            let step = b(g, Op::Step, &[x.unwrap()]);
            vec![Some(b(g, Op::Mul, &[ct, step]))]
        }
        Op::Step
        | Op::Sign
        | Op::Eq
        | Op::Ne
        | Op::Lt
        | Op::Le
        | Op::Gt
        | Op::Ge
        | Op::ArgMax { .. }
        | Op::OneHot { .. } => {
            vec![None; node.inputs.len()]
        }
        Op::Log1p => {
            let one = g.constant(1.0);
            let d = b(g, Op::Add, &[one, x.unwrap()]);
            vec![Some(b(g, Op::Div, &[ct, d]))]
        }
        Op::Expm1 => {
            let one = g.constant(1.0);
            let d = b(g, Op::Add, &[out, one]);
            vec![Some(b(g, Op::Mul, &[ct, d]))]
        }
        Op::Abs => {
            // Subgradient 0 at 0.
            let s = b(g, Op::Sign, &[x.unwrap()]);
            vec![Some(b(g, Op::Mul, &[ct, s]))]
        }
        Op::Sin => {
            let c = b(g, Op::Cos, &[x.unwrap()]);
            vec![Some(b(g, Op::Mul, &[ct, c]))]
        }
        Op::Cos => {
            let s = b(g, Op::Sin, &[x.unwrap()]);
            let m = b(g, Op::Mul, &[ct, s]);
            vec![Some(b(g, Op::Neg, &[m]))]
        }
        Op::Softplus => {
            let s = b(g, Op::Sigmoid, &[x.unwrap()]);
            vec![Some(b(g, Op::Mul, &[ct, s]))]
        }
        Op::Erf => {
            // erf'(x) = 2/√π · e^(−x²).
            let two = g.constant(2.0);
            let sq = b(g, Op::Pow, &[x.unwrap(), two]);
            let minus_sq = b(g, Op::Neg, &[sq]);
            let gauss = b(g, Op::Exp, &[minus_sq]);
            let scale = g.constant(std::f64::consts::FRAC_2_SQRT_PI);
            let d = b(g, Op::Mul, &[scale, gauss]);
            vec![Some(b(g, Op::Mul, &[ct, d]))]
        }
        Op::Erfc => {
            // erfc'(x) = −2/√π · e^(−x²).
            let two = g.constant(2.0);
            let sq = b(g, Op::Pow, &[x.unwrap(), two]);
            let minus_sq = b(g, Op::Neg, &[sq]);
            let gauss = b(g, Op::Exp, &[minus_sq]);
            let scale = g.constant(-std::f64::consts::FRAC_2_SQRT_PI);
            let d = b(g, Op::Mul, &[scale, gauss]);
            vec![Some(b(g, Op::Mul, &[ct, d]))]
        }
        Op::Max | Op::Min => {
            // Ties go to the first operand, as in the forward value.
            let (x, y) = (x.unwrap(), y.unwrap());
            let (first, second) = if node.op == Op::Max {
                (Op::Ge, Op::Lt)
            } else {
                (Op::Le, Op::Gt)
            };
            let mx = b(g, first, &[x, y]);
            let my = b(g, second, &[x, y]);
            let dx = b(g, Op::Mul, &[ct, mx]);
            let dy = b(g, Op::Mul, &[ct, my]);
            let (xs, ys) = (g.shape(x).clone(), g.shape(y).clone());
            vec![Some(unbroadcast(g, dx, &xs)), Some(unbroadcast(g, dy, &ys))]
        }
        Op::Select => {
            let (c, a, bb) = (node.inputs[0], node.inputs[1], node.inputs[2]);
            let zero = g.constant(0.0);
            let da = b(g, Op::Select, &[c, ct, zero]);
            let db = b(g, Op::Select, &[c, zero, ct]);
            let (sa, sb) = (g.shape(a).clone(), g.shape(bb).clone());
            vec![
                None,
                Some(unbroadcast(g, da, &sa)),
                Some(unbroadcast(g, db, &sb)),
            ]
        }
        Op::ReduceMax { axis } | Op::ReduceMin { axis } => {
            // The derivative is shared equally among the elements that attain the extremum.
            let xv = x.unwrap();
            let xs = g.shape(xv).clone();
            let ext = expand_reduced(g, out, *axis, &xs);
            let hit = b(g, Op::Eq, &[xv, ext]);
            let count = b(g, Op::Sum { axis: *axis }, &[hit]);
            let share = b(g, Op::Div, &[ct, count]);
            let share = expand_reduced(g, share, *axis, &xs);
            vec![Some(b(g, Op::Mul, &[share, hit]))]
        }
        Op::Take { axis, index } => {
            let size = match g.shape(x.unwrap()).0[*axis as usize] {
                crate::ir::Dim::Fixed(n) => n,
                crate::ir::Dim::Sym(_) => unreachable!("take needs a fixed axis"),
            };
            vec![Some(b(
                g,
                Op::Put {
                    axis: *axis,
                    index: *index,
                    size,
                },
                &[ct],
            ))]
        }
        Op::Put { axis, index, .. } => vec![Some(b(
            g,
            Op::Take {
                axis: *axis,
                index: *index,
            },
            &[ct],
        ))],
        Op::Gather { axis } => {
            // Each row of the table receives the sum of the cotangents of the places that read
            // it; the indices are whole numbers, with no derivative.
            let size = match g.shape(x.unwrap()).0[*axis as usize] {
                crate::ir::Dim::Fixed(n) => n,
                crate::ir::Dim::Sym(_) => unreachable!("gather needs a fixed axis"),
            };
            let scatter = Op::ScatterAdd { axis: *axis, size };
            vec![Some(b(g, scatter, &[ct, y.unwrap()])), None]
        }
        Op::ScatterAdd { axis, .. } => {
            let gather = Op::Gather { axis: *axis };
            vec![Some(b(g, gather, &[ct, y.unwrap()])), None]
        }
        Op::Windows {
            kernel,
            stride,
            dilation,
        } => {
            // Each element of the operand receives the cotangents of every patch place that
            // reads it.
            let xs = g.shape(x.unwrap());
            let lead = xs.rank() - kernel.len();
            let size = xs.0[lead..]
                .iter()
                .map(|d| match d {
                    crate::ir::Dim::Fixed(n) => *n,
                    crate::ir::Dim::Sym(_) => unreachable!("windows need fixed axes"),
                })
                .collect();
            let op = Op::Unwindows {
                kernel: kernel.clone(),
                stride: stride.clone(),
                dilation: dilation.clone(),
                size,
            };
            vec![Some(b(g, op, &[ct]))]
        }
        Op::Unwindows {
            kernel,
            stride,
            dilation,
            ..
        } => {
            let op = Op::Windows {
                kernel: kernel.clone(),
                stride: stride.clone(),
                dilation: dilation.clone(),
            };
            vec![Some(b(g, op, &[ct]))]
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Pow => {
            let (x, y) = (x.unwrap(), y.unwrap());
            let (dx, dy) = match node.op {
                Op::Add => (ct, ct),
                Op::Sub => (ct, b(g, Op::Neg, &[ct])),
                Op::Mul => (b(g, Op::Mul, &[ct, y]), b(g, Op::Mul, &[ct, x])),
                Op::Div => {
                    let dx = b(g, Op::Div, &[ct, y]);
                    // d(x/y)/dy = −x/y² = −out/y
                    let q = b(g, Op::Div, &[out, y]);
                    let t = b(g, Op::Mul, &[ct, q]);
                    (dx, b(g, Op::Neg, &[t]))
                }
                Op::Pow => {
                    let one = g.constant(1.0);
                    let ym1 = b(g, Op::Sub, &[y, one]);
                    let p = b(g, Op::Pow, &[x, ym1]);
                    let yp = b(g, Op::Mul, &[y, p]);
                    let dx = b(g, Op::Mul, &[ct, yp]);
                    // d(x^y)/dy = x^y · log x; only built when y depends on a parameter.
                    let dy = if g.const_value(y).is_some() {
                        None
                    } else {
                        let lx = b(g, Op::Log, &[x]);
                        let t = b(g, Op::Mul, &[out, lx]);
                        Some(b(g, Op::Mul, &[ct, t]))
                    };
                    let xs = g.shape(x).clone();
                    let dx = unbroadcast(g, dx, &xs);
                    let dy = dy.map(|d| {
                        let ys = g.shape(y).clone();
                        unbroadcast(g, d, &ys)
                    });
                    return vec![Some(dx), dy];
                }
                _ => unreachable!(),
            };
            let (xs, ys) = (g.shape(x).clone(), g.shape(y).clone());
            vec![Some(unbroadcast(g, dx, &xs)), Some(unbroadcast(g, dy, &ys))]
        }
        Op::MatMul => {
            let (a, bb) = (x.unwrap(), y.unwrap());
            if MatMulParts::of(g.shape(a), g.shape(bb)).is_batched() {
                let (da, db) = batched_matmul_vjp(g, a, bb, ct);
                return vec![Some(da), Some(db)];
            }
            let (ra, rb) = (g.shape(a).rank(), g.shape(bb).rank());
            let (da, db) = match (ra, rb) {
                (2, 2) => {
                    let bt = b(g, Op::reversed_axes(2), &[bb]);
                    let at = b(g, Op::reversed_axes(2), &[a]);
                    (b(g, Op::MatMul, &[ct, bt]), b(g, Op::MatMul, &[at, ct]))
                }
                (2, 1) => {
                    // out[m] = A[m,k] w[k]: dA = ct ⊗ w, dw = Aᵀ ct
                    let col = column(g, ct);
                    let row = row(g, bb);
                    let at = b(g, Op::reversed_axes(2), &[a]);
                    (b(g, Op::MatMul, &[col, row]), b(g, Op::MatMul, &[at, ct]))
                }
                (1, 2) => {
                    // out[n] = v[k] B[k,n]: dv = B ct, dB = v ⊗ ct
                    let col = column(g, a);
                    let row = row(g, ct);
                    (b(g, Op::MatMul, &[bb, ct]), b(g, Op::MatMul, &[col, row]))
                }
                (1, 1) => (b(g, Op::Mul, &[ct, bb]), b(g, Op::Mul, &[ct, a])),
                _ => unreachable!("matmul ranks are checked"),
            };
            vec![Some(da), Some(db)]
        }
        Op::Transpose { perm } => vec![Some(b(
            g,
            Op::Transpose {
                perm: inverse_permutation(perm),
            },
            &[ct],
        ))],
        Op::Sum { axis } => {
            let xs = g.shape(x.unwrap()).clone();
            vec![Some(expand_reduced(g, ct, *axis, &xs))]
        }
        Op::LogSumExp { axis } => {
            // d lse / dx = softmax(x) = exp(x − lse)
            let xs = g.shape(x.unwrap()).clone();
            let lse = expand_reduced(g, out, *axis, &xs);
            let shifted = b(g, Op::Sub, &[x.unwrap(), lse]);
            let soft = b(g, Op::Exp, &[shifted]);
            let c = expand_reduced(g, ct, *axis, &xs);
            vec![Some(b(g, Op::Mul, &[c, soft]))]
        }
        Op::SumTo(_) => {
            let xs = g.shape(x.unwrap()).clone();
            vec![Some(b(g, Op::Expand(xs), &[ct]))]
        }
        Op::Expand(_) => {
            let xs = g.shape(x.unwrap()).clone();
            vec![Some(unbroadcast(g, ct, &xs))]
        }
        Op::Reshape(_) => {
            let xs = g.shape(x.unwrap()).clone();
            vec![Some(b(g, Op::Reshape(xs), &[ct]))]
        }
        Op::Slice {
            axis, start, step, ..
        } => {
            let size = match g.shape(x.unwrap()).0[*axis as usize] {
                crate::ir::Dim::Fixed(n) => n,
                crate::ir::Dim::Sym(_) => unreachable!("a slice needs a fixed axis"),
            };
            vec![Some(b(
                g,
                Op::Unslice {
                    axis: *axis,
                    start: *start,
                    step: *step,
                    size,
                },
                &[ct],
            ))]
        }
        Op::Unslice {
            axis, start, step, ..
        } => {
            let len = match g.shape(x.unwrap()).0[*axis as usize] {
                crate::ir::Dim::Fixed(n) => n,
                crate::ir::Dim::Sym(_) => unreachable!("an unslice needs a fixed axis"),
            };
            vec![Some(b(
                g,
                Op::Slice {
                    axis: *axis,
                    start: *start,
                    step: *step,
                    len,
                },
                &[ct],
            ))]
        }
    }
}

/// The adjoints of a batched `a @ b` (numpy's matmul) with cotangent `ct`: `ct @ bᵀ` and
/// `aᵀ @ ct` over the last two axes, each fitted to its operand's shape (summed over the batch
/// axes it was broadcast along). A vector operand is made a row (left) or column (right) first,
/// and the cotangent given that unit axis back, so every product is of matrices.
///
/// A cotangent broadcast from a smaller array (the adjoint of a sum of the product) is not
/// materialized: the products broadcast its batch axes themselves, and where it is constant
/// along the axis a product sums over, that product is a sum of the other operand times it.
fn batched_matmul_vjp(g: &mut Graph, a: NodeId, bb: NodeId, ct: NodeId) -> (NodeId, NodeId) {
    let (sa, sb) = (g.shape(a).clone(), g.shape(bb).clone());
    let a2 = if sa.rank() == 1 { row(g, a) } else { a };
    let b2 = if sb.rank() == 1 { column(g, bb) } else { bb };
    let promote = |g: &mut Graph, x: NodeId| {
        let mut s = g.shape(x).clone();
        if sa.rank() == 1 {
            let at = s.rank() - usize::from(sb.rank() != 1);
            s.0.insert(at, crate::ir::Dim::Fixed(1));
        }
        if sb.rank() == 1 {
            s.0.push(crate::ir::Dim::Fixed(1));
        }
        reshaped(g, x, s)
    };
    let full = promote(g, ct);
    let small = unexpanded(g, ct);
    let small = promote(g, small);
    let (fs, ss) = (g.shape(full).clone(), g.shape(small).clone());
    let r = fs.rank();
    let broadcast_along = |i: usize| ss.0[i] == crate::ir::Dim::Fixed(1) && fs.0[i] != ss.0[i];
    // A vector's row transposed is its column, and its column transposed its row.
    let bt = if sb.rank() == 1 {
        row(g, bb)
    } else {
        swap_last_axes(g, b2)
    };
    let at = if sa.rank() == 1 {
        column(g, a)
    } else {
        swap_last_axes(g, a2)
    };
    // ct @ bᵀ sums over ct's last axis; aᵀ @ ct over its second-to-last.
    let da = if broadcast_along(r - 1) {
        let s = sum_keeping_axis(g, bt, g.shape(bt).rank() - 2);
        g.build(Op::Mul, &[small, s])
    } else {
        g.build(Op::MatMul, &[small, bt])
    };
    let db = if broadcast_along(r - 2) {
        let s = sum_keeping_axis(g, at, g.shape(at).rank() - 1);
        g.build(Op::Mul, &[s, small])
    } else {
        g.build(Op::MatMul, &[at, small])
    };
    let (sa2, sb2) = (g.shape(a2).clone(), g.shape(b2).clone());
    let da = fit(g, da, &sa2);
    let db = fit(g, db, &sb2);
    (reshaped(g, da, sa), reshaped(g, db, sb))
}

/// `x` reshaped to `to` (unit axes added or removed), or `x` itself when it has that shape.
fn reshaped(g: &mut Graph, x: NodeId, to: Shape) -> NodeId {
    if *g.shape(x) == to {
        x
    } else {
        g.build(Op::Reshape(to), &[x])
    }
}

/// The array `x` broadcasts, with unit axes where it does and as many axes as `x`: the
/// operand of an `expand`, else `x`.
fn unexpanded(g: &mut Graph, x: NodeId) -> NodeId {
    // A scalar broadcast and reshaped (a mean's cotangent) is the scalar with unit axes.
    let mut source = x;
    while matches!(g.op(source), Op::Expand(_) | Op::Reshape(_)) {
        source = g.node(source).inputs[0];
    }
    if source != x && g.shape(source).is_scalar() {
        let units = Shape(vec![crate::ir::Dim::Fixed(1); g.shape(x).rank()]);
        return reshaped(g, source, units);
    }
    if !matches!(g.op(x), Op::Expand(_)) {
        return x;
    }
    let inner = g.node(x).inputs[0];
    let mut dims = vec![crate::ir::Dim::Fixed(1); g.shape(x).rank() - g.shape(inner).rank()];
    dims.extend(g.shape(inner).0.iter().copied());
    reshaped(g, inner, Shape(dims))
}

/// The sum of `x` over `axis`, which is kept with length 1.
fn sum_keeping_axis(g: &mut Graph, x: NodeId, axis: usize) -> NodeId {
    let mut kept = g.shape(x).clone();
    kept.0[axis] = crate::ir::Dim::Fixed(1);
    let s = g.build(
        Op::Sum {
            axis: Some(axis as u32),
        },
        &[x],
    );
    g.build(Op::Reshape(kept), &[s])
}

/// `x` brought to the shape `to` of an operand it was computed for: summed over the axes `x`
/// has and `to` lacks or has of length 1, then broadcast along the axes of `to` that `x` has
/// of length 1.
fn fit(g: &mut Graph, x: NodeId, to: &Shape) -> NodeId {
    let xs = g.shape(x).clone();
    let lead = xs.rank() - to.rank();
    let one = crate::ir::Dim::Fixed(1);
    let summed = Shape(
        to.0.iter()
            .zip(&xs.0[lead..])
            .map(|(&t, &d)| if t == one { one } else { d })
            .collect(),
    );
    let x = unbroadcast(g, x, &summed);
    if summed == *to {
        x
    } else {
        g.build(Op::Expand(to.clone()), &[x])
    }
}

/// The matrices of a batch transposed: the last two axes swapped.
fn swap_last_axes(g: &mut Graph, x: NodeId) -> NodeId {
    let r = g.shape(x).rank() as u32;
    let mut perm: Vec<u32> = (0..r).collect();
    perm.swap(r as usize - 2, r as usize - 1);
    g.build(Op::Transpose { perm }, &[x])
}

/// The permutation that undoes `perm`: the adjoint of a transpose is the inverse transpose.
pub fn inverse_permutation(perm: &[u32]) -> Vec<u32> {
    let mut inv = vec![0; perm.len()];
    for (i, &a) in perm.iter().enumerate() {
        inv[a as usize] = i as u32;
    }
    inv
}

fn column(g: &mut Graph, v: NodeId) -> NodeId {
    let mut s = g.shape(v).clone();
    s.0.push(crate::ir::Dim::Fixed(1));
    g.build(Op::Reshape(s), &[v])
}

fn row(g: &mut Graph, v: NodeId) -> NodeId {
    let mut s = g.shape(v).clone();
    s.0.insert(0, crate::ir::Dim::Fixed(1));
    g.build(Op::Reshape(s), &[v])
}
