//! Lowering plan: where each node's value lives when the graph runs as native code.
//!
//! Every value is a scalar computed inline (constants, dimension sizes), or a strided view of a
//! buffer slot. Reshapes, transposes, broadcasts and slices are views: they cost no code and no
//! memory (a reshape that merges axes of a strided view copies it first).
//! Every other node computes into a fresh contiguous slot, except that elementwise nodes read by
//! one loop are fused into it (`Val::Inline`, loop groups), scalars live in registers, and a
//! node that is an output and has a step of its own computes straight into its output slot
//! (other outputs are copied there, so callers always find them contiguous). Slots are names:
//! `storage` decides which share a buffer once their lifetimes are known.
//!
//! Invariants, checked by `verify`: a slot is written by exactly one step, before any step reads
//! it; a register is computed before it is read; every view lies inside its slot; slots live at
//! the same step never share a buffer. `plan_text` is the canonical text form
//! (`adjoint graph --plan`).

mod storage;
mod text;
mod verify;

pub use storage::Storage;
pub use text::plan_text;
pub use verify::{PlanError, verify};

use crate::ir::{Class, Dim, Graph, NodeId, Op, Shape};
use crate::model::GraphFn;

/// An element stride: zero (broadcast), or the product of some dimensions (empty: 1), or that
/// product times a whole number other than 1 (a slice's step; negative walks backwards).
#[derive(Clone, Debug, PartialEq)]
pub enum Stride {
    Zero,
    Prod(Vec<Dim>),
    Scaled(i64, Vec<Dim>),
}

