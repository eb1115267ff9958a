//! The plan's verifier: what the code generator assumes of a plan, checked.
//!
//! - Every slot is written by exactly one step (inputs and parameters by the caller), and
//!   before any step reads it; every output slot is written.
//! - A scalar held in a register is computed by a step before any step reads it.
//! - Every view stays inside its slot, under several bindings of the symbolic dimensions (the
//!   strides are products of dimensions, so a view that fits at these fits at every binding
//!   lowering produces; a wrong stride shows at one of them).
//! - A batched product fused into the sum over its batch axes (`summed_product`) is read by
//!   that sum alone, and its operands continue across the summed axes, as the kernel that
//!   folds them into one product assumes.
//! - Storage: every slot a step writes has a buffer, inputs and parameters none, each output
//!   one of its own; slots that share a buffer have the same number of elements and are never
//!   live at the same time (a slot is live from the first step that touches it to the last).
//!
//! - Decisions: each step has one; a vectorized loop computes no op without a vector form and
//!   reads no slot strided along its last axis; a loop run element by element says a reason
//!   that holds; a split loop or update cuts its axis into parts that cover it once, in order,
//!   each run by exactly one thread, for every thread count 1..=16 and several bindings of the
//!   symbolic dimensions; a training step's plan decides every parameter's update.
//!
//! The code generator trusts these: a slot read before it is written would be garbage, a view
//! past its slot's end an out-of-bounds read in native code.

use super::{Member, MemberKind, Plan, SlotKind, Step, Stride, Val, writes_a_view};
use crate::ir::{Dim, Graph, NodeId, Shape};
use crate::model::GraphFn;
use std::collections::{HashMap, HashSet};

/// A broken invariant, with the step (by index in `Plan::steps`) where it shows.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("step {step} reads slot s{slot} before any step writes it")]
    ReadBeforeWrite { step: usize, slot: u32 },
    #[error("step {step} writes slot s{slot}, which step {first} wrote already")]
    WrittenTwice {
        step: usize,
        slot: u32,
        first: usize,
    },
    #[error("step {step} writes slot s{slot}, which holds an input or a parameter")]
    WritesCallerSlot { step: usize, slot: u32 },
    #[error("no step writes output slot s{slot}")]
    OutputNotWritten { slot: u32 },
    #[error("the parts written into slot s{slot} leave some of it unwritten")]
    PartlyWritten { slot: u32 },
    #[error("step {step} reads the register of {node} before a step computes it")]
    RegisterBeforeScalar { step: usize, node: NodeId },
    #[error(
        "{node} is read through slot s{slot} at offset {offset}, outside its {len} elements (binding {binding:?})"
    )]
    ViewOutOfBounds {
        node: NodeId,
        slot: u32,
        offset: i128,
        len: u128,
        binding: Vec<u64>,
    },
    #[error("step {step} reads {node}, which has no planned value")]
    Unplanned { step: usize, node: NodeId },
    #[error("slots s{a} and s{b} share buffer b{buffer} while both are live at step {step}")]
    SharedWhileLive {
        a: u32,
        b: u32,
        buffer: u32,
        step: usize,
    },
    #[error("slot s{slot} has {found} elements but its buffer b{buffer} holds {expected}")]
    BufferSize {
        slot: u32,
        buffer: u32,
        expected: u128,
        found: u128,
    },
    #[error("buffer b{buffer} holds no slot")]
    EmptyBuffer { buffer: u32 },
    #[error("step {step} reads the product {node}, which only the sum that runs it may read")]
    ProductNotSummed { step: usize, node: NodeId },
    #[error(
        "step {step} sums the product {node} in one, but its operands do not continue across the summed axes"
    )]
    ProductNotFolded { step: usize, node: NodeId },
    #[error("slot s{slot} is stored wrongly: {why}")]
    Storage { slot: u32, why: &'static str },
    #[error("the plan has {decisions} decisions for {steps} steps")]
    Decisions { steps: usize, decisions: usize },
    #[error("step {step} {why}")]
    Vectorization { step: usize, why: String },
    #[error("step {step}'s parts: {why}")]
    Parts { step: usize, why: String },
    #[error("step {step} {why}")]
    Walk { step: usize, why: String },
    #[error("step {step} {why}")]
    Sharing { step: usize, why: String },
    #[error("step {step}'s blocks: {why}")]
    SumBlocks { step: usize, why: String },
    #[error("the update of parameter {param}: {why}")]
    Update { param: usize, why: String },
}

/// Checks every invariant of `plan`, a plan of `f`.
pub fn verify(f: &GraphFn, plan: &Plan) -> Result<(), PlanError> {
    views_in_bounds(&f.graph, plan)?;
    let mut state = Written::new(plan);
    for (i, step) in plan.steps.iter().enumerate() {
        state.step(&f.graph, plan, i, step)?;
    }
    for &slot in &plan.outputs {
        if state.by[slot as usize].is_none() {
            return Err(PlanError::OutputNotWritten { slot });
        }
    }
    if let Some(&slot) = state.partial.keys().min() {
        return Err(PlanError::PartlyWritten { slot });
    }
    storage(&f.graph, plan, &state)?;
    decisions(&f.graph, plan)
}

