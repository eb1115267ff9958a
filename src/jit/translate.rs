//! The plan translator: each step of a plan becomes code, each node is computed into its slot
//! (or held in a register when it is a scalar).

use super::*;
use crate::lower::vectorize::pairs_of_places;

impl<'a> Tx<'a> {
    /// One step, run as the plan's `decision` for it says (vectorized or not, in parts or not).
    pub(super) fn step(&mut self, g: &Graph, plan: &Plan, step: &Step, decision: &Decision) {
        if self.outlined_step(g, plan, step, decision) {
            return;
        }
        match step {
            Step::Copy {
                src,
                src_shape,
                slot,
            } => {
                let shape = plan.slots[*slot as usize].shape.clone();
                let src = self.operand(g, plan, src, src_shape, shape.rank());
                let run = self.run_of(decision);
                let src = std::slice::from_ref(&src);
                self.elementwise_loop(&shape, *slot, src, run, &|_, xs, _| xs[0]);
            }
            Step::Compute { node, slot, aux } => {
                self.compute(g, plan, *node, *slot, *aux, decision)
            }
            Step::Group {
                shape,
                members,
                blocked,
            } => {
                let parts = decision
                    .parts
                    .as_ref()
                    .expect("the plan splits or not every group");
                let vector = self.vectorized(decision);
                self.group(g, plan, shape, members, blocked.as_ref(), parts, vector)
            }
            Step::Scalar { node } => {
                let n = g.node(*node);
                let args: Vec<Operand> = (0..n.inputs.len())
                    .map(|k| self.arg(g, plan, *node, k, 0))
                    .collect();
                let xs: Vec<Value> = args.iter().map(|a| self.read(a, &[])).collect();
                let exponent = if n.op == Op::Pow {
                    g.const_value(n.inputs[1])
                } else {
                    None
                };
                let v = self.scalar_op(&n.op.clone(), &xs, exponent);
                self.hold_scalar(*node, v);
            }
        }
    }

