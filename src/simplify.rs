//! Simplification of forward and gradient graphs: constant folding, a table of named algebraic
//! identities, common-subexpression elimination and dead-node elimination.
//!
//! The pass rebuilds the graph from its outputs: rebuilding only what the outputs reach is DCE,
//! and the arena's hash-consing is CSE. Each node passes through `rewrite`, which applies the
//! first rule that matches and re-simplifies what the rule built. The rebuild repeats until the
//! graph stops changing or `MAX_ROUNDS` is reached.
//!
//! Invariant: every rule is exact in IEEE arithmetic except `fold-const-mul` and
//! `gather-scalars`, which reassociate a product (one rounding), and `fold-reciprocal`, which
//! replaces c·(1/y) by the more accurate c/y. `x * 0 → 0` is only applied when `x` is a finite constant,
//! since `inf * 0` and `NaN * 0` are NaN.

use crate::diagnostics::Span;
use crate::ir::interp;
use crate::ir::shape::broadcast;
use crate::ir::{Graph, LiteralData, NodeId, Op, Shape};
use crate::model::GraphFn;
use std::collections::BTreeMap;

const MAX_ROUNDS: usize = 10;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimplifyReport {
    pub rounds: usize,
    pub nodes_before: usize,
    pub nodes_after: usize,
    /// How many times each named rule fired, over all rounds.
    pub fired: BTreeMap<&'static str, usize>,
    /// Each firing of a numerical-stability rule, with the source span of the rewritten node.
    pub stability: Vec<(&'static str, Option<Span>)>,
    /// False when the round limit stopped the pass before a fixpoint.
    pub converged: bool,
}

pub fn run(f: &GraphFn) -> (GraphFn, SimplifyReport) {
    let roots: Vec<NodeId> = f.outputs.iter().map(|o| o.1).collect();
    let mut report = SimplifyReport {
        nodes_before: f.graph.reachable(&roots).iter().filter(|l| **l).count(),
        ..Default::default()
    };
    let mut cur = f.clone();
    for round in 1..=MAX_ROUNDS {
        let next = rebuild(&cur, &mut report);
        report.rounds = round;
        let same = next.graph.len() == cur.graph.len()
            && next.outputs == cur.outputs
            && next
                .graph
                .ids()
                .all(|id| next.graph.node(id) == cur.graph.node(id));
        cur = next;
        if same {
            report.converged = true;
            break;
        }
    }
    report.nodes_after = cur.graph.len();
    if cfg!(debug_assertions)
        && let Err(e) = crate::ir::verify::verify(&cur.graph)
    {
        panic!("adjoint internal error: simplify produced an ill-formed graph: {e:?}");
    }
    (cur, report)
}

fn rebuild(f: &GraphFn, report: &mut SimplifyReport) -> GraphFn {
    let old = &f.graph;
    let roots: Vec<NodeId> = f.outputs.iter().map(|o| o.1).collect();
    let live = old.reachable(&roots);
    let mut g = old.empty_like();
    let mut map: Vec<Option<NodeId>> = vec![None; old.len()];
    for id in old.ids().filter(|id| live[id.index()]) {
        let node = old.node(id);
        let args: Vec<NodeId> = node
            .inputs
            .iter()
            .map(|i| map[i.index()].expect("operand rebuilt"))
            .collect();
        let mut fired = Fired {
            counts: &mut report.fired,
            stability: &mut report.stability,
            span: old.span(id),
        };
        let new = rewrite(&mut g, node.op.clone(), &args, &mut fired);
        if let Some(span) = old.span(id) {
            g.set_span(new, span);
        }
        if let Some(name) = old.name(id) {
            g.set_name(new, name);
        }
        if let Some(rule) = old.rule(id) {
            g.set_rule(new, rule);
        }
        if let Some(of) = old.derivative_of(id) {
            g.set_derivative_of(new, of);
        }
        map[id.index()] = Some(new);
    }
    let outputs = f
        .outputs
        .iter()
        .map(|(n, id)| (n.clone(), map[id.index()].unwrap()))
        .collect();
    GraphFn { graph: g, outputs }
}

/// Where rule firings are recorded while one node is rebuilt.
struct Fired<'a> {
    counts: &'a mut BTreeMap<&'static str, usize>,
    stability: &'a mut Vec<(&'static str, Option<Span>)>,
    span: Option<Span>,
}

