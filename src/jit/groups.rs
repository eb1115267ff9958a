//! Loop groups: fused elementwise members and row sums computed in one loop nest, in row blocks.

use super::*;

impl<'a> Tx<'a> {
    /// A loop group: shared between cores where the plan splits it (`parallel_group`), else
    /// one loop here; vectorized where the plan says.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn group(
        &mut self,
        g: &Graph,
        plan: &Plan,
        shape: &Shape,
        members: &[Member],
        blocked: Option<&RowBlocks>,
        parts: &Parts,
        vector: bool,
    ) {
        let loop_ = GroupLoop {
            shape,
            members,
            blocked,
            vector,
        };
        match self.part_frame(g, plan, &loop_, parts) {
            Some(frame) => self.parallel_group(g, plan, &loop_, parts, &frame),
            None => self.group_over(g, plan, &loop_, None),
        }
    }

    /// One loop over `shape` computing every member: elementwise members read earlier members
    /// from registers and are stored only when read after the loop; full sums accumulate in one
    /// register each (a vector in vector loops) and are stored once at the end; column sums
    /// accumulate into their output row. With `range = (lo, hi)` only those items of the outer
    /// axis run (row blocks when `blocked`).
    pub(super) fn group_over(
        &mut self,
        g: &Graph,
        plan: &Plan,
        loop_: &GroupLoop,
        range: Option<(Value, Value)>,
    ) {
        let &GroupLoop {
            shape,
            members,
            blocked,
            vector,
        } = loop_;
        let rank = shape.rank();
        self.group.slots = members.iter().map(|m| m.slot).collect();
        let ops: Vec<Operand> = members
            .iter()
            .map(|m| match m.kind {
                MemberKind::Elementwise => self.node_expr(g, plan, m.node, rank),
                MemberKind::Sum | MemberKind::ColumnSum | MemberKind::RowSum => {
                    self.arg(g, plan, m.node, 0, rank)
                }
            })
            .collect();
        self.group.slots.clear();
        // Column sums accumulate into their output row in memory, full sums in a register.
        for m in members.iter().filter(|m| m.kind == MemberKind::ColumnSum) {
            self.fill(m.slot, g.shape(m.node), 0.0);
        }
        let (vty, lanes) = self.vector_type();
        debug_assert_eq!(
            vector,
            rank > 0 && ops.iter().all(|o| self.vectorizable(o)),
            "the plan's vectorization is the loop's"
        );
        let zero = self.fconst(0.0);
        let zero_v = self.splat(vty, zero);
        // One accumulator per sum, a vector when the loop is vectorized: the scalar tail adds
        // into its first lane, so no second set of accumulators competes for registers.
        let mut accs = Vec::new();
        for m in members {
            accs.push(
                matches!(m.kind, MemberKind::Sum | MemberKind::RowSum).then(|| {
                    let (ty, init) = if vector {
                        (vty, zero_v)
                    } else {
                        (self.ty, zero)
                    };
                    let v = self.b.declare_var(ty);
                    self.b.def_var(v, init);
                    v
                }),
            );
        }
        let out = self.contiguous_strides(shape);
        let sizes = self.sizes(shape);
        // The body at one index: `j` is the vector's first element in vector mode.
        let body = |tx: &mut Self, outer: &[Value], j: Value, vec_mode: bool| {
            let mut idx = outer.to_vec();
            idx.push(j);
            let o = if vec_mode {
                None
            } else {
                Some(tx.dot(&idx, &out))
            };
            for (k, m) in members.iter().enumerate() {
                let v = if vec_mode {
                    tx.read_vec(&ops[k], outer, j)
                } else {
                    tx.read(&ops[k], &idx)
                };
                if let Some(acc) = accs[k] {
                    let v = if vector && !vec_mode {
                        tx.b.ins().scalar_to_vector(vty, v)
                    } else {
                        v
                    };
                    let a = tx.b.use_var(acc);
                    let a = tx.b.ins().fadd(a, v);
                    tx.b.def_var(acc, a);
                } else if m.kind == MemberKind::ColumnSum && vec_mode {
                    let row = tx.row_ptr(m.slot, &[], &[]);
                    let addr = tx.row_elem_addr(row, j);
                    let cur = tx.b.ins().load(vty, flags(), addr, 0);
                    let sum = tx.b.ins().fadd(cur, v);
                    tx.b.ins().store(flags(), sum, addr, 0);
                } else if m.kind == MemberKind::ColumnSum {
                    let cur = tx.load_at(m.slot, j);
                    let sum = tx.b.ins().fadd(cur, v);
                    tx.store_at(m.slot, j, sum);
                } else {
                    tx.group.lanes.insert(m.slot, v);
                    if m.stored && vec_mode {
                        let row = tx.row_ptr(m.slot, outer, &out[..rank - 1]);
                        let addr = tx.row_elem_addr(row, j);
                        tx.b.ins().store(flags(), v, addr, 0);
                    } else if let (true, Some(o)) = (m.stored, o) {
                        tx.store_at(m.slot, o, v);
                    }
                }
            }
        };
        // The loop over `len` elements of the last axis from `lo`, for one outer index.
        let along = |tx: &mut Self, outer: &[Value], lo: Value, len: Value| {
            if !vector {
                tx.for_loop(len, &mut |tx, t| {
                    tx.straight(|tx| {
                        let j = tx.add(lo, t);
                        body(tx, outer, j, false);
                    })
                });
                return;
            }
            let n_vec = tx.shr_imm(len, lanes.trailing_zeros() as i64);
            let span = tx.mul_imm(n_vec, lanes);
            tx.for_loop_by(span, lanes, &mut |tx, j| {
                tx.straight(|tx| {
                    let j = tx.add(lo, j);
                    body(tx, outer, j, true);
                })
            });
            let done = tx.mul_imm(n_vec, lanes);
            let rest = tx.sub(len, done);
            let from = tx.add(lo, done);
            tx.for_loop(rest, &mut |tx, t| {
                tx.straight(|tx| {
                    let j = tx.add(from, t);
                    body(tx, outer, j, false);
                })
            });
        };
        // Row sums start each row at zero and store its total when the row ends.
        let row_sums: Vec<(u32, Variable)> = members
            .iter()
            .zip(&accs)
            .filter(|(m, _)| m.kind == MemberKind::RowSum)
            .map(|(m, acc)| (m.slot, acc.expect("a row sum accumulates")))
            .collect();
        let row_out = if row_sums.is_empty() {
            Vec::new()
        } else {
            self.contiguous_strides(&Shape(shape.0[..rank - 1].to_vec()))
        };
        // One outer index's row.
        let run = |tx: &mut Self, outer: &[Value], lo: Value, len: Value| {
            for &(_, acc) in &row_sums {
                let init = if vector { zero_v } else { zero };
                tx.b.def_var(acc, init);
            }
            along(tx, outer, lo, len);
            for &(slot, acc) in &row_sums {
                let v = tx.b.use_var(acc);
                let total = if vector { tx.hsum(v) } else { v };
                let at = tx.dot(outer, &row_out);
                tx.store_at(slot, at, total);
            }
        };
        match blocked {
            Some(rb) => {
                let n = sizes[0];
                let (q, q_slot) = rb.after;
                self.fill(q_slot, g.shape(q), 0.0);
                let block = crate::lower::ROW_BLOCK;
                let (first, count) = match range {
                    Some((lo, hi)) => (lo, self.sub(hi, lo)),
                    None => (self.iconst(0), self.row_blocks(n)),
                };
                // The sums cross the products' calls, which clobber every vector register, in
                // stack slots of their own: held in a variable, the register allocator kept
                // them on the stack inside the loop too, and each addition waited for the last
                // one's store (W2's loop: about ten cycles a vector).
                let acc_ty = if vector { vty } else { self.ty };
                let stashes: Vec<(Variable, codegen::ir::StackSlot)> = accs
                    .iter()
                    .flatten()
                    .map(|&acc| {
                        let slot = self.vector_slot();
                        let v = self.b.use_var(acc);
                        self.b.ins().stack_store(types::I64, v, slot, 0);
                        (acc, slot)
                    })
                    .collect();
                let restore = |tx: &mut Self| {
                    for &(acc, slot) in &stashes {
                        let v = tx.b.ins().stack_load(types::I64, acc_ty, slot, 0);
                        tx.b.def_var(acc, v);
                    }
                };
                self.for_loop(count, &mut |tx, t| {
                    let b = tx.add(first, t);
                    let lo = tx.mul_imm(b, block);
                    let left = tx.sub(n, lo);
                    let full = tx.iconst(block);
                    let short = tx.b.ins().icmp(IntCC::SignedLessThan, left, full);
                    let len = tx.b.ins().select(short, left, full);
                    tx.matvec(g, plan, rb.before.0, rb.before.1, Some((lo, len)), false);
                    restore(tx);
                    run(tx, &[], lo, len);
                    for &(acc, slot) in &stashes {
                        let v = tx.b.use_var(acc);
                        tx.b.ins().stack_store(types::I64, v, slot, 0);
                    }
                    tx.matvec(g, plan, q, q_slot, Some((lo, len)), true);
                });
                restore(self);
            }
            None if rank == 0 => {
                self.straight(|tx| {
                    let zero = tx.iconst(0);
                    body(tx, &[], zero, false)
                });
            }
            None => {
                let n = sizes[rank - 1];
                let zero = self.iconst(0);
                match range {
                    None => self.nest(&sizes[..rank - 1], &mut |tx, outer| run(tx, outer, zero, n)),
                    Some((lo, hi)) if rank == 1 => {
                        let len = self.sub(hi, lo);
                        run(self, &[], lo, len);
                    }
                    Some((lo, hi)) => {
                        let count = self.sub(hi, lo);
                        self.for_loop(count, &mut |tx, t| {
                            let first = tx.add(lo, t);
                            tx.nest(&sizes[1..rank - 1], &mut |tx, rest| {
                                let mut outer = vec![first];
                                outer.extend_from_slice(rest);
                                run(tx, &outer, zero, n)
                            });
                        });
                    }
                }
            }
        }
        self.group.lanes.clear();
        for (k, m) in members.iter().enumerate() {
            if let (Some(acc), MemberKind::Sum) = (accs[k], m.kind) {
                let v = self.b.use_var(acc);
                let total = if vector { self.hsum(v) } else { v };
                let o = self.iconst(0);
                self.store_at(m.slot, o, total);
            }
        }
    }

    /// The number of `ROW_BLOCK`-row blocks covering `n` rows.
    pub(super) fn row_blocks(&mut self, n: Value) -> Value {
        let block = crate::lower::ROW_BLOCK;
        let last = self.add_imm(n, block - 1);
        self.shr_imm(last, block.trailing_zeros() as i64)
    }

    /// The scalar nodes in stack slots that a loop group reads, directly or through the
    /// operands fused into it: a part reads them from its frame.
    pub(super) fn spilled_reads(&self, g: &Graph, plan: &Plan, members: &[Member]) -> Vec<NodeId> {
        let mut pending: Vec<NodeId> = members
            .iter()
            .flat_map(|m| g.node(m.node).inputs.iter().copied())
            .collect();
        let mut seen = rustc_hash::FxHashSet::default();
        let mut out = Vec::new();
        while let Some(a) = pending.pop() {
            if !seen.insert(a) {
                continue;
            }
            match &plan.values[a.index()] {
                Some(Val::Register(id)) if self.held.spilled.contains_key(id) => out.push(*id),
                Some(Val::Inline(id)) => pending.extend(&g.node(*id).inputs),
                _ => {}
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// A loop group as the plan gives it: its iteration shape, members, row blocks, and whether it
/// is vectorized.
pub(super) struct GroupLoop<'p> {
    pub(super) shape: &'p Shape,
    pub(super) members: &'p [Member],
    pub(super) blocked: Option<&'p RowBlocks>,
    pub(super) vector: bool,
}