    /// Keeps a scalar node's value for the steps that read it: in a register, or in a bounded
    /// function also in a stack slot of its own, for readers further away (`scalar_node`).
    pub(super) fn hold_scalar(&mut self, node: NodeId, v: Value) {
        self.held.steps += 1;
        if !self.bounded {
            self.held.regs.insert(node, v);
            return;
        }
        let size = self.dtype.size() as u32;
        let slot = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            size,
            size.trailing_zeros() as u8,
        ));
        self.b.ins().stack_store(types::I64, v, slot, 0);
        self.held.spilled.insert(node, (v, self.held.steps, slot));
    }

    /// The value of a scalar node. In a bounded function, a reader within `NEAR_STEPS` scalar
    /// steps of the node uses its register (the steps are straight-line code of one block
    /// chain, so the definition dominates the reader); one further away loads it, so that no
    /// register is held across more than a bounded stretch of code.
    pub(super) fn scalar_node(&mut self, node: NodeId) -> Value {
        if let Some(&v) = self.held.regs.get(&node) {
            return v;
        }
        if let Some(&(v, at, slot)) = self.held.spilled.get(&node) {
            if self.held.steps - at < NEAR_STEPS {
                return v;
            }
            return self.b.ins().stack_load(types::I64, self.ty, slot, 0);
        }
        // An outlined step reads its caller's scalars from its frame.
        let v = self
            .captured_scalar(node)
            .expect("a scalar node is held before it is read");
        self.held.regs.insert(node, v);
        v
    }

    /// An elementwise node as an expression over its operands, read at each index of a loop
    /// of rank `rank`. A division the plan names in `reciprocal` becomes multiplication by the
    /// divisor's reciprocal, computed once before the loop.
    pub(super) fn node_expr(&mut self, g: &Graph, plan: &Plan, id: NodeId, rank: usize) -> Operand {
        let node = g.node(id);
        let mut args: Vec<Operand> = (0..node.inputs.len())
            .map(|k| self.arg(g, plan, id, k, rank))
            .collect();
        let exponent = if node.op == Op::Pow {
            g.const_value(node.inputs[1])
        } else {
            None
        };
        let mut op = node.op.clone();
        if plan.reciprocal.contains(&id) {
            let Operand::Scalar(d) = args[1] else {
                unreachable!("a divisor fixed for the loop is a scalar operand")
            };
            let one = self.fconst(1.0);
            args[1] = Operand::Scalar(self.b.ins().fdiv(one, d));
            op = Op::Mul;
        }
        debug_assert!(
            op != Op::Div || rank == 0 || !matches!(args[1], Operand::Scalar(_)),
            "the plan names every division by a loop invariant"
        );
        Operand::Inline { op, args, exponent }
    }

    pub(super) fn arg(
        &mut self,
        g: &Graph,
        plan: &Plan,
        node: NodeId,
        k: usize,
        rank: usize,
    ) -> Operand {
        let a = g.node(node).inputs[k];
        let val = plan.values[a.index()].clone().expect("operand planned");
        self.operand(g, plan, &val, g.shape(a), rank)
    }

    pub(super) fn compute(
        &mut self,
        g: &Graph,
        plan: &Plan,
        id: NodeId,
        slot: u32,
        aux: Option<u32>,
        decision: &Decision,
    ) {
        let node = g.node(id).clone();
        let shape = node.shape.clone();
        let rank = shape.rank();
        match &node.op {
            Op::Neg
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
            | Op::Select => {
                // The node's own op joins the vector check through a one-node inline operand.
                let whole = self.node_expr(g, plan, id, rank);
                let run = self.run_of(decision);
                let whole = std::slice::from_ref(&whole);
                self.elementwise_loop(&shape, slot, whole, run, &|_, xs, _| xs[0]);
            }
            Op::SumTo(_) if crate::lower::summed_product(g, &plan.values, id).is_some() => {
                // One product over the summed axes, batched over any others.
                debug_assert!(
                    matches!(
                        decision.sharing,
                        Some(Sharing::Blocks { .. } | Sharing::Batches { .. })
                    ),
                    "the plan shares a summed product as a product"
                );
                self.summed_matmul(g, plan, node.inputs[0], id, slot);
            }
            Op::Sum { .. } | Op::SumTo(_) => {
                let x = node.inputs[0];
                let xshape = g.shape(x).clone();
                let src = self.arg(g, plan, id, 0, xshape.rank());
                let out = self.reduction_strides(&node.op, &shape, &xshape);
                let (out_strides, last_reduced) =
                    (out.strides, out.last_axis_reduced || xshape.rank() == 0);
                self.fill(slot, &shape, 0.0);
                let run = self.run_of(decision);
                debug_assert_ne!(run, Run::Rows, "a sum's loop has no row-by-row form");
                let sum = SumLoop {
                    src: &src,
                    xshape: &xshape,
                    out_strides: &out_strides,
                    last_reduced,
                    slot,
                    vector: run == Run::Vectors,
                };
                match decision.blocks {
                    Some(blocks) => self.blocked_sum(&sum, &shape, blocks),
                    None => self.sum_loop(&sum, None),
                }
            }
            // Planned without a scratch slot: over the last axis.
            Op::LogSumExp { .. } if aux.is_none() => {
                let xshape = g.shape(node.inputs[0]).clone();
                let src = self.arg(g, plan, id, 0, xshape.rank());
                let rows = self.rows_in_lanes(decision);
                self.row_logsumexp(&src, &xshape, slot, rows);
            }
            Op::LogSumExp { .. } => {
                let aux = aux.expect("logsumexp has a scratch slot");
                let xshape = g.shape(node.inputs[0]).clone();
                let src = self.arg(g, plan, id, 0, xshape.rank());
                let out_strides = self.reduction_strides(&node.op, &shape, &xshape).strides;
                let sizes = self.sizes(&xshape);
                self.fill(slot, &shape, f64::NEG_INFINITY);
                self.fill(aux, &shape, 0.0);
                self.nest(&sizes, &mut |tx, idx| {
                    let v = tx.read(&src, idx);
                    let o = tx.dot(idx, &out_strides);
                    let m = tx.load_at(slot, o);
                    let gt = tx.b.ins().fcmp(FloatCC::GreaterThan, v, m);
                    let nm = tx.b.ins().select(gt, v, m);
                    tx.store_at(slot, o, nm);
                });
                self.nest(&sizes, &mut |tx, idx| {
                    let v = tx.read(&src, idx);
                    let o = tx.dot(idx, &out_strides);
                    let m = tx.load_at(slot, o);
                    let finite = tx.is_finite(m);
                    let d = tx.b.ins().fsub(v, m);
                    let e = tx.call(Math::Exp, &[d]);
                    let zero = tx.fconst(0.0);
                    let e = tx.b.ins().select(finite, e, zero);
                    let s = tx.load_at(aux, o);
                    let s = tx.b.ins().fadd(s, e);
                    tx.store_at(aux, o, s);
                });
                let total = self.total(&shape);
                self.for_loop(total, &mut |tx, i| {
                    let m = tx.load_at(slot, i);
                    let s = tx.load_at(aux, i);
                    let l = tx.call(Math::Log, &[s]);
                    let r = tx.b.ins().fadd(m, l);
                    let finite = tx.is_finite(m);
                    let r = tx.b.ins().select(finite, r, m);
                    tx.store_at(slot, i, r);
                });
            }
            Op::ArgMax { axis } => {
                let best = aux.expect("argmax has a scratch slot");
                let xshape = g.shape(node.inputs[0]).clone();
                let src = self.arg(g, plan, id, 0, xshape.rank());
                let out_strides = self.reduction_strides(&node.op, &shape, &xshape).strides;
                let sizes = self.sizes(&xshape);
                self.fill(best, &shape, f64::NEG_INFINITY);
                self.fill(slot, &shape, 0.0);
                let axis = *axis as usize;
                self.nest(&sizes, &mut |tx, idx| {
                    let v = tx.read(&src, idx);
                    let o = tx.dot(idx, &out_strides);
                    let m = tx.load_at(best, o);
                    let gt = tx.b.ins().fcmp(FloatCC::GreaterThan, v, m);
                    let nm = tx.b.ins().select(gt, v, m);
                    tx.store_at(best, o, nm);
                    let k = tx.b.ins().fcvt_from_sint(tx.ty, idx[axis]);
                    let cur = tx.load_at(slot, o);
                    let ni = tx.b.ins().select(gt, k, cur);
                    tx.store_at(slot, o, ni);
                });
            }
            Op::OneHot { classes } => {
                let xshape = g.shape(node.inputs[0]).clone();
                let src = self.arg(g, plan, id, 0, xshape.rank());
                self.fill(slot, &shape, 0.0);
                let xs = self.contiguous_strides(&xshape);
                let k = *classes as i64;
                let sizes = self.sizes(&xshape);
                self.nest(&sizes, &mut |tx, idx| {
                    let v = tx.read(&src, idx);
                    let row = tx.dot(idx, &xs);
                    let zero = tx.fconst(0.0);
                    let kf = tx.fconst(k as f64);
                    let ge = tx.b.ins().fcmp(FloatCC::GreaterThanOrEqual, v, zero);
                    let lt = tx.b.ins().fcmp(FloatCC::LessThan, v, kf);
                    let fl = tx.b.ins().floor(v);
                    let whole = tx.b.ins().fcmp(FloatCC::Equal, fl, v);
                    let ok = tx.b.ins().band(ge, lt);
                    let ok = tx.b.ins().band(ok, whole);
                    tx.if_then(ok, &mut |tx| {
                        let c = tx.b.ins().fcvt_to_sint_sat(types::I64, v);
                        let base = tx.mul_imm(row, k);
                        let o = tx.add(base, c);
                        let one = tx.fconst(1.0);
                        tx.store_at(slot, o, one);
                    });
                });
            }
            Op::ReduceMax { .. } | Op::ReduceMin { .. } => {
                let xshape = g.shape(node.inputs[0]).clone();
                let src = self.arg(g, plan, id, 0, xshape.rank());
                let out = self.reduction_strides(&node.op, &shape, &xshape);
                let is_max = matches!(node.op, Op::ReduceMax { .. });
                self.fill(
                    slot,
                    &shape,
                    if is_max {
                        f64::NEG_INFINITY
                    } else {
                        f64::INFINITY
                    },
                );
                let better = if is_max {
                    FloatCC::GreaterThan
                } else {
                    FloatCC::LessThan
                };
                let run = self.run_of(decision);
                self.extremum_loop(&src, &xshape, &out, better, slot, run);
            }
            Op::Take { axis, index } => {
                // Iterate over the output; read the source with the taken index inserted.
                let a = node.inputs[0];
                let Val::View {
                    slot: src,
                    strides,
                    offset,
                } = plan.values[a.index()].clone().unwrap()
                else {
                    unreachable!("take reads a view")
                };
                let st: Vec<Value> = strides.iter().map(|s| self.stride(s)).collect();
                let base = {
                    let i = self.iconst(*index as i64);
                    let at = self.mul(i, st[*axis as usize]);
                    let first = self.view_offset(&offset);
                    self.add(at, first)
                };
                let mut kept = st.clone();
                kept.remove(*axis as usize);
                let sizes = self.sizes(&shape);
                let out = self.contiguous_strides(&shape);
                self.nest(&sizes, &mut |tx, idx| {
                    let off = tx.dot(idx, &kept);
                    let off = tx.add(off, base);
                    let v = tx.load_at(src, off);
                    let o = tx.dot(idx, &out);
                    tx.store_at(slot, o, v);
                });
            }
            Op::Put { axis, index, .. } => {
                let xshape = g.shape(node.inputs[0]).clone();
                let src = self.arg(g, plan, id, 0, xshape.rank());
                self.fill(slot, &shape, 0.0);
                let mut out = self.contiguous_strides(&shape);
                let i = self.iconst(*index as i64);
                let base = self.mul(i, out[*axis as usize]);
                out.remove(*axis as usize);
                let sizes = self.sizes(&xshape);
                self.nest(&sizes, &mut |tx, idx| {
                    let v = tx.read(&src, idx);
                    let o = tx.dot(idx, &out);
                    let o = tx.add(o, base);
                    tx.store_at(slot, o, v);
                });
            }
            Op::Gather { axis } => {
                let a = *axis as usize;
                let rows = g.shape(node.inputs[0]).0[a];
                let helper = Helper::Gather(self.dtype);
                self.indexing(g, plan, id, slot, helper, (a, rows, a + 1));
            }
            Op::ScatterAdd { axis, size } => {
                let (a, r) = (*axis as usize, g.shape(node.inputs[1]).rank());
                let helper = Helper::ScatterAdd(self.dtype);
                self.indexing(g, plan, id, slot, helper, (a, Dim::Fixed(*size), a + r));
            }
            Op::Windows { .. } => unreachable!("`windows` is a view, not computed"),
            Op::Unwindows {
                kernel,
                stride,
                dilation,
                ..
            } => {
                // Zeros, then each patch element added into its place, in the patches' order:
                // places that several windows read sum in the same order on any thread count.
                let xshape = g.shape(node.inputs[0]).clone();
                let src = self.arg(g, plan, id, 0, xshape.rank());
                self.fill(slot, &shape, 0.0);
                let out = self.contiguous_strides(&shape);
                let lead = rank - kernel.len();
                let mut to = out[..lead].to_vec();
                for (i, &d) in dilation.iter().enumerate() {
                    to.push(self.mul_imm(out[lead + i], d as i64));
                }
                for (i, &s) in stride.iter().enumerate() {
                    to.push(self.mul_imm(out[lead + i], s as i64));
                }
                let run = self.run_of(decision);
                if run == Run::Vectors && pairs_of_places(kernel, stride, dilation) {
                    self.add_patch_pairs(&src, &xshape, &to, slot, rank - 1);
                } else {
                    self.add_patches(&src, &xshape, &to, slot, run);
                }
            }
            Op::MatMul => {
                let sharing = decision.sharing.as_ref();
                self.matmul(
                    g,
                    plan,
                    id,
                    slot,
                    sharing.expect("the plan shares every product"),
                )
            }
            Op::Unslice {
                axis, start, step, ..
            } => {
                // Zeros, then the operand written over its place.
                let xshape = g.shape(node.inputs[0]).clone();
                let src = self.arg(g, plan, id, 0, xshape.rank());
                self.fill(slot, &shape, 0.0);
                let mut out = self.contiguous_strides(&shape);
                let a = *axis as usize;
                let start = self.iconst(*start as i64);
                let first = self.mul(start, out[a]);
                out[a] = self.mul_imm(out[a], *step);
                let src = std::slice::from_ref(&src);
                let run = self.run_of(decision);
                let f = &|_: &mut Self, xs: &[Value], _| xs[0];
                self.elementwise_loop_into(&xshape, slot, &out, first, src, run, f);
            }
            Op::Iota(_) => {
                let total = self.total(&shape);
                self.for_loop(total, &mut |tx, i| {
                    let v = tx.b.ins().fcvt_from_sint(tx.ty, i);
                    tx.store_at(slot, i, v);
                });
            }
            Op::DropMask { p, site, .. } => self.drop_mask(&shape, f64::from_bits(*p), *site, slot),
            Op::Literal(data) => {
                // The elements in a buffer kept with the code, copied by a loop: with a store
                // per element in the code, most of a 4,096-number literal's compile time was
                // Cranelift's.
                let bytes: Vec<u8> = match self.dtype {
                    DType::F32 => data
                        .values()
                        .flat_map(|v| (v as f32).to_ne_bytes())
                        .collect(),
                    DType::F64 => data.values().flat_map(f64::to_ne_bytes).collect(),
                };
                let words: Vec<u128> = bytes
                    .chunks(16)
                    .map(|chunk| {
                        let mut word = [0u8; 16];
                        word[..chunk.len()].copy_from_slice(chunk);
                        u128::from_ne_bytes(word)
                    })
                    .collect();
                // The buffer's heap address stays put when the vector moves into the pools.
                let base = self.address(words.as_ptr() as i64);
                self.pool.literals.push(words);
                let total = self.total(&shape);
                let readonly = flags().with_readonly();
                self.for_loop(total, &mut |tx, i| {
                    let addr = tx.elem_addr(base, i);
                    let v = tx.b.ins().load(tx.ty, readonly, addr, 0);
                    tx.store_at(slot, i, v);
                });
            }
            other @ (Op::Input(_)
            | Op::Param(_)
            | Op::State(_)
            | Op::Const(_)
            | Op::DimSize(_)
            | Op::Transpose { .. }
            | Op::Expand(_)
            | Op::Reshape(_)
            | Op::Slice { .. }) => {
                unreachable!("`{}` is a view or a leaf, not computed", other.name())
            }
        }
    }

    /// A gather or a scatter-add: one call of its kernel (`kernels::gather`), which copies or
    /// adds whole rows along the contiguous axis and checks every index against the axis.
    /// Lowering gives both operands contiguous slots. `axes` places the indexed axis in the
    /// first operand: where it is, its length, and where the axes after it start.
    pub(super) fn indexing(
        &mut self,
        g: &Graph,
        plan: &Plan,
        id: NodeId,
        slot: u32,
        helper: Helper,
        axes: (usize, Dim, usize),
    ) {
        let node = g.node(id);
        let (x, idx) = (node.inputs[0], node.inputs[1]);
        let view = |v: &Option<Val>| match v {
            Some(Val::View { slot, offset, .. }) if offset.is_empty() => *slot,
            _ => unreachable!("the operands of a gather are views from their slot's start"),
        };
        let (sx, si) = (
            view(&plan.values[x.index()]),
            view(&plan.values[idx.index()]),
        );
        let xshape = g.shape(x).0.clone();
        let count = g.shape(idx).0.clone();
        // The array indexed is `outer × rows × inner` around the axis; the other has the
        // indices' axes in the axis's place.
        let (axis, rows, after) = axes;
        let outer = self.stride(&Stride::Prod(xshape[..axis].to_vec()));
        let rows = self.dim(rows);
        let count = self.stride(&Stride::Prod(count));
        let inner = self.stride(&Stride::Prod(xshape[after..].to_vec()));
        let (px, pi, po) = (self.slot_ptr(sx), self.slot_ptr(si), self.slot_ptr(slot));
        let f = self.helper(helper);
        self.b
            .ins()
            .call(f, &[px, pi, po, outer, rows, count, inner]);
    }
}

