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
mod tests;
