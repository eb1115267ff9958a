//! Checking and inspecting gradients: finite-difference gradient checks that blame the first
//! wrong derivative rule, second derivatives (Hessian-vector products by differentiating the
//! gradient graph again), Hessian spectra, and Graphviz output.

use crate::autodiff;
use crate::diagnostics::{SourceFile, Span};
use crate::ir::interp::{self, Tensor};
use crate::ir::{Graph, InputInfo, NodeId, Op, Shape};
use crate::model::GraphFn;
use crate::simplify;
use rand::RngExt;
use rand::rngs::ChaCha8Rng;
use std::fmt::Write;

/// A graph in Graphviz's dot language: one box per node, edges from operands to users.
pub fn dot(f: &GraphFn) -> String {
    let g = &f.graph;
    let roots: Vec<NodeId> = f.outputs.iter().map(|o| o.1).collect();
    let live = g.reachable(&roots);
    let mut out = String::from(
        "digraph adjoint {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n",
    );
    for id in g.ids().filter(|id| live[id.index()]) {
        let line = crate::ir::print::node_line(g, id);
        let label = line
            .split_once(" = ")
            .map(|x| x.1)
            .unwrap_or(&line)
            .replace('"', "\\\"");
        let style = match g.op(id) {
            Op::Param(_) => ", style=filled, fillcolor=\"#ffe9b3\"",
            Op::Input(_) => ", style=filled, fillcolor=\"#d7ebff\"",
            _ if g.rule(id).is_some() => ", color=\"#b03030\"",
            _ => "",
        };
        let _ = writeln!(out, "  n{} [label=\"{id}: {label}\"{style}];", id.0);
        for a in &g.node(id).inputs {
            let _ = writeln!(out, "  n{} -> n{};", a.0, id.0);
        }
    }
    for (name, id) in &f.outputs {
        let _ = writeln!(
            out,
            "  \"{name}\" [shape=plaintext];\n  n{} -> \"{name}\";",
            id.0
        );
    }
    out.push_str("}\n");
    out
}

/// A point: parameter values, inputs and the row count.
#[derive(Clone, Debug)]
pub struct Point {
    pub inputs: Vec<Tensor>,
    pub params: Vec<Tensor>,
    /// The model's state tensors (batch normalization's running statistics), which the
    /// evaluation graph reads: a checkpoint's, or their initial values.
    pub states: Vec<Tensor>,
    pub syms: Vec<u64>,
}

/// The values of the nodes `roots` depends on, at `p` with `inputs` in place of its own.
fn eval_at(
    g: &crate::ir::Graph,
    p: &Point,
    inputs: &[Tensor],
    roots: &[NodeId],
) -> Vec<Option<Tensor>> {
    interp::eval_keyed(g, (inputs, &p.params, &p.states), &p.syms, roots, 0)
}

fn loss_at(f: &GraphFn, p: &Point) -> f64 {
    let v = eval_at(&f.graph, p, &p.inputs, &[f.outputs[0].1]);
    v[f.outputs[0].1.index()].as_ref().unwrap().item()
}

/// Relative error with an absolute floor, the measure gradient checks report. A non-finite
/// value agrees with nothing, itself included: its error is infinite.
pub fn rel_err(a: f64, b: f64) -> f64 {
    excess_rel_err(a, b, 0.0)
}

/// The relative error of `a` against `b` beyond an absolute error `noise` that is expected
/// anyway (the rounding error of a finite difference); infinite when either is not finite.
fn excess_rel_err(a: f64, b: f64, noise: f64) -> f64 {
    if !a.is_finite() || !b.is_finite() {
        return f64::INFINITY;
    }
    ((a - b).abs() - noise).max(0.0) / a.abs().max(b.abs()).max(1e-8)
}

/// The number of elements of the largest array `f` computes at a point: the most terms any of
/// its sums adds up, which bounds how much rounding error the loss carries.
fn largest_array(f: &GraphFn, p: &Point) -> usize {
    f.graph
        .ids()
        .map(|id| {
            f.graph
                .shape(id)
                .concrete(&p.syms)
                .iter()
                .product::<usize>()
        })
        .max()
        .unwrap_or(1)
        .max(1)
}