/// Builds `op(args)` in simplified form.
fn rewrite(g: &mut Graph, op: Op, args: &[NodeId], fired: &mut Fired) -> NodeId {
    let res = match stable_form(g, &op, args, fired) {
        Some((rule, id)) => {
            fired.stability.push((rule, fired.span));
            Some((rule, id))
        }
        None => try_rules(g, &op, args, fired),
    };
    match res {
        Some((rule, id)) => {
            *fired.counts.entry(rule).or_default() += 1;
            id
        }
        None => g.build(op, args),
    }
}

/// The operand of a unary node of kind `op`, if `id` is one.
/// For `k * y` with a negative constant `k` (and `y` not a constant): `k` and `y`, so that
/// `x + k * y` can be written `x − (−k) * y` (exact: negating a constant is exact).
fn negative_multiple(g: &Graph, id: NodeId) -> Option<(f64, NodeId)> {
    if *g.op(id) != Op::Mul {
        return None;
    }
    let inputs = &g.node(id).inputs;
    let k = g.const_value(inputs[0])?;
    (k < 0.0 && g.const_value(inputs[1]).is_none()).then_some((k, inputs[1]))
}

fn unary_arg(g: &Graph, id: NodeId, op: Op) -> Option<NodeId> {
    (*g.op(id) == op).then(|| g.node(id).inputs[0])
}

/// The other operand when `id` is `c op x` or `x op c` with the constant `c`.
fn with_const(g: &Graph, id: NodeId, op: Op, c: f64, commutes: bool) -> Option<NodeId> {
    if *g.op(id) != op {
        return None;
    }
    let ins = &g.node(id).inputs;
    if g.const_value(ins[0]) == Some(c) && g.shape(ins[1]) == g.shape(id) {
        return Some(ins[1]);
    }
    if commutes && g.const_value(ins[1]) == Some(c) && g.shape(ins[0]) == g.shape(id) {
        return Some(ins[0]);
    }
    None
}

/// At most this many factors in one term of a mixture; a longer product is left as written.
const MAX_TERM_FACTORS: usize = 32;

/// A term `w₁·…·exp(a₁)·…` of a sum under a log: its exponents and its weights, which are
/// provably positive, so that the term is `exp(Σ a + Σ log w)`.
#[derive(Default)]
struct ExpTerm {
    exponents: Vec<NodeId>,
    weights: Vec<NodeId>,
}

impl ExpTerm {
    /// `Σ a + Σ log w`, the log of the term (`log w` itself simplified, so `log σ(z)` becomes
    /// `−softplus(−z)`).
    fn log_value(
        &self,
        g: &mut Graph,
        r: &mut impl FnMut(&mut Graph, Op, &[NodeId]) -> NodeId,
    ) -> NodeId {
        let mut parts = self.exponents.clone();
        for w in &self.weights {
            parts.push(r(g, Op::Log, &[*w]));
        }
        let mut acc = parts[0];
        for p in &parts[1..] {
            acc = r(g, Op::Add, &[acc, *p]);
        }
        acc
    }
}

/// `id` as a product of exponentials and positive weights, if it is one.
fn exp_term(g: &Graph, id: NodeId) -> Option<ExpTerm> {
    let mut term = ExpTerm::default();
    let mut stack = vec![id];
    let mut seen = 0;
    while let Some(f) = stack.pop() {
        seen += 1;
        if seen > 2 * MAX_TERM_FACTORS {
            return None;
        }
        match g.op(f) {
            Op::Exp => term.exponents.push(g.node(f).inputs[0]),
            Op::Mul => stack.extend(g.node(f).inputs.iter().rev()),
            _ if positive_weight(g, f) => term.weights.push(f),
            _ => return None,
        }
    }
    Some(term)
}

