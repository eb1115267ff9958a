//! Reductions: sums, maxima and minima along an axis or over everything, and the log-sum-exp of
//! rows.

use super::*;

impl<'a> Tx<'a> {
    /// log Σ exp over the last axis. The row's maximum and its sum of exponentials stay in
    /// registers, and exp is computed inline (a call per element costs more than the
    /// exponential, and saves and restores every live vector register). A row whose maximum is
    /// not finite gives that maximum, as the general form does.
    ///
    /// A matrix is done a vector of rows at a time, one row per lane (`read_rows`): rows are
    /// often narrow (a softmax over ten classes), too narrow to vectorize along. The last
    /// vector's lanes past the end take the last row again, and store the same value to it,
    /// so no scalar copy of the loop is needed for the rows left over.
    /// The plan decides whether rows run in lanes (`rows`).
    pub(super) fn row_logsumexp(&mut self, src: &Operand, xshape: &Shape, slot: u32, rows: bool) {
        let sizes = self.sizes(xshape);
        let rank = sizes.len();
        let n = sizes[rank - 1];
        // The fused loop holds no slot a log-sum-exp computes in a register: those are
        // single-element parameters, their gradients and the loss, which a copy writes.
        debug_assert_eq!(
            rows,
            rank >= 2 && self.rows_readable(src) && !self.fused.promoted.contains_key(&slot),
            "the plan's rows in lanes are the loop's"
        );
        if rows {
            // The matrices of the last two axes one after another (attention's scores are
            // `[n, T, T]`), each a vector of rows at a time.
            let (vty, lanes) = self.vector_type();
            let m = sizes[rank - 2];
            let out = self.contiguous_strides(&Shape(xshape.0[..rank - 1].to_vec()));
            self.nest(&sizes[..rank - 2], &mut |tx, outer| {
                let last = tx.add_imm(m, -1);
                let rounded = tx.add_imm(m, lanes - 1);
                let blocks = tx.shr_imm(rounded, lanes.trailing_zeros() as i64);
                let base = tx.dot(outer, &out[..rank - 2]);
                tx.for_loop(blocks, &mut |tx, b| {
                    let first = tx.mul_imm(b, lanes);
                    let rows: Vec<Value> = (0..lanes)
                        .map(|l| {
                            let r = tx.add_imm(first, l);
                            tx.b.ins().smin(r, last)
                        })
                        .collect();
                    let lse =
                        tx.logsumexp_along(vty, n, &mut |tx, j| tx.read_rows(src, outer, &rows, j));
                    for (l, &row) in rows.iter().enumerate() {
                        let v = tx.b.ins().extractlane(lse, l as u8);
                        let at = tx.add(base, row);
                        tx.store_at(slot, at, v);
                    }
                });
            });
            return;
        }
        let out = self.contiguous_strides(&Shape(xshape.0[..rank - 1].to_vec()));
        let ty = self.ty;
        self.nest(&sizes[..rank - 1], &mut |tx, outer| {
            let lse = tx.logsumexp_along(ty, n, &mut |tx, j| {
                let mut idx = outer.to_vec();
                idx.push(j);
                tx.read(src, &idx)
            });
            let o = tx.dot(outer, &out);
            tx.store_at(slot, o, lse);
        });
    }

    /// log Σ exp of the `n` values `read(j)`, of type `ty`: a scalar, or a vector of rows.
    pub(super) fn logsumexp_along(
        &mut self,
        ty: Type,
        n: Value,
        read: &mut dyn FnMut(&mut Self, Value) -> Value,
    ) -> Value {
        let max = self.b.declare_var(ty);
        let neg_inf = self.float_const(ty, f64::NEG_INFINITY);
        self.b.def_var(max, neg_inf);
        // Each part below is straight-line code, so its vector constants are loads from the
        // pool at their uses: from the entry block, the thirty-odd constants of `exp` and `log`
        // were live across the whole function, spilled, and a large share of its compile time.
        self.for_loop(n, &mut |tx, j| {
            tx.straight(|tx| {
                let v = read(tx, j);
                let m = tx.b.use_var(max);
                let gt = tx.b.ins().fcmp(FloatCC::GreaterThan, v, m);
                let m = tx.choose(gt, v, m);
                tx.b.def_var(max, m);
            })
        });
        let m = self.b.use_var(max);
        let sum = self.b.declare_var(ty);
        let zero = self.float_const(ty, 0.0);
        self.b.def_var(sum, zero);
        self.for_loop(n, &mut |tx, j| {
            tx.straight(|tx| {
                let v = read(tx, j);
                let d = tx.b.ins().fsub(v, m);
                let e = tx.exp_inline(d);
                let s = tx.b.use_var(sum);
                let s = tx.b.ins().fadd(s, e);
                tx.b.def_var(sum, s);
            })
        });
        self.straight(|tx| {
            let s = tx.b.use_var(sum);
            let l = tx.log_inline(s);
            let r = tx.b.ins().fadd(m, l);
            let finite = tx.is_finite(m);
            tx.choose(finite, r, m)
        })
    }

