//! Elementwise operations: operands (views, scalars, fused nodes, loop-group lanes), each op's
//! scalar and vector form, and the loops that compute an elementwise node into its slot.

use super::*;
use crate::lower::vectorize::{Along, along_last_axis};

impl<'a> Tx<'a> {
    /// A readable value aligned to an iteration space of rank `rank`.
    pub(super) fn operand(
        &mut self,
        g: &Graph,
        plan: &Plan,
        val: &Val,
        shape: &Shape,
        rank: usize,
    ) -> Operand {
        match val {
            Val::Register(id) => Operand::Scalar(self.scalar_node(*id)),
            Val::Inline(id) => self.node_expr(g, plan, *id, rank),
            Val::Const(c) => Operand::Scalar(self.fconst(*c)),
            Val::DimSize(s) => {
                let n = self.dim(Dim::Sym(*s));
                Operand::Scalar(self.b.ins().fcvt_from_sint(self.ty, n))
            }
            Val::View {
                slot,
                strides,
                offset,
            } if self.group.slots.contains(slot)
                && shape.rank() == rank
                && offset.is_empty()
                && *strides == crate::lower::contiguous(shape) =>
            {
                Operand::Lane(*slot)
            }
            Val::View { slot, offset, .. } if shape.rank() == 0 && rank > 0 => {
                // One element for the whole loop: read it once, before the loop.
                let first = self.view_offset(offset);
                Operand::Scalar(self.load_at(*slot, first))
            }
            Val::View {
                slot,
                strides,
                offset: first,
            } => {
                let offset = rank - shape.rank();
                let mut aligned = vec![self.iconst(0); offset];
                for (i, s) in strides.iter().enumerate() {
                    // A unit axis broadcast against a longer one reads its only element.
                    let v = if shape.0[i] == Dim::Fixed(1) {
                        self.iconst(0)
                    } else {
                        self.stride(s)
                    };
                    aligned.push(v);
                }
                // A view of lower rank than the loop is broadcast along its last axis.
                let inner = if rank > 0 && offset == rank {
                    Along::Broadcast
                } else {
                    along_last_axis(shape, strides)
                };
                let first = self.view_offset(first);
                Operand::View {
                    slot: *slot,
                    strides: aligned,
                    inner,
                    first,
                }
            }
        }
    }

    /// Whether a loop the plan decided vectorizes (`lower::vectorize`), with the lanes of this
    /// function's float type.
    pub(super) fn vectorized(&self, decision: &Decision) -> bool {
        self.in_lanes(
            decision
                .vector
                .as_ref()
                .expect("the plan decides this loop's vectorization"),
        )
    }

    /// Whether a loop or update the plan gave the form `vector` runs in vectors of this
    /// function's lanes, rather than element by element.
    pub(super) fn in_lanes(&self, vector: &Vector) -> bool {
        match vector {
            Vector::Lanes(n) => {
                debug_assert_eq!(*n as i64, self.vector_type().1, "lanes of the float type");
                true
            }
            Vector::Scalar(_) => false,
            Vector::Rows(_) => unreachable!("rows in lanes are a log-sum-exp's form"),
        }
    }

    /// How the plan runs a loop (`lower::vectorize`): in vectors, or else row by row or element
    /// by element.
    pub(super) fn run_of(&self, decision: &Decision) -> Run {
        if self.vectorized(decision) {
            return Run::Vectors;
        }
        match decision
            .walk
            .as_ref()
            .expect("the plan decides how this loop walks")
        {
            Walk::Rows => Run::Rows,
            Walk::Elements(_) => Run::Elements,
        }
    }

    /// Whether the plan runs a log-sum-exp over the last axis a vector of rows at a time.
    pub(super) fn rows_in_lanes(&self, decision: &Decision) -> bool {
        match decision
            .vector
            .as_ref()
            .expect("the plan decides this loop's form")
        {
            Vector::Rows(n) => {
                debug_assert_eq!(*n as i64, self.vector_type().1, "lanes of the float type");
                true
            }
            Vector::Scalar(_) => false,
            Vector::Lanes(_) => unreachable!("a log-sum-exp of rows runs rows in lanes"),
        }
    }

