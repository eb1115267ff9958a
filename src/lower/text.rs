//! The plan's canonical text form: its slots, then its steps in order, each operand written as
//! the value it is read as. `adjoint graph --plan` prints it and snapshot tests pin it, so a
//! change in how the back end places values (which buffers exist, what is fused into which
//! loop, what is blocked by rows) is reviewed like a change in the graph.
//!
//! ```text
//! slots
//!   s0 input A : f64[n, 3]
//!   s3 temp : f64[n]
//! steps
//!   s3 ← matmul(s0[3, 1], s1[1])  (one core: a matrix–vector product)
//!   loop [n] in blocks of rows  (vector f64x2)
//!     parts: min(8, ⌈n / 256⌉, max(1, ⌈n / 256⌉·2048 / 32768)) over blocks of 256
//!     block: s5 ← matmul(s0[3, 1], s2[1])
//!     lane %4 = sub(s5[1], s1[1])
//!     s7 += sum(pow(%4, 2))
//!     s8 ← %13 = mul(r%12, %4)
//!     block: s4 += matmul(s0[1, 3], s8[1])
//! updates
//!   w : one part: 3 elements, under 65536  (vector f64x2)
//! ```
//!
//! A temporary that takes over the buffer of one whose last reader has run says so
//! (`reuses s3`); loop members kept in registers hold no memory and are not listed. A division by a value fixed for its
//! loop is written as the multiplication by the reciprocal that runs (`Plan::reciprocal`).
//! A batched product, `s9 ← matmul batch=[2, 4](s0[…], s1[…])`, runs one product per index of
//! its batch axes (the leading axes of its result); each operand's view lists its own strides,
//! and an operand lacking a batch axis or having it of length 1 is broadcast along it.
//! A batched product written inside a sum, `s3 ← sum_to(matmul batch=[n](…))`, is summed over
//! the batch axes the sum removes in one product, its inner dimension running across them (a
//! weight's gradient, `lower::summed_products`): it has no slot of its own.
//! A view is its slot and one stride per axis (`0` broadcasts; `n·3` is a product of sizes);
//! `r%7` is a scalar in a register; an elementwise node fused into its reader is written out
//! where it is read; inside a loop, `%k` is a member of the same loop read from its register
//! (`lane`: never stored). A loop in blocks of rows runs its first product for a block of rows,
//! the loop over them, then its second product's share of them (`lower::block_rows`).
//!
//! The back end's decisions follow what they decide (`Plan::decisions`): a loop along its last
//! axis in vectors, `(vector f32x4)`, a log-sum-exp a vector of rows at a time, `(rows in
//! lanes, f32x4)`, or not with the reason and how it walks, `(scalar: s3 is strided along the
//! last axis; row by row)` (a loop of one element says nothing); a product how it shares itself
//! between cores, `(one core: 1920 multiply-adds, under 4194304)`; a loop group's first line
//! says whether it runs in parts, by the rule that gives their number from the sizes bound at run time (`parts: min(8,
//! n, max(1, n·64 / 32768)) over the outer axis`, with its value where every size is fixed), or
//! why not (`one part: …`). A sum of many terms added in blocks of its first axis says how many
//! items a block holds (`(in blocks of 4 along axis 0)`, `lower::sum_blocks`). A training step's
//! plan ends with each parameter's update, in parts or not, in vectors or not (`updates`).

use super::parts::{MAX_PARTIAL_BYTES, MAX_PARTS, MIN_WORK_PER_PART, Parts, SplitRule, Whole};
use super::sharing::{RULE, Sharing};
use super::vectorize::{ByElement, Scalar, Vector, Walk};
use super::{Decision, Member, MemberKind, Plan, SlotKind, Step, Stride, Val};
use crate::ir::print::{fmt_number, op_text};
use crate::ir::shape::MatMulParts;
use crate::ir::{Dim, Graph, NodeId, Op, Shape};
use crate::model::GraphFn;
use std::fmt::Write;