impl Stride {
    /// This stride times `k`.
    pub fn times(&self, k: i64) -> Stride {
        match self {
            Stride::Zero => Stride::Zero,
            _ if k == 0 => Stride::Zero,
            Stride::Prod(dims) if k == 1 => Stride::Prod(dims.clone()),
            Stride::Prod(dims) => Stride::Scaled(k, dims.clone()),
            Stride::Scaled(j, dims) if j * k == 1 => Stride::Prod(dims.clone()),
            Stride::Scaled(j, dims) => Stride::Scaled(j * k, dims.clone()),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Const(f64),
    DimSize(u32),
    /// Element `i` of the value is element `offset + Σ i[k]·strides[k]` of the slot; the
    /// offset is a sum of terms (none: 0), non-zero only for slices.
    View {
        slot: u32,
        strides: Vec<Stride>,
        offset: Vec<Stride>,
    },
    /// An elementwise node fused into its only user: computed where it is read, never stored.
    Inline(NodeId),
    /// A scalar computed once into a register; never stored.
    Register(NodeId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotKind {
    Input(u32),
    Param(u32),
    Output(u32),
    Temp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    pub kind: SlotKind,
    pub shape: Shape,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Compute node into its slot (and scratch `aux` slot for two-pass reductions).
    Compute {
        node: NodeId,
        slot: u32,
        aux: Option<u32>,
    },
    /// Compute a scalar elementwise node into a register.
    Scalar { node: NodeId },
    /// Copy a value into a contiguous slot of the given shape (outputs, matmul operands).
    Copy {
        src: Val,
        src_shape: Shape,
        slot: u32,
    },
    /// Several nodes over one iteration space computed in a single loop: elementwise nodes,
    /// which read each other's elements from registers, and full sums of them. Members are in
    /// dependency order.
    Group {
        shape: Shape,
        members: Vec<Member>,
        blocked: Option<RowBlocks>,
    },
}

/// A loop group over the rows of a matrix–vector product, run block by block between that
/// product and a transposed one: for each block of rows, `y = X w` for the block, the group's
/// loop over those rows, then `g += Mᵀ s` for the block. The block of X read by the first
/// product is still in cache when the second reads it, so a least-squares gradient reads its
/// matrix from memory once instead of twice.
#[derive(Clone, Debug, PartialEq)]
pub struct RowBlocks {
    /// The product `X @ w` (matrix first) whose rows the group iterates over, and its slot.
    pub before: (NodeId, u32),
    /// The product `M @ s` (M is k×rows, s a stored member) accumulated block by block.
    pub after: (NodeId, u32),
}

/// A node computed inside a loop group.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub node: NodeId,
    pub slot: u32,
    pub kind: MemberKind,
    /// Whether anything after the loop reads the slot; if not, the value lives only in a
    /// register for one iteration and is never stored.
    pub stored: bool,
}

/// What a loop-group member computes at each index of the loop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MemberKind {
    /// Its own element, from its operands' elements.
    Elementwise,
    /// Adds its operand's element into one total.
    Sum,
    /// Adds its operand's element into the output element of the same last-axis index (a sum
    /// over every axis but the last).
    ColumnSum,
    /// Adds its operand's element into the output element of its row (a sum over the last
    /// axis, as a softmax's or a layer norm's): the row's total is stored when the row ends.
    RowSum,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub slots: Vec<Slot>,
    /// The value of each live node.
    pub values: Vec<Option<Val>>,
    pub steps: Vec<Step>,
    /// Output slot of each output, in order.
    pub outputs: Vec<u32>,
    /// Divisions computed in loops as multiplications by the divisor's reciprocal, taken once
    /// before the loop (the rule `reciprocal-of-loop-invariant`): a division costs several
    /// multiplications' time, and these divisors are fixed for the whole loop (`x / σ`,
    /// `x / n`). Not exact in IEEE arithmetic: x·(1/d) can differ from x/d in the last bit,
    /// which is why the rule lives here, printed with the plan, and not in `simplify`, whose
    /// rules are exact.
    pub reciprocal: std::collections::HashSet<NodeId>,
    /// The buffer that holds each slot: temporaries whose lifetimes do not overlap share one.
    pub storage: Storage,
}

impl Plan {
    /// The slots some step writes.
    pub fn written_slots(&self) -> std::collections::HashSet<u32> {
        let mut out = std::collections::HashSet::new();
        for step in &self.steps {
            match step {
                Step::Compute { slot, aux, .. } => out.extend(std::iter::once(*slot).chain(*aux)),
                Step::Scalar { .. } => {}
                Step::Copy { slot, .. } => {
                    out.insert(*slot);
                }
                Step::Group {
                    members, blocked, ..
                } => {
                    out.extend(members.iter().filter_map(verify::written_slot));
                    if let Some(b) = blocked {
                        out.extend([b.before.1, b.after.1]);
                    }
                }
            }
        }
        out
    }

    /// Elements in a slot under a binding of the symbolic dimensions.
    pub fn slot_len(&self, slot: usize, syms: &[u64]) -> usize {
        self.slots[slot].shape.elements(syms)
    }
}

/// Whether a shape has exactly one element whatever the symbolic dimensions.
pub fn single_element(shape: &Shape) -> bool {
    shape.fixed_elements() == Some(1)
}

pub fn contiguous(shape: &Shape) -> Vec<Stride> {
    (0..shape.rank())
        .map(|i| Stride::Prod(shape.0[i + 1..].to_vec()))
        .collect()
}

/// Whether `strides` read `shape` in row-major order without gaps, as a kernel that takes a
/// plain pointer reads it; an axis of length 1 may have any stride.
fn row_major(shape: &Shape, strides: &[Stride]) -> bool {
    // A product of dimensions as its fixed part and its symbols, whatever their order.
    let key = |dims: &[Dim]| {
        let mut fixed = 1u64;
        let mut syms = Vec::new();
        for d in dims {
            match *d {
                Dim::Fixed(k) => fixed = fixed.saturating_mul(k),
                Dim::Sym(s) => syms.push(s),
            }
        }
        syms.sort_unstable();
        (fixed, syms)
    };
    shape.0.iter().zip(strides).enumerate().all(|(i, (d, s))| {
        *d == Dim::Fixed(1) || matches!(s, Stride::Prod(p) if key(p) == key(&shape.0[i + 1..]))
    })
}

/// Elementwise nodes that can be computed inside the loop of their only user, which iterates
/// over exactly their shape: chains of elementwise ops and the reductions that consume them
/// become single loops with no intermediate buffers.
fn fusible(g: &Graph, roots: &[NodeId], live: &[bool]) -> Vec<bool> {
    let mut uses = g.use_counts(live);
    for r in roots {
        uses[r.index()] += 1;
    }
    let mut user: Vec<Option<NodeId>> = vec![None; g.len()];
    for id in g.ids().filter(|id| live[id.index()]) {
        for &a in &g.node(id).inputs {
            user[a.index()] = Some(id);
        }
    }
    // A fused expression is evaluated recursively where it is read: bound its depth.
    const MAX_FUSED_DEPTH: u32 = 24;
    let mut depth = vec![0u32; g.len()];
    let mut res = vec![false; g.len()];
    for id in g.ids() {
        let node = g.node(id);
        let inline = (|| {
            if !live[id.index()] || !node.op.is_elementwise() || uses[id.index()] != 1 {
                return false;
            }
            let Some(u) = user[id.index()] else {
                return false;
            };
            let un = g.node(u);
            match un.op {
                // Single-pass reductions read each element once.
                Op::Sum { .. } | Op::SumTo(_) | Op::ReduceMax { .. } | Op::ReduceMin { .. } => true,
                ref op if op.is_elementwise() => un.shape == node.shape,
                _ => false,
            }
        })();
        let d = 1 + node
            .inputs
            .iter()
            .map(|a| if res[a.index()] { depth[a.index()] } else { 0 })
            .max()
            .unwrap_or(0);
        if inline && d <= MAX_FUSED_DEPTH {
            res[id.index()] = true;
            depth[id.index()] = d;
        }
    }
    res
}

pub fn plan(f: &GraphFn) -> Plan {
    let g = &f.graph;
    let roots: Vec<NodeId> = f.outputs.iter().map(|o| o.1).collect();
    let live = g.reachable(&roots);
    let inline = fusible(g, &roots, &live);
    let mut slots = Vec::new();
    for (i, p) in g.inputs.iter().enumerate() {
        slots.push(Slot {
            kind: SlotKind::Input(i as u32),
            shape: p.shape.clone(),
        });
    }
    for (i, p) in g.params.iter().enumerate() {
        slots.push(Slot {
            kind: SlotKind::Param(i as u32),
            shape: p.shape.clone(),
        });
    }
    for (i, (_, id)) in f.outputs.iter().enumerate() {
        slots.push(Slot {
            kind: SlotKind::Output(i as u32),
            shape: g.shape(*id).clone(),
        });
    }
    let outputs: Vec<u32> = (0..f.outputs.len())
        .map(|i| (g.inputs.len() + g.params.len() + i) as u32)
        .collect();
    let mut values: Vec<Option<Val>> = vec![None; g.len()];
    // The first output each node is, looked up once per node (a scan of the outputs per node
    // was quadratic in the number of parameters).
    let mut first_output: std::collections::HashMap<NodeId, usize> = Default::default();
    for (i, (_, id)) in f.outputs.iter().enumerate().rev() {
        first_output.insert(*id, i);
    }
    let mut claimed = vec![false; outputs.len()];
    let mut steps = Vec::new();
    let temp = |slots: &mut Vec<Slot>, shape: Shape| {
        slots.push(Slot {
            kind: SlotKind::Temp,
            shape,
        });
        (slots.len() - 1) as u32
    };
    for id in g.ids().filter(|id| live[id.index()]) {
        let node = g.node(id);
        let arg = |values: &[Option<Val>], k: usize| {
            values[node.inputs[k].index()]
                .clone()
                .expect("operand planned")
        };
        let val = match &node.op {
            Op::Const(_) => Val::Const(node.op.const_value().unwrap()),
            Op::DimSize(s) => Val::DimSize(*s),
            Op::Input(i) => Val::View {
                slot: *i,
                strides: contiguous(&node.shape),
                offset: vec![],
            },
            Op::Param(i) => Val::View {
                slot: g.inputs.len() as u32 + *i,
                strides: contiguous(&node.shape),
                offset: vec![],
            },
            Op::Transpose { perm } => match arg(&values, 0) {
                Val::View {
                    slot,
                    strides,
                    offset,
                } => Val::View {
                    slot,
                    strides: perm.iter().map(|&a| strides[a as usize].clone()).collect(),
                    offset,
                },
                scalar => scalar,
            },
            Op::Slice {
                axis, start, step, ..
            } => match arg(&values, 0) {
                Val::View {
                    slot,
                    mut strides,
                    mut offset,
                } => {
                    let along = strides[*axis as usize].clone();
                    let first = along.times(*start as i64);
                    if first != Stride::Zero {
                        offset.push(first);
                    }
                    strides[*axis as usize] = along.times(*step);
                    Val::View {
                        slot,
                        strides,
                        offset,
                    }
                }
                scalar => scalar,
            },
            // Patches are the operand read with more strides: no copy.
            Op::Windows {
                kernel,
                stride,
                dilation,
            } => match arg(&values, 0) {
                Val::View {
                    slot,
                    strides,
                    offset,
                } => Val::View {
                    slot,
                    strides: window_strides(&strides, kernel, stride, dilation),
                    offset,
                },
                scalar => scalar,
            },
            Op::Reshape(to) if !reshapes_as_view(g.shape(node.inputs[0]), to) => {
                match arg(&values, 0) {
                    // A contiguous block (a whole slot, or rows of one at an offset).
                    Val::View {
                        slot,
                        strides,
                        offset,
                    } if strides == contiguous(g.shape(node.inputs[0])) => Val::View {
                        slot,
                        strides: contiguous(to),
                        offset,
                    },
                    // A strided operand is copied first: a merged axis has no single stride.
                    src @ Val::View { .. } => {
                        let s = temp(&mut slots, g.shape(node.inputs[0]).clone());
                        steps.push(Step::Copy {
                            src,
                            src_shape: g.shape(node.inputs[0]).clone(),
                            slot: s,
                        });
                        Val::View {
                            slot: s,
                            strides: contiguous(to),
                            offset: vec![],
                        }
                    }
                    scalar => scalar,
                }
            }
            Op::Expand(_) | Op::Reshape(_) => match arg(&values, 0) {
                Val::View {
                    slot,
                    strides,
                    offset,
                } => Val::View {
                    slot,
                    strides: reshape_strides(
                        g.shape(node.inputs[0]),
                        &strides,
                        &node.shape,
                        &node.op,
                    ),
                    offset,
                },
                scalar => scalar,
            },
            _ if inline[id.index()] => Val::Inline(id),
            op if op.is_elementwise() && node.shape.is_scalar() => {
                steps.push(Step::Scalar { node: id });
                Val::Register(id)
            }
            _ => {
                // Matrix products and takes read views, gathers contiguous rows: any other
                // operand (a scalar, a transposed or broadcast view for a gather, a slice's
                // offset or step for a product or a gather) becomes a buffer.
                let reads_views = matches!(node.op, Op::MatMul | Op::Take { .. });
                let reads_rows = node.op.facts().class == Class::Indexing;
                if reads_views || reads_rows {
                    for k in 0..node.inputs.len() {
                        let a = node.inputs[k];
                        let usable = match &values[a.index()] {
                            Some(
                                view @ Val::View {
                                    strides, offset, ..
                                },
                            ) => {
                                if reads_rows {
                                    offset.is_empty() && row_major(g.shape(a), strides)
                                } else if node.op == Op::MatMul {
                                    is_plain_view(view)
                                } else {
                                    true
                                }
                            }
                            _ => false,
                        };
                        if !usable {
                            let s = temp(&mut slots, g.shape(a).clone());
                            steps.push(Step::Copy {
                                src: arg(&values, k),
                                src_shape: g.shape(a).clone(),
                                slot: s,
                            });
                            values[a.index()] = Some(Val::View {
                                slot: s,
                                strides: contiguous(g.shape(a)),
                                offset: vec![],
                            });
                        }
                    }
                }
                // An output computed by its own step is written straight into its output
                // slot rather than copied there afterwards. Single-element outputs keep the
                // copy: the fused train loop may hold those slots in registers.
                let slot = match first_output.get(&id).copied() {
                    Some(i) if !single_element(&node.shape) && !claimed[i] => {
                        claimed[i] = true;
                        outputs[i]
                    }
                    _ => temp(&mut slots, node.shape.clone()),
                };
                let aux = match node.op {
                    // Over the last axis the running sums stay in registers: the code
                    // generator takes a log-sum-exp without a scratch slot as that form.
                    Op::LogSumExp { axis: Some(a) }
                        if a as usize + 1 == g.shape(node.inputs[0]).rank() =>
                    {
                        None
                    }
                    Op::LogSumExp { .. } | Op::ArgMax { .. } => {
                        Some(temp(&mut slots, node.shape.clone()))
                    }
                    _ => None,
                };
                steps.push(Step::Compute {
                    node: id,
                    slot,
                    aux,
                });
                Val::View {
                    slot,
                    strides: contiguous(&node.shape),
                    offset: vec![],
                }
            }
        };
        values[id.index()] = Some(val);
    }
    for (i, (_, id)) in f.outputs.iter().enumerate() {
        if claimed[i] {
            continue;
        }
        let src = values[id.index()].clone().unwrap();
        steps.push(Step::Copy {
            src,
            src_shape: g.shape(*id).clone(),
            slot: outputs[i],
        });
    }
    let steps = group_loops(g, &values, steps, &outputs);
    let steps = block_rows(g, &values, steps);
    let reciprocal = divisions_by_loop_invariants(g, &values);
    let mut plan = number_lanes_last(Plan {
        slots,
        values,
        steps,
        outputs,
        reciprocal,
        storage: Storage::default(),
    });
    plan.storage = storage::assign(g, &plan);
    plan
}

/// Renumbers the slots of loop members that no step stores (they live in registers, and their
/// slot number only names them inside their loop) after every other slot, so that the plan's
/// text lists the slots that hold memory and nothing else.
fn number_lanes_last(mut plan: Plan) -> Plan {
    let written = plan.written_slots();
    let is_lane = |s: usize| plan.slots[s].kind == SlotKind::Temp && !written.contains(&(s as u32));
    let (lanes, kept): (Vec<usize>, Vec<usize>) = (0..plan.slots.len()).partition(|&s| is_lane(s));
    let mut new_of = vec![0u32; plan.slots.len()];
    for (new, &old) in kept.iter().chain(&lanes).enumerate() {
        new_of[old] = new as u32;
    }
    let renumber = |s: &mut u32| *s = new_of[*s as usize];
    let old_slots = std::mem::take(&mut plan.slots);
    plan.slots = kept
        .iter()
        .chain(&lanes)
        .map(|&s| old_slots[s].clone())
        .collect();
    let renumber_val = |v: &mut Val| {
        if let Val::View { slot, .. } = v {
            renumber(slot);
        }
    };
    plan.values.iter_mut().flatten().for_each(renumber_val);
    for step in &mut plan.steps {
        match step {
            Step::Compute { slot, aux, .. } => {
                renumber(slot);
                if let Some(a) = aux {
                    renumber(a);
                }
            }
            Step::Scalar { .. } => {}
            Step::Copy { src, slot, .. } => {
                renumber_val(src);
                renumber(slot);
            }
            Step::Group {
                members, blocked, ..
            } => {
                for m in members {
                    renumber(&mut m.slot);
                }
                if let Some(b) = blocked {
                    renumber(&mut b.before.1);
                    renumber(&mut b.after.1);
                }
            }
        }
    }
    for o in &mut plan.outputs {
        renumber(o);
    }
    plan
}

/// Divisions evaluated inside a loop (their shape has an axis) whose divisor has one value for
/// the whole loop: a constant, a dimension's size, a scalar register or a one-element view.
fn divisions_by_loop_invariants(
    g: &Graph,
    values: &[Option<Val>],
) -> std::collections::HashSet<NodeId> {
    let fixed = |d: NodeId| match &values[d.index()] {
        Some(Val::Const(_) | Val::DimSize(_) | Val::Register(_)) => true,
        Some(Val::View { .. }) => g.shape(d).rank() == 0,
        Some(Val::Inline(_)) | None => false,
    };
    g.ids()
        .filter(|&id| values[id.index()].is_some())
        .filter(|&id| g.node(id).op == Op::Div && g.shape(id).rank() > 0)
        .filter(|&id| fixed(g.node(id).inputs[1]))
        .collect()
}

/// How one step reads another's result.
#[derive(Clone, Copy, PartialEq)]
enum Read {
    /// Element for element, in the iteration order of the writer: possible from a register
    /// inside a shared loop.
    Aligned,
    /// Any other pattern (transposed, broadcast, a reduction's result).
    Other,
}

/// The steps each step depends on, and how it reads them.
fn step_deps(g: &Graph, values: &[Option<Val>], steps: &[Step]) -> Vec<Vec<(usize, Read)>> {
    let mut slot_writer = std::collections::HashMap::new();
    let mut reg_writer = std::collections::HashMap::new();
    for (k, s) in steps.iter().enumerate() {
        match s {
            Step::Compute { slot, .. } | Step::Copy { slot, .. } => {
                slot_writer.insert(*slot, k);
            }
            Step::Scalar { node } => {
                reg_writer.insert(*node, k);
            }
            Step::Group { .. } => unreachable!("groups are formed after planning"),
        }
    }
    fn visit(
        g: &Graph,
        values: &[Option<Val>],
        val: &Val,
        shape: &Shape,
        slot_writer: &std::collections::HashMap<u32, usize>,
        reg_writer: &std::collections::HashMap<NodeId, usize>,
        out: &mut Vec<(usize, Read)>,
    ) {
        match val {
            Val::Const(_) | Val::DimSize(_) => {}
            Val::Register(n) => out.push((reg_writer[n], Read::Other)),
            Val::View {
                slot,
                strides,
                offset,
            } => {
                if let Some(&w) = slot_writer.get(slot) {
                    let read = if offset.is_empty() && *strides == contiguous(shape) {
                        Read::Aligned
                    } else {
                        Read::Other
                    };
                    out.push((w, read));
                }
            }
            Val::Inline(n) => {
                for a in &g.node(*n).inputs {
                    let v = values[a.index()].as_ref().expect("operand planned");
                    visit(g, values, v, g.shape(*a), slot_writer, reg_writer, out);
                }
            }
        }
    }
    steps
        .iter()
        .map(|s| {
            let mut out = Vec::new();
            let mut read = |val: &Val, shape: &Shape| {
                visit(g, values, val, shape, &slot_writer, &reg_writer, &mut out)
            };
            match s {
                Step::Compute { node, .. } | Step::Scalar { node } => {
                    for a in &g.node(*node).inputs {
                        read(values[a.index()].as_ref().unwrap(), g.shape(*a));
                    }
                }
                Step::Copy { src, src_shape, .. } => read(src, src_shape),
                Step::Group { .. } => unreachable!(),
            }
            out
        })
        .collect()
}

/// What a step contributes to a loop group over its iteration shape: an elementwise node of
/// that shape, or a full sum of an operand of that shape.
enum Role {
    Elementwise(Shape),
    Sum(Shape),
    /// A sum over every axis but the last (a bias gradient): accumulated row by row.
    ColumnSum(Shape),
    /// A sum over the last axis (rank 2 or more): one total per row.
    RowSum(Shape),
}

impl Role {
    /// The iteration space: the shape of the step, or of what it sums.
    fn shape(&self) -> &Shape {
        match self {
            Role::Elementwise(s) | Role::Sum(s) | Role::ColumnSum(s) | Role::RowSum(s) => s,
        }
    }

    fn kind(&self) -> MemberKind {
        match self {
            Role::Elementwise(_) => MemberKind::Elementwise,
            Role::Sum(_) => MemberKind::Sum,
            Role::ColumnSum(_) => MemberKind::ColumnSum,
            Role::RowSum(_) => MemberKind::RowSum,
        }
    }
}

fn role(g: &Graph, step: &Step) -> Option<Role> {
    let Step::Compute {
        node, aux: None, ..
    } = step
    else {
        return None;
    };
    let n = g.node(*node);
    match &n.op {
        op if op.is_elementwise() && n.shape.rank() > 0 => Some(Role::Elementwise(n.shape.clone())),
        Op::Sum { axis: None } | Op::SumTo(_) if single_element(&n.shape) => {
            let x = g.shape(n.inputs[0]);
            (x.rank() > 0).then(|| Role::Sum(x.clone()))
        }
        Op::SumTo(_) => {
            let x = g.shape(n.inputs[0]);
            let out = &n.shape.0;
            let keeps_last = x.rank() >= 2
                && out.last() == x.0.last()
                && out[..out.len() - 1].iter().all(|d| *d == Dim::Fixed(1));
            // `[.., d]` to `[.., 1]`, every other axis kept.
            let sums_rows = wide_rows(x)
                && out.len() == x.rank()
                && out[..out.len() - 1] == x.0[..x.rank() - 1]
                && out.last() == Some(&Dim::Fixed(1))
                && x.0.last() != Some(&Dim::Fixed(1));
            if keeps_last {
                Some(Role::ColumnSum(x.clone()))
            } else {
                sums_rows.then(|| Role::RowSum(x.clone()))
            }
        }
        Op::Sum { axis: Some(a) } => {
            let x = g.shape(n.inputs[0]);
            (wide_rows(x) && *a as usize + 1 == x.rank()).then(|| Role::RowSum(x.clone()))
        }
        _ => None,
    }
}

/// Whether a sum over the last axis of `x` joins a loop group: rows of at least
/// `MIN_ROW_SUM_WIDTH` elements (or of a length known at run time) and another axis. On narrow
/// rows a group's per-row total costs more than the pass it saves: cross-entropy's sum over
/// ten classes was 5–10% slower fused (same-run A/B, 4096 rows).
fn wide_rows(x: &Shape) -> bool {
    x.rank() >= 2
        && match x.0[x.rank() - 1] {
            Dim::Fixed(d) => d >= MIN_ROW_SUM_WIDTH,
            Dim::Sym(_) => true,
        }
}

/// The narrowest row whose sum joins a loop group: four f32 vectors.
const MIN_ROW_SUM_WIDTH: u64 = 16;

/// Where a step stands while `group_loops` orders the steps.
#[derive(Clone, Copy, PartialEq)]
enum Where {
    Pending,
    /// In the open group.
    Member,
    /// Depends on the open group: placed after it closes.
    Waiting,
    Placed,
}

/// The state of `group_loops`' ordering pass.
struct Grouper {
    /// Each entry: one step, or a group's members.
    order: Vec<Vec<usize>>,
    pending: std::collections::VecDeque<usize>,
    /// The open group, and its iteration shape.
    group: Vec<usize>,
    shape: Option<Shape>,
    waiting: Vec<usize>,
    state: Vec<Where>,
}

impl Grouper {
    fn new(n_steps: usize) -> Grouper {
        Grouper {
            order: Vec::new(),
            pending: (0..n_steps).collect(),
            group: Vec::new(),
            shape: None,
            waiting: Vec::new(),
            state: vec![Where::Pending; n_steps],
        }
    }

    /// Steps in execution order, with each group's members in one entry.
    fn order(mut self, deps: &[Vec<(usize, Read)>], roles: &[Option<Role>]) -> Vec<Vec<usize>> {
        // Steps that waited on a group are grouped again once it closes, also after the last
        // pending step: otherwise everything downstream of the first group would run alone.
        loop {
            while let Some(k) = self.pending.pop_front() {
                self.place(k, &deps[k], roles);
            }
            if self.group.is_empty() && self.waiting.is_empty() {
                return self.order;
            }
            self.close();
        }
    }

    fn place(&mut self, k: usize, deps: &[(usize, Read)], roles: &[Option<Role>]) {
        let Some(shape) = self.shape.clone() else {
            match &roles[k] {
                Some(role) => {
                    self.shape = Some(role.shape().clone());
                    self.join(k);
                }
                None => self.place_alone(k),
            }
            return;
        };
        let state = &self.state;
        let on_waiting = deps.iter().any(|(d, _)| state[*d] == Where::Waiting);
        let on_group = deps.iter().any(|(d, _)| state[*d] == Where::Member);
        let lane_reads_only = deps.iter().all(|(d, r)| {
            state[*d] != Where::Member
                || (*r == Read::Aligned && matches!(roles[*d], Some(Role::Elementwise(_))))
        });
        let fits = roles[k].as_ref().is_some_and(|r| *r.shape() == shape);
        if fits && !on_waiting && lane_reads_only {
            self.join(k);
        } else if fits && on_waiting {
            // The steps it waits on go first, free to form groups of their own.
            let n_waiting = self.waiting.len();
            self.close();
            self.pending.insert(n_waiting, k);
        } else if !on_group && !on_waiting && roles[k].is_none() {
            self.place_alone(k);
        } else {
            // Depends on the group, or could open a group of its own shape once this one
            // closes (placing it alone now would keep its loop unfused).
            self.waiting.push(k);
            self.state[k] = Where::Waiting;
        }
    }

    fn join(&mut self, k: usize) {
        self.group.push(k);
        self.state[k] = Where::Member;
    }

    fn place_alone(&mut self, k: usize) {
        self.order.push(vec![k]);
        self.state[k] = Where::Placed;
    }

    /// Places the open group and puts the waiting steps back at the front of the queue.
    fn close(&mut self) {
        if !self.group.is_empty() {
            for &m in &self.group {
                self.state[m] = Where::Placed;
            }
            self.order.push(std::mem::take(&mut self.group));
        }
        for &w in self.waiting.iter().rev() {
            self.state[w] = Where::Pending;
            self.pending.push_front(w);
        }
        self.waiting.clear();
        self.shape = None;
    }
}

/// Merges the loops of elementwise steps, full sums and column sums over the same shape into
/// single loops (horizontal fusion): values used several times then stay in registers instead
/// of making a round trip through memory, and every sum over the batch is accumulated in one
/// pass.
///
/// Greedy, in dependency order: while a group is open, a step of its shape joins when it reads
/// members only element for element and reads no member's sum; a step that could not be in any
/// group and is independent of this one moves before it; every other step waits until the group
/// closes, and is then grouped again with the rest. The group closes when a would-be member
/// depends on a waiting step (which then goes first), or when no step is left.
fn group_loops(g: &Graph, values: &[Option<Val>], steps: Vec<Step>, outputs: &[u32]) -> Vec<Step> {
    let deps = step_deps(g, values, &steps);
    let roles: Vec<Option<Role>> = steps.iter().map(|s| role(g, s)).collect();
    let order = Grouper::new(steps.len()).order(&deps, &roles);
    // A member is stored only when a step outside its group reads it, or it is an output.
    let mut group_of = vec![usize::MAX; steps.len()];
    for (gi, entry) in order.iter().enumerate() {
        for &k in entry {
            group_of[k] = gi;
        }
    }
    let mut is_output = std::collections::HashSet::new();
    is_output.extend(outputs.iter().copied());
    let mut read_outside = vec![false; steps.len()];
    for (k, ds) in deps.iter().enumerate() {
        for (d, _) in ds {
            if group_of[*d] != group_of[k] {
                read_outside[*d] = true;
            }
        }
    }
    order
        .into_iter()
        .map(|entry| {
            if entry.len() == 1 {
                return steps[entry[0]].clone();
            }
            let shape = roles[entry[0]]
                .as_ref()
                .expect("groups hold only members")
                .shape()
                .clone();
            let members = entry
                .iter()
                .map(|&k| {
                    let Step::Compute { node, slot, .. } = &steps[k] else {
                        unreachable!("members are computes")
                    };
                    let kind = roles[k].as_ref().expect("members have roles").kind();
                    Member {
                        node: *node,
                        slot: *slot,
                        kind,
                        stored: read_outside[k]
                            || kind != MemberKind::Elementwise
                            || is_output.contains(slot),
                    }
                })
                .collect();
            Step::Group {
                shape,
                members,
                blocked: None,
            }
        })
        .collect()
}

/// Whether `node` reads `slot` only element for element over `rows` (directly or through fused
/// operands), so that computing the slot block by block before each block of the loop is safe.
fn reads_rows_aligned(
    g: &Graph,
    values: &[Option<Val>],
    node: NodeId,
    slot: u32,
    rows: &Shape,
) -> bool {
    g.node(node)
        .inputs
        .iter()
        .all(|a| match &values[a.index()] {
            Some(Val::View {
                slot: s,
                strides,
                offset,
            }) if *s == slot => {
                g.shape(*a) == rows && *strides == contiguous(rows) && offset.is_empty()
            }
            Some(Val::Inline(n)) => reads_rows_aligned(g, values, *n, slot, rows),
            _ => true,
        })
}

/// Rows per block of a `RowBlocks` loop: a block of a 16-column f32 matrix is 16 KB.
pub const ROW_BLOCK: i64 = 256;

/// Finds `y = X w`, a loop group over y's rows, and `g = M s` with s from the group, in that
/// order (scalar steps before the group move before it, those after it stay after it: scalar
/// steps read no rows), and runs them block by block (`RowBlocks`).
fn block_rows(g: &Graph, values: &[Option<Val>], steps: Vec<Step>) -> Vec<Step> {
    let matvec = |step: &Step| match step {
        Step::Compute {
            node,
            slot,
            aux: None,
        } if g.node(*node).op == Op::MatMul => {
            let n = g.node(*node);
            let (a, b) = (g.shape(n.inputs[0]), g.shape(n.inputs[1]));
            let views = n
                .inputs
                .iter()
                .all(|i| matches!(values[i.index()], Some(Val::View { .. })));
            (a.rank() == 2 && b.rank() == 1 && views).then_some((*node, *slot))
        }
        _ => None,
    };
    let mut out = Vec::with_capacity(steps.len());
    let mut i = 0;
    while i < steps.len() {
        let Some((p, p_slot)) = matvec(&steps[i]) else {
            out.push(steps[i].clone());
            i += 1;
            continue;
        };
        let mut j = i + 1;
        while j < steps.len() && matches!(steps[j], Step::Scalar { .. }) {
            j += 1;
        }
        // Scalar steps after the group (they read its sums) stay after it.
        let mut k = j + 1;
        while k < steps.len() && matches!(steps[k], Step::Scalar { .. }) {
            k += 1;
        }
        let rows = g.shape(p).clone();
        let fits = match (steps.get(j), steps.get(k).and_then(&matvec)) {
            (Some(Step::Group { shape, members, .. }), Some((q, _))) => {
                let qn = g.node(q);
                let m_shape = g.shape(qn.inputs[0]);
                let s = qn.inputs[1];
                let s_is_member = match &values[s.index()] {
                    Some(Val::View {
                        slot,
                        strides,
                        offset,
                    }) => {
                        *strides == contiguous(&rows)
                            && offset.is_empty()
                            && members.iter().any(|m| m.slot == *slot && m.stored)
                    }
                    _ => false,
                };
                *shape == rows
                    && m_shape.0[1] == rows.0[0]
                    && s_is_member
                    && members
                        .iter()
                        .all(|m| reads_rows_aligned(g, values, m.node, p_slot, &rows))
            }
            _ => false,
        };
        if !fits {
            out.push(steps[i].clone());
            i += 1;
            continue;
        }
        out.extend(steps[i + 1..j].iter().cloned());
        let Step::Group { shape, members, .. } = steps[j].clone() else {
            unreachable!("matched above")
        };
        let after = matvec(&steps[k]).expect("matched above");
        out.push(Step::Group {
            shape,
            members,
            blocked: Some(RowBlocks {
                before: (p, p_slot),
                after,
            }),
        });
        out.extend(steps[j + 1..k].iter().cloned());
        i = k + 1;
    }
    out
}

/// Strides that read a view of shape `from` broadcast to shape `to`: new leading axes and
/// stretched unit axes get stride zero.
pub fn broadcast_strides(from: &Shape, strides: &[Stride], to: &Shape) -> Vec<Stride> {
    let offset = to.rank() - from.rank();
    (0..to.rank())
        .map(|i| {
            if i < offset || (from.0[i - offset] == Dim::Fixed(1) && to.0[i] != Dim::Fixed(1)) {
                Stride::Zero
            } else {
                strides[i - offset].clone()
            }
        })
        .collect()
}

/// Whether a view reads from its slot's first element with strides of products of dimensions
/// (no slice's offset or step), as the product kernels take them.
fn is_plain_view(v: &Val) -> bool {
    match v {
        Val::View {
            strides, offset, ..
        } => offset.is_empty() && strides.iter().all(|s| !matches!(s, Stride::Scaled(..))),
        _ => false,
    }
}

/// The strides of `Op::Windows`'s patches of a view with `strides`: the leading axes as they
/// are, each window axis `dilation` elements of its axis apart, each window `stride` apart.
fn window_strides(
    strides: &[Stride],
    kernel: &[u64],
    stride: &[u64],
    dilation: &[u64],
) -> Vec<Stride> {
    let lead = strides.len() - kernel.len();
    let spatial = &strides[lead..];
    let mut out = strides[..lead].to_vec();
    out.extend(
        spatial
            .iter()
            .zip(dilation)
            .map(|(s, &d)| s.times(d as i64)),
    );
    out.extend(spatial.iter().zip(stride).map(|(s, &k)| s.times(k as i64)));
    out
}

/// Whether a reshape only adds or removes unit axes, which any view can do by itself.
fn reshapes_as_view(from: &Shape, to: &Shape) -> bool {
    from.squeezed() == to.squeezed()
}

/// Strides of a broadcast or unit-axis reshape of a view.
fn reshape_strides(from: &Shape, strides: &[Stride], to: &Shape, op: &Op) -> Vec<Stride> {
    match op {
        Op::Expand(_) => broadcast_strides(from, strides, to),
        _ => {
            // Non-unit axes keep their strides in order; unit axes read with stride zero.
            let mut kept = from
                .0
                .iter()
                .zip(strides)
                .filter(|(d, _)| **d != Dim::Fixed(1))
                .map(|(_, s)| s.clone());
            to.0.iter()
                .map(|d| {
                    if *d == Dim::Fixed(1) {
                        Stride::Zero
                    } else {
                        kept.next().expect("same squeezed shape")
                    }
                })
                .collect()
        }
    }
}