/// Checks the back end's decisions: each step's vectorization, walk, parts and sharing, each
/// update's parts and vectorization.
fn decisions(g: &Graph, plan: &Plan) -> Result<(), PlanError> {
    if plan.decisions.len() != plan.steps.len() {
        return Err(PlanError::Decisions {
            steps: plan.steps.len(),
            decisions: plan.decisions.len(),
        });
    }
    for (step, (s, d)) in plan.steps.iter().zip(&plan.decisions).enumerate() {
        super::vectorize::check(g, plan, s, d.vector.as_ref())
            .map_err(|why| PlanError::Vectorization { step, why })?;
        super::vectorize::check_walk(g, plan, s, d.vector.as_ref(), d.walk.as_ref())
            .map_err(|why| PlanError::Walk { step, why })?;
        super::sharing::check(g, &plan.values, s, d.sharing.as_ref())
            .map_err(|why| PlanError::Sharing { step, why })?;
        super::sum_blocks::check(g, plan, s, d.blocks.as_ref())
            .map_err(|why| PlanError::SumBlocks { step, why })?;
        let parts = match (s, &d.parts) {
            (
                Step::Group {
                    shape,
                    members,
                    blocked,
                },
                Some(p),
            ) => super::parts::check_group(g, shape, members, blocked.as_ref(), p),
            (Step::Group { .. }, None) => Err("a loop group without them".to_string()),
            (_, Some(_)) => Err("a step that is not a loop group has them".to_string()),
            (_, None) => Ok(()),
        };
        parts.map_err(|why| PlanError::Parts { step, why })?;
    }
    let trained = super::parts::is_training_step(g, plan);
    let expected = if trained { g.params.len() } else { 0 };
    if plan.updates.len() != expected {
        return Err(PlanError::Update {
            param: plan.updates.len().min(expected),
            why: format!("{} decided of {expected}", plan.updates.len()),
        });
    }
    for (param, (p, u)) in g.params.iter().zip(&plan.updates).enumerate() {
        let len = p.shape.fixed_elements().unwrap_or(0);
        super::parts::check_update(len, &u.parts)
            .map_err(|why| PlanError::Update { param, why })?;
        super::vectorize::check_update(len, g.dtype, &u.vector)
            .map_err(|why| PlanError::Update { param, why })?;
    }
    Ok(())
}

/// Checks the plan's buffer assignment against the slots' kinds, sizes and live ranges.
fn storage(g: &Graph, plan: &Plan, state: &Written) -> Result<(), PlanError> {
    let storage = &plan.storage;
    let wrong = |slot: usize, why| {
        Err(PlanError::Storage {
            slot: slot as u32,
            why,
        })
    };
    if storage.of_slot.len() != plan.slots.len() {
        return wrong(
            plan.slots.len(),
            "the storage covers another number of slots",
        );
    }
    for (s, slot) in plan.slots.iter().enumerate() {
        let buffer = storage.of_slot[s];
        let holders = buffer.and_then(|b| storage.buffers.get(b as usize));
        if buffer.is_some() && !holders.is_some_and(|h| h.contains(&(s as u32))) {
            return wrong(s, "its buffer does not list it");
        }
        match slot.kind {
            SlotKind::Input(_) | SlotKind::Param(_) | SlotKind::State(_) if buffer.is_some() => {
                return wrong(s, "the caller's slot has a buffer of the workspace");
            }
            SlotKind::Output(_) if holders.is_none_or(|h| h.len() != 1) => {
                return wrong(s, "an output needs a buffer of its own");
            }
            SlotKind::Temp if buffer.is_none() && state.by[s].is_some() => {
                return wrong(s, "a step writes it but it has no buffer");
            }
            SlotKind::Input(_)
            | SlotKind::Param(_)
            | SlotKind::State(_)
            | SlotKind::Output(_)
            | SlotKind::Temp => {}
        }
    }
    for (b, holders) in storage.buffers.iter().enumerate() {
        for &s in holders {
            if storage.of_slot.get(s as usize) != Some(&Some(b as u32)) {
                return wrong(s as usize, "a buffer lists it but it is stored elsewhere");
            }
        }
        same_sizes(g, plan, b as u32, holders)?;
        disjoint_lives(state, b as u32, holders)?;
    }
    Ok(())
}

fn same_sizes(g: &Graph, plan: &Plan, buffer: u32, holders: &[u32]) -> Result<(), PlanError> {
    let Some(&first) = holders.first() else {
        return Err(PlanError::EmptyBuffer { buffer });
    };
    for binding in bindings(g.syms.len()) {
        let expected = elements(&plan.slots[first as usize].shape, &binding);
        for &slot in holders {
            let found = elements(&plan.slots[slot as usize].shape, &binding);
            if found != expected {
                return Err(PlanError::BufferSize {
                    slot,
                    buffer,
                    expected,
                    found,
                });
            }
        }
    }
    Ok(())
}