    /// Whether `read_rows` can read `op`.
    pub(super) fn rows_readable(&self, op: &Operand) -> bool {
        match op {
            Operand::Scalar(_) | Operand::View { .. } => true,
            Operand::Lane(_) => false,
            Operand::Inline { op, args, exponent } => {
                self.vector_op_ok(op, *exponent) && args.iter().all(|a| self.rows_readable(a))
            }
        }
    }

    /// Element `[outer.., rows[l], j]` of an operand in lane `l`: the rows of the matrix of its
    /// last two axes at the index `outer` of the others.
    pub(super) fn read_rows(
        &mut self,
        op: &Operand,
        outer: &[Value],
        rows: &[Value],
        j: Value,
    ) -> Value {
        let (vty, _) = self.vector_type();
        let k = outer.len();
        match op {
            Operand::Scalar(v) => self.scalar_in_lanes(*v),
            Operand::View {
                slot,
                strides,
                first,
                ..
            } => {
                let mut lanes = None;
                for (l, &r) in rows.iter().enumerate() {
                    let mut at = outer.to_vec();
                    at.push(r);
                    let row = self.view_row_ptr(*slot, &at, &strides[..k + 1], *first);
                    let off = self.mul(j, strides[k + 1]);
                    let x = match self.fused.promoted.get(slot) {
                        Some(&var) => self.b.use_var(var),
                        None => {
                            let addr = self.elem_addr(row, off);
                            self.b.ins().load(self.ty, flags(), addr, 0)
                        }
                    };
                    lanes = Some(match lanes {
                        None => self.b.ins().scalar_to_vector(vty, x),
                        Some(v) => self.b.ins().insertlane(v, x, l as u8),
                    });
                }
                lanes.expect("a vector has lanes")
            }
            Operand::Inline { op, args, exponent } => {
                let xs: Vec<Value> = args
                    .iter()
                    .map(|a| self.read_rows(a, outer, rows, j))
                    .collect();
                self.vector_op(op, &xs, *exponent)
            }
            Operand::Lane(_) => unreachable!("rows_readable excludes register lanes"),
        }
    }

    /// For each axis of the reduced operand, the stride of the output it accumulates into.
    pub(super) fn reduction_strides(&mut self, op: &Op, out: &Shape, x: &Shape) -> OutStrides {
        let out_strides = crate::lower::contiguous(out);
        let strides: Vec<Stride> = match op {
            Op::Sum { axis: None }
            | Op::LogSumExp { axis: None }
            | Op::ReduceMax { axis: None }
            | Op::ReduceMin { axis: None } => {
                vec![Stride::Zero; x.rank()]
            }
            Op::Sum { axis: Some(a) }
            | Op::LogSumExp { axis: Some(a) }
            | Op::ReduceMax { axis: Some(a) }
            | Op::ReduceMin { axis: Some(a) }
            | Op::ArgMax { axis: a } => {
                let mut s = out_strides.clone();
                s.insert(*a as usize, Stride::Zero);
                s
            }
            // Summing down to a shape visits the output as if it were broadcast to the input.
            Op::SumTo(_) => crate::lower::broadcast_strides(out, &out_strides, x),
            other @ (Op::Input(_)
            | Op::Param(_)
            | Op::Const(_)
            | Op::DimSize(_)
            | Op::Iota(_)
            | Op::Literal(_)
            | Op::DropMask { .. }
            | Op::State(_)
            | Op::Neg
            | Op::Exp
            | Op::Log
            | Op::Sqrt
            | Op::Tanh
            | Op::Sigmoid
            | Op::Relu
            | Op::Step
            | Op::Log1p
            | Op::Expm1
            | Op::Abs
            | Op::Sign
            | Op::Sin
            | Op::Cos
            | Op::Softplus
            | Op::Erf
            | Op::Erfc
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Pow
            | Op::Eq
            | Op::Ne
            | Op::Lt
            | Op::Le
            | Op::Gt
            | Op::Ge
            | Op::Max
            | Op::Min
            | Op::Select
            | Op::MatMul
            | Op::Transpose { .. }
            | Op::Take { .. }
            | Op::Put { .. }
            | Op::Gather { .. }
            | Op::ScatterAdd { .. }
            | Op::Windows { .. }
            | Op::Unwindows { .. }
            | Op::OneHot { .. }
            | Op::Expand(_)
            | Op::Reshape(_)
            | Op::Slice { .. }
            | Op::Unslice { .. }) => unreachable!("`{}` is not a reduction", other.name()),
        };
        OutStrides {
            last_axis_reduced: strides.last() == Some(&Stride::Zero),
            strides: strides.iter().map(|s| self.stride(s)).collect(),
        }
    }