    /// Whether every element of the last axis can be read as a vector: contiguous, broadcast or
    /// every-other-element views, and only ops with vector instructions. The plan decides this
    /// (`lower::vectorize`); debug builds check that the loops they generate agree.
    pub(super) fn vectorizable(&self, op: &Operand) -> bool {
        match op {
            Operand::Scalar(_) | Operand::Lane(_) => true,
            Operand::View { inner, .. } => *inner != Along::Other,
            Operand::Inline { op, args, exponent } => {
                self.vector_op_ok(op, *exponent) && args.iter().all(|a| self.vectorizable(a))
            }
        }
    }

    /// Whether `op` has a vector form in this function's float type (`lower::vectorize`).
    pub(super) fn vector_op_ok(&self, op: &Op, exponent: Option<f64>) -> bool {
        crate::lower::vectorize::vector_form(op, exponent, self.dtype).is_ok()
    }

    pub(super) fn vector_type(&self) -> (Type, i64) {
        match self.dtype {
            DType::F32 => (types::F32X4, 4),
            DType::F64 => (types::F64X2, 2),
        }
    }

    /// A scalar operand in every lane of a vector: loaded from its stack slot when it is fixed
    /// for the whole loop (`invariant_vector`), else splatted once per loop body.
    pub(super) fn scalar_in_lanes(&mut self, v: Value) -> Value {
        let (vty, _) = self.vector_type();
        if let Some(x) = self.invariant_vector(vty, v) {
            return x;
        }
        self.memo(Memo::Splat, v, |tx| tx.splat(vty, v))
    }

    /// Reads lanes `j .. j + lanes` of the last axis at the outer index `outer`.
    pub(super) fn read_vec(&mut self, op: &Operand, outer: &[Value], j: Value) -> Value {
        let (vty, _) = self.vector_type();
        match op {
            Operand::Scalar(v) => self.scalar_in_lanes(*v),
            Operand::Lane(slot) => self.group.lanes[slot],
            Operand::View {
                slot,
                strides,
                inner,
                first,
            } => {
                match inner {
                    Along::Contiguous => {
                        let row = self.view_row_ptr(*slot, outer, &strides[..outer.len()], *first);
                        let addr = self.row_elem_addr(row, j);
                        // Several members of a loop group may read the same element.
                        self.memo(Memo::Load, addr, |tx| {
                            tx.b.ins().load(vty, flags(), addr, 0)
                        })
                    }
                    Along::Pairs => {
                        let row = self.view_row_ptr(*slot, outer, &strides[..outer.len()], *first);
                        self.read_pairs(row, j)
                    }
                    Along::Broadcast | Along::Other => {
                        let base = self.dot(outer, &strides[..outer.len()]);
                        let base = self.add(base, *first);
                        let v = self.load_at(*slot, base);
                        self.splat(vty, v)
                    }
                }
            }
            Operand::Inline { op, args, exponent } => {
                let xs: Vec<Value> = args.iter().map(|a| self.read_vec(a, outer, j)).collect();
                self.vector_op(op, &xs, *exponent)
            }
        }
    }

    /// The vector of elements j, j + 1, … of a view that moves by 2 along its row: elements
    /// 2j, 2j + 2, … of the row. Two loads, at 2j and at 2j + lanes − 1, hold them as the even
    /// lanes of the first and the odd lanes of the second, so nothing past the vector's last
    /// element 2(j + lanes − 1) is read; one byte shuffle picks them.
    pub(super) fn read_pairs(&mut self, row: Value, j: Value) -> Value {
        let (vty, lanes) = self.vector_type();
        let size = self.dtype.size() as i64;
        let bytes = self.mul_imm(j, 2 * size);
        let addr = self.add(row, bytes);
        let first = self.b.ins().load(vty, flags(), addr, 0);
        let second = self
            .b
            .ins()
            .load(vty, flags(), addr, ((lanes - 1) * size) as i32);
        // Lane k of the result is even lane 2k of `first` for the first half of the lanes and
        // odd lane 2k − lanes + 1 of `second` after.
        self.pick_lanes(first, second, |k| match 2 * k < lanes {
            true => (0, 2 * k),
            false => (1, 2 * k - lanes + 1),
        })
    }