/// The plan of `f` as text.
pub fn plan_text(f: &GraphFn, plan: &Plan) -> String {
    let g = &f.graph;
    let written = plan.written_slots();
    let mut out = String::from("slots\n");
    for (i, slot) in plan.slots.iter().enumerate() {
        let kind = match slot.kind {
            SlotKind::Input(k) => format!("input {}", g.inputs[k as usize].name),
            SlotKind::Param(k) => format!("param {}", g.params[k as usize].name),
            SlotKind::State(k) => format!("state {}", g.states[k as usize].name),
            SlotKind::Output(k) => format!("output {}", f.outputs[k as usize].0),
            SlotKind::Temp if written.contains(&(i as u32)) => "temp".to_string(),
            // A loop member kept in a register (numbered after every stored slot).
            SlotKind::Temp => continue,
        };
        let reuse = plan
            .storage
            .reused_from(i as u32)
            .map(|s| format!(" (reuses s{s})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  s{i} {kind} : {}{}{reuse}",
            g.dtype.name(),
            g.shape_text(&slot.shape)
        );
    }
    out.push_str("steps\n");
    let held = super::parts::fused_registers(g, plan);
    let text = Text { g, plan, held };
    let undecided = Decision::default();
    for (k, step) in plan.steps.iter().enumerate() {
        text.step(&mut out, step, plan.decisions.get(k).unwrap_or(&undecided));
    }
    if !plan.updates.is_empty() {
        out.push_str("updates\n");
        for (p, u) in g.params.iter().zip(&plan.updates) {
            let vector = text.vector(&u.vector);
            let _ = writeln!(out, "  {} : {}  ({vector})", p.name, text.parts(&u.parts));
        }
    }
    out
}

struct Text<'a> {
    g: &'a Graph,
    plan: &'a Plan,
    /// The slots the fused training loop holds in registers (`parts::fused_registers`).
    held: Vec<u32>,
}