fn disjoint_lives(state: &Written, buffer: u32, holders: &[u32]) -> Result<(), PlanError> {
    let mut lives: Vec<(usize, usize, u32)> = holders
        .iter()
        .filter_map(|&s| state.live[s as usize].map(|(first, last)| (first, last, s)))
        .collect();
    lives.sort_unstable();
    for pair in lives.windows(2) {
        let ((_, last, a), (first, _, b)) = (pair[0], pair[1]);
        if first <= last {
            return Err(PlanError::SharedWhileLive {
                a,
                b,
                buffer,
                step: first,
            });
        }
    }
    Ok(())
}

/// Which step wrote each slot so far (`usize::MAX`: the caller), which registers exist, and
/// the first and last step that touched each slot.
struct Written {
    by: Vec<Option<usize>>,
    registers: HashSet<NodeId>,
    live: Vec<Option<(usize, usize)>>,
    /// Slots that products write part by part through views (`destinations`), while not all of
    /// them is written: the elements written so far, under one binding of the dimensions.
    partial: HashMap<u32, Partial>,
}

/// A slot being written part by part.
struct Partial {
    /// The step of the first part.
    first: usize,
    written: Vec<bool>,
    left: usize,
}

/// The binding under which the parts of a slot are checked to tile it.
fn parts_binding(g: &Graph) -> Vec<u64> {
    bindings(g.syms.len())[1].clone()
}

const CALLER: usize = usize::MAX;

impl Written {
    fn new(plan: &Plan) -> Written {
        let by = plan
            .slots
            .iter()
            .map(|s| {
                matches!(
                    s.kind,
                    SlotKind::Input(_) | SlotKind::Param(_) | SlotKind::State(_)
                )
                .then_some(CALLER)
            })
            .collect();
        Written {
            by,
            registers: HashSet::new(),
            live: vec![None; plan.slots.len()],
            partial: HashMap::new(),
        }
    }

    /// Records that `node`'s view of `slot` is written at step `i`: the slot counts as written
    /// once its parts cover it, each element once.
    fn write_part(
        &mut self,
        g: &Graph,
        plan: &Plan,
        i: usize,
        node: NodeId,
        slot: u32,
    ) -> Result<(), PlanError> {
        if let Some(first) = self.by[slot as usize] {
            return Err(PlanError::WrittenTwice {
                step: i,
                slot,
                first,
            });
        }
        let binding = parts_binding(g);
        let len = elements(&plan.slots[slot as usize].shape, &binding) as usize;
        let part = self.partial.entry(slot).or_insert_with(|| Partial {
            first: i,
            written: vec![false; len],
            left: len,
        });
        let Some(Val::View {
            strides, offset, ..
        }) = &plan.values[node.index()]
        else {
            return Err(PlanError::Unplanned { step: i, node });
        };
        let sizes = g.shape(node).concrete(&binding);
        let steps: Vec<i128> = strides.iter().map(|t| stride_under(t, &binding)).collect();
        let base: i128 = offset.iter().map(|t| stride_under(t, &binding)).sum();
        let total: usize = sizes.iter().product();
        for flat in 0..total {
            let (mut rest, mut at) = (flat, base);
            for (&n, &step) in sizes.iter().zip(&steps).rev() {
                at += (rest % n) as i128 * step;
                rest /= n;
            }
            // In bounds: `views_in_bounds` checked every view first.
            let e = &mut part.written[at as usize];
            if *e {
                return Err(PlanError::WrittenTwice {
                    step: i,
                    slot,
                    first: part.first,
                });
            }
            *e = true;
            part.left -= 1;
        }
        if part.left == 0 {
            self.by[slot as usize] = Some(i);
            self.partial.remove(&slot);
        }
        Ok(())
    }

