//! Which buffer holds each slot: temporaries whose lifetimes do not overlap share one.
//!
//! A slot lives from the first step that touches it (its writer) to the last (its last reader),
//! at the granularity of whole steps: everything a step reads and writes is live across all of
//! it, so a loop group's members and operands, a row-blocked loop's two products, the scratch
//! slot of a two-pass reduction and whatever a step's parallel parts capture never share
//! storage with each other. A view reads its base slot, so a view keeps its base alive.
//!
//! Buffers are shared within a size class only (the same number of elements under every
//! binding of the symbolic dimensions, in the plan's one dtype), so a buffer's length is the
//! length of each of its slots and the runtime's length checks stay exact. Inputs and
//! parameters belong to the caller and outputs are read after the call: none is ever shared.
//! A loop member kept in a register (never stored) gets no buffer at all.

use super::{Plan, SlotKind, Step, Val};
use crate::ir::{Dim, Graph, NodeId, Shape};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// The storage of a plan's slots.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Storage {
    /// The buffer of each slot: `None` for inputs and parameters (the caller's) and for loop
    /// members that live only in registers.
    pub of_slot: Vec<Option<u32>>,
    /// Each buffer's slots, in the order they take it over.
    pub buffers: Vec<Vec<u32>>,
}

impl Storage {
    /// The slot whose shape gives buffer `b` its length (every slot of a buffer has as many
    /// elements as the others).
    pub fn first_slot(&self, b: usize) -> u32 {
        self.buffers[b][0]
    }

    /// For each of `n` slots (the plan's, then any the caller adds after them), the slot whose
    /// address it has: the first slot of its buffer, or itself.
    pub fn address_slots(&self, n: usize) -> Vec<u32> {
        (0..n as u32)
            .map(|s| match self.of_slot.get(s as usize) {
                Some(&Some(b)) => self.first_slot(b as usize),
                _ => s,
            })
            .collect()
    }

    /// The slot that held buffer `b` before `slot`, if `slot` reuses one.
    pub fn reused_from(&self, slot: u32) -> Option<u32> {
        let b = self.of_slot[slot as usize]? as usize;
        let at = self.buffers[b].iter().position(|&s| s == slot)?;
        at.checked_sub(1).map(|k| self.buffers[b][k])
    }
}

/// A size class: the fixed factor of a slot's element count and its symbolic factors, sorted.
/// Two shapes have the same element count under every binding exactly when their classes are
/// equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SizeClass {
    fixed: u128,
    syms: Vec<u32>,
}

fn size_class(shape: &Shape) -> SizeClass {
    let mut fixed = 1u128;
    let mut syms = Vec::new();
    for d in &shape.0 {
        match *d {
            Dim::Fixed(k) => fixed = fixed.saturating_mul(k as u128),
            Dim::Sym(s) => syms.push(s),
        }
    }
    if fixed == 0 {
        // No elements whatever the other dimensions.
        syms.clear();
    }
    syms.sort_unstable();
    SizeClass { fixed, syms }
}

/// The first and last step that touch each slot (`None`: no step does).
pub(super) fn live_ranges(g: &Graph, plan: &Plan) -> Vec<Option<(usize, usize)>> {
    let mut range: Vec<Option<(usize, usize)>> = vec![None; plan.slots.len()];
    for (i, step) in plan.steps.iter().enumerate() {
        let mut touched = Vec::new();
        step_slots(g, plan, step, &mut touched);
        for s in touched {
            let r = &mut range[s as usize];
            *r = Some(r.map_or((i, i), |(first, _)| (first, i)));
        }
    }
    range
}

/// Every slot a step reads or writes, through its nodes' operands (views, and the operands of
/// fused expressions).
fn step_slots(g: &Graph, plan: &Plan, step: &Step, out: &mut Vec<u32>) {
    let operands = |node: NodeId, out: &mut Vec<u32>| {
        for a in &g.node(node).inputs {
            if let Some(v) = &plan.values[a.index()] {
                value_slots(g, plan, v, out);
            }
        }
    };
    match step {
        Step::Compute { node, slot, aux } => {
            operands(*node, out);
            out.push(*slot);
            out.extend(aux);
        }
        Step::Scalar { node } => operands(*node, out),
        Step::Copy { src, slot, .. } => {
            value_slots(g, plan, src, out);
            out.push(*slot);
        }
        Step::Group {
            members, blocked, ..
        } => {
            for m in members {
                operands(m.node, out);
                out.push(m.slot);
            }
            if let Some(b) = blocked {
                for (node, slot) in [b.before, b.after] {
                    operands(node, out);
                    out.push(slot);
                }
            }
        }
    }
}

fn value_slots(g: &Graph, plan: &Plan, v: &Val, out: &mut Vec<u32>) {
    match v {
        Val::Const(_) | Val::DimSize(_) | Val::Register(_) => {}
        Val::View { slot, .. } => out.push(*slot),
        Val::Inline(id) => {
            for a in &g.node(*id).inputs {
                if let Some(v) = &plan.values[a.index()] {
                    value_slots(g, plan, v, out);
                }
            }
        }
    }
}

/// Assigns buffers to `plan`'s slots by a linear scan over its steps: a temporary takes a free
/// buffer of its size class when one is free (released by a slot whose last step came
/// earlier), else a new one.
pub(super) fn assign(g: &Graph, plan: &Plan) -> Storage {
    let written = plan.written_slots();
    let ranges = live_ranges(g, plan);
    let mut of_slot: Vec<Option<u32>> = vec![None; plan.slots.len()];
    let mut buffers: Vec<Vec<u32>> = Vec::new();
    // Outputs first, one buffer each, in slot order.
    for (s, slot) in plan.slots.iter().enumerate() {
        if matches!(slot.kind, SlotKind::Output(_)) {
            of_slot[s] = Some(buffers.len() as u32);
            buffers.push(vec![s as u32]);
        }
    }
    // Temporaries in the order their lifetimes begin.
    let mut temps: Vec<(usize, usize, u32)> = plan
        .slots
        .iter()
        .enumerate()
        .filter(|(s, slot)| slot.kind == SlotKind::Temp && written.contains(&(*s as u32)))
        .filter_map(|(s, _)| ranges[s].map(|(first, last)| (first, last, s as u32)))
        .collect();
    temps.sort_unstable();
    // Free buffers of each size class, and the buffers in use by the step after which they
    // are free again (a heap, so that a plan of many slots is assigned in n log n).
    let mut free: HashMap<SizeClass, Vec<u32>> = HashMap::new();
    let mut busy: BinaryHeap<Reverse<(usize, u32)>> = BinaryHeap::new();
    for (first, last, s) in temps {
        while let Some(&Reverse((until, b))) = busy.peek() {
            if until >= first {
                break;
            }
            busy.pop();
            let class = size_class(&plan.slots[buffers[b as usize][0] as usize].shape);
            free.entry(class).or_default().push(b);
        }
        let class = size_class(&plan.slots[s as usize].shape);
        let b = match free.get_mut(&class).and_then(|bs| bs.pop()) {
            Some(b) => {
                buffers[b as usize].push(s);
                b
            }
            None => {
                buffers.push(vec![s]);
                (buffers.len() - 1) as u32
            }
        };
        of_slot[s as usize] = Some(b);
        busy.push(Reverse((last, b)));
    }
    Storage { of_slot, buffers }
}