/// True when `id` is positive wherever it is defined, by construction: a positive constant,
/// a sigmoid, one minus a sigmoid, an exponential, a row count, a quotient of two of them (the
/// 1/n of a mean), or a view of one of them.
fn positive_weight(g: &Graph, mut id: NodeId) -> bool {
    loop {
        match g.op(id) {
            Op::Const(_) => return g.const_value(id).is_some_and(|c| c > 0.0 && c.is_finite()),
            Op::Sigmoid | Op::Exp | Op::DimSize(_) => return true,
            Op::Literal(data) => return data.values().all(|v| v > 0.0 && v.is_finite()),
            // Zero where an element is dropped.
            Op::DropMask { .. } => return false,
            Op::State(_) => return false,
            Op::Div => return g.node(id).inputs.iter().all(|&x| positive_weight(g, x)),
            Op::Sub => {
                return with_const(g, id, Op::Sub, 1.0, false)
                    .is_some_and(|s| *g.op(s) == Op::Sigmoid);
            }
            Op::Take { .. } | Op::Expand(_) | Op::Reshape(_) | Op::Slice { .. } => {
                id = g.node(id).inputs[0]
            }
            Op::Input(_)
            | Op::Param(_)
            | Op::Iota(_)
            | Op::Neg
            | Op::Log
            | Op::Sqrt
            | Op::Tanh
            | Op::Relu
            | Op::Step
            | Op::Log1p
            | Op::Expm1
            | Op::Abs
            | Op::Sign
            | Op::Sin
            | Op::Cos
            | Op::Softplus
            | Op::Erf
            | Op::Erfc
            | Op::Add
            | Op::Mul
            | Op::Pow
            | Op::Eq
            | Op::Ne
            | Op::Lt
            | Op::Le
            | Op::Gt
            | Op::Ge
            | Op::Max
            | Op::Min
            | Op::Select
            | Op::MatMul
            | Op::Transpose { .. }
            | Op::Sum { .. }
            | Op::LogSumExp { .. }
            | Op::ReduceMax { .. }
            | Op::ReduceMin { .. }
            | Op::ArgMax { .. }
            | Op::Put { .. }
            | Op::Gather { .. }
            | Op::ScatterAdd { .. }
            | Op::Windows { .. }
            | Op::Unwindows { .. }
            | Op::OneHot { .. }
            | Op::SumTo(_)
            | Op::Unslice { .. } => return false,
        }
    }
}

/// True when the log of `y` is a log-sum-exp that a stability rule rewrites: a sum (over an
/// axis or all elements) of weighted exponentials, or a sum of exponential terms.
fn log_is_rewritten(g: &Graph, y: NodeId) -> bool {
    match g.op(y) {
        Op::Sum { .. } => exp_term(g, g.node(y).inputs[0]).is_some_and(|t| !t.exponents.is_empty()),
        Op::Add => {
            let ins = &g.node(y).inputs;
            let both_exp = ins.iter().all(|i| *g.op(*i) == Op::Exp);
            both_exp || mixture_terms(g, y).is_some()
        }
        _ => false,
    }
}

/// The terms of `x` when `log(x)` is a log-sum-exp written out: three or more terms
/// `exp(a) + exp(b) + exp(c)`, or a mixture whose terms carry positive weights
/// (`p·exp(a) + (1 − p)·exp(b)`). Two unweighted exponentials are `log-add-exp`'s, and
/// `1 + exp(y)` is `log-one-plus-exp`'s.
fn mixture_terms(g: &Graph, x: NodeId) -> Option<(&'static str, Vec<ExpTerm>)> {
    if *g.op(x) != Op::Add {
        return None;
    }
    let mut terms = Vec::new();
    let mut stack = vec![x];
    while let Some(t) = stack.pop() {
        if *g.op(t) == Op::Add {
            stack.extend(g.node(t).inputs.iter().rev());
        } else {
            terms.push(exp_term(g, t)?);
        }
    }
    if terms.iter().all(|t| t.exponents.is_empty()) {
        return None;
    }
    let weighted = terms
        .iter()
        .any(|t| !t.exponents.is_empty() && !t.weights.is_empty());
    match (terms.len(), weighted) {
        (0 | 1, _) | (2, false) => None,
        (_, true) => Some(("log-mixture", terms)),
        (_, false) => Some(("log-add-exp-chain", terms)),
    }
}

/// log Σ exp(tᵢ) folded pairwise: log(eˣ + eʸ) = max(x, y) + softplus(min(y, x) − max(x, y)).
/// The softplus argument is ≤ 0, so nothing overflows and no large values cancel. `max` passes
/// a tie's derivative to its first operand and `min` to its first, so with the operands
/// swapped a tie's derivative is split evenly, as it is for log(eˣ + eʸ).
fn log_add_exp_chain(
    g: &mut Graph,
    terms: &[ExpTerm],
    r: &mut impl FnMut(&mut Graph, Op, &[NodeId]) -> NodeId,
) -> NodeId {
    let mut acc = terms[0].log_value(g, r);
    for term in &terms[1..] {
        let t = term.log_value(g, r);
        let hi = r(g, Op::Max, &[acc, t]);
        let lo = r(g, Op::Min, &[t, acc]);
        let d = r(g, Op::Sub, &[lo, hi]);
        let sp = r(g, Op::Softplus, &[d]);
        acc = r(g, Op::Add, &[hi, sp]);
    }
    acc
}