    fn step(&mut self, g: &Graph, plan: &Plan, i: usize, step: &Step) -> Result<(), PlanError> {
        let reads = Reads { g, plan, step: i };
        let mut read = Vec::new();
        let mut writes = Vec::new();
        match step {
            Step::Compute { node, slot, aux } if writes_a_view(g, plan, *node) => {
                reads.operands(*node, &[], &mut read, &self.registers)?;
                self.write_part(g, plan, i, *node, *slot)?;
                debug_assert!(aux.is_none());
                let live = &mut self.live[*slot as usize];
                *live = Some(live.map_or((i, i), |(first, _)| (first, i)));
            }
            Step::Compute { node, slot, aux } => {
                match super::summed_product(g, &plan.values, *node) {
                    // The sum runs its product: it reads the product's operands.
                    Some(product) => {
                        if !super::summed_products::folds_into_sum(g, &plan.values, product, *node)
                        {
                            return Err(PlanError::ProductNotFolded {
                                step: i,
                                node: product,
                            });
                        }
                        reads.operands(product, &[], &mut read, &self.registers)?;
                    }
                    None => reads.operands(*node, &[], &mut read, &self.registers)?,
                }
                writes.push(*slot);
                writes.extend(aux);
            }
            Step::Scalar { node } => {
                reads.operands(*node, &[], &mut read, &self.registers)?;
            }
            Step::Copy { src, slot, .. } => {
                reads.value(src, &[], &mut read, &self.registers)?;
                writes.push(*slot);
            }
            Step::Group {
                members, blocked, ..
            } => {
                let lanes: Vec<NodeId> = members.iter().map(|m| m.node).collect();
                let own: Vec<u32> = members.iter().filter_map(written_slot).collect();
                for m in members {
                    reads.operands(m.node, &lanes, &mut read, &self.registers)?;
                }
                writes.extend(&own);
                if let Some(b) = blocked {
                    reads.operands(b.before.0, &[], &mut read, &self.registers)?;
                    writes.push(b.before.1);
                    let mut after = Vec::new();
                    reads.operands(b.after.0, &[], &mut after, &self.registers)?;
                    // The product after the loop reads what the loop stored, block by block.
                    read.extend(after.into_iter().filter(|s| !own.contains(s)));
                    writes.push(b.after.1);
                }
                // The product before the loop writes what the loop reads.
                if let Some(b) = blocked {
                    read.retain(|&s| s != b.before.1);
                }
            }
        }
        for &slot in &read {
            if self.by[slot as usize].is_none() {
                return Err(PlanError::ReadBeforeWrite { step: i, slot });
            }
        }
        for &slot in &writes {
            if let Some(part) = self.partial.get(&slot) {
                return Err(PlanError::WrittenTwice {
                    step: i,
                    slot,
                    first: part.first,
                });
            }
            match self.by[slot as usize] {
                Some(CALLER) => return Err(PlanError::WritesCallerSlot { step: i, slot }),
                Some(first) => {
                    return Err(PlanError::WrittenTwice {
                        step: i,
                        slot,
                        first,
                    });
                }
                None => self.by[slot as usize] = Some(i),
            }
        }
        for &slot in read.iter().chain(&writes) {
            let live = &mut self.live[slot as usize];
            *live = Some(live.map_or((i, i), |(first, _)| (first, i)));
        }
        if let Step::Scalar { node } = step {
            self.registers.insert(*node);
        }
        Ok(())
    }
}

/// The slot a loop member writes, if it writes one.
pub(super) fn written_slot(m: &Member) -> Option<u32> {
    match m.kind {
        MemberKind::Elementwise => m.stored.then_some(m.slot),
        MemberKind::Sum | MemberKind::ColumnSum | MemberKind::RowSum => Some(m.slot),
    }
}

/// The slots a step reads, found through the values of its nodes' operands.
struct Reads<'a> {
    g: &'a Graph,
    plan: &'a Plan,
    step: usize,
}

impl Reads<'_> {
    fn operands(
        &self,
        id: NodeId,
        lanes: &[NodeId],
        out: &mut Vec<u32>,
        registers: &HashSet<NodeId>,
    ) -> Result<(), PlanError> {
        for &a in &self.g.node(id).inputs {
            if lanes.contains(&a) {
                continue;
            }
            let Some(v) = &self.plan.values[a.index()] else {
                return Err(PlanError::Unplanned {
                    step: self.step,
                    node: a,
                });
            };
            self.value(v, lanes, out, registers)?;
        }
        Ok(())
    }

    fn value(
        &self,
        v: &Val,
        lanes: &[NodeId],
        out: &mut Vec<u32>,
        registers: &HashSet<NodeId>,
    ) -> Result<(), PlanError> {
        match v {
            Val::Const(_) | Val::DimSize(_) => Ok(()),
            Val::View { slot, .. } => {
                out.push(*slot);
                Ok(())
            }
            Val::Inline(id) if self.g.op(*id) == &crate::ir::Op::MatMul => {
                Err(PlanError::ProductNotSummed {
                    step: self.step,
                    node: *id,
                })
            }
            Val::Inline(id) => self.operands(*id, lanes, out, registers),
            Val::Register(id) if registers.contains(id) => Ok(()),
            Val::Register(id) => Err(PlanError::RegisterBeforeScalar {
                step: self.step,
                node: *id,
            }),
        }
    }
}

/// Bindings of the symbolic dimensions the views are checked under: all 1, then distinct
/// sizes, so that a stride taken from the wrong dimension overruns at one of them.
fn bindings(n_syms: usize) -> Vec<Vec<u64>> {
    vec![
        vec![1; n_syms],
        (0..n_syms as u64).map(|i| 2 + 3 * i).collect(),
        (0..n_syms as u64).map(|i| 7 + i).collect(),
    ]
}

fn views_in_bounds(g: &Graph, plan: &Plan) -> Result<(), PlanError> {
    for binding in bindings(g.syms.len()) {
        for id in g.ids() {
            let Some(Val::View {
                slot,
                strides,
                offset: first,
            }) = &plan.values[id.index()]
            else {
                continue;
            };
            let sizes = g.shape(id).concrete(&binding);
            if sizes.contains(&0) {
                continue;
            }
            // The lowest and highest elements the view reads: a negative stride reaches down.
            let base: i128 = first.iter().map(|t| stride_under(t, &binding)).sum();
            let (mut low, mut high) = (base, base);
            for (&n, s) in sizes.iter().zip(strides) {
                let reach = (n as i128 - 1) * stride_under(s, &binding);
                if reach < 0 {
                    low += reach;
                } else {
                    high += reach;
                }
            }
            let len = elements(&plan.slots[*slot as usize].shape, &binding);
            if low < 0 || high >= len as i128 {
                let offset = if low < 0 { low } else { high };
                return Err(PlanError::ViewOutOfBounds {
                    node: id,
                    slot: *slot,
                    offset,
                    len,
                    binding,
                });
            }
        }
    }
    Ok(())
}