/// The rounding error of a central difference (f(θ + hd) − f(θ − hd)) / 2h. Each loss value
/// computed in f64 from sums of at most `terms` terms carries a relative error of about
/// ε·√terms (rounding errors of a sum add up like a random walk), and the quotient divides
/// the difference of two such values by 2h.
pub fn finite_difference_noise(up: f64, down: f64, h: f64, terms: usize) -> f64 {
    f64::EPSILON * (terms as f64).sqrt() * (up.abs() + down.abs()) / (2.0 * h)
}

#[derive(Clone, Debug)]
pub struct ParamCheck {
    pub name: String,
    /// Worst relative error over directions and coordinates, beyond the rounding error of the
    /// finite differences (`finite_difference_noise`); infinite where a value is not finite.
    pub worst: f64,
}

/// Where a derivative rule disagrees with finite differences of its own op.
#[derive(Clone, Debug)]
pub struct Blame {
    pub op: &'static str,
    pub node: NodeId,
    pub span: Option<Span>,
    pub error: f64,
}

#[derive(Clone, Debug)]
pub struct GradCheck {
    pub params: Vec<ParamCheck>,
    pub worst: f64,
    pub blame: Option<Blame>,
}

/// The gradients of `gradient` (loss, then one output per param) under the interpreter.
pub fn interp_gradients(gradient: &GraphFn, point: &Point) -> Vec<Vec<f64>> {
    let roots: Vec<NodeId> = gradient.outputs.iter().map(|o| o.1).collect();
    let vals = eval_at(&gradient.graph, point, &point.inputs, &roots);
    roots[1..]
        .iter()
        .map(|r| vals[r.index()].as_ref().unwrap().data.clone())
        .collect()
}

/// Given gradients `grads` (one per parameter), checks them against central differences of
/// `forward` in f64 through the reference interpreter: along random directions, and coordinate
/// by coordinate for parameters with at most `max_coords` elements.
pub fn gradcheck(
    forward: &GraphFn,
    grads: &[Vec<f64>],
    point: &Point,
    rng: &mut ChaCha8Rng,
    max_coords: usize,
) -> Vec<ParamCheck> {
    let mut res = Vec::new();
    let terms = largest_array(forward, point);
    for (i, info) in forward.graph.params.iter().enumerate() {
        let n = point.params[i].len();
        let mut worst: f64 = 0.0;
        let check_dir = |d: &[f64]| {
            let scale = point.params[i]
                .data
                .iter()
                .map(|x| x.abs())
                .fold(1.0, f64::max);
            let h = 1e-5 * scale;
            let difference = |h: f64| {
                let mut q = point.clone();
                for (x, di) in q.params[i].data.iter_mut().zip(d) {
                    *x += h * di;
                }
                let up = loss_at(forward, &q);
                let mut q = point.clone();
                for (x, di) in q.params[i].data.iter_mut().zip(d) {
                    *x -= h * di;
                }
                let down = loss_at(forward, &q);
                (
                    (up - down) / (2.0 * h),
                    finite_difference_noise(up, down, h, terms),
                )
            };
            // A central difference is off by about h²·f‴/6, which is no rounding error and
            // can exceed the tolerance on a small component of a curved function; Richardson's
            // step, (4·D(h) − D(2h))/3, cancels that term and leaves O(h⁴). Its rounding error
            // is (4·noise(h) + noise(2h))/3.
            let (near, near_noise) = difference(h);
            let (far, far_noise) = difference(2.0 * h);
            let numeric = (4.0 * near - far) / 3.0;
            let noise = (4.0 * near_noise + far_noise) / 3.0;
            let symbolic: f64 = grads[i].iter().zip(d).map(|(g, d)| g * d).sum();
            excess_rel_err(numeric, symbolic, noise)
        };
        for _ in 0..3 {
            let d: Vec<f64> = (0..n).map(|_| crate::init::std_normal(rng)).collect();
            worst = worst.max(check_dir(&d));
        }
        if n <= max_coords {
            for k in 0..n {
                let mut d = vec![0.0; n];
                d[k] = 1.0;
                worst = worst.max(check_dir(&d));
            }
        }
        res.push(ParamCheck {
            name: info.name.clone(),
            worst,
        });
    }
    res
}

