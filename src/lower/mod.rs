//! Lowering plan: where each node's value lives when the graph runs as native code.
//!
//! Every value is a scalar computed inline (constants, dimension sizes), or a strided view of a
//! buffer slot. Reshapes, transposes, broadcasts and slices are views: they cost no code and no
//! memory (a reshape that merges axes of a strided view copies it first).
//! Every other node computes into a fresh contiguous slot, except that elementwise nodes read by
//! one loop are fused into it (`Val::Inline`, loop groups), scalars live in registers, and a
//! node that is an output and has a step of its own computes straight into its output slot
//! (other outputs are copied there, so callers always find them contiguous). Slots are names:
//! `storage` decides which share a buffer once their lifetimes are known. How each loop runs is
//! decided here too, for the code generator to read: in vectors or not, and if not row by row
//! or element by element (`vectorize`), in parts on several cores or not, and each
//! parameter's update likewise (`parts`, `vectorize::update_vector`); and how each matrix
//! product shares itself between cores (`sharing`).
//!
//! Invariants, checked by `verify`: a slot is written by exactly one step, before any step reads
//! it; a register is computed before it is read; every view lies inside its slot; slots live at
//! the same step never share a buffer; every decision holds. `plan_text` is the canonical text
//! form (`adjoint graph --plan`).

mod destinations;
mod groups;
pub mod parts;
mod row_blocks;
pub mod sharing;
mod storage;
pub mod sum_blocks;
mod summed_products;
mod text;
pub mod vectorize;
mod verify;
mod views;

pub use destinations::writes_a_view;
pub use parts::{Parts, SplitRule, Whole};
pub use sharing::Sharing;
pub use storage::Storage;
pub use sum_blocks::SumBlocks;
pub use summed_products::summed_product;
pub use text::plan_text;
pub use vectorize::{Vector, Walk};
pub use verify::{PlanError, verify};

use crate::ir::{Class, Dim, Graph, NodeId, Op, Shape};
use crate::model::GraphFn;

use groups::*;
pub use row_blocks::*;
pub use views::*;

/// An element stride: zero (broadcast), or the product of some dimensions (empty: 1), or that
/// product times a whole number other than 1 (a slice's step; negative walks backwards).
#[derive(Clone, Debug, PartialEq)]
pub enum Stride {
    Zero,
    Prod(Vec<Dim>),
    Scaled(i64, Vec<Dim>),
}