    /// Sums `src` (iterating over `xshape`) into `slot` at `out_strides`, vectorized along the
    /// last axis where the plan says (the source allows it): a vector accumulator when that axis is reduced,
    /// vector read-modify-write of the output when it is kept. With `items = (lo, len)`, only
    /// items `lo..lo + len` of the first axis (a block of a blocked sum).
    pub(super) fn sum_loop(&mut self, sum: &SumLoop, items: Option<(Value, Value)>) {
        let &SumLoop {
            src,
            xshape,
            out_strides,
            last_reduced,
            slot,
            vector,
        } = sum;
        let mut sizes = self.sizes(xshape);
        let rank = xshape.rank();
        let first = match items {
            Some((lo, len)) => {
                sizes[0] = len;
                Some(lo)
            }
            None => None,
        };
        // An index of the first axis counted from the block's first item.
        let from_first = |tx: &mut Self, idx: &[Value]| -> Vec<Value> {
            let mut idx = idx.to_vec();
            if let (Some(lo), Some(i)) = (first, idx.first_mut()) {
                *i = tx.add(lo, *i);
            }
            idx
        };
        let (vty, lanes) = self.vector_type();
        debug_assert_eq!(
            vector,
            rank > 0 && self.vectorizable(src),
            "the plan's vectorization is the loop's"
        );
        if !vector {
            self.nest(&sizes, &mut |tx, idx| {
                let idx = from_first(tx, idx);
                let v = tx.read(src, &idx);
                let o = tx.dot(&idx, out_strides);
                let cur = tx.load_at(slot, o);
                let s = tx.b.ins().fadd(cur, v);
                tx.store_at(slot, o, s);
            });
            return;
        }
        let n = sizes[rank - 1];
        // Along the last axis, which is the first one (a block's items) in rank 1.
        let along_first = rank == 1;
        let shift = |tx: &mut Self, j: Value| match (first, along_first) {
            (Some(lo), true) => tx.add(lo, j),
            _ => j,
        };
        self.nest(&sizes[..rank - 1], &mut |tx, outer| {
            let outer = &from_first(tx, outer)[..];
            let n_vec = tx.shr_imm(n, lanes.trailing_zeros() as i64);
            let obase = tx.dot(outer, &out_strides[..rank - 1]);
            let done = tx.mul_imm(n_vec, lanes);
            let rest = tx.sub(n, done);
            if last_reduced {
                let acc = tx.b.declare_var(vty);
                let z = tx.fconst(0.0);
                let zv = tx.splat(vty, z);
                tx.b.def_var(acc, zv);
                let sacc = tx.b.declare_var(tx.ty);
                tx.b.def_var(sacc, z);
                tx.for_loop_by(done, lanes, &mut |tx, j| {
                    let j = shift(tx, j);
                    let x = tx.read_vec(src, outer, j);
                    let a = tx.b.use_var(acc);
                    let a = tx.b.ins().fadd(a, x);
                    tx.b.def_var(acc, a);
                });
                tx.for_loop(rest, &mut |tx, t| {
                    let j = tx.add(done, t);
                    let j = shift(tx, j);
                    let mut idx = outer.to_vec();
                    idx.push(j);
                    let x = tx.read(src, &idx);
                    let a = tx.b.use_var(sacc);
                    let a = tx.b.ins().fadd(a, x);
                    tx.b.def_var(sacc, a);
                });
                let a = tx.b.use_var(acc);
                let h = tx.hsum(a);
                let sa = tx.b.use_var(sacc);
                let total = tx.b.ins().fadd(h, sa);
                let cur = tx.load_at(slot, obase);
                let s = tx.b.ins().fadd(cur, total);
                tx.store_at(slot, obase, s);
            } else {
                tx.for_vectors(done, lanes, src.is_read(), &mut |tx, j| {
                    let x = tx.read_vec(src, outer, j);
                    let row = tx.row_ptr(slot, outer, &out_strides[..rank - 1]);
                    let addr = tx.row_elem_addr(row, j);
                    let cur = tx.b.ins().load(vty, flags(), addr, 0);
                    let s = tx.b.ins().fadd(cur, x);
                    tx.b.ins().store(flags(), s, addr, 0);
                });
                tx.for_loop(rest, &mut |tx, t| {
                    let j = tx.add(done, t);
                    let mut idx = outer.to_vec();
                    idx.push(j);
                    let x = tx.read(src, &idx);
                    let o = tx.add(obase, j);
                    let cur = tx.load_at(slot, o);
                    let s = tx.b.ins().fadd(cur, x);
                    tx.store_at(slot, o, s);
                });
            }
        });
    }