    /// A vector whose lane k is lane `from(k).1` of `a` (`from(k).0 == 0`) or of `b` (1): one
    /// byte shuffle.
    pub(super) fn pick_lanes(
        &mut self,
        a: Value,
        b: Value,
        from: impl Fn(i64) -> (i64, i64),
    ) -> Value {
        let (vty, lanes) = self.vector_type();
        let size = self.dtype.size() as i64;
        let mask: Vec<u8> = (0..lanes)
            .flat_map(|k| {
                let (which, lane) = from(k);
                let byte = 16 * which + lane * size;
                (byte..byte + size).map(|b| b as u8)
            })
            .collect();
        let mask = self.b.func.dfg.immediates.push(mask.into());
        let little = math::lane_flags();
        let a = self.b.ins().bitcast(types::I8X16, little, a);
        let b = self.b.ins().bitcast(types::I8X16, little, b);
        let picked = self.b.ins().shuffle(a, b, mask);
        self.b.ins().bitcast(vty, little, picked)
    }

    /// 1 in the lanes where `xs[0] cc xs[1]`, else 0.
    pub(super) fn vector_truth(&mut self, cc: FloatCC, xs: &[Value]) -> Value {
        let c = self.b.ins().fcmp(cc, xs[0], xs[1]);
        self.ones_where(c)
    }

    /// 1 in the lanes where the comparison `c` holds, else +0: the mask's bits and 1's, one
    /// `andps` reading its constant from memory. A blend of 1 and 0 read both constants, from
    /// the stack in a long function where they were spilled.
    fn ones_where(&mut self, c: Value) -> Value {
        let (vty, _) = self.vector_type();
        let one = self.fconst(1.0);
        let one = self.splat(vty, one);
        let mask = self.b.ins().bitcast(vty, math::lane_flags(), c);
        self.b.ins().band(mask, one)
    }