impl Text<'_> {
    fn step(&self, out: &mut String, step: &Step, decision: &Decision) {
        let vector = self.form(step, decision);
        let vector = match &decision.blocks {
            Some(b) => format!("{vector}  (in blocks of {} along axis 0)", b.items),
            None => vector,
        };
        match step {
            Step::Compute { node, slot, aux } => {
                let scratch = aux.map(|a| format!("  (scratch s{a})")).unwrap_or_default();
                // A product written into its reader's layout shows the view it writes.
                let into = match &self.plan.values[node.index()] {
                    Some(v) if super::writes_a_view(self.g, self.plan, *node) => self.value(v, &[]),
                    _ => format!("s{slot}"),
                };
                let _ = writeln!(out, "  {into} ← {}{scratch}{vector}", self.node(*node, &[]));
            }
            Step::Scalar { node } => {
                let _ = writeln!(out, "  r{node} ← {}", self.node(*node, &[]));
            }
            Step::Copy {
                src,
                src_shape,
                slot,
            } => {
                let _ = writeln!(
                    out,
                    "  s{slot} ← copy {} : {}{}{vector}",
                    self.value(src, &[]),
                    self.g.dtype.name(),
                    self.g.shape_text(src_shape)
                );
            }
            Step::Group {
                shape,
                members,
                blocked,
            } => {
                let by = if blocked.is_some() {
                    " in blocks of rows"
                } else {
                    ""
                };
                let _ = writeln!(out, "  loop {}{by}{vector}", self.g.shape_text(shape));
                if let Some(parts) = &decision.parts {
                    let _ = writeln!(out, "    {}", self.parts(parts));
                }
                if let Some(b) = blocked {
                    let (node, slot) = b.before;
                    let _ = writeln!(out, "    block: s{slot} ← {}", self.node(node, &[]));
                }
                let lanes: Vec<NodeId> = members.iter().map(|m| m.node).collect();
                for m in members {
                    let _ = writeln!(out, "    {}", self.member(m, &lanes));
                }
                if let Some(b) = blocked {
                    let (node, slot) = b.after;
                    let _ = writeln!(out, "    block: s{slot} += {}", self.node(node, &[]));
                }
            }
        }
    }

    /// How a step's loop runs, in parentheses: along its last axis (`vector f64x2`, or
    /// `scalar: why; row by row`), or how its product shares itself between cores. A loop
    /// without an axis is one element, nothing to vectorize: not worth a word.
    fn form(&self, step: &Step, decision: &Decision) -> String {
        let mut parts = Vec::new();
        match (&decision.vector, &decision.walk) {
            (None | Some(Vector::Scalar(Scalar::NoAxis)), _) => {}
            (Some(v @ Vector::Scalar(_)), Some(w)) => {
                parts.push(format!("{}; {}", self.vector(v), self.walk(w)))
            }
            (Some(v), _) => parts.push(self.vector(v)),
        }
        // The fused training loop reads and writes a slot it holds in a register as the
        // register, one element at a time, in place of the walk.
        if let (Some(Walk::Rows), Some(slot)) = (&decision.walk, written_slot(step))
            && self.held.contains(&slot)
        {
            parts.push(format!(
                "element by element in the training loop, which holds s{slot} in registers"
            ));
        }
        if let Some(s) = &decision.sharing {
            parts.push(self.sharing(s));
        }
        match parts.is_empty() {
            true => String::new(),
            false => format!("  ({})", parts.join("; ")),
        }
    }

    /// How a scalar loop walks: `row by row`, or `element by element: why`.
    fn walk(&self, w: &Walk) -> String {
        match w {
            Walk::Rows => "row by row".into(),
            Walk::Elements(ByElement::NoAxis) => "element by element: no axis".into(),
            Walk::Elements(ByElement::Sum) => {
                "element by element: a sum has no row-by-row form".into()
            }
        }
    }

    /// How a product shares itself between cores (`lower::sharing`), evaluated where every
    /// size is fixed.
    fn sharing(&self, s: &Sharing) -> String {
        let min = RULE.min_work;
        let dims = |d: &[Dim]| self.stride(&Stride::Prod(d.to_vec()));
        match (s, s.fixed_work()) {
            (Sharing::MatrixVector, _) => "one core: a matrix–vector product".into(),
            (Sharing::Blocks { .. }, Some(w)) if w < min as u64 => {
                format!("one core: {w} multiply-adds, under {min}")
            }
            (Sharing::Batches { .. }, Some(w)) if w < min as u64 => {
                format!("one core: {w} multiply-adds in all, under {min}")
            }
            (Sharing::Blocks { size }, Some(w)) => {
                let taller = size
                    .taller()
                    .expect("every size of a fixed product is fixed");
                let (what, size) = match taller {
                    true => ("rows", RULE.row_block),
                    false => ("columns", RULE.column_block),
                };
                format!("shared: blocks of {size} {what} over the threads, {w} multiply-adds")
            }
            (Sharing::Blocks { size }, None) => format!(
                "shared: blocks of {} rows or {} columns over the threads where {} ≥ {min}",
                RULE.row_block,
                RULE.column_block,
                dims(&size.dims())
            ),
            (Sharing::Batches { batch, size }, _) => format!(
                "shared: whole products over the threads where {} of {} multiply-adds make ≥ {min} \
                 and one is under it; blocks of a product that is not",
                dims(batch),
                dims(&size.dims())
            ),
        }
    }

    /// How a loop runs along its last axis: `vector f64x2`, or `scalar: why`.
    fn vector(&self, v: &Vector) -> String {
        let why = match v {
            Vector::Lanes(n) => return format!("vector {}x{n}", self.g.dtype.name()),
            Vector::Rows(n) => return format!("rows in lanes, {}x{n}", self.g.dtype.name()),
            Vector::Scalar(why) => why,
        };
        let why = match why {
            Scalar::NoAxis => "no axis".to_string(),
            Scalar::OneRow => "one row".to_string(),
            Scalar::StridedRead(s) => format!("s{s} is strided along the last axis"),
            Scalar::StridedWrite => "writes the last axis with a step".to_string(),
            Scalar::NoVectorForm(id) => {
                let op = &self.g.node(*id).op;
                match super::vectorize::exponent(self.g, *id) {
                    Some(e) if *op == Op::Pow => {
                        format!("pow by {} has no vector form", fmt_number(e))
                    }
                    _ if *op == Op::Pow => "pow by a variable has no vector form".to_string(),
                    _ => format!("{} has no vector form", op.name()),
                }
            }
            Scalar::NoFormForDtype(id) => format!(
                "{} has no {} vector form",
                self.g.node(*id).op.name(),
                self.g.dtype.name()
            ),
            Scalar::LastAxisReduced => "the last axis is reduced".to_string(),
            Scalar::UnderOneVector(n) => {
                let lanes = super::vectorize::lanes(self.g.dtype);
                match n {
                    1 => format!("1 element, under one vector of {lanes}"),
                    n => format!("{n} elements, under one vector of {lanes}"),
                }
            }
        };
        format!("scalar: {why}")
    }

    /// Whether a loop or an update runs in parts, and by which rule.
    fn parts(&self, p: &Parts) -> String {
        let (rule, held) = match p {
            Parts::One(why) => {
                let why = match why {
                    Whole::NoOuterAxis => "no outer axis".to_string(),
                    Whole::Small(1) => format!("1 element, under {}", 2 * MIN_WORK_PER_PART),
                    Whole::Small(n) => {
                        format!("{n} elements, under {}", 2 * MIN_WORK_PER_PART)
                    }
                    Whole::RunTimeSum(s) => format!("the sum s{s} is sized at run time"),
                    Whole::PartialsTooLarge(b) => {
                        format!("partial sums of {b} bytes, over {MAX_PARTIAL_BYTES}")
                    }
                };
                return format!("one part: {why}");
            }
            Parts::Split { rule, held } => (rule, held),
        };
        let mut text = format!("parts: {}", self.rule(rule));
        if !held.is_empty() {
            let slots: Vec<String> = held.iter().map(|s| format!("s{s}")).collect();
            let _ = write!(
                text,
                "; one part in the training loop, which holds {} in registers",
                slots.join(", ")
            );
        }
        text
    }

    /// `min(8, I, max(1, I·W / 32768))` over the rule's items I of W elements each, and its
    /// value where every size is fixed.
    fn rule(&self, rule: &SplitRule) -> String {
        let axis = self.stride(&Stride::Prod(vec![rule.axis]));
        let (items, over) = match rule.block {
            1 => (axis, "the outer axis".to_string()),
            b => (format!("⌈{axis} / {b}⌉"), format!("blocks of {b}")),
        };
        let work = match self.stride(&Stride::Prod(rule.work.clone())).as_str() {
            "1" => String::new(),
            w => format!("·{w}"),
        };
        let value = rule
            .fixed_parts()
            .map(|n| format!(" = {n}"))
            .unwrap_or_default();
        format!(
            "min({MAX_PARTS}, {items}, max(1, {items}{work} / {MIN_WORK_PER_PART})){value} over {over}"
        )
    }

    fn member(&self, m: &Member, lanes: &[NodeId]) -> String {
        let expr = self.node(m.node, lanes);
        match (m.kind, m.stored) {
            (MemberKind::Elementwise, true) => format!("s{} ← {} = {expr}", m.slot, m.node),
            (MemberKind::Elementwise, false) => format!("lane {} = {expr}", m.node),
            (MemberKind::Sum, _) => format!("s{} += {expr}", m.slot),
            (MemberKind::ColumnSum, _) => format!("s{}[column] += {expr}", m.slot),
            (MemberKind::RowSum, _) => format!("s{}[row] += {expr}", m.slot),
        }
    }

    /// The batch axes of a batched product (`[2, h]`), which runs one product per index of
    /// them; its operands' views give their strides along them first (0 where broadcast).
    fn product_batch(&self, id: NodeId) -> Option<String> {
        let node = self.g.node(id);
        if node.op != Op::MatMul {
            return None;
        }
        let (a, b) = (self.g.shape(node.inputs[0]), self.g.shape(node.inputs[1]));
        if !MatMulParts::of(a, b).is_batched() {
            return None;
        }
        let out = self.g.shape(id);
        let batch = out.rank() - usize::from(a.rank() > 1) - usize::from(b.rank() > 1);
        Some(self.g.shape_text(&Shape(out.0[..batch].to_vec())))
    }

    /// A node applied to its operands' values; a division by a loop invariant as the
    /// multiplication by its reciprocal that runs.
    fn node(&self, id: NodeId, lanes: &[NodeId]) -> String {
        let node = self.g.node(id);
        let args: Vec<String> = node
            .inputs
            .iter()
            .map(|&a| self.operand(a, lanes))
            .collect();
        if self.plan.reciprocal.contains(&id) {
            return format!("mul({}, reciprocal({}))", args[0], args[1]);
        }
        if let Some(batch) = self.product_batch(id) {
            return format!("matmul batch={batch}({})", args.join(", "));
        }
        format!("{}({})", op_text(self.g, &node.op), args.join(", "))
    }

    fn operand(&self, id: NodeId, lanes: &[NodeId]) -> String {
        if lanes.contains(&id) {
            return id.to_string();
        }
        match &self.plan.values[id.index()] {
            Some(v) => self.value(v, lanes),
            None => format!("{id}?"),
        }
    }

    fn value(&self, v: &Val, lanes: &[NodeId]) -> String {
        match v {
            Val::Const(c) => fmt_number(*c),
            Val::DimSize(s) => self.g.syms[*s as usize].clone(),
            Val::View {
                slot,
                strides,
                offset,
            } => {
                let s: Vec<String> = strides.iter().map(|s| self.stride(s)).collect();
                // A slice's first element: `s3+2[6, -1]`.
                let from: String = offset
                    .iter()
                    .map(|t| format!("+{}", self.stride(t)))
                    .collect();
                format!("s{slot}{from}[{}]", s.join(", "))
            }
            Val::Inline(id) => self.node(*id, lanes),
            Val::Register(id) => format!("r{id}"),
        }
    }

    fn stride(&self, s: &Stride) -> String {
        match s {
            Stride::Zero => "0".into(),
            Stride::Prod(dims) if dims.is_empty() => "1".into(),
            Stride::Prod(dims) => dims
                .iter()
                .map(|d| match d {
                    Dim::Fixed(k) => k.to_string(),
                    Dim::Sym(s) => self.g.syms[*s as usize].clone(),
                })
                .collect::<Vec<_>>()
                .join("·"),
            Stride::Scaled(k, dims) => {
                let rest = self.stride(&Stride::Prod(dims.clone()));
                match rest.as_str() {
                    "1" => k.to_string(),
                    _ => format!("{k}·{rest}"),
                }
            }
        }
    }
}

/// The slot a step that computes or copies into one writes.
fn written_slot(step: &Step) -> Option<u32> {
    match step {
        Step::Compute { slot, .. } | Step::Copy { slot, .. } => Some(*slot),
        Step::Scalar { .. } | Step::Group { .. } => None,
    }
}
