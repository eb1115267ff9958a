//! Parallel parts: whether a loop group or a parameter's update is split between cores, by
//! which rule, and why not. Decided here, so that the plan shows it; the code generator builds
//! the part function where the plan splits, and the worker pool (`jit::parallel`) cuts the
//! range with [`parts_for`] and [`part_range`] at run time.
//!
//! How many parts a loop is cut into depends on its work only, never on the thread count:
//! threads take the parts round-robin ([`lane_parts`]), so every part's partial sums, and so
//! the results, are the same bits on one thread as on eight.

use super::{Member, MemberKind, Plan, ROW_BLOCK, RowBlocks, SlotKind, Step, Val, single_element};
use crate::ir::{Class, Dim, Graph, Op, Shape};

/// The most parts a loop is cut into; a split loop's frame holds this many partial-sum areas.
pub const MAX_PARTS: usize = 8;

/// Elements of work below which a part is not worth handing to another core: waking a worker
/// and waiting for it costs about a microsecond, a loop element a nanosecond or more.
pub const MIN_WORK_PER_PART: i64 = 1 << 15;

/// The most bytes of partial sums a split loop's frame holds for all its parts: the frame is
/// on the stack of the function that runs the loop.
pub const MAX_PARTIAL_BYTES: i64 = 32 << 10;

/// Elements per item of a split update: a few cache lines, so that parts start on a line.
pub const UPDATE_CHUNK: i64 = 256;

/// How many parts `items` items of `work` elements each are cut into: one per
/// `MIN_WORK_PER_PART` elements, at least one, at most `MAX_PARTS` and at most one per item.
pub fn parts_for(items: i64, work: i64) -> usize {
    let total = items.saturating_mul(work.max(1));
    let by_work = (total / MIN_WORK_PER_PART).clamp(1, MAX_PARTS as i64);
    by_work.min(items.max(1)) as usize
}

/// Part `p` of `parts` over `0..items`: as equal as integers allow, in order.
pub fn part_range(items: i64, parts: usize, p: usize) -> (i64, i64) {
    let cut = |q: usize| (items as i128 * q as i128 / parts as i128) as i64;
    (cut(p), cut(p + 1))
}

/// The threads that share a job of `parts` parts when `threads` threads are set.
pub fn lanes_for(threads: usize, parts: usize) -> usize {
    threads.clamp(1, MAX_PARTS).min(parts)
}

/// The parts thread `lane` of `lanes` runs: `lane, lane + lanes, …`.
pub fn lane_parts(
    parts: usize,
    lane: usize,
    lanes: usize,
) -> std::iter::StepBy<std::ops::Range<usize>> {
    (lane.min(parts)..parts).step_by(lanes.max(1))
}

/// Whether a loop group or an update runs as one loop or in parts.
#[derive(Clone, Debug, PartialEq)]
pub enum Parts {
    /// One loop on the calling thread, for the reason given.
    One(Whole),
    /// Parts over the outer axis, as many as `rule` says for the sizes bound at run time.
    Split {
        rule: SplitRule,
        /// Slots the loop stores that the fused training loop holds in registers
        /// (`fused_registers`): there, a part (another function) could not write them, and the
        /// loop runs whole.
        held: Vec<u32>,
    },
}

/// Why a loop runs whole.
#[derive(Clone, Debug, PartialEq)]
pub enum Whole {
    /// The loop has no outer axis to split.
    NoOuterAxis,
    /// Its elements (fixed) are fewer than two parts' worth.
    Small(u64),
    /// It sums into slot `s` of a size known only at run time: each part needs an area of the
    /// frame for its partial sums, sized when the code is generated.
    RunTimeSum(u32),
    /// Its parts' partial sums would take this many bytes of the frame, over
    /// `MAX_PARTIAL_BYTES`.
    PartialsTooLarge(i64),
}

/// How a split loop's range is cut: items along `axis` (blocks of `block` of it, or its
/// indices where `block` is 1) of `work` elements each, into `parts_for(items, work)` parts.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitRule {
    pub axis: Dim,
    pub block: i64,
    /// Elements of work per item: a product of sizes.
    pub work: Vec<Dim>,
}

impl SplitRule {
    /// The items under a binding of the symbolic dimensions.
    pub fn items(&self, syms: &[u64]) -> i64 {
        let len = dim_under(self.axis, syms);
        (len + self.block - 1) / self.block
    }

    /// The work per item under a binding of the symbolic dimensions.
    pub fn work(&self, syms: &[u64]) -> i64 {
        self.work.iter().map(|&d| dim_under(d, syms)).product()
    }

    /// The number of parts under a binding of the symbolic dimensions.
    pub fn parts(&self, syms: &[u64]) -> usize {
        parts_for(self.items(syms), self.work(syms))
    }

    /// The number of parts, when every size it depends on is fixed.
    pub fn fixed_parts(&self) -> Option<usize> {
        let fixed = |d: &Dim| matches!(d, Dim::Fixed(_));
        (fixed(&self.axis) && self.work.iter().all(fixed)).then(|| self.parts(&[]))
    }
}

fn dim_under(d: Dim, syms: &[u64]) -> i64 {
    match d {
        Dim::Fixed(k) => k as i64,
        Dim::Sym(s) => syms[s as usize] as i64,
    }
}