fn stride_under(s: &Stride, binding: &[u64]) -> i128 {
    let product =
        |dims: &[Dim]| -> i128 { dims.iter().map(|d| dim_under(d, binding) as i128).product() };
    match s {
        Stride::Zero => 0,
        Stride::Prod(dims) => product(dims),
        Stride::Scaled(k, dims) => *k as i128 * product(dims),
    }
}

fn dim_under(d: &Dim, binding: &[u64]) -> u128 {
    match *d {
        Dim::Fixed(k) => k as u128,
        Dim::Sym(s) => binding[s as usize] as u128,
    }
}

fn elements(shape: &Shape, binding: &[u64]) -> u128 {
    shape.0.iter().map(|d| dim_under(d, binding)).product()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::SourceFile;

    fn gradient_of(src: &str) -> GraphFn {
        let file = SourceFile::new("t.dsl", src);
        let (model, _) =
            crate::compile::check_source(&file, &crate::limits::Limits::of_host()).expect("checks");
        crate::compile::graphs(&model).gradient
    }

    const MODEL: &str = "dtype f64\ninput A[n, 3]\ninput z[n]\nparam w[3] ~ zeros\n\
                         let r = A @ w - z\nloss mean(r^2)\n";

    #[test]
    fn a_lowered_plan_verifies() {
        let f = gradient_of(MODEL);
        assert_eq!(verify(&f, &super::super::plan(&f)), Ok(()));
    }

    /// Each broken invariant is found: a step moved before the step that writes what it
    /// reads, a slot written twice, a view one element too long, an output never written.
    #[test]
    fn every_broken_invariant_is_found() {
        let f = gradient_of(MODEL);
        let good = super::super::plan(&f);

        let mut reversed = good.clone();
        reversed.steps.reverse();
        assert!(matches!(
            verify(&f, &reversed),
            Err(PlanError::ReadBeforeWrite { .. } | PlanError::RegisterBeforeScalar { .. })
        ));

        let mut twice = good.clone();
        let writer = twice
            .steps
            .iter()
            .position(|s| !matches!(s, Step::Scalar { .. }))
            .unwrap();
        let again = twice.steps[writer].clone();
        twice.steps.insert(writer + 1, again);
        assert!(matches!(
            verify(&f, &twice),
            Err(PlanError::WrittenTwice { .. })
        ));

        let mut long = good.clone();
        let a = f
            .graph
            .ids()
            .find(|&id| f.graph.node(id).op == crate::ir::Op::Input(0));
        long.values[a.unwrap().index()] = Some(Val::View {
            slot: 0,
            strides: vec![Stride::Prod(vec![Dim::Fixed(4)]), Stride::Prod(vec![])],
            offset: vec![],
        });
        assert!(matches!(
            verify(&f, &long),
            Err(PlanError::ViewOutOfBounds { .. })
        ));

        // A reversed view that starts at the slot's first element reads before it.
        let mut before = good.clone();
        before.values[a.unwrap().index()] = Some(Val::View {
            slot: 0,
            strides: vec![
                Stride::Scaled(-1, vec![Dim::Fixed(2)]),
                Stride::Prod(vec![]),
            ],
            offset: vec![],
        });
        assert!(matches!(
            verify(&f, &before),
            Err(PlanError::ViewOutOfBounds { offset, .. }) if offset < 0
        ));

        let mut unwritten = good.clone();
        unwritten.steps.clear();
        assert!(matches!(
            verify(&f, &unwritten),
            Err(PlanError::OutputNotWritten { .. })
        ));
    }

    /// A concat of two products is written part by part into one slot: the plan verifies; a
    /// part dropped leaves the slot partly written (or read before it is whole), a part
    /// written twice or shifted onto the other overlaps.
    #[test]
    fn the_parts_of_a_join_tile_its_slot_once() {
        let f = gradient_of(
            "dtype f64\ninput X[n, 4]\nparam U[4, 2] ~ zeros\nparam V[4, 3] ~ zeros\n\
             loss sum(tanh(concat([X @ U, X @ V], axis=1)))\n",
        );
        let good = super::super::plan(&f);
        assert_eq!(verify(&f, &good), Ok(()));
        let parts: Vec<usize> = good
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Step::Compute { node, .. } if writes_a_view(&f.graph, &good, *node)))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(parts.len(), 2, "{}", super::super::plan_text(&f, &good));

        let mut dropped = good.clone();
        dropped.steps.remove(parts[1]);
        assert!(matches!(
            verify(&f, &dropped),
            Err(PlanError::ReadBeforeWrite { .. } | PlanError::PartlyWritten { .. })
        ));

        let mut twice = good.clone();
        let again = twice.steps[parts[0]].clone();
        twice.steps.insert(parts[0] + 1, again);
        assert!(matches!(
            verify(&f, &twice),
            Err(PlanError::WrittenTwice { .. })
        ));

        // The second part moved onto the first: the right length, the wrong place.
        let mut shifted = good.clone();
        let Step::Compute { node, .. } = &shifted.steps[parts[1]] else {
            unreachable!()
        };
        if let Some(Val::View { offset, .. }) = &mut shifted.values[node.index()] {
            offset.clear();
        }
        assert!(matches!(
            verify(&f, &shifted),
            Err(PlanError::WrittenTwice { .. })
        ));
    }

    /// A weight's gradient summed over the batch in one product verifies; the verifier refuses
    /// it when its operand stops continuing across the summed axis and when
    /// another step reads the fused product.
    #[test]
    fn a_summed_product_is_read_by_its_sum_alone_and_folds() {
        let f = gradient_of(
            "dtype f64\ninput X[n, 12]\nparam W[3, 2] ~ zeros\n\
             loss sum(tanh(reshape(X, (n, 4, 3)) @ W))\n",
        );
        let good = super::super::plan(&f);
        assert_eq!(verify(&f, &good), Ok(()));
        let g = &f.graph;
        let sum = g
            .ids()
            .find(|&id| super::super::summed_product(g, &good.values, id).is_some())
            .expect("the gradient of W is summed in one product");
        let product = g.node(sum).inputs[0];
        let x = g.node(product).inputs[0];

        // X's rows read 6 apart instead of 12: inside the slot, but not continuing its rows.
        let mut gapped = good.clone();
        let Some(Val::View { strides, .. }) = &mut gapped.values[x.index()] else {
            panic!("the product reads a view of X")
        };
        strides[0] = Stride::Prod(vec![Dim::Fixed(6)]);
        assert!(matches!(
            verify(&f, &gapped),
            Err(PlanError::ProductNotFolded { .. })
        ));

        let mut read_elsewhere = good.clone();
        let reader = read_elsewhere
            .steps
            .iter()
            .position(|s| matches!(s, Step::Compute { node, .. } if *node == sum))
            .unwrap();
        read_elsewhere.steps.insert(
            reader,
            Step::Copy {
                src: Val::Inline(product),
                src_shape: g.shape(product).clone(),
                slot: 0,
            },
        );
        assert!(matches!(
            verify(&f, &read_elsewhere),
            Err(PlanError::ProductNotSummed { .. })
        ));
    }

    /// Two products of the same size whose results are both read by one loop: their slots are
    /// live at once, so the assignment keeps them apart, and the verifier refuses a plan that
    /// puts them in one buffer.
    #[test]
    fn slots_live_at_once_never_share_a_buffer() {
        let f = gradient_of(
            "dtype f64\ninput A[n, 3]\ninput z[n]\nparam w[3] ~ zeros\nparam v[3] ~ zeros\n\
             loss mean((A @ w) * (A @ v) - z)\n",
        );
        let good = super::super::plan(&f);
        assert_eq!(verify(&f, &good), Ok(()));
        let lives = super::super::storage::live_ranges(&f.graph, &good);
        let shared = &good.storage;
        let temps: Vec<u32> = (0..good.slots.len() as u32)
            .filter(|&s| good.slots[s as usize].kind == SlotKind::Temp)
            .filter(|&s| shared.of_slot[s as usize].is_some())
            .collect();
        let overlapping = temps
            .iter()
            .flat_map(|&a| temps.iter().map(move |&b| (a, b)));
        let (a, b) = overlapping
            .filter(|(a, b)| a < b)
            .filter(|(a, b)| good.slots[*a as usize].shape == good.slots[*b as usize].shape)
            .find(|(a, b)| {
                let (la, lb) = (lives[*a as usize].unwrap(), lives[*b as usize].unwrap());
                la.0 <= lb.1 && lb.0 <= la.1
            })
            .expect("two equal temporaries live at once");
        let (ba, bb) = (
            shared.of_slot[a as usize].unwrap(),
            shared.of_slot[b as usize].unwrap(),
        );
        assert_ne!(ba, bb, "the assignment shares live slots");

        let mut bad = good.clone();
        bad.storage.buffers[bb as usize].retain(|&s| s != b);
        bad.storage.buffers[ba as usize].push(b);
        bad.storage.of_slot[b as usize] = Some(ba);
        if bad.storage.buffers[bb as usize].is_empty() {
            bad.storage.buffers.remove(bb as usize);
            for s in bad.storage.of_slot.iter_mut().flatten() {
                if *s > bb {
                    *s -= 1;
                }
            }
        }
        assert!(matches!(
            verify(&f, &bad),
            Err(PlanError::SharedWhileLive { .. })
        ));
    }

    /// Slots whose lifetimes do not overlap share a buffer: a two-layer network's gradient
    /// needs fewer buffers than slots.
    #[test]
    fn slots_that_die_are_reused() {
        let f = gradient_of(
            "dtype f64\ninput X[n, 4]\ninput y[n]\nparam W1[4, 4] ~ zeros\n\
             param W2[4, 4] ~ zeros\nparam v[4] ~ zeros\n\
             let h = tanh(tanh(X @ W1) @ W2)\nloss mean((h @ v - y)^2)\n",
        );
        let plan = super::super::plan(&f);
        assert_eq!(verify(&f, &plan), Ok(()));
        let stored = plan.storage.of_slot.iter().flatten().count();
        assert!(plan.storage.buffers.len() < stored, "{:?}", plan.storage);

        // A slot of another size in a shared buffer is refused.
        let mut resized = plan.clone();
        let shared = resized
            .storage
            .buffers
            .iter()
            .find(|b| b.len() > 1)
            .unwrap();
        let slot = shared[1] as usize;
        resized.slots[slot].shape = Shape(vec![Dim::Fixed(1000)]);
        assert!(matches!(
            verify(&f, &resized),
            Err(PlanError::BufferSize { .. })
        ));
    }

    /// A recorded decision that does not hold is found: a loop marked vectorized that computes
    /// `tanh` in f64 or reads a transposed view, lanes of the wrong float type, a reason that
    /// does not hold, a missing decision, a split with the wrong rule or a held slot it does
    /// not store, a small group said to be split, an update decided wrongly or not at all.
    #[test]
    fn every_broken_decision_is_found() {
        use super::super::{Parts, Vector, Whole, vectorize::Scalar};
        let f = gradient_of(
            "dtype f64\ninput X[n, 4]\ninput y[n]\nparam v[4] ~ zeros\n\
             loss mean(tanh(X * v)) + sum(exp(transpose(X))) + sum(exp(y))\n",
        );
        let good = super::super::plan(&f);
        assert_eq!(verify(&f, &good), Ok(()));
        let find = |want: &dyn Fn(&Option<Vector>) -> bool| {
            good.decisions.iter().position(|d| want(&d.vector)).unwrap()
        };
        let vectorize = |k: usize, v: Vector| {
            let mut p = good.clone();
            p.decisions[k].vector = Some(v);
            verify(&f, &p)
        };
        let no_form = find(&|v| matches!(v, Some(Vector::Scalar(Scalar::NoFormForDtype(_)))));
        assert!(matches!(
            vectorize(no_form, Vector::Lanes(2)),
            Err(PlanError::Vectorization { .. })
        ));
        let strided = find(&|v| matches!(v, Some(Vector::Scalar(Scalar::StridedRead(_)))));
        assert!(matches!(
            vectorize(strided, Vector::Lanes(2)),
            Err(PlanError::Vectorization { .. })
        ));
        let vector = find(&|v| matches!(v, Some(Vector::Lanes(2))));
        assert!(matches!(
            vectorize(vector, Vector::Lanes(4)),
            Err(PlanError::Vectorization { .. })
        ));
        assert!(matches!(
            vectorize(vector, Vector::Scalar(Scalar::StridedRead(0))),
            Err(PlanError::Vectorization { .. })
        ));
        assert!(matches!(
            vectorize(no_form, Vector::Scalar(Scalar::NoAxis)),
            Err(PlanError::Vectorization { .. })
        ));

        let mut missing = good.clone();
        missing.decisions.pop();
        assert!(matches!(
            verify(&f, &missing),
            Err(PlanError::Decisions { .. })
        ));

        let split = good
            .decisions
            .iter()
            .position(|d| matches!(d.parts, Some(Parts::Split { .. })))
            .unwrap();
        let with_parts = |change: &dyn Fn(&mut Parts)| {
            let mut p = good.clone();
            change(p.decisions[split].parts.as_mut().unwrap());
            verify(&f, &p)
        };
        assert!(matches!(
            with_parts(&|p| if let Parts::Split { rule, .. } = p {
                rule.block = 3
            }),
            Err(PlanError::Parts { .. })
        ));
        assert!(matches!(
            with_parts(&|p| if let Parts::Split { held, .. } = p {
                held.push(0)
            }),
            Err(PlanError::Parts { .. })
        ));
        assert!(matches!(
            with_parts(&|p| *p = Parts::One(Whole::Small(4))),
            Err(PlanError::Parts { .. })
        ));
        assert!(matches!(
            with_parts(&|p| *p = Parts::One(Whole::NoOuterAxis)),
            Err(PlanError::Parts { .. })
        ));

        let mut unsplit = good.clone();
        unsplit.updates[0].parts = super::super::parts::update_parts(1 << 20);
        assert!(matches!(
            verify(&f, &unsplit),
            Err(PlanError::Update { .. })
        ));
        let mut undecided = good.clone();
        undecided.updates.clear();
        assert!(matches!(
            verify(&f, &undecided),
            Err(PlanError::Update { .. })
        ));
    }

    /// The facts recorded for maxima and minima, `unwindows`, scalar loops' walks, products'
    /// sharing and updates' vectors are checked: a vectorized maximum over its last axis, a
    /// maximum that keeps its last axis said to reduce it, a strided `unwindows` in vectors, a
    /// walk row by row without an axis, a walk missing or where a loop runs in vectors, a
    /// product shared by the wrong rule or not at all, sharing on a step with no product, and
    /// updates in the wrong lanes, in vectors over one element, element by element over many.
    #[test]
    fn every_broken_back_end_fact_is_found() {
        use super::super::Vector;
        use super::super::sharing::Sharing;
        use super::super::vectorize::{ByElement, Scalar, Walk};
        use crate::ir::Op;
        let f = gradient_of(
            "dtype f64\ninput X[n, 4]\nparam x[2, 3, 7, 6] ~ normal(0, 1)\n\
             param w[4] ~ zeros\nparam W[4, 4] ~ zeros\nparam b = 0\n\
             loss sum(max_pool2d(x, 3, stride=2, padding=1)^2) + sum(max(X @ W, axis=1)) \
             + sum(X @ w) + b\n",
        );
        let good = super::super::plan(&f);
        assert_eq!(verify(&f, &good), Ok(()));
        let find = |want: &dyn Fn(&super::super::Decision) -> bool| {
            good.decisions
                .iter()
                .position(want)
                .expect("a step so decided")
        };
        let changed = |k: usize, change: &dyn Fn(&mut super::super::Decision)| {
            let mut p = good.clone();
            change(&mut p.decisions[k]);
            verify(&f, &p)
        };
        let vectorization =
            |r: Result<(), PlanError>| matches!(r, Err(PlanError::Vectorization { .. }));
        let walk = |r: Result<(), PlanError>| matches!(r, Err(PlanError::Walk { .. }));
        let sharing = |r: Result<(), PlanError>| matches!(r, Err(PlanError::Sharing { .. }));

        let reduced = find(&|d| d.vector == Some(Vector::Scalar(Scalar::LastAxisReduced)));
        assert!(vectorization(
            changed(reduced, &|d| d.vector = Some(Vector::Lanes(2)))
        ));
        let kept = good
            .steps
            .iter()
            .zip(&good.decisions)
            .position(|(s, d)| {
                let max = matches!(s, Step::Compute { node, .. }
                    if matches!(f.graph.op(*node), Op::ReduceMax { .. }));
                max && d.vector == Some(Vector::Lanes(2))
            })
            .expect("a pooling's maximum in vectors");
        let said_reduced = Some(Vector::Scalar(Scalar::LastAxisReduced));
        assert!(vectorization(
            changed(kept, &|d| d.vector = said_reduced.clone())
        ));
        let strided = find(&|d| d.vector == Some(Vector::Scalar(Scalar::StridedWrite)));
        assert!(vectorization(
            changed(strided, &|d| d.vector = Some(Vector::Lanes(2)))
        ));

        let rows = find(&|d| d.walk == Some(Walk::Rows));
        assert!(walk(changed(rows, &|d| d.walk = None)));
        let by_element = Some(Walk::Elements(ByElement::NoAxis));
        assert!(walk(changed(rows, &|d| d.walk = by_element.clone())));
        let no_axis = find(&|d| d.walk == Some(Walk::Elements(ByElement::NoAxis)));
        assert_eq!(
            changed(no_axis, &|d| d.walk = Some(Walk::Rows)),
            Err(PlanError::Walk {
                step: no_axis,
                why: "runs row by row without an axis to run along".into()
            })
        );
        let vectors = find(&|d| d.vector == Some(Vector::Lanes(2)) && d.walk.is_none());
        assert!(walk(changed(vectors, &|d| d.walk = Some(Walk::Rows))));

        let blocks = find(&|d| matches!(d.sharing, Some(Sharing::Blocks { .. })));
        assert!(sharing(
            changed(blocks, &|d| d.sharing = Some(Sharing::MatrixVector))
        ));
        assert!(sharing(changed(blocks, &|d| d.sharing = None)));
        let matvec = find(&|d| d.sharing == Some(Sharing::MatrixVector));
        let as_blocks = Some(Sharing::Blocks {
            size: crate::lower::sharing::ProductSize {
                rows: Vec::new(),
                inner: Vec::new(),
                columns: Dim::Fixed(1),
            },
        });
        assert!(sharing(changed(matvec, &|d| d.sharing = as_blocks.clone())));
        assert!(sharing(changed(vectors, &|d| d.sharing = as_blocks.clone())));

        let update = |param: usize, v: Vector| {
            let mut p = good.clone();
            p.updates[param].vector = v;
            matches!(verify(&f, &p), Err(PlanError::Update { param: q, .. }) if q == param)
        };
        let (x, big_w, b) = (0, 2, 3);
        assert_eq!(
            good.updates[b].vector,
            Vector::Scalar(Scalar::UnderOneVector(1))
        );
        assert_eq!(good.updates[big_w].vector, Vector::Lanes(2));
        assert!(update(big_w, Vector::Lanes(4)));
        assert!(update(b, Vector::Lanes(2)));
        assert!(update(x, Vector::Scalar(Scalar::UnderOneVector(252))));
        assert!(update(big_w, Vector::Scalar(Scalar::NoAxis)));
    }
}