    pub(super) fn vector_op(&mut self, op: &Op, xs: &[Value], exponent: Option<f64>) -> Value {
        let (vty, _) = self.vector_type();
        let k = |tx: &mut Self, v: f64| {
            let c = tx.fconst(v);
            tx.splat(vty, c)
        };
        // Comparisons give lane masks; `choose` selects lane by lane, as `select` does for
        // the scalar forms in `scalar_op`.
        match op {
            Op::Step => {
                let zero = k(self, 0.0);
                let pos = self.b.ins().fcmp(FloatCC::GreaterThan, xs[0], zero);
                return self.ones_where(pos);
            }
            Op::Sign => {
                let (zero, one, minus) = (k(self, 0.0), k(self, 1.0), k(self, -1.0));
                let pos = self.b.ins().fcmp(FloatCC::GreaterThan, xs[0], zero);
                let neg = self.b.ins().fcmp(FloatCC::LessThan, xs[0], zero);
                let z = self.b.ins().fmul(xs[0], zero);
                let r = self.choose(neg, minus, z);
                return self.choose(pos, one, r);
            }
            Op::Eq => return self.vector_truth(FloatCC::Equal, xs),
            Op::Ne => return self.vector_truth(FloatCC::NotEqual, xs),
            Op::Lt => return self.vector_truth(FloatCC::LessThan, xs),
            Op::Le => return self.vector_truth(FloatCC::LessThanOrEqual, xs),
            Op::Gt => return self.vector_truth(FloatCC::GreaterThan, xs),
            Op::Ge => return self.vector_truth(FloatCC::GreaterThanOrEqual, xs),
            Op::Max => {
                let c = self.b.ins().fcmp(FloatCC::GreaterThan, xs[1], xs[0]);
                return self.choose(c, xs[1], xs[0]);
            }
            Op::Min => {
                let c = self.b.ins().fcmp(FloatCC::LessThan, xs[1], xs[0]);
                return self.choose(c, xs[1], xs[0]);
            }
            Op::Select => {
                let zero = k(self, 0.0);
                let c = self.b.ins().fcmp(FloatCC::NotEqual, xs[0], zero);
                return self.choose(c, xs[1], xs[2]);
            }
            // Below, with no lane masks.
            Op::Neg
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Sqrt
            | Op::Abs
            | Op::Relu
            | Op::Tanh
            | Op::Exp
            | Op::Log
            | Op::Log1p
            | Op::Sigmoid
            | Op::Softplus
            | Op::Erf
            | Op::Erfc
            | Op::Pow => {}
            // `vector_op_ok` rules these out.
            Op::Expm1 | Op::Sin | Op::Cos => unreachable!("`{}` has no vector form", op.name()),
            Op::Input(_)
            | Op::Param(_)
            | Op::Const(_)
            | Op::DimSize(_)
            | Op::Iota(_)
            | Op::Literal(_)
            | Op::DropMask { .. }
            | Op::State(_)
            | Op::MatMul
            | Op::Transpose { .. }
            | Op::Sum { .. }
            | Op::LogSumExp { .. }
            | Op::ReduceMax { .. }
            | Op::ReduceMin { .. }
            | Op::ArgMax { .. }
            | Op::Take { .. }
            | Op::Put { .. }
            | Op::Gather { .. }
            | Op::ScatterAdd { .. }
            | Op::Windows { .. }
            | Op::Unwindows { .. }
            | Op::OneHot { .. }
            | Op::SumTo(_)
            | Op::Expand(_)
            | Op::Reshape(_)
            | Op::Slice { .. }
            | Op::Unslice { .. } => unreachable!("`{}` is not elementwise", op.name()),
        }
        match op {
            Op::Neg => self.b.ins().fneg(xs[0]),
            Op::Add => self.b.ins().fadd(xs[0], xs[1]),
            Op::Sub => self.b.ins().fsub(xs[0], xs[1]),
            Op::Mul => self.b.ins().fmul(xs[0], xs[1]),
            Op::Div => self.b.ins().fdiv(xs[0], xs[1]),
            Op::Sqrt => self.b.ins().sqrt(xs[0]),
            Op::Abs => self.b.ins().fabs(xs[0]),
            Op::Relu => {
                let z = self.fconst(0.0);
                let z = self.splat(vty, z);
                self.max_keep_nan(z, xs[0])
            }
            Op::Tanh => self.tanh_f32(xs[0]),
            Op::Exp => self.exp_inline(xs[0]),
            Op::Log => self.log_inline(xs[0]),
            Op::Log1p => self.log1p_inline(xs[0]),
            Op::Sigmoid => self.sigmoid_inline(xs[0]),
            Op::Softplus => self.softplus_inline(xs[0]),
            Op::Erf => self.erf_inline(xs[0]),
            Op::Erfc => self.erfc_inline(xs[0]),
            Op::Pow => match exponent {
                Some(3.0) => {
                    let square = self.b.ins().fmul(xs[0], xs[0]);
                    self.b.ins().fmul(square, xs[0])
                }
                Some(2.0) => self.b.ins().fmul(xs[0], xs[0]),
                Some(1.0) => xs[0],
                _ => self.b.ins().sqrt(xs[0]),
            },
            other @ (Op::Step
            | Op::Sign
            | Op::Eq
            | Op::Ne
            | Op::Lt
            | Op::Le
            | Op::Gt
            | Op::Ge
            | Op::Max
            | Op::Min
            | Op::Select) => unreachable!("`{}` is handled above", other.name()),
            other @ (Op::Expm1 | Op::Sin | Op::Cos) => {
                unreachable!("`{}` has no vector form", other.name())
            }
            other @ (Op::Input(_)
            | Op::Param(_)
            | Op::Const(_)
            | Op::DimSize(_)
            | Op::Iota(_)
            | Op::Literal(_)
            | Op::DropMask { .. }
            | Op::State(_)
            | Op::MatMul
            | Op::Transpose { .. }
            | Op::Sum { .. }
            | Op::LogSumExp { .. }
            | Op::ReduceMax { .. }
            | Op::ReduceMin { .. }
            | Op::ArgMax { .. }
            | Op::Take { .. }
            | Op::Put { .. }
            | Op::Gather { .. }
            | Op::ScatterAdd { .. }
            | Op::Windows { .. }
            | Op::Unwindows { .. }
            | Op::OneHot { .. }
            | Op::SumTo(_)
            | Op::Expand(_)
            | Op::Reshape(_)
            | Op::Slice { .. }
            | Op::Unslice { .. }) => unreachable!("`{}` is not elementwise", other.name()),
        }
    }