/// Whether a loop group is split between cores, and by which rule. `held` are the slots the
/// fused training loop holds in registers (`fused_registers`).
pub(super) fn group_parts(
    g: &Graph,
    shape: &Shape,
    members: &[Member],
    blocked: Option<&RowBlocks>,
    held: &[u32],
) -> Parts {
    if shape.rank() == 0 {
        return Parts::One(Whole::NoOuterAxis);
    }
    if let Some(w) = shape.fixed_elements() {
        if (w as i64) < 2 * MIN_WORK_PER_PART {
            return Parts::One(Whole::Small(w as u64));
        }
    }
    let mut summed: Vec<(u32, &Shape)> = Vec::new();
    let mut stored = Vec::new();
    for m in members {
        match m.kind {
            MemberKind::Sum | MemberKind::ColumnSum => summed.push((m.slot, g.shape(m.node))),
            // Each part writes its own rows' totals.
            MemberKind::Elementwise | MemberKind::RowSum if m.stored => stored.push(m.slot),
            MemberKind::Elementwise | MemberKind::RowSum => {}
        }
    }
    if let Some(rb) = blocked {
        stored.push(rb.before.1);
        summed.push((rb.after.1, g.shape(rb.after.0)));
    }
    let size = g.dtype.size() as i64;
    let mut part_bytes = 0i64;
    for (slot, sh) in summed {
        let Some(elements) = sh.fixed_elements() else {
            return Parts::One(Whole::RunTimeSum(slot));
        };
        // 16-byte aligned, so vector loads and stores of a row stay within one line pair.
        part_bytes += (elements as i64 * size + 15) & !15;
    }
    if part_bytes * MAX_PARTS as i64 > MAX_PARTIAL_BYTES {
        return Parts::One(Whole::PartialsTooLarge(part_bytes * MAX_PARTS as i64));
    }
    let rule = match blocked {
        Some(_) => SplitRule {
            axis: shape.0[0],
            block: ROW_BLOCK,
            work: vec![Dim::Fixed(ROW_BLOCK as u64 * 8)],
        },
        None => SplitRule {
            axis: shape.0[0],
            block: 1,
            work: shape.0[1..].to_vec(),
        },
    };
    stored.retain(|s| held.contains(s));
    Parts::Split { rule, held: stored }
}

/// Whether the update of a parameter of `len` elements is split between cores: in chunks of
/// `UPDATE_CHUNK` elements, when it has two parts' worth of them.
pub fn update_parts(len: usize) -> Parts {
    if (len as i64) < 2 * MIN_WORK_PER_PART {
        return Parts::One(Whole::Small(len as u64));
    }
    Parts::Split {
        rule: SplitRule {
            axis: Dim::Fixed(len as u64),
            block: UPDATE_CHUNK,
            work: vec![Dim::Fixed(UPDATE_CHUNK as u64)],
        },
        held: Vec::new(),
    }
}

/// Whether `plan` is a training step's: its outputs are the loss and one gradient per
/// parameter, of the parameter's shape, in order (what the fused training loop reads).
pub fn is_training_step(g: &Graph, plan: &Plan) -> bool {
    plan.outputs.len() == 1 + g.params.len()
        && g.params
            .iter()
            .enumerate()
            .all(|(i, p)| plan.slots[plan.outputs[1 + i] as usize].shape == p.shape)
}

/// The plan's slots that the fused training loop holds in registers for all its steps, where
/// the plan is a training step's: single-element parameters and their gradients, and a
/// single-element loss, except any slot a matrix product or a gather touches (their helpers
/// read and write memory). The optimizer state of those parameters is held too; it is not a
/// slot of the plan.
pub fn fused_registers(g: &Graph, plan: &Plan) -> Vec<u32> {
    if !is_training_step(g, plan) {
        return Vec::new();
    }
    let mut in_memory = std::collections::HashSet::new();
    let mut view_slot = |id: crate::ir::NodeId| {
        if let Some(Val::View { slot, .. }) = &plan.values[id.index()] {
            in_memory.insert(*slot);
        }
    };
    for id in g.ids() {
        let calls_helper =
            g.node(id).op == Op::MatMul || g.node(id).op.facts().class == Class::Indexing;
        if plan.values[id.index()].is_some() && calls_helper {
            view_slot(id);
            for &a in &g.node(id).inputs {
                view_slot(a);
            }
        }
    }
    let mut out = Vec::new();
    for (k, slot) in plan.slots.iter().enumerate() {
        if let SlotKind::Param(i) = slot.kind {
            if single_element(&slot.shape) {
                out.push(k as u32);
                out.push(plan.outputs[1 + i as usize]);
            }
        }
    }
    if single_element(&plan.slots[plan.outputs[0] as usize].shape) {
        out.push(plan.outputs[0]);
    }
    out.retain(|s| !in_memory.contains(s));
    out.sort_unstable();
    out.dedup();
    out
}

/// The parts of a step: a loop group's (`None` for other steps, which run on the calling
/// thread; a large product shares itself between cores inside its kernel).
pub(super) fn decide(g: &Graph, step: &Step, held: &[u32]) -> Option<Parts> {
    match step {
        Step::Group {
            shape,
            members,
            blocked,
        } => Some(group_parts(g, shape, members, blocked.as_ref(), held)),
        Step::Compute { .. } | Step::Scalar { .. } | Step::Copy { .. } => None,
    }
}