    /// A sum in the plan's blocks of its first axis (`lower::sum_blocks`): each block's terms
    /// in the order `sum_loop` adds them, into a zeroed partial sum per output element (on the
    /// stack, or a register for an output the fused loop holds in one), and each block's
    /// partial sums then added to the output, block after block. The output holds zeros
    /// before, so a sum of one block gets the bits the plain loop gives.
    pub(super) fn blocked_sum(&mut self, sum: &SumLoop, out: &Shape, blocks: SumBlocks) {
        let slot = sum.slot;
        let elements = out
            .fixed_elements()
            .expect("the plan blocks sums with fixed outputs") as i64;
        let items = self.dim(sum.xshape.0[0]);
        let per = blocks.items as i64;
        let last = self.add_imm(items, per - 1);
        let count = self.shr_imm(last, per.trailing_zeros() as i64);
        let promoted = self.fused.promoted.get(&slot).copied();
        let partial = match promoted {
            Some(_) => None,
            None => {
                let bytes = elements as u32 * self.dtype.size() as u32;
                let data = StackSlotData::new(StackSlotKind::ExplicitSlot, bytes, 4);
                Some(self.b.create_sized_stack_slot(data))
            }
        };
        self.for_loop(count, &mut |tx, b| {
            let lo = tx.mul_imm(b, per);
            let left = tx.sub(items, lo);
            let full = tx.iconst(per);
            let short = tx.b.ins().icmp(IntCC::SignedLessThan, left, full);
            let len = tx.b.ins().select(short, left, full);
            match (promoted, partial) {
                (Some(total), _) => {
                    let block = tx.b.declare_var(tx.ty);
                    let zero = tx.fconst(0.0);
                    tx.b.def_var(block, zero);
                    tx.fused.promoted.insert(slot, block);
                    tx.sum_loop(sum, Some((lo, len)));
                    tx.fused.promoted.insert(slot, total);
                    let (t, p) = (tx.b.use_var(total), tx.b.use_var(block));
                    let s = tx.b.ins().fadd(t, p);
                    tx.b.def_var(total, s);
                }
                (None, Some(stack)) => {
                    let area = tx.b.ins().stack_addr(types::I64, stack, 0);
                    let before = tx.part.overrides.insert(slot, area);
                    tx.fill(slot, out, 0.0);
                    tx.sum_loop(sum, Some((lo, len)));
                    match before {
                        Some(p) => tx.part.overrides.insert(slot, p),
                        None => tx.part.overrides.remove(&slot),
                    };
                    let n = tx.iconst(elements);
                    tx.for_loop(n, &mut |tx, i| {
                        let at = tx.elem_addr(area, i);
                        let p = tx.b.ins().load(tx.ty, flags(), at, 0);
                        let t = tx.load_at(slot, i);
                        let s = tx.b.ins().fadd(t, p);
                        tx.store_at(slot, i, s);
                    });
                }
                (None, None) => unreachable!("a partial sum for every output"),
            }
        });
    }
}

/// A sum step's loop: its operand, the output's stride along each of the operand's axes, and
/// the plan's vectorization.
pub(super) struct SumLoop<'o> {
    pub(super) src: &'o Operand,
    pub(super) xshape: &'o Shape,
    pub(super) out_strides: &'o [Value],
    /// Whether the operand's last axis is summed over (or it has no axis).
    pub(super) last_reduced: bool,
    pub(super) slot: u32,
    pub(super) vector: bool,
}