impl Tx<'_> {
    /// A dropout mask into `slot`: each element from the step's key, the call's site and its
    /// flat index alone (`ir::dropout::mask`, the reference), so any part of the loop computes
    /// the same bits and a resumed run draws the same masks.
    fn drop_mask(&mut self, shape: &Shape, p: f64, site: u32, slot: u32) {
        use crate::ir::dropout::{GAMMA, SITE_MULTIPLIER, scale, threshold};
        let step = self.step_key();
        let salt = self.iconst((u64::from(site) + 1).wrapping_mul(SITE_MULTIPLIER) as i64);
        let keyed = self.b.ins().bxor(step, salt);
        let key = self.mix64(keyed);
        let limit = self.iconst(threshold(p) as i64);
        let gamma = self.iconst(GAMMA as i64);
        let kept = self.fconst(scale(p));
        let zero = self.fconst(0.0);
        let total = self.total(shape);
        self.for_loop(total, &mut |tx, i| {
            let counter = tx.b.ins().iadd_imm_s(i, 1);
            let step = tx.b.ins().imul(counter, gamma);
            let z = tx.b.ins().iadd(key, step);
            let bits = tx.mix64(z);
            let high = tx.b.ins().ushr_imm_u(bits, 32);
            let keep =
                tx.b.ins()
                    .icmp(IntCC::UnsignedGreaterThanOrEqual, high, limit);
            let v = tx.b.ins().select(keep, kept, zero);
            tx.store_at(slot, i, v);
        });
    }
}