/// Numerically stable forms of expressions that overflow or lose precision as written.
/// `exp-log` assumes its argument is positive, where `log` is defined.
fn stable_form(
    g: &mut Graph,
    op: &Op,
    args: &[NodeId],
    fired: &mut Fired,
) -> Option<(&'static str, NodeId)> {
    let mut r = |g: &mut Graph, op: Op, a: &[NodeId]| rewrite(g, op, a, fired);
    match op {
        Op::Log => {
            let x = args[0];
            if let Some(y) = unary_arg(g, x, Op::Exp) {
                return Some(("log-exp", y));
            }
            // A view of an exponential (`softmax(v)[0]`): the log of the same view of the
            // exponent, so that a weight's log does not underflow to −inf.
            if let view @ (Op::Take { .. } | Op::Expand(_) | Op::Reshape(_) | Op::Slice { .. }) =
                g.op(x).clone()
                && let Some(y) = unary_arg(g, g.node(x).inputs[0], Op::Exp)
            {
                return Some(("log-exp", r(g, view, &[y])));
            }
            if let Some(y) = unary_arg(g, x, Op::Sigmoid) {
                // log σ(y) = −softplus(−y)
                let ny = r(g, Op::Neg, &[y]);
                let sp = r(g, Op::Softplus, &[ny]);
                return Some(("log-sigmoid", r(g, Op::Neg, &[sp])));
            }
            if let Some(s) = with_const(g, x, Op::Sub, 1.0, false)
                && let Some(y) = unary_arg(g, s, Op::Sigmoid)
            {
                // log(1 − σ(y)) = −softplus(y)
                let sp = r(g, Op::Softplus, &[y]);
                return Some(("log-one-minus-sigmoid", r(g, Op::Neg, &[sp])));
            }
            if let (Op::Add, [a, b]) = (g.op(x).clone(), g.node(x).inputs.as_slice())
                && let (Some(ea), Some(eb)) = (unary_arg(g, *a, Op::Exp), unary_arg(g, *b, Op::Exp))
            {
                // log(eᵃ + eᵇ) = a + softplus(b − a): smooth, and never overflows.
                let d = r(g, Op::Sub, &[eb, ea]);
                let sp = r(g, Op::Softplus, &[d]);
                return Some(("log-add-exp", r(g, Op::Add, &[ea, sp])));
            }
            if let Some((rule, terms)) = mixture_terms(g, x) {
                return Some((rule, log_add_exp_chain(g, &terms, &mut r)));
            }
            // log(w · Σ exp) = log w + log Σ exp, so that the sum's log is rewritten in turn:
            // `log(mean(exp(x)))`, whose `mean` is a sum times 1/n.
            if let (Op::Mul, [a, b]) = (g.op(x).clone(), g.node(x).inputs.as_slice()) {
                for (w, y) in [(*a, *b), (*b, *a)] {
                    if positive_weight(g, w) && log_is_rewritten(g, y) {
                        let lw = r(g, Op::Log, &[w]);
                        let ly = r(g, Op::Log, &[y]);
                        return Some(("log-mean-exp", r(g, Op::Add, &[lw, ly])));
                    }
                }
            }
            if let Some(s) = with_const(g, x, Op::Add, 1.0, true) {
                if let Some(y) = unary_arg(g, s, Op::Exp) {
                    return Some(("log-one-plus-exp", r(g, Op::Softplus, &[y])));
                }
                return Some(("log-one-plus", r(g, Op::Log1p, &[s])));
            }
            if let Op::Sum { axis } = g.op(x).clone() {
                let inner = g.node(x).inputs[0];
                if let Some(y) = unary_arg(g, inner, Op::Exp) {
                    return Some(("log-sum-exp", r(g, Op::LogSumExp { axis }, &[y])));
                }
                if let Some(term) = exp_term(g, inner).filter(|t| !t.exponents.is_empty()) {
                    // log Σ w·eᵃ = logsumexp(a + log w): the weights' logs are stable forms.
                    let t = term.log_value(g, &mut r);
                    let lse = r(g, Op::LogSumExp { axis }, &[t]);
                    return Some(("log-sum-weighted-exp", lse));
                }
            }
        }
        Op::Exp => {
            if let Some(y) = unary_arg(g, args[0], Op::Log) {
                return Some(("exp-log", y));
            }
        }
        Op::Sub => {
            if g.const_value(args[1]) == Some(1.0)
                && let Some(y) = unary_arg(g, args[0], Op::Exp)
            {
                return Some(("exp-minus-one", r(g, Op::Expm1, &[y])));
            }
        }
        Op::Sqrt => {
            if let Op::Pow = g.op(args[0]) {
                let ins = g.node(args[0]).inputs.clone();
                if g.const_value(ins[1]) == Some(2.0) {
                    return Some(("sqrt-square", r(g, Op::Abs, &[ins[0]])));
                }
            }
        }
        Op::Div => {
            // 1 / (1 + exp(−y)) = σ(y)
            if g.const_value(args[0]) == Some(1.0)
                && let Some(e) = with_const(g, args[1], Op::Add, 1.0, true)
                && let Some(ny) = unary_arg(g, e, Op::Exp)
                && let Some(y) = unary_arg(g, ny, Op::Neg)
            {
                return Some(("logistic", r(g, Op::Sigmoid, &[y])));
            }
            // exp(y) / sum(exp(y)) = exp(y − logsumexp(y))
            if let Some(y) = unary_arg(g, args[0], Op::Exp) {
                let denom = match g.op(args[1]) {
                    Op::Reshape(_) => g.node(args[1]).inputs[0],
                    _ => args[1],
                };
                if let Op::Sum { axis } = g.op(denom).clone()
                    && g.node(denom).inputs[0] == args[0]
                {
                    let lse = r(g, Op::LogSumExp { axis }, &[y]);
                    let lse = match g.op(args[1]).clone() {
                        Op::Reshape(s) => r(g, Op::Reshape(s), &[lse]),
                        _ => lse,
                    };
                    let d = r(g, Op::Sub, &[y, lse]);
                    return Some(("softmax", r(g, Op::Exp, &[d])));
                }
            }
        }
        // No stable form.
        Op::Input(_)
        | Op::Param(_)
        | Op::Const(_)
        | Op::DimSize(_)
        | Op::Iota(_)
        | Op::Literal(_)
        | Op::DropMask { .. }
        | Op::State(_)
        | Op::Neg
        | Op::Tanh
        | Op::Sigmoid
        | Op::Relu
        | Op::Step
        | Op::Log1p
        | Op::Expm1
        | Op::Abs
        | Op::Sign
        | Op::Sin
        | Op::Cos
        | Op::Softplus
        | Op::Erf
        | Op::Erfc
        | Op::Add
        | Op::Mul
        | Op::Pow
        | Op::Eq
        | Op::Ne
        | Op::Lt
        | Op::Le
        | Op::Gt
        | Op::Ge
        | Op::Max
        | Op::Min
        | Op::Select
        | Op::MatMul
        | Op::Transpose { .. }
        | Op::Sum { .. }
        | Op::LogSumExp { .. }
        | Op::ReduceMax { .. }
        | Op::ReduceMin { .. }
        | Op::ArgMax { .. }
        | Op::Take { .. }
        | Op::Put { .. }
        | Op::Gather { .. }
        | Op::ScatterAdd { .. }
        | Op::Windows { .. }
        | Op::Unwindows { .. }
        | Op::OneHot { .. }
        | Op::SumTo(_)
        | Op::Expand(_)
        | Op::Reshape(_)
        | Op::Slice { .. }
        | Op::Unslice { .. } => {}
    }
    None
}

