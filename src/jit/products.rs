//! Matrix products: plain, batched (numpy's matmul, strided per batch) and matrix–vector, as
//! calls into the native kernels.

use super::*;

/// A product's operand: its slot, strides and the element offset of its first element (a
/// slice's: q, k and v read as column ranges of one projection).
fn product_operand(plan: &Plan, operand: NodeId) -> (u32, Vec<Stride>, Vec<Stride>) {
    match &plan.values[operand.index()] {
        Some(Val::View {
            slot,
            strides,
            offset,
        }) => (*slot, strides.clone(), offset.clone()),
        _ => unreachable!("matmul operands are views"),
    }
}

/// An operand or result as `batched_matmul` takes it: slot, strides, offset of the first
/// element.
pub(super) type Operand<'s> = (u32, &'s [Stride], &'s [Stride]);

impl<'a> Tx<'a> {
    /// The address of a product operand's first element: its slot's, moved by the view's
    /// offset when it has one.
    fn operand_ptr(&mut self, slot: u32, offset: &[Stride]) -> Value {
        let base = self.slot_ptr(slot);
        if offset.is_empty() {
            return base;
        }
        let first = self.view_offset(offset);
        self.elem_addr(base, first)
    }

    /// A product into `slot`, through the kernel whose sharing between cores the plan records
    /// (`lower::sharing`: the kernels apply its rule).
    pub(super) fn matmul(
        &mut self,
        g: &Graph,
        plan: &Plan,
        id: NodeId,
        slot: u32,
        sharing: &Sharing,
    ) {
        let node = g.node(id);
        let (a, b) = (node.inputs[0], node.inputs[1]);
        let (sa, stra, offa) = product_operand(plan, a);
        let (sb, strb, offb) = product_operand(plan, b);
        let (ash, bsh) = (g.shape(a).clone(), g.shape(b).clone());
        if crate::lower::writes_a_view(g, plan, id) {
            // Written into its reader's layout (`lower::destinations`): the batched kernel
            // takes any strides for C, with no batch axes for a plain product.
            let (_, strc, offc) = product_operand(plan, id);
            let (a, b) = ((sa, &stra[..], &offa[..]), (sb, &strb[..], &offb[..]));
            self.batched_matmul_into(g, a, b, id, (slot, &strc, &offc));
            return;
        }
        if MatMulParts::of(&ash, &bsh).is_batched() {
            debug_assert!(
                matches!(sharing, Sharing::Batches { .. } | Sharing::Blocks { .. }),
                "{sharing:?}"
            );
            self.batched_matmul(g, (sa, &stra, &offa), (sb, &strb, &offb), id, slot);
            return;
        }
        let zero = self.iconst(0);
        let one = self.iconst(1);
        if ash.rank() + bsh.rank() == 3 {
            debug_assert_eq!(sharing, &Sharing::MatrixVector);
            self.matvec(g, plan, id, slot, None, false);
            return;
        }
        debug_assert!(matches!(sharing, Sharing::Blocks { .. }), "{sharing:?}");
        // A vector on the left is a 1×k row; on the right a k×1 column.
        let (m, k, rsa, csa) = if ash.rank() == 2 {
            let (m, k) = (self.dim(ash.0[0]), self.dim(ash.0[1]));
            (m, k, self.stride(&stra[0]), self.stride(&stra[1]))
        } else {
            (one, self.dim(ash.0[0]), zero, self.stride(&stra[0]))
        };
        let (n, rsb, csb) = if bsh.rank() == 2 {
            (
                self.dim(bsh.0[1]),
                self.stride(&strb[0]),
                self.stride(&strb[1]),
            )
        } else {
            (one, self.stride(&strb[0]), zero)
        };
        // Output rows are n apart (a vector output is contiguous either way).
        let (rsc, csc) = if bsh.rank() == 2 {
            (n, one)
        } else {
            (one, one)
        };
        let pa = self.operand_ptr(sa, &offa);
        let pb = self.operand_ptr(sb, &offb);
        let pc = self.slot_ptr(slot);
        let f = match self.dtype {
            DType::F32 => self.helper(Helper::Gemm(DType::F32)),
            DType::F64 => self.helper(Helper::Gemm(DType::F64)),
        };
        self.b
            .ins()
            .call(f, &[m, k, n, pa, rsa, csa, pb, rsb, csb, pc, rsc, csc]);
    }