/// Checks each node's derivative rule on its own: the op applied to fresh parameters holding
/// the node's operand values, weighted by a random cotangent, differentiated and compared with
/// finite differences. Returns the first node (in forward order) whose rule is wrong.
pub fn blame(
    forward: &GraphFn,
    point: &Point,
    rng: &mut ChaCha8Rng,
    tolerance: f64,
) -> Option<Blame> {
    let g = &forward.graph;
    let roots: Vec<NodeId> = forward.outputs.iter().map(|o| o.1).collect();
    let live = g.reachable(&roots[..1]);
    let values = eval_at(g, point, &point.inputs, &roots[..1]);
    for id in g.ids().filter(|id| live[id.index()]) {
        let node = g.node(id);
        if node.inputs.is_empty()
            || node.op.is_comparison()
            || matches!(
                node.op,
                Op::Step | Op::Sign | Op::ArgMax { .. } | Op::OneHot { .. }
            )
        {
            continue;
        }
        let operand_values: Vec<Tensor> = node
            .inputs
            .iter()
            .map(|a| values[a.index()].clone().unwrap())
            .collect();
        if let Some(err) = local_check(g, id, &operand_values, rng)
            && err > tolerance
        {
            return Some(Blame {
                op: node.op.name(),
                node: id,
                span: g.span(id),
                error: err,
            });
        }
    }
    None
}

/// The worst relative error of one op's derivative rule at the given operand values.
fn local_check(g: &Graph, id: NodeId, operands: &[Tensor], rng: &mut ChaCha8Rng) -> Option<f64> {
    let node = g.node(id);
    // Operands become parameters with fixed shapes; symbolic sizes are fixed at their values.
    // A constant operand stays the constant: `x^2` is checked as a function of `x` alone, since
    // the rule's derivative in the exponent, x^y·log(x), is not meant to hold at negative x.
    let constant = |a: NodeId| match &g.node(a).op {
        Op::Const(_) | Op::Literal(_) => Some(g.node(a).op.clone()),
        _ => None,
    };
    let varying: Vec<usize> = (0..operands.len())
        .filter(|&k| constant(node.inputs[k]).is_none())
        .collect();
    let params: Vec<crate::ir::ParamInfo> = varying
        .iter()
        .map(|&k| crate::ir::ParamInfo {
            name: format!("a{k}"),
            shape: Shape::fixed(
                &operands[k]
                    .shape
                    .iter()
                    .map(|&d| d as u64)
                    .collect::<Vec<_>>(),
            ),
        })
        .collect();
    let mut m = Graph::new(crate::ir::DType::F64, g.syms.clone(), vec![], params);
    let mut next_param = 0u32;
    let args: Vec<NodeId> = node
        .inputs
        .iter()
        .map(|&a| match constant(a) {
            Some(op) => m.build(op, &[]),
            None => {
                next_param += 1;
                m.build(Op::Param(next_param - 1), &[])
            }
        })
        .collect();
    // Shape-carrying ops keep their attributes; symbolic dims in them are the same symbols.
    let out = m.add(node.op.clone(), &args).ok()?;
    let out_shape = m.shape(out).concrete(&[]);
    let w_info = InputInfo {
        name: "w".into(),
        shape: m.shape(out).clone(),
        is_int: false,
    };
    m.inputs.push(w_info);
    let w = m.build(Op::Input(0), &[]);
    let prod = m.build(Op::Mul, &[out, w]);
    let loss = m.build(Op::Sum { axis: None }, &[prod]);
    let f = GraphFn {
        graph: m,
        outputs: vec![("loss".into(), loss)],
    };
    let grad = autodiff::grad(&f);
    let weights: Vec<f64> = (0..out_shape.iter().product::<usize>())
        .map(|_| crate::init::std_normal(rng))
        .collect();
    let point = Point {
        inputs: vec![Tensor::new(out_shape, weights)],
        params: varying.iter().map(|&k| operands[k].clone()).collect(),
        states: vec![],
        syms: vec![],
    };
    let grads = interp_gradients(&grad, &point);
    let checks = gradcheck(&f, &grads, &point, rng, 16);
    Some(checks.iter().map(|c| c.worst).fold(0.0, f64::max))
}