/// An elementwise op on array literals and scalar constants, evaluated as the interpreter
/// evaluates it, into a literal (when the result is small enough to be one).
fn fold_literals(g: &mut Graph, op: &Op, args: &[NodeId], out: Option<&Shape>) -> Option<NodeId> {
    let constant = |a: NodeId| matches!(g.op(a), Op::Literal(_) | Op::Const(_));
    let any_literal = args.iter().any(|&a| matches!(g.op(a), Op::Literal(_)));
    if !op.is_elementwise() || !any_literal || !args.iter().all(|&a| constant(a)) {
        return None;
    }
    let dims = out?.as_fixed()?;
    let total: usize = dims.iter().product();
    if total > LiteralData::MAX_ELEMENTS {
        return None;
    }
    let operands: Vec<(Vec<f64>, Vec<usize>)> = args
        .iter()
        .map(|&a| match g.op(a) {
            Op::Literal(data) => {
                let shape = data.shape.as_fixed().expect("a literal's shape is fixed");
                let strides = interp::broadcast_strides(&shape, &dims);
                (data.values().collect(), strides)
            }
            _ => (
                vec![g.const_value(a).expect("a constant")],
                vec![0; dims.len()],
            ),
        })
        .collect();
    let mut values = Vec::with_capacity(total);
    let mut index = vec![0usize; dims.len()];
    for _ in 0..total {
        let xs: Vec<f64> = operands
            .iter()
            .map(|(v, s)| v[index.iter().zip(s).map(|(i, s)| i * s).sum::<usize>()])
            .collect();
        values.push(match xs.as_slice() {
            [x] => interp::unary(op, *x),
            [a, b] => interp::binary(op, *a, *b),
            [c, a, b] => {
                if *c != 0.0 {
                    *a
                } else {
                    *b
                }
            }
            _ => unreachable!("elementwise ops take one to three operands"),
        });
        for k in (0..dims.len()).rev() {
            index[k] += 1;
            if index[k] < dims[k] {
                break;
            }
            index[k] = 0;
        }
    }
    let shape = Shape::fixed(&dims.iter().map(|&d| d as u64).collect::<Vec<_>>());
    Some(g.build(Op::Literal(Box::new(LiteralData::new(shape, &values))), &[]))
}

