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
    if let Some(w) = shape.fixed_elements()
        && (w as i64) < 2 * MIN_WORK_PER_PART
    {
        return Parts::One(Whole::Small(w as u64));
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

/// Whether `plan` is a training step's: its outputs are the loss, one gradient per parameter,
/// of the parameter's shape, in order, and the next value of each state tensor (what the fused
/// training loop reads).
pub fn is_training_step(g: &Graph, plan: &Plan) -> bool {
    plan.outputs.len() == 1 + g.params.len() + g.states.len()
        && g.params
            .iter()
            .enumerate()
            .all(|(i, p)| plan.slots[plan.outputs[1 + i] as usize].shape == p.shape)
}

/// The plan's slots that the fused training loop holds in registers for all its steps, where
/// the plan is a training step's: single-element parameters and their gradients, and a
/// single-element loss, except any slot a matrix product (a summed one too) or a gather touches
/// (their helpers read and write memory). The optimizer state of those parameters is held too; it is not a
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
        let calls_helper = g.node(id).op == Op::MatMul
            || g.node(id).op.facts().class == Class::Indexing
            || super::summed_product(g, &plan.values, id).is_some();
        if plan.values[id.index()].is_some() && calls_helper {
            view_slot(id);
            for &a in &g.node(id).inputs {
                view_slot(a);
            }
        }
    }
    let mut out = Vec::new();
    for (k, slot) in plan.slots.iter().enumerate() {
        if let SlotKind::Param(i) = slot.kind
            && single_element(&slot.shape)
        {
            out.push(k as u32);
            out.push(plan.outputs[1 + i as usize]);
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

/// The thread counts the verifier deals parts to: `--threads` is clamped to `MAX_PARTS`, so
/// these cover every setting and some above it.
const CHECKED_THREADS: std::ops::RangeInclusive<usize> = 1..=16;

/// The sizes the verifier binds a split loop's symbolic dimensions to: small, around a row
/// block, and around the thresholds of `parts_for`.
const CHECKED_SIZES: [u64; 9] = [0, 1, 2, 255, 256, 257, 4096, 65_537, 1 << 20];

/// Checks a split: for every checked binding of its dimensions and every thread count, the
/// parts cover `0..items` once, in order, each dealt to exactly one thread.
pub(super) fn check_rule(rule: &SplitRule, n_syms: usize) -> Result<(), String> {
    if rule.block < 1 {
        return Err(format!("cuts items of {} elements", rule.block));
    }
    let bindings: Vec<Vec<u64>> = match n_syms {
        0 => vec![Vec::new()],
        _ => CHECKED_SIZES.iter().map(|&k| vec![k; n_syms]).collect(),
    };
    for syms in &bindings {
        let items = rule.items(syms);
        let parts = rule.parts(syms);
        if !(1..=MAX_PARTS).contains(&parts) {
            return Err(format!("cuts {items} items into {parts} parts"));
        }
        let mut end = 0;
        for p in 0..parts {
            let (lo, hi) = part_range(items, parts, p);
            if lo != end || hi < lo {
                return Err(format!("part {p} of {parts} is {lo}..{hi}, not from {end}"));
            }
            end = hi;
        }
        if end != items {
            return Err(format!("its {parts} parts end at {end} of {items} items"));
        }
        for threads in CHECKED_THREADS {
            let lanes = lanes_for(threads, parts);
            let mut runs = vec![0; parts];
            for lane in 0..lanes {
                for p in lane_parts(parts, lane, lanes) {
                    runs[p] += 1;
                }
            }
            if let Some(p) = runs.iter().position(|&r| r != 1) {
                return Err(format!(
                    "on {threads} threads part {p} of {parts} runs {} times",
                    runs[p]
                ));
            }
        }
    }
    Ok(())
}

/// Checks a loop group's recorded parts: a split group has an outer axis, cuts it by its rule
/// (items of one index, or row blocks for a blocked group, of the other axes' work), has a
/// fixed-size area for every sum within the frame, names only slots it stores as held, and
/// covers its axis on every thread count; a group run whole says why truly.
pub(super) fn check_group(
    g: &Graph,
    shape: &Shape,
    members: &[Member],
    blocked: Option<&RowBlocks>,
    parts: &Parts,
) -> Result<(), String> {
    let (rule, held) = match parts {
        Parts::One(Whole::NoOuterAxis) if shape.rank() == 0 => return Ok(()),
        Parts::One(Whole::Small(w)) => {
            return match shape.fixed_elements() {
                Some(n) if n as u64 == *w && (*w as i64) < 2 * MIN_WORK_PER_PART => Ok(()),
                _ => Err(format!(
                    "runs whole as {w} elements, but has {}",
                    g.shape_text(shape)
                )),
            };
        }
        Parts::One(why) => {
            let recomputed = group_parts(g, shape, members, blocked, &[]);
            return match recomputed == Parts::One(why.clone()) {
                true => Ok(()),
                false => Err(format!(
                    "runs whole for a reason that does not hold: {why:?}"
                )),
            };
        }
        Parts::Split { rule, held } => (rule, held),
    };
    if shape.rank() == 0 || rule.axis != shape.0[0] {
        return Err("splits an axis other than its outer one".into());
    }
    let (block, work) = match blocked {
        Some(_) => (ROW_BLOCK, vec![Dim::Fixed(ROW_BLOCK as u64 * 8)]),
        None => (1, shape.0[1..].to_vec()),
    };
    if rule.block != block || rule.work != work {
        return Err(format!(
            "cuts items of {} (work {:?}) where its loop has {block} (work {work:?})",
            rule.block, rule.work
        ));
    }
    let mut bytes = 0i64;
    let sums = members
        .iter()
        .filter(|m| matches!(m.kind, MemberKind::Sum | MemberKind::ColumnSum))
        .map(|m| (m.slot, g.shape(m.node)))
        .chain(blocked.map(|rb| (rb.after.1, g.shape(rb.after.0))));
    for (slot, sh) in sums {
        let Some(n) = sh.fixed_elements() else {
            return Err(format!("is split, but its sum s{slot} has no fixed size"));
        };
        bytes += (n as i64 * g.dtype.size() as i64 + 15) & !15;
    }
    if bytes * MAX_PARTS as i64 > MAX_PARTIAL_BYTES {
        return Err(format!(
            "is split with {bytes} bytes of partial sums a part"
        ));
    }
    let stored = |s: &u32| {
        members.iter().any(|m| {
            m.slot == *s
                && m.stored
                && matches!(m.kind, MemberKind::Elementwise | MemberKind::RowSum)
        }) || blocked.is_some_and(|rb| rb.before.1 == *s)
    };
    if let Some(s) = held.iter().find(|s| !stored(s)) {
        return Err(format!(
            "names s{s} as held in a register, which it does not store"
        ));
    }
    check_rule(rule, g.syms.len())
}

/// Checks a parameter's update: split exactly when it has two parts' worth of elements, in
/// `UPDATE_CHUNK`-element chunks whose parts cover it on every thread count.
pub(super) fn check_update(len: usize, parts: &Parts) -> Result<(), String> {
    let large = len as i64 >= 2 * MIN_WORK_PER_PART;
    match parts {
        Parts::One(Whole::Small(n)) if *n == len as u64 && !large => Ok(()),
        Parts::Split { rule, held } if large && held.is_empty() => {
            let fits = rule.axis == Dim::Fixed(len as u64)
                && rule.block == UPDATE_CHUNK
                && rule.work == [Dim::Fixed(UPDATE_CHUNK as u64)];
            match fits {
                true => check_rule(rule, 0),
                false => Err(format!("cuts {len} elements by {rule:?}")),
            }
        }
        other => Err(format!("{len} elements updated as {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part of a job runs on exactly one thread, for every thread count and part count,
    /// and the verifier's check of a rule fails where the rule cannot cut its axis.
    #[test]
    fn parts_are_dealt_once_and_a_bad_rule_is_found() {
        for parts in 1..=MAX_PARTS {
            for threads in 1..=16 {
                let lanes = lanes_for(threads, parts);
                let mut dealt: Vec<usize> = (0..lanes)
                    .flat_map(|l| lane_parts(parts, l, lanes))
                    .collect();
                dealt.sort_unstable();
                assert_eq!(
                    dealt,
                    (0..parts).collect::<Vec<_>>(),
                    "{parts} parts, {threads} threads"
                );
            }
        }
        let rule = SplitRule {
            axis: Dim::Sym(0),
            block: ROW_BLOCK,
            work: vec![Dim::Fixed(2048)],
        };
        assert_eq!(check_rule(&rule, 1), Ok(()));
        assert!(check_rule(&SplitRule { block: 0, ..rule }, 1).is_err());
    }

    /// The rule's text form's numbers: one part per 32,768 elements, at most 8, at most one
    /// per item; an update splits from 65,536 elements on.
    #[test]
    fn the_rule_cuts_by_work_alone() {
        let rule = SplitRule {
            axis: Dim::Sym(0),
            block: 1,
            work: vec![Dim::Fixed(64)],
        };
        assert_eq!(rule.parts(&[100]), 1);
        assert_eq!(rule.parts(&[1024]), 2);
        assert_eq!(rule.parts(&[1 << 20]), MAX_PARTS);
        assert_eq!(rule.fixed_parts(), None);
        assert_eq!(update_parts(65_535), Parts::One(Whole::Small(65_535)));
        let Parts::Split { rule, .. } = update_parts(65_536) else {
            panic!("a large update is split")
        };
        assert_eq!(rule.fixed_parts(), Some(2));
    }
}