/// Renders a blame for people, with the source line when there is one.
pub fn describe_blame(b: &Blame, file: &SourceFile) -> String {
    match b.span {
        Some(s) => {
            let (line, col) = file.line_col(s.start);
            format!(
                "the derivative rule of `{}` disagrees with finite differences (relative error {:.2e})\n --> {}:{line}:{col}\n  | {}",
                b.op,
                b.error,
                file.name,
                file.snippet(s)
            )
        }
        None => format!(
            "the derivative rule of `{}` (node {}) disagrees with finite differences (relative error {:.2e})",
            b.op, b.node, b.error
        ),
    }
}

/// A graph computing Hessian-vector products: the forward graph's inputs plus one direction
/// input per parameter (`v.<name>`); outputs H·v for each parameter. Built by differentiating
/// the gradient graph's ⟨∇f, v⟩ again.
pub fn hvp_graph(forward: &GraphFn) -> GraphFn {
    let grad = autodiff::grad(forward);
    let mut g = grad.graph.clone();
    let first_dir = g.inputs.len();
    for p in forward.graph.params.clone() {
        g.inputs.push(InputInfo {
            name: format!("v.{}", p.name),
            shape: p.shape.clone(),
            is_int: false,
        });
    }
    let mut acc: Option<NodeId> = None;
    for (i, (_, gid)) in grad.outputs[1..].iter().enumerate() {
        let v = g.build(Op::Input((first_dir + i) as u32), &[]);
        let prod = g.build(Op::Mul, &[*gid, v]);
        let s = g.build(Op::Sum { axis: None }, &[prod]);
        acc = Some(match acc {
            None => s,
            Some(a) => g.build(Op::Add, &[a, s]),
        });
    }
    let dot = acc.unwrap_or_else(|| g.constant(0.0));
    let hv = autodiff::gradients(&mut g, dot);
    let mut outputs = vec![("gv".to_string(), dot)];
    for (i, p) in forward.graph.params.iter().enumerate() {
        outputs.push((format!("Hv.{}", p.name), hv[i]));
    }
    simplify::run(&GraphFn { graph: g, outputs }).0
}

/// H·v at a point, with `v` flattened over all parameters in declaration order.
pub fn hvp(h: &GraphFn, point: &Point, v: &[f64]) -> Vec<f64> {
    let mut inputs = point.inputs.clone();
    let mut off = 0;
    for p in &point.params {
        inputs.push(Tensor::new(p.shape.clone(), v[off..off + p.len()].to_vec()));
        off += p.len();
    }
    let roots: Vec<NodeId> = h.outputs[1..].iter().map(|o| o.1).collect();
    let vals = eval_at(&h.graph, point, &inputs, &roots);
    roots
        .iter()
        .flat_map(|r| vals[r.index()].as_ref().unwrap().data.clone())
        .collect()
}

/// The dense Hessian, column by column (for small models).
pub fn hessian(h: &GraphFn, point: &Point) -> Vec<Vec<f64>> {
    let n: usize = point.params.iter().map(|p| p.len()).sum();
    (0..n)
        .map(|k| {
            let mut e = vec![0.0; n];
            e[k] = 1.0;
            hvp(h, point, &e)
        })
        .collect()
}