/// The rule table. Each arm names its rule; the first match wins.
fn try_rules(
    g: &mut Graph,
    op: &Op,
    args: &[NodeId],
    fired: &mut Fired,
) -> Option<(&'static str, NodeId)> {
    let c = |g: &Graph, i: usize| args.get(i).and_then(|&a| g.const_value(a));
    let out_shape = {
        let shapes: Vec<_> = args.iter().map(|&a| g.shape(a)).collect();
        (op.arity() > 0)
            .then(|| crate::ir::shape::infer(op, &shapes).ok())
            .flatten()
    };
    // The operand `i` can stand for the whole node when it already has the node's shape.
    let keeps_shape = |g: &Graph, i: usize| out_shape.as_ref() == Some(g.shape(args[i]));

    // Constant folding of scalar elementwise ops.
    if op.is_elementwise() && !args.is_empty() && args.iter().all(|&a| g.const_value(a).is_some()) {
        let v = match args.len() {
            1 => interp::unary(op, c(g, 0)?),
            2 => interp::binary(op, c(g, 0)?, c(g, 1)?),
            _ => {
                if c(g, 0)? != 0.0 {
                    c(g, 1)?
                } else {
                    c(g, 2)?
                }
            }
        };
        return Some(("fold-const", g.constant(v)));
    }
    if let Some(folded) = fold_literals(g, op, args, out_shape.as_ref()) {
        return Some(("fold-literal", folded));
    }
    let mut r = |g: &mut Graph, op: Op, a: &[NodeId]| rewrite(g, op, a, fired);
    match op {
        Op::Add => {
            if c(g, 1) == Some(0.0) && keeps_shape(g, 0) {
                return Some(("add-zero", args[0]));
            }
            if c(g, 0) == Some(0.0) && keeps_shape(g, 1) {
                return Some(("add-zero", args[1]));
            }
            if let Op::Neg = g.op(args[1]) {
                let y = g.node(args[1]).inputs[0];
                return Some(("add-neg", r(g, Op::Sub, &[args[0], y])));
            }
            if let Op::Neg = g.op(args[0]) {
                let x = g.node(args[0]).inputs[0];
                return Some(("add-neg", r(g, Op::Sub, &[args[1], x])));
            }
            if let Some((k, y)) = negative_multiple(g, args[1]) {
                let nk = g.constant(-k);
                let m = r(g, Op::Mul, &[nk, y]);
                return Some(("add-neg", r(g, Op::Sub, &[args[0], m])));
            }
            if c(g, 1).is_some() && c(g, 0).is_none() {
                return Some(("const-left", r(g, Op::Add, &[args[1], args[0]])));
            }
        }
        Op::Sub => {
            if c(g, 1) == Some(0.0) && keeps_shape(g, 0) {
                return Some(("sub-zero", args[0]));
            }
            if c(g, 0) == Some(0.0) && keeps_shape(g, 1) {
                return Some(("zero-sub", r(g, Op::Neg, &[args[1]])));
            }
            if let Op::Neg = g.op(args[1]) {
                let y = g.node(args[1]).inputs[0];
                return Some(("sub-neg", r(g, Op::Add, &[args[0], y])));
            }
            if let Some((k, y)) = negative_multiple(g, args[1]) {
                let nk = g.constant(-k);
                let m = r(g, Op::Mul, &[nk, y]);
                return Some(("sub-neg", r(g, Op::Add, &[args[0], m])));
            }
        }
        Op::Mul => {
            if c(g, 1) == Some(1.0) && keeps_shape(g, 0) {
                return Some(("mul-one", args[0]));
            }
            if c(g, 0) == Some(1.0) && keeps_shape(g, 1) {
                return Some(("mul-one", args[1]));
            }
            if c(g, 0) == Some(-1.0) && keeps_shape(g, 1) {
                return Some(("mul-neg-one", r(g, Op::Neg, &[args[1]])));
            }
            if c(g, 1).is_some() && c(g, 0).is_none() {
                return Some(("const-left", r(g, Op::Mul, &[args[1], args[0]])));
            }
            for k in 0..2 {
                if let Op::Neg = g.op(args[k]) {
                    let inner = g.node(args[k]).inputs[0];
                    let mut a = args.to_vec();
                    a[k] = inner;
                    let m = r(g, Op::Mul, &a);
                    return Some(("neg-out-of-mul", r(g, Op::Neg, &[m])));
                }
            }
            // c * (1 / y) → c / y: one rounding instead of two.
            if let (Some(_), Op::Div) = (c(g, 0), g.op(args[1])) {
                let inner = g.node(args[1]).inputs.clone();
                if g.const_value(inner[0]) == Some(1.0) && keeps_shape(g, 1) {
                    return Some(("fold-reciprocal", r(g, Op::Div, &[args[0], inner[1]])));
                }
            }
            // s * (c * x) → (c * s) * x for a scalar s: constants gather with the scalars.
            if c(g, 0).is_none()
                && g.shape(args[0]).is_scalar()
                && let Op::Mul = g.op(args[1])
            {
                let inner = g.node(args[1]).inputs.clone();
                if g.const_value(inner[0]).is_some() && g.const_value(inner[1]).is_none() {
                    let cs = r(g, Op::Mul, &[inner[0], args[0]]);
                    return Some(("gather-scalars", r(g, Op::Mul, &[cs, inner[1]])));
                }
            }
            // c1 * (c2 * x) → (c1·c2) * x
            if let (Some(c1), Op::Mul) = (c(g, 0), g.op(args[1])) {
                let inner = g.node(args[1]).inputs.clone();
                if let Some(c2) = g.const_value(inner[0]) {
                    let k = g.constant(c1 * c2);
                    return Some(("fold-const-mul", r(g, Op::Mul, &[k, inner[1]])));
                }
            }
        }
        Op::Div => {
            if c(g, 1) == Some(1.0) && keeps_shape(g, 0) {
                return Some(("div-one", args[0]));
            }
            // x / c → (1/c) * x when 1/c is exact (c a power of two).
            if let Some(k) = c(g, 1) {
                let inv = 1.0 / k;
                if k != 0.0 && k.is_finite() && inv.is_finite() && (k.abs().log2().fract() == 0.0) {
                    let kc = g.constant(inv);
                    return Some(("div-by-power-of-two", r(g, Op::Mul, &[kc, args[0]])));
                }
            }
        }
        Op::Neg => {
            if let Op::Neg = g.op(args[0]) {
                return Some(("neg-neg", g.node(args[0]).inputs[0]));
            }
            // −(c * x) → (−c) * x: negating a constant is exact, and the loop loses an op.
            if let Op::Mul = g.op(args[0]) {
                let inner = g.node(args[0]).inputs.clone();
                if let Some(k) = g.const_value(inner[0])
                    && k != 1.0
                    && k != -1.0
                    && g.const_value(inner[1]).is_none()
                {
                    let nk = g.constant(-k);
                    return Some(("neg-into-constant", r(g, Op::Mul, &[nk, inner[1]])));
                }
            }
            // Negate before broadcasting: fewer elements, and the broadcast can then be absorbed.
            if let Op::Expand(shape) = g.op(args[0]).clone() {
                let inner = g.node(args[0]).inputs[0];
                let n = r(g, Op::Neg, &[inner]);
                return Some(("neg-of-broadcast", r(g, Op::Expand(shape), &[n])));
            }
        }
        // sum(−x) → −sum(x): exact (rounding is symmetric), and the negation leaves the loop.
        Op::Sum { .. } | Op::SumTo(_) if matches!(g.op(args[0]), Op::Neg) => {
            let inner = g.node(args[0]).inputs[0];
            let s = r(g, op.clone(), &[inner]);
            return Some(("neg-out-of-sum", r(g, Op::Neg, &[s])));
        }
        Op::Pow => {
            if c(g, 1) == Some(1.0) && keeps_shape(g, 0) {
                return Some(("pow-one", args[0]));
            }
        }
        Op::Transpose { perm } => {
            if perm.iter().enumerate().all(|(i, &a)| a as usize == i) {
                return Some(("transpose-identity", args[0]));
            }
            // transpose(transpose(x, p), q) reads axis q[i] of the inner result, which is
            // axis p[q[i]] of x.
            if let Op::Transpose { perm: inner } = g.op(args[0]) {
                let composed: Vec<u32> = perm.iter().map(|&a| inner[a as usize]).collect();
                let x = g.node(args[0]).inputs[0];
                return Some((
                    "transpose-transpose",
                    r(g, Op::Transpose { perm: composed }, &[x]),
                ));
            }
        }
        Op::Reshape(s) | Op::Expand(s) | Op::SumTo(s) if g.shape(args[0]) == s => {
            return Some(("identity-shape", args[0]));
        }
        Op::Reshape(s) => {
            if let Op::Expand(_) = g.op(args[0]) {
                let inner = g.node(args[0]).inputs[0];
                if g.shape(inner).is_scalar() {
                    return Some(("reshape-broadcast", r(g, Op::Expand(s.clone()), &[inner])));
                }
            }
            if let Op::Reshape(_) = g.op(args[0]) {
                let inner = g.node(args[0]).inputs[0];
                return Some(("reshape-reshape", r(g, Op::Reshape(s.clone()), &[inner])));
            }
        }
        Op::Expand(s) => {
            // Expanding a scalar constant: keep the constant scalar when it feeds broadcasts.
            if let Op::Expand(_) = g.op(args[0]) {
                let inner = g.node(args[0]).inputs[0];
                return Some(("expand-expand", r(g, Op::Expand(s.clone()), &[inner])));
            }
        }
        Op::Slice {
            axis,
            start: 0,
            step: 1,
            ..
        } if out_shape
            .as_ref()
            .is_some_and(|o| o.0[*axis as usize] == g.shape(args[0]).0[*axis as usize]) =>
        {
            return Some(("identity-slice", args[0]));
        }
        Op::Slice {
            axis, start, step, ..
        } => {
            // Every part of a broadcast scalar is the scalar broadcast.
            if let Op::Expand(_) = g.op(args[0]) {
                let inner = g.node(args[0]).inputs[0];
                if let (true, Some(s)) = (g.shape(inner).is_scalar(), out_shape.clone()) {
                    return Some(("slice-of-broadcast", r(g, Op::Expand(s), &[inner])));
                }
            }
            // The part of an embedding that holds the embedded values is those values.
            let keeps_shape_of = |x: NodeId| out_shape.as_ref() == Some(g.shape(x));
            if let Op::Unslice {
                axis: a,
                start: s,
                step: k,
                ..
            } = g.op(args[0])
                && (a, s, k) == (axis, start, step)
            {
                let inner = g.node(args[0]).inputs[0];
                if keeps_shape_of(inner) {
                    return Some(("slice-of-unslice", inner));
                }
            }
        }
        Op::Unslice { .. } => {}
        // No rule (or the guard above did not hold).
        Op::Input(_)
        | Op::Param(_)
        | Op::Const(_)
        | Op::DimSize(_)
        | Op::Iota(_)
        | Op::Literal(_)
        | Op::DropMask { .. }
        | Op::State(_)
        | Op::Exp
        | Op::Log
        | Op::Sqrt
        | Op::Tanh
        | Op::Sigmoid
        | Op::Relu
        | Op::Step
        | Op::Log1p
        | Op::Expm1
        | Op::Abs
        | Op::Sign
        | Op::Sin
        | Op::Cos
        | Op::Softplus
        | Op::Erf
        | Op::Erfc
        | Op::Eq
        | Op::Ne
        | Op::Lt
        | Op::Le
        | Op::Gt
        | Op::Ge
        | Op::Max
        | Op::Min
        | Op::Select
        | Op::MatMul
        | Op::Sum { .. }
        | Op::LogSumExp { .. }
        | Op::ReduceMax { .. }
        | Op::ReduceMin { .. }
        | Op::ArgMax { .. }
        | Op::Take { .. }
        | Op::Put { .. }
        | Op::Gather { .. }
        | Op::ScatterAdd { .. }
        | Op::Windows { .. }
        | Op::Unwindows { .. }
        | Op::OneHot { .. }
        | Op::SumTo(_) => {}
    }
    // An operand that is only a broadcast can be broadcast by the elementwise op itself.
    if op.is_elementwise() && args.len() == 2 {
        for k in 0..2 {
            if let Op::Expand(_) = g.op(args[k]) {
                let inner = g.node(args[k]).inputs[0];
                let other = args[1 - k];
                if broadcast(g.shape(inner), g.shape(other)).as_ref() == out_shape.as_ref() {
                    let mut a = args.to_vec();
                    a[k] = inner;
                    return Some(("expand-into-broadcast", r(g, op.clone(), &a)));
                }
            }
        }
    }
    None
}