impl Tx<'_> {
    /// The largest (`better` is `>`) or smallest (`<`) element of `src` (iterating over
    /// `xshape`) into `slot` at `out`, which holds ±∞ first: each element replaces the output's
    /// when it compares `better`, so a NaN never does. As the plan says (`run`): along a kept
    /// last axis (a pooling's maximum over its window axis) a vector of outputs at a time, its
    /// row's tail row by row; otherwise row by row, or element by element without an axis.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn extremum_loop(
        &mut self,
        src: &Operand,
        xshape: &Shape,
        out: &OutStrides,
        better: FloatCC,
        slot: u32,
        run: Run,
    ) {
        let sizes = self.sizes(xshape);
        let rank = xshape.rank();
        let out_strides = &out.strides;
        debug_assert_eq!(
            run == Run::Elements,
            rank == 0,
            "the plan's walk is the loop's"
        );
        debug_assert!(
            rank == 0
                || (run == Run::Vectors) == (!out.last_axis_reduced && self.vectorizable(src)),
            "the plan's vectorization is the loop's"
        );
        // A slot the fused training loop holds in a register is that register.
        if run == Run::Elements || self.fused.promoted.contains_key(&slot) {
            self.nest(&sizes, &mut |tx, idx| {
                let v = tx.read(src, idx);
                let o = tx.dot(idx, out_strides);
                let m = tx.load_at(slot, o);
                let b = tx.b.ins().fcmp(better, v, m);
                let nm = tx.b.ins().select(b, v, m);
                tx.store_at(slot, o, nm);
            });
            return;
        }
        let zero = self.iconst(0);
        let scalar = |tx: &mut Self, outer: &[Value], j: Value| {
            let v = tx.read_in_row(src, outer, j);
            let addr = tx.addr_in_row(slot, outer, out_strides, zero, j);
            let m = tx.b.ins().load(tx.ty, flags(), addr, 0);
            let b = tx.b.ins().fcmp(better, v, m);
            let nm = tx.b.ins().select(b, v, m);
            tx.b.ins().store(flags(), nm, addr, 0);
        };
        let n = sizes[rank - 1];
        if run == Run::Rows {
            self.nest(&sizes[..rank - 1], &mut |tx, outer| {
                tx.for_loop(n, &mut |tx, j| scalar(tx, outer, j));
            });
            return;
        }
        let (vty, lanes) = self.vector_type();
        self.nest(&sizes[..rank - 1], &mut |tx, outer| {
            let n_vec = tx.shr_imm(n, lanes.trailing_zeros() as i64);
            let done = tx.mul_imm(n_vec, lanes);
            tx.for_loop_by(done, lanes, &mut |tx, j| {
                let x = tx.read_vec(src, outer, j);
                let row = tx.row_ptr(slot, outer, &out_strides[..rank - 1]);
                let addr = tx.row_elem_addr(row, j);
                let m = tx.b.ins().load(vty, flags(), addr, 0);
                let b = tx.b.ins().fcmp(better, x, m);
                let nm = tx.choose(b, x, m);
                tx.b.ins().store(flags(), nm, addr, 0);
            });
            let rest = tx.sub(n, done);
            tx.for_loop(rest, &mut |tx, t| {
                let j = tx.add(done, t);
                scalar(tx, outer, j);
            });
        });
    }

    /// Adds each element of `src` (iterating over `xshape`) into `slot` at `to`, in the
    /// operand's order (`unwindows`: each patch element into its place). As the plan says
    /// (`run`): where the places of the last axis are contiguous (a stride of 1), as a sum that
    /// keeps its last axis, a vector of places at a time or element by element; otherwise row
    /// by row. Either way each place receives its terms in the same order.
    pub(super) fn add_patches(
        &mut self,
        src: &Operand,
        xshape: &Shape,
        to: &[Value],
        slot: u32,
        run: Run,
    ) {
        let rank = xshape.rank();
        debug_assert_eq!(
            run != Run::Rows,
            rank > 0 && self.known(to[rank - 1]) == Some(1),
            "the plan's walk is the loop's"
        );
        if run != Run::Rows {
            let sum = SumLoop {
                src,
                xshape,
                out_strides: to,
                last_reduced: false,
                slot,
                vector: run == Run::Vectors,
            };
            return self.sum_loop(&sum, None);
        }
        let sizes = self.sizes(xshape);
        let zero = self.iconst(0);
        self.nest(&sizes[..rank - 1], &mut |tx, outer| {
            tx.for_loop(sizes[rank - 1], &mut |tx, j| {
                let v = tx.read_in_row(src, outer, j);
                let addr = tx.addr_in_row(slot, outer, to, zero, j);
                let acc = tx.b.ins().load(tx.ty, flags(), addr, 0);
                let sum = tx.b.ins().fadd(acc, v);
                tx.b.ins().store(flags(), sum, addr, 0);
            });
        });
    }
}