    /// An elementwise loop over `shape` writing `slot`: vectors along the last axis with a
    /// scalar tail, row by row or element by element, as the plan says (`run`).
    pub(super) fn elementwise_loop(
        &mut self,
        shape: &Shape,
        slot: u32,
        args: &[Operand],
        run: Run,
        f: &dyn Fn(&mut Self, &[Value], bool) -> Value,
    ) {
        let out = self.contiguous_strides(shape);
        let first = self.iconst(0);
        self.elementwise_loop_into(shape, slot, &out, first, args, run, f);
    }

    /// An elementwise loop over `shape` that writes element `idx` of its result to element
    /// `first + idx · out` of `slot` (an embedding's place in a larger array); vectorized when
    /// the plan says (`run`: the last axis is written contiguously and every operand reads
    /// as vectors), else row by row along an axis, element by element without one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn elementwise_loop_into(
        &mut self,
        shape: &Shape,
        slot: u32,
        out: &[Value],
        first: Value,
        args: &[Operand],
        run: Run,
        f: &dyn Fn(&mut Self, &[Value], bool) -> Value,
    ) {
        let sizes = self.sizes(shape);
        let rank = shape.rank();
        debug_assert_eq!(
            run == Run::Vectors,
            rank > 0
                && self.known(out[rank - 1]) == Some(1)
                && args.iter().all(|a| self.vectorizable(a)),
            "the plan's vectorization is the loop's"
        );
        debug_assert!(
            run == Run::Vectors || (run == Run::Elements) == (rank == 0),
            "the plan's walk is the loop's"
        );
        if run != Run::Vectors {
            // A slot the fused training loop holds in a register is that register: one
            // element, read and written as such.
            if run == Run::Elements || self.fused.promoted.contains_key(&slot) {
                self.nest(&sizes, &mut |tx, idx| {
                    let xs: Vec<Value> = args.iter().map(|a| tx.read(a, idx)).collect();
                    let v = f(tx, &xs, false);
                    let o = tx.dot(idx, out);
                    let o = tx.add(o, first);
                    tx.store_at(slot, o, v);
                });
                return;
            }
            // Row by row (a strided copy: a pooling's windows, a transpose).
            self.nest(&sizes[..rank - 1], &mut |tx, outer| {
                tx.for_loop(sizes[rank - 1], &mut |tx, j| {
                    let xs: Vec<Value> = args.iter().map(|a| tx.read_in_row(a, outer, j)).collect();
                    let v = f(tx, &xs, false);
                    let addr = tx.addr_in_row(slot, outer, out, first, j);
                    tx.b.ins().store(flags(), v, addr, 0);
                });
            });
            return;
        }
        let (_, lanes) = self.vector_type();
        let n = sizes[rank - 1];
        self.nest(&sizes[..rank - 1], &mut |tx, outer| {
            let n_vec = tx.shr_imm(n, lanes.trailing_zeros() as i64);
            let obase = tx.dot(outer, &out[..rank - 1]);
            let obase = tx.add(obase, first);
            let span = tx.mul_imm(n_vec, lanes);
            let moving = args.iter().all(Operand::is_read);
            tx.for_vectors(span, lanes, moving, &mut |tx, j| {
                tx.straight(|tx| {
                    let xs: Vec<Value> = args.iter().map(|a| tx.read_vec(a, outer, j)).collect();
                    let r = f(tx, &xs, true);
                    let row = tx.view_row_ptr(slot, outer, &out[..rank - 1], first);
                    let addr = tx.row_elem_addr(row, j);
                    tx.b.ins().store(flags(), r, addr, 0);
                })
            });
            let done = tx.mul_imm(n_vec, lanes);
            let rest = tx.sub(n, done);
            tx.for_loop(rest, &mut |tx, t| {
                let j = tx.add(done, t);
                let mut idx = outer.to_vec();
                idx.push(j);
                let xs: Vec<Value> = args.iter().map(|a| tx.read(a, &idx)).collect();
                let v = f(tx, &xs, false);
                let o = tx.add(obase, j);
                tx.store_at(slot, o, v);
            });
        });
    }

    /// Element `[outer.., j]` of an operand, as `read` gives it, with the address of its row
    /// taken where the innermost loop is entered (`view_row_ptr`): a scalar loop along the
    /// last axis then does no index arithmetic for the outer axes at each element, which on
    /// the rank-5 and rank-6 views of poolings and convolutions cost more than the element's
    /// own work.
    pub(super) fn read_in_row(&mut self, op: &Operand, outer: &[Value], j: Value) -> Value {
        match op {
            Operand::Scalar(v) => *v,
            Operand::Lane(slot) => self.group.lanes[slot],
            Operand::View {
                slot,
                strides,
                first,
                ..
            } => {
                if let Some(&var) = self.fused.promoted.get(slot) {
                    return self.b.use_var(var);
                }
                let k = outer.len();
                let row = self.view_row_ptr(*slot, outer, &strides[..k], *first);
                let off = self.mul(j, strides[k]);
                let addr = self.elem_addr(row, off);
                self.b.ins().load(self.ty, flags(), addr, 0)
            }
            Operand::Inline { op, args, exponent } => {
                let xs: Vec<Value> = args.iter().map(|a| self.read_in_row(a, outer, j)).collect();
                self.scalar_op(op, &xs, *exponent)
            }
        }
    }

    /// The address of element `[outer.., j]` of a view of `slot` with strides `out` (one per
    /// axis) from element `first`, its row's address taken where the innermost loop is entered.
    pub(super) fn addr_in_row(
        &mut self,
        slot: u32,
        outer: &[Value],
        out: &[Value],
        first: Value,
        j: Value,
    ) -> Value {
        let k = outer.len();
        let row = self.view_row_ptr(slot, outer, &out[..k], first);
        let off = self.mul(j, out[k]);
        self.elem_addr(row, off)
    }

    pub(super) fn read(&mut self, op: &Operand, idx: &[Value]) -> Value {
        match op {
            Operand::Scalar(v) => *v,
            Operand::Inline { op, args, exponent } => {
                let xs: Vec<Value> = args.iter().map(|a| self.read(a, idx)).collect();
                self.scalar_op(op, &xs, *exponent)
            }
            Operand::View {
                slot,
                strides,
                first,
                ..
            } => {
                let off = self.dot(idx, strides);
                let off = self.add(off, *first);
                self.load_at(*slot, off)
            }
            Operand::Lane(slot) => self.group.lanes[slot],
        }
    }

    pub(super) fn fill(&mut self, slot: u32, shape: &Shape, v: f64) {
        let total = self.total(shape);
        let c = self.fconst(v);
        let mut done = self.iconst(0);
        if !self.fused.promoted.contains_key(&slot) {
            let (vty, lanes) = self.vector_type();
            let cv = self.float_const(vty, v);
            let n_vec = self.shr_imm(total, lanes.trailing_zeros() as i64);
            done = self.mul_imm(n_vec, lanes);
            self.for_loop_by(done, lanes, &mut |tx, i| {
                let base = tx.slot_ptr(slot);
                let addr = tx.elem_addr(base, i);
                tx.b.ins().store(flags(), cv, addr, 0);
            });
        }
        let rest = self.sub(total, done);
        self.for_loop(rest, &mut |tx, t| {
            let i = tx.add(done, t);
            tx.store_at(slot, i, c)
        });
    }

    /// `c < x ? c : x`: the minimum, and `x` when it is NaN. On vectors this is one `minps`
    /// or `minpd`, where `fmin`'s IEEE semantics (NaN from either side, −0 below +0) take seven
    /// instructions.
    pub(super) fn min_keep_nan(&mut self, c: Value, x: Value) -> Value {
        let lt = self.b.ins().fcmp(FloatCC::LessThan, c, x);
        self.choose(lt, c, x)
    }

    /// `x < c ? c : x`: the maximum, and `x` when it is NaN (one `maxps` or `maxpd`).
    pub(super) fn max_keep_nan(&mut self, c: Value, x: Value) -> Value {
        let lt = self.b.ins().fcmp(FloatCC::LessThan, x, c);
        self.choose(lt, c, x)
    }

    pub(super) fn is_finite(&mut self, x: Value) -> Value {
        // x − x is 0 for finite x and NaN for ±inf and NaN.
        let d = self.b.ins().fsub(x, x);
        let ty = self.value_type(x);
        let zero = self.float_const(ty, 0.0);
        self.b.ins().fcmp(FloatCC::Equal, d, zero)
    }

    /// 1 where `xs[0] cc xs[1]`, else 0.
    pub(super) fn scalar_truth(&mut self, cc: FloatCC, xs: &[Value]) -> Value {
        let (zero, one) = (self.fconst(0.0), self.fconst(1.0));
        let c = self.b.ins().fcmp(cc, xs[0], xs[1]);
        self.b.ins().select(c, one, zero)
    }

    pub(super) fn scalar_op(&mut self, op: &Op, xs: &[Value], exponent: Option<f64>) -> Value {
        match op {
            Op::Neg => self.b.ins().fneg(xs[0]),
            // Inside loops (a vector loop's scalar tail, a row's elements) the inline forms in
            // `math`: a call costs more than they do. Elsewhere (once per step) libm's
            // routines through a call keep the code, and its compile time, small.
            Op::Exp if self.in_loop() => self.exp_inline(xs[0]),
            Op::Log if self.in_loop() => self.log_inline(xs[0]),
            Op::Log1p if self.in_loop() => self.log1p_inline(xs[0]),
            Op::Sigmoid if self.in_loop() => self.sigmoid_inline(xs[0]),
            Op::Softplus if self.in_loop() => self.softplus_inline(xs[0]),
            Op::Erf if self.in_loop() => self.erf_inline(xs[0]),
            Op::Erfc if self.in_loop() => self.erfc_inline(xs[0]),
            Op::Exp => self.call(Math::Exp, &[xs[0]]),
            Op::Log => self.call(Math::Log, &[xs[0]]),
            Op::Sqrt => self.b.ins().sqrt(xs[0]),
            Op::Tanh if self.dtype == DType::F32 => self.tanh_f32(xs[0]),
            Op::Tanh => self.call(Math::Tanh, &[xs[0]]),
            Op::Sigmoid => self.call(Math::Sigmoid, &[xs[0]]),
            Op::Relu => {
                let zero = self.fconst(0.0);
                let neg = self.b.ins().fcmp(FloatCC::LessThan, xs[0], zero);
                self.b.ins().select(neg, zero, xs[0])
            }
            Op::Step => {
                let (zero, one) = (self.fconst(0.0), self.fconst(1.0));
                let pos = self.b.ins().fcmp(FloatCC::GreaterThan, xs[0], zero);
                self.b.ins().select(pos, one, zero)
            }
            Op::Add => self.b.ins().fadd(xs[0], xs[1]),
            Op::Sub => self.b.ins().fsub(xs[0], xs[1]),
            Op::Mul => self.b.ins().fmul(xs[0], xs[1]),
            Op::Div => self.b.ins().fdiv(xs[0], xs[1]),
            Op::Pow => match exponent {
                Some(3.0) => {
                    let square = self.b.ins().fmul(xs[0], xs[0]);
                    self.b.ins().fmul(square, xs[0])
                }
                Some(2.0) => self.b.ins().fmul(xs[0], xs[0]),
                Some(1.0) => xs[0],
                Some(0.5) => self.b.ins().sqrt(xs[0]),
                _ => self.call(Math::Pow, &[xs[0], xs[1]]),
            },
            Op::Log1p => self.call(Math::Log1p, &[xs[0]]),
            Op::Expm1 => self.call(Math::Expm1, &[xs[0]]),
            Op::Sin => self.call(Math::Sin, &[xs[0]]),
            Op::Cos => self.call(Math::Cos, &[xs[0]]),
            Op::Softplus => self.call(Math::Softplus, &[xs[0]]),
            Op::Erf => self.call(Math::Erf, &[xs[0]]),
            Op::Erfc => self.call(Math::Erfc, &[xs[0]]),
            Op::Abs => self.b.ins().fabs(xs[0]),
            Op::Sign => {
                let (zero, one) = (self.fconst(0.0), self.fconst(1.0));
                let minus = self.b.ins().fneg(one);
                let pos = self.b.ins().fcmp(FloatCC::GreaterThan, xs[0], zero);
                let neg = self.b.ins().fcmp(FloatCC::LessThan, xs[0], zero);
                // x·0 keeps 0, −0 and NaN as they are.
                let z = self.b.ins().fmul(xs[0], zero);
                let r = self.b.ins().select(neg, minus, z);
                self.b.ins().select(pos, one, r)
            }
            Op::Eq => self.scalar_truth(FloatCC::Equal, xs),
            Op::Ne => self.scalar_truth(FloatCC::NotEqual, xs),
            Op::Lt => self.scalar_truth(FloatCC::LessThan, xs),
            Op::Le => self.scalar_truth(FloatCC::LessThanOrEqual, xs),
            Op::Gt => self.scalar_truth(FloatCC::GreaterThan, xs),
            Op::Ge => self.scalar_truth(FloatCC::GreaterThanOrEqual, xs),
            Op::Max => {
                let c = self.b.ins().fcmp(FloatCC::GreaterThan, xs[1], xs[0]);
                self.b.ins().select(c, xs[1], xs[0])
            }
            Op::Min => {
                let c = self.b.ins().fcmp(FloatCC::LessThan, xs[1], xs[0]);
                self.b.ins().select(c, xs[1], xs[0])
            }
            Op::Select => {
                let zero = self.fconst(0.0);
                let c = self.b.ins().fcmp(FloatCC::NotEqual, xs[0], zero);
                self.b.ins().select(c, xs[1], xs[2])
            }
            other @ (Op::Input(_)
            | Op::Param(_)
            | Op::Const(_)
            | Op::DimSize(_)
            | Op::Iota(_)
            | Op::Literal(_)
            | Op::DropMask { .. }
            | Op::State(_)
            | Op::MatMul
            | Op::Transpose { .. }
            | Op::Sum { .. }
            | Op::LogSumExp { .. }
            | Op::ReduceMax { .. }
            | Op::ReduceMin { .. }
            | Op::ArgMax { .. }
            | Op::Take { .. }
            | Op::Put { .. }
            | Op::Gather { .. }
            | Op::ScatterAdd { .. }
            | Op::Windows { .. }
            | Op::Unwindows { .. }
            | Op::OneHot { .. }
            | Op::SumTo(_)
            | Op::Expand(_)
            | Op::Reshape(_)
            | Op::Slice { .. }
            | Op::Unslice { .. }) => unreachable!("`{}` is not elementwise", other.name()),
        }
    }

    // ---- optimizer update -----------------------------------------------------------------
}

pub(super) enum Operand {
    Scalar(Value),
    View {
        slot: u32,
        strides: Vec<Value>,
        /// How it moves along the loop's last axis, as the plan classified it.
        inner: Along,
        /// The element offset of the view's first element (a slice's; usually zero).
        first: Value,
    },
    /// A fused elementwise node, evaluated from its operands at each index.
    Inline {
        op: Op,
        args: Vec<Operand>,
        exponent: Option<f64>,
    },
    /// The current element of a loop-group member, held in a register.
    Lane(u32),
}

impl Operand {
    /// Whether the operand is read, not computed.
    pub(super) fn is_read(&self) -> bool {
        match self {
            Operand::Scalar(_) | Operand::View { .. } | Operand::Lane(_) => true,
            Operand::Inline { .. } => false,
        }
    }
}

/// How a loop runs, as the plan decides it (`Decision::vector`, `Decision::walk`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Run {
    /// Along the last axis in vectors, then a scalar tail.
    Vectors,
    /// Row by row, each operand's row address taken where the row's loop is entered.
    Rows,
    /// Element by element, each element's address from all its indices.
    Elements,
}
