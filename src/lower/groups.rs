//! Loop groups: elementwise steps and the row sums that read them fused into one loop nest, from
//! what each step reads and how (its role).

use super::*;

/// How one step reads another's result.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Read {
    /// Element for element, in the iteration order of the writer: possible from a register
    /// inside a shared loop.
    Aligned,
    /// Any other pattern (transposed, broadcast, a reduction's result).
    Other,
}

/// The steps each step depends on, and how it reads them.
pub(super) fn step_deps(
    g: &Graph,
    values: &[Option<Val>],
    steps: &[Step],
) -> Vec<Vec<(usize, Read)>> {
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
pub(super) enum Role {
    Elementwise(Shape),
    Sum(Shape),
    /// A sum over every axis but the last (a bias gradient): accumulated row by row.
    ColumnSum(Shape),
    /// A sum over the last axis (rank 2 or more): one total per row.
    RowSum(Shape),
}

impl Role {
    /// The iteration space: the shape of the step, or of what it sums.
    pub(super) fn shape(&self) -> &Shape {
        match self {
            Role::Elementwise(s) | Role::Sum(s) | Role::ColumnSum(s) | Role::RowSum(s) => s,
        }
    }

    pub(super) fn kind(&self) -> MemberKind {
        match self {
            Role::Elementwise(_) => MemberKind::Elementwise,
            Role::Sum(_) => MemberKind::Sum,
            Role::ColumnSum(_) => MemberKind::ColumnSum,
            Role::RowSum(_) => MemberKind::RowSum,
        }
    }
}

pub(super) fn role(g: &Graph, step: &Step) -> Option<Role> {
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
pub(super) fn wide_rows(x: &Shape) -> bool {
    x.rank() >= 2
        && match x.0[x.rank() - 1] {
            Dim::Fixed(d) => d >= MIN_ROW_SUM_WIDTH,
            Dim::Sym(_) => true,
        }
}

/// The narrowest row whose sum joins a loop group: four f32 vectors.
pub(super) const MIN_ROW_SUM_WIDTH: u64 = 16;

/// Where a step stands while `group_loops` orders the steps.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Where {
    Pending,
    /// In the open group.
    Member,
    /// Depends on the open group: placed after it closes.
    Waiting,
    Placed,
}

/// The state of `group_loops`' ordering pass.
pub(super) struct Grouper {
    /// Each entry: one step, or a group's members.
    pub(super) order: Vec<Vec<usize>>,
    pub(super) pending: std::collections::VecDeque<usize>,
    /// The open group, and its iteration shape.
    pub(super) group: Vec<usize>,
    pub(super) shape: Option<Shape>,
    pub(super) waiting: Vec<usize>,
    pub(super) state: Vec<Where>,
}

impl Grouper {
    pub(super) fn new(n_steps: usize) -> Grouper {
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
    pub(super) fn order(
        mut self,
        deps: &[Vec<(usize, Read)>],
        roles: &[Option<Role>],
    ) -> Vec<Vec<usize>> {
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

    pub(super) fn place(&mut self, k: usize, deps: &[(usize, Read)], roles: &[Option<Role>]) {
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

    pub(super) fn join(&mut self, k: usize) {
        self.group.push(k);
        self.state[k] = Where::Member;
    }

    pub(super) fn place_alone(&mut self, k: usize) {
        self.order.push(vec![k]);
        self.state[k] = Where::Placed;
    }

    /// Places the open group and puts the waiting steps back at the front of the queue.
    pub(super) fn close(&mut self) {
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
pub(super) fn group_loops(
    g: &Graph,
    values: &[Option<Val>],
    steps: Vec<Step>,
    outputs: &[u32],
) -> Vec<Step> {
    let deps = step_deps(g, values, &steps);
    // A sum that runs a product is a call, not a loop.
    let roles: Vec<Option<Role>> = steps
        .iter()
        .map(|s| role(g, s).filter(|_| !summed_products::runs_product(g, values, s)))
        .collect();
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
pub(super) fn reads_rows_aligned(
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