    /// numpy's `matmul` over batch axes: one call that runs the product of each batch index,
    /// every operand read through its view's strides (a transposed operand is its strides, a
    /// broadcast batch axis stride 0), described in a `BatchedProduct` on the stack. A vector
    /// operand is a row (left) or column (right), as in the unbatched product.
    pub(super) fn batched_matmul(
        &mut self,
        g: &Graph,
        a: Operand,
        b: Operand,
        id: NodeId,
        slot: u32,
    ) {
        let strc = crate::lower::contiguous(g.shape(id));
        self.batched_matmul_into(g, a, b, id, (slot, &strc, &[]));
    }

    /// The batched product `product` summed over the batch axes its reader `sum` sums (the
    /// plan's `summed_product`): the product written into the sum's slot through a view with
    /// stride 0 along the summed axes, which the kernel folds into the inner dimension.
    pub(super) fn summed_matmul(
        &mut self,
        g: &Graph,
        plan: &Plan,
        product: NodeId,
        sum: NodeId,
        slot: u32,
    ) {
        let node = g.node(product);
        let (sa, stra, offa) = product_operand(plan, node.inputs[0]);
        let (sb, strb, offb) = product_operand(plan, node.inputs[1]);
        let to = g.shape(sum);
        let strc =
            crate::lower::broadcast_strides(to, &crate::lower::contiguous(to), g.shape(product));
        let (a, b) = ((sa, &stra[..], &offa[..]), (sb, &strb[..], &offb[..]));
        self.batched_matmul_into(g, a, b, product, (slot, &strc, &[]));
    }