impl<'a> Tx<'a> {
    /// `add_patches` for an `unwindows` whose windows put their two columns on neighbouring
    /// places (`pairs_of_places`), axis `pair` of `src` being the last kernel axis: for each
    /// row of places, a vector of first columns and one of second columns, interleaved, are
    /// added into 2·lanes contiguous places. The loops keep the operand's order with the pair
    /// axis taken out; the two columns land on different places, so each place receives its
    /// terms in the order `add_patches` gives them, and the sums are the same to the bit.
    pub(super) fn add_patch_pairs(
        &mut self,
        src: &Operand,
        xshape: &Shape,
        to: &[Value],
        slot: u32,
        pair: usize,
    ) {
        let rank = xshape.rank();
        debug_assert!(pair + 1 < rank && self.known(to[rank - 1]) == Some(2));
        let sizes = self.sizes(xshape);
        let kept: Vec<Value> = (0..rank - 1)
            .filter(|&a| a != pair)
            .map(|a| sizes[a])
            .collect();
        let n = sizes[rank - 1];
        let (vty, lanes) = self.vector_type();
        let size = self.dtype.size() as i64;
        let (zero, one) = (self.iconst(0), self.iconst(1));
        self.nest(&kept, &mut |tx, idx| {
            let column = |b: Value| {
                let mut outer = idx.to_vec();
                outer.insert(pair, b);
                outer
            };
            let (first, second) = (column(zero), column(one));
            let n_vec = tx.shr_imm(n, lanes.trailing_zeros() as i64);
            let span = tx.mul_imm(n_vec, lanes);
            tx.for_vectors(span, lanes, src.is_read(), &mut |tx, j| {
                tx.straight(|tx| {
                    let x0 = tx.read_vec(src, &first, j);
                    let x1 = tx.read_vec(src, &second, j);
                    let row = tx.view_row_ptr(slot, &first, &to[..rank - 1], zero);
                    let bytes = tx.mul_imm(j, 2 * size);
                    let addr = tx.add(row, bytes);
                    for (half, v) in tx.interleave(x0, x1).into_iter().enumerate() {
                        let offset = (half as i64 * lanes * size) as i32;
                        let acc = tx.b.ins().load(vty, flags(), addr, offset);
                        let sum = tx.b.ins().fadd(acc, v);
                        tx.b.ins().store(flags(), sum, addr, offset);
                    }
                })
            });
            let rest = tx.sub(n, span);
            tx.for_loop(rest, &mut |tx, t| {
                let j = tx.add(span, t);
                for outer in [&first, &second] {
                    let v = tx.read_in_row(src, outer, j);
                    let addr = tx.addr_in_row(slot, outer, to, zero, j);
                    let acc = tx.b.ins().load(tx.ty, flags(), addr, 0);
                    let sum = tx.b.ins().fadd(acc, v);
                    tx.b.ins().store(flags(), sum, addr, 0);
                }
            });
        });
    }

    /// The lanes of `a` and `b` alternated, `a` first: `[a0, b0, a1, b1, …]` in two vectors.
    fn interleave(&mut self, a: Value, b: Value) -> [Value; 2] {
        let (_, lanes) = self.vector_type();
        // Lane k takes element half·lanes/2 + k/2 of `a` (even k) or of `b` (odd k).
        [0, 1].map(|half| self.pick_lanes(a, b, |k| (k % 2, half * lanes / 2 + k / 2)))
    }
}

/// Where each element of a reduced operand accumulates in the output.
pub(super) struct OutStrides {
    /// For each axis of the operand, the output's stride (zero where the axis is summed over).
    pub(super) strides: Vec<Value>,
    /// Whether the operand's last axis is summed over.
    pub(super) last_axis_reduced: bool,
}