impl Stride {
    /// The stride in elements where it is known before the sizes are bound.
    pub fn known(&self) -> Option<i64> {
        let fixed = |dims: &[Dim]| {
            dims.iter()
                .map(|d| match d {
                    Dim::Fixed(k) => Some(*k as i64),
                    Dim::Sym(_) => None,
                })
                .product::<Option<i64>>()
        };
        match self {
            Stride::Zero => Some(0),
            Stride::Prod(dims) => fixed(dims),
            Stride::Scaled(k, dims) => fixed(dims).map(|d| k * d),
        }
    }

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
    /// Or a batched product that the sum over its batch axes, its only reader, runs as one
    /// product (`summed_product`).
    Inline(NodeId),
    /// A scalar computed once into a register; never stored.
    Register(NodeId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotKind {
    Input(u32),
    Param(u32),
    /// A state tensor of the model (`Op::State`), bound by the caller like a parameter.
    State(u32),
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
    /// How each step's loop runs (one entry per step): the choices of the code generator,
    /// made here so that the plan shows them and the verifier checks them.
    pub decisions: Vec<Decision>,
    /// How each parameter's update runs (one entry per parameter), where the plan is a
    /// training step's (`parts::is_training_step`); empty otherwise.
    pub updates: Vec<Update>,
}

/// How a step's loop runs: along its last axis in vectors or not, and if not row by row or
/// element by element; on one core or in parts; how a matrix product shares itself between
/// cores; for a sum of many terms, in blocks (`sum_blocks`). `None` where the step has no such
/// choice.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub vector: Option<Vector>,
    pub walk: Option<Walk>,
    pub parts: Option<Parts>,
    pub sharing: Option<Sharing>,
    pub blocks: Option<SumBlocks>,
}

/// How a parameter's update runs: in parts or not, and in vectors or element by element.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    pub parts: Parts,
    pub vector: Vector,
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

/// Elementwise nodes computed inside the loops that read them instead of into buffers: a node
/// whose only user iterates over exactly its shape (chains of elementwise ops and the
/// reductions that consume them become single loops with no intermediate buffers), and a
/// cheap node (`Facts::cheap`) of one stored array and scalars or smaller, broadcast arrays
/// (`0.5 * x`, `1 + t`, `d · r` with one `r` per row) whose every user does, computed again in
/// each. Such a node's readers read its operands in its place, about as much memory, and its
/// store and its buffer go: a tanh GELU kept five arrays of its hidden layer for the backward
/// pass, and keeps three; a layer norm no longer stores its normalized input.
fn fusible(g: &Graph, roots: &[NodeId], live: &[bool]) -> Vec<bool> {
    let mut uses = g.use_counts(live);
    for r in roots {
        uses[r.index()] += 1;
    }
    let mut users: Vec<Vec<NodeId>> = vec![Vec::new(); g.len()];
    for id in g.ids().filter(|id| live[id.index()]) {
        for &a in &g.node(id).inputs {
            if users[a.index()].last() != Some(&id) {
                users[a.index()].push(id);
            }
        }
    }
    let is_root = |id: NodeId| roots.contains(&id);
    // A user that runs a loop over `id`'s shape, reading each element once.
    let loops_over = |id: NodeId, u: NodeId| {
        let un = g.node(u);
        match un.op {
            // Single-pass reductions read each element once.
            Op::Sum { .. } | Op::SumTo(_) | Op::ReduceMax { .. } | Op::ReduceMin { .. } => true,
            ref op if op.is_elementwise() => un.shape == g.node(id).shape,
            _ => false,
        }
    };
    // A fused expression is evaluated recursively where it is read: bound its depth.
    const MAX_FUSED_DEPTH: u32 = 24;
    let mut depth = vec![0u32; g.len()];
    let mut res = vec![false; g.len()];
    for id in g.ids() {
        let node = g.node(id);
        let inline = (|| {
            if !live[id.index()] || !node.op.is_elementwise() {
                return false;
            }
            if uses[id.index()] == 1 {
                return users[id.index()]
                    .first()
                    .is_some_and(|&u| loops_over(id, u));
            }
            // Computed again by each user: its operands held in memory (none computed inline),
            // one of them as large as it and any other broadcast along some axis (a scale
            // per row), or a scalar. The large one must have readers of its own, or keeping
            // it for this node's readers would only move the buffer (a product's output, read
            // once by the bias added to it, would outlive the product).
            // Worth it only where a reader runs in a later loop than the node's, after a
            // product or a reduction it waits for (a backward pass reading the forward's
            // values); readers that can share its loop share it as a lane, computed once.
            let full = |a: &NodeId| g.shape(*a) == &node.shape;
            let kept_anyway = |a: &NodeId| !full(a) || uses[a.index()] > 1;
            node.op.facts().cheap
                && !node.shape.is_scalar()
                && !is_root(id)
                && node.inputs.iter().filter(|a| full(a)).count() == 1
                && node
                    .inputs
                    .iter()
                    .all(|a| !res[a.index()] && kept_anyway(a))
                && users[id.index()].iter().all(|&u| loops_over(id, u))
                && read_after_a_barrier(g, live, id, &users[id.index()])
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

/// Whether a user of `id` also reads a value that depends on `id` through a product, a
/// reduction or another step that is not a loop over elements: that user runs in a loop after
/// the one that computes `id`, and reads `id` from memory unless it computes it again.
fn read_after_a_barrier(g: &Graph, live: &[bool], id: NodeId, users: &[NodeId]) -> bool {
    let last = users.iter().map(|u| u.index()).max().unwrap_or(0);
    // `depends`: computed from `id`; `barred`: computed from `id` through such a step.
    let (mut depends, mut barred) = (vec![false; last + 1], vec![false; last + 1]);
    depends[id.index()] = true;
    for x in (id.index() + 1)..=last {
        let x_id = NodeId(x as u32);
        if !live[x] {
            continue;
        }
        let node = g.node(x_id);
        let from = |f: &[bool]| {
            node.inputs
                .iter()
                .any(|a| a.index() < f.len() && f[a.index()])
        };
        depends[x] = from(&depends);
        barred[x] = from(&barred) || (depends[x] && !node.op.is_elementwise());
    }
    users.iter().any(|u| {
        g.node(*u)
            .inputs
            .iter()
            .any(|a| *a != id && a.index() < barred.len() && barred[a.index()])
    })
}

pub fn plan(f: &GraphFn) -> Plan {
    let g = &f.graph;
    let roots: Vec<NodeId> = f.outputs.iter().map(|o| o.1).collect();
    let live = g.reachable(&roots);
    let inline = fusible(g, &roots, &live);
    let summed = summed_products::summed_candidates(g, &roots, &live);
    let destinations = destinations::find(g, &roots, &live, &summed);
    // The slot of each join or merge that products write into, made by the first of them.
    let mut destination_slots: std::collections::HashMap<NodeId, u32> = Default::default();
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
    // After the parameters, so that a model without state numbers its slots as before.
    for (i, s) in g.states.iter().enumerate() {
        slots.push(Slot {
            kind: SlotKind::State(i as u32),
            shape: s.shape.clone(),
        });
    }
    for (i, (_, id)) in f.outputs.iter().enumerate() {
        slots.push(Slot {
            kind: SlotKind::Output(i as u32),
            shape: g.shape(*id).clone(),
        });
    }
    let outputs: Vec<u32> = (0..f.outputs.len())
        .map(|i| (g.inputs.len() + g.params.len() + g.states.len() + i) as u32)
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
        if destinations.absorbed.contains(&id) {
            // Inside a join: written by its parts' products, read by nothing else.
            continue;
        }
        if destinations.joins.contains(&id) {
            values[id.index()] = Some(Val::View {
                slot: destination_slots[&id],
                strides: contiguous(g.shape(id)),
                offset: vec![],
            });
            continue;
        }
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
            Op::State(i) => Val::View {
                slot: (g.inputs.len() + g.params.len()) as u32 + *i,
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
                let from = g.shape(node.inputs[0]);
                match arg(&values, 0) {
                    // A contiguous block (a whole slot, or rows of one at an offset).
                    Val::View {
                        slot,
                        strides,
                        offset,
                    } if strides == contiguous(from) => Val::View {
                        slot,
                        strides: contiguous(to),
                        offset,
                    },
                    // A strided view stays one where its merged or split axes are
                    // contiguous among themselves (a column range of a matrix split into
                    // heads); any other is copied first: a merged axis has no single stride.
                    Val::View {
                        slot,
                        strides,
                        offset,
                    } => match reshaped_view(from, &strides, to) {
                        Some(strides) => Val::View {
                            slot,
                            strides,
                            offset,
                        },
                        None => {
                            let s = temp(&mut slots, from.clone());
                            steps.push(Step::Copy {
                                src: Val::View {
                                    slot,
                                    strides,
                                    offset,
                                },
                                src_shape: from.clone(),
                                slot: s,
                            });
                            Val::View {
                                slot: s,
                                strides: contiguous(to),
                                offset: vec![],
                            }
                        }
                    },
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
                // step for a product, a slice's offset or step for a gather) becomes a buffer.
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
                // A weight's gradient summed over the batch in one product: the sum runs it.
                let sum = summed.get(&id).copied();
                if sum.is_some_and(|s| summed_products::folds_into_sum(g, &values, id, s)) {
                    values[id.index()] = Some(Val::Inline(id));
                    continue;
                }
                // An output computed by its own step is written straight into its output
                // slot rather than copied there afterwards. Single-element outputs keep the
                // copy: the fused train loop may hold those slots in registers.
                if let Some(d) = destinations.of_product.get(&id) {
                    let slot = *destination_slots
                        .entry(d.root)
                        .or_insert_with(|| temp(&mut slots, g.shape(d.root).clone()));
                    steps.push(Step::Compute {
                        node: id,
                        slot,
                        aux: None,
                    });
                    values[id.index()] = Some(Val::View {
                        slot,
                        strides: d.strides.clone(),
                        offset: d.offset.clone(),
                    });
                    continue;
                }
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
        decisions: Vec::new(),
        updates: Vec::new(),
    });
    plan.storage = storage::assign(g, &plan);
    plan.decisions = decide(g, &plan);
    if parts::is_training_step(g, &plan) {
        plan.updates = g
            .params
            .iter()
            .map(|p| {
                let len = p
                    .shape
                    .fixed_elements()
                    .expect("parameters have fixed sizes");
                Update {
                    parts: parts::update_parts(len),
                    vector: vectorize::update_vector(len, g.dtype),
                }
            })
            .collect();
    }
    plan
}

/// The decisions of each step: its vectorization, its walk, its parts, its sharing and its
/// blocks.
fn decide(g: &Graph, plan: &Plan) -> Vec<Decision> {
    let held = parts::fused_registers(g, plan);
    plan.steps
        .iter()
        .map(|step| {
            let (vector, walk) = vectorize::decide(g, plan, step);
            Decision {
                vector,
                walk,
                parts: parts::decide(g, step, &held),
                sharing: sharing::decide(g, &plan.values, step),
                blocks: sum_blocks::decide(g, plan, step),
            }
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::SourceFile;

    /// Over every graph fixture's gradient, a node computed again by several readers is cheap,
    /// of operands held in memory (none itself computed again), and read by one loop that
    /// waits for a product or reduction depending on it. The attention block's layer norms'
    /// centred inputs and its GELU's `0.5 * x` are such nodes.
    #[test]
    fn values_computed_again_are_cheap_and_read_after_a_barrier() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/graph");
        let mut again_in_block = 0;
        for entry in std::fs::read_dir(&dir).expect("fixtures") {
            let path = entry.expect("fixture").path();
            let src = std::fs::read_to_string(&path).expect("fixture reads");
            let file = SourceFile::new("t.dsl", &src);
            let (model, _) = crate::compile::check_source(&file, &crate::limits::Limits::of_host())
                .expect("fixtures check");
            let f = crate::compile::graphs(&model).gradient;
            let plan = plan(&f);
            let g = &f.graph;
            let roots: Vec<NodeId> = f.outputs.iter().map(|o| o.1).collect();
            let live = g.reachable(&roots);
            let uses = g.use_counts(&live);
            for id in g
                .ids()
                .filter(|id| live[id.index()] && uses[id.index()] > 1)
            {
                if !matches!(plan.values[id.index()], Some(Val::Inline(_))) {
                    continue;
                }
                let node = g.node(id);
                assert!(
                    node.op.facts().cheap,
                    "{path:?}: {} computed again",
                    node.op.name()
                );
                for a in &node.inputs {
                    assert!(
                        !matches!(plan.values[a.index()], Some(Val::Inline(_))),
                        "{path:?}: an operand of {id} is itself computed again"
                    );
                }
                let users: Vec<NodeId> = g
                    .ids()
                    .filter(|u| live[u.index()] && g.node(*u).inputs.contains(&id))
                    .collect();
                assert!(read_after_a_barrier(g, &live, id, &users), "{path:?}: {id}");
                if path.ends_with("attention_block.dsl") {
                    again_in_block += 1;
                }
            }
        }
        assert!(
            again_in_block >= 3,
            "{again_in_block} values computed again in the block"
        );
    }
}