/// Eigenvalues of a symmetric matrix by cyclic Jacobi rotations, ascending.
pub fn symmetric_eigenvalues(a: &[Vec<f64>]) -> Vec<f64> {
    symmetric_eigen(a).into_iter().map(|(l, _)| l).collect()
}

/// Eigenvalues and unit eigenvectors of a symmetric matrix by cyclic Jacobi rotations, in
/// ascending order of the eigenvalue. Each vector's largest entry is positive, so the result
/// does not depend on the sign rotations happen to leave.
pub fn symmetric_eigen(a: &[Vec<f64>]) -> Vec<(f64, Vec<f64>)> {
    let n = a.len();
    // Columns of v are the eigenvectors: the product of the rotations applied to m.
    let mut v: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    let mut m: Vec<Vec<f64>> = a.to_vec();
    // Symmetrize: the computed Hessian is symmetric only up to rounding.
    for i in 0..n {
        for j in 0..i {
            let s = 0.5 * (m[i][j] + m[j][i]);
            m[i][j] = s;
            m[j][i] = s;
        }
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i][j] * m[i][j])
            .sum();
        let scale: f64 = (0..n).map(|i| m[i][i] * m[i][i]).sum::<f64>().max(1e-300);
        if off <= 1e-30 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if m[p][q] == 0.0 {
                    continue;
                }
                let theta = (m[q][q] - m[p][p]) / (2.0 * m[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[k][p], m[k][q]);
                    m[k][p] = c * mkp - s * mkq;
                    m[k][q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p][k], m[q][k]);
                    m[p][k] = c * mpk - s * mqk;
                    m[q][k] = s * mpk + c * mqk;
                }
                for row in v.iter_mut() {
                    let (vkp, vkq) = (row[p], row[q]);
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut pairs: Vec<(f64, Vec<f64>)> = (0..n)
        .map(|j| {
            let mut col: Vec<f64> = v.iter().map(|row| row[j]).collect();
            let largest = col
                .iter()
                .copied()
                .fold(0.0f64, |a, x| if x.abs() > a.abs() { x } else { a });
            if largest < 0.0 {
                col.iter_mut().for_each(|x| *x = -*x);
            }
            (m[j][j], col)
        })
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    pairs
}

/// Extreme eigenvalues by Lanczos iteration on Hessian-vector products, with full
/// reorthogonalization (the models it serves have at most a few hundred thousand parameters and
/// need tens of iterations).
pub fn lanczos_extremes(
    h: &GraphFn,
    point: &Point,
    iterations: usize,
    rng: &mut ChaCha8Rng,
) -> (f64, f64) {
    let n: usize = point.params.iter().map(|p| p.len()).sum();
    let k = iterations.min(n).max(1);
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut q: Vec<f64> = (0..n).map(|_| rng.random::<f64>() - 0.5).collect();
    let nq = norm(&q);
    q.iter_mut().for_each(|x| *x /= nq);
    let mut basis: Vec<Vec<f64>> = vec![q];
    let (mut alpha, mut beta) = (Vec::new(), Vec::new());
    for j in 0..k {
        let mut w = hvp(h, point, &basis[j]);
        let a: f64 = w.iter().zip(&basis[j]).map(|(x, y)| x * y).sum();
        alpha.push(a);
        for b in &basis {
            let c: f64 = w.iter().zip(b).map(|(x, y)| x * y).sum();
            w.iter_mut().zip(b).for_each(|(x, y)| *x -= c * y);
        }
        let bn = norm(&w);
        if j + 1 == k || bn < 1e-12 * a.abs().max(1e-300) {
            break;
        }
        beta.push(bn);
        basis.push(w.iter().map(|x| x / bn).collect());
    }
    let m = alpha.len();
    let t: Vec<Vec<f64>> = (0..m)
        .map(|i| {
            (0..m)
                .map(|j| {
                    if i == j {
                        alpha[i]
                    } else if i + 1 == j {
                        beta[i]
                    } else if j + 1 == i {
                        beta[j]
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let ev = symmetric_eigenvalues(&t);
    (ev[0], ev[ev.len() - 1])
}