    /// `batched_matmul` with the result written through a view of `slot`.
    fn batched_matmul_into(
        &mut self,
        g: &Graph,
        (sa, stra, offa): Operand,
        (sb, strb, offb): Operand,
        id: NodeId,
        (slot, strc, offc): Operand,
    ) {
        let node = g.node(id);
        let (ash, bsh) = (g.shape(node.inputs[0]), g.shape(node.inputs[1]));
        let out = g.shape(id);
        let (ra, rb, ro) = (ash.rank(), bsh.rank(), out.rank());
        let zero = self.iconst(0);
        let one = self.iconst(1);
        let (m, rsa, csa) = if ra == 1 {
            (one, zero, self.stride(&stra[0]))
        } else {
            let m = self.dim(ash.0[ra - 2]);
            (m, self.stride(&stra[ra - 2]), self.stride(&stra[ra - 1]))
        };
        let k = self.dim(ash.0[ra - 1]);
        let (n, rsb, csb) = if rb == 1 {
            (one, self.stride(&strb[0]), zero)
        } else {
            let n = self.dim(bsh.0[rb - 1]);
            (n, self.stride(&strb[rb - 2]), self.stride(&strb[rb - 1]))
        };
        let (rsc, csc) = match (ra == 1, rb == 1) {
            (false, false) => (self.stride(&strc[ro - 2]), self.stride(&strc[ro - 1])),
            (false, true) => (self.stride(&strc[ro - 1]), zero),
            (true, false) => (zero, self.stride(&strc[ro - 1])),
            (true, true) => unreachable!("a product of two vectors has no batch axes"),
        };
        let batch = ro - usize::from(ra > 1) - usize::from(rb > 1);
        // An operand's stride along batch axis i of the result: 0 where it lacks the axis or
        // has it of length 1 (broadcast).
        let batch_stride = |tx: &mut Self, shape: &Shape, strides: &[Stride], i: usize| {
            match MatMulParts::operand_axis(shape, batch, i) {
                Some(j) => tx.stride(&strides[j]),
                None => zero,
            }
        };
        let word = 8;
        let header = std::mem::size_of::<helpers::BatchedProduct>();
        let axis_size = std::mem::size_of::<crate::kernels::gemm::BatchAxis>();
        let desc = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            (header + batch * axis_size) as u32,
            3,
        ));
        let put = |tx: &mut Self, offset: usize, v: Value| {
            tx.b.ins().stack_store(types::I64, v, desc, offset as i32);
        };
        use helpers::BatchedProduct as P;
        let rank = self.iconst(batch as i64);
        put(self, std::mem::offset_of!(P, rank), rank);
        put(self, std::mem::offset_of!(P, m), m);
        put(self, std::mem::offset_of!(P, k), k);
        put(self, std::mem::offset_of!(P, n), n);
        for (field, [r, c]) in [
            (std::mem::offset_of!(P, sa), [rsa, csa]),
            (std::mem::offset_of!(P, sb), [rsb, csb]),
            (std::mem::offset_of!(P, sc), [rsc, csc]),
        ] {
            put(self, field, r);
            put(self, field + word, c);
        }
        use crate::kernels::gemm::BatchAxis as X;
        for i in 0..batch {
            let at = header + i * axis_size;
            let len = self.dim(out.0[i]);
            let sai = batch_stride(self, ash, stra, i);
            let sbi = batch_stride(self, bsh, strb, i);
            let sci = self.stride(&strc[i]);
            put(self, at + std::mem::offset_of!(X, len), len);
            let strides = at + std::mem::offset_of!(X, strides);
            for (j, v) in [sai, sbi, sci].into_iter().enumerate() {
                put(self, strides + j * word, v);
            }
        }
        let desc = self.b.ins().stack_addr(types::I64, desc, 0);
        let (pa, pb) = (self.operand_ptr(sa, offa), self.operand_ptr(sb, offb));
        let pc = self.operand_ptr(slot, offc);
        let f = match self.dtype {
            DType::F32 => self.helper(Helper::BatchedGemm(DType::F32)),
            DType::F64 => self.helper(Helper::BatchedGemm(DType::F64)),
        };
        self.b.ins().call(f, &[desc, pa, pb, pc]);
    }

    /// Matrix·vector, or vector·matrix as the transposed matrix times the vector. With `rows =
    /// (lo, len)` only part of the product runs: for a matrix m×n with n the rows of a blocked
    /// loop group, either output rows lo..lo+len (the product before the group, m = rows) or
    /// the columns lo..lo+len of the sum (the product after it); `acc` adds to the output.
    pub(super) fn matvec(
        &mut self,
        g: &Graph,
        plan: &Plan,
        id: NodeId,
        slot: u32,
        rows: Option<(Value, Value)>,
        acc: bool,
    ) {
        let node = g.node(id);
        let (a, b) = (node.inputs[0], node.inputs[1]);
        let (sa, stra, offa) = product_operand(plan, a);
        let (sb, strb, offb) = product_operand(plan, b);
        let (ash, bsh) = (g.shape(a).clone(), g.shape(b).clone());
        let (mat, msh, mstr, moff, vec, vstr, voff, transposed) = if ash.rank() == 2 {
            (sa, &ash, &stra, &offa, sb, &strb, &offb, false)
        } else {
            (sb, &bsh, &strb, &offb, sa, &stra, &offa, true)
        };
        let (r0, r1) = (self.dim(msh.0[0]), self.dim(msh.0[1]));
        let (s0, s1) = (self.stride(&mstr[0]), self.stride(&mstr[1]));
        let (mut m, mut k, rs, cs) = if transposed {
            (r1, r0, s1, s0)
        } else {
            (r0, r1, s0, s1)
        };
        let inc = self.stride(&vstr[0]);
        let (mut pm, mut pv) = (self.operand_ptr(mat, moff), self.operand_ptr(vec, voff));
        let mut py = self.slot_ptr(slot);
        if let Some((lo, len)) = rows {
            // Before the group the block is of output rows; after it (accumulating), of the
            // summed-over columns.
            if !acc {
                let off = self.mul(lo, rs);
                pm = self.elem_addr(pm, off);
                py = self.elem_addr(py, lo);
                m = len;
            } else {
                let off = self.mul(lo, cs);
                pm = self.elem_addr(pm, off);
                let voff = self.mul(lo, inc);
                pv = self.elem_addr(pv, voff);
                k = len;
            }
        }
        let f = match self.dtype {
            DType::F32 => self.helper(Helper::Gemv(DType::F32)),
            DType::F64 => self.helper(Helper::Gemv(DType::F64)),
        };
        let acc = self.iconst(acc as i64);
        self.b.ins().call(f, &[m, k, pm, rs, cs, pv, inc, py, acc]);
    }
}
