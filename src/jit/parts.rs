//! Parallel parts: a loop group split between cores. The group's body becomes a function of its
//! own, run by the worker pool on a frame of captured values, with per-part sums added in order.

use super::*;

impl<'a> Tx<'a> {
    /// The frame of a loop group the plan splits between cores (`lower::parts`), or `None`
    /// when it stays one loop: the plan runs it whole, or this is the fused training loop and
    /// an element it stores lives in a register here (the plan names those slots).
    pub(super) fn part_frame(
        &self,
        g: &Graph,
        plan: &Plan,
        loop_: &GroupLoop,
        parts: &Parts,
    ) -> Option<PartFrame> {
        let &GroupLoop {
            members, blocked, ..
        } = loop_;
        let held = match parts {
            Parts::One(_) => return None,
            Parts::Split { held, .. } => held,
        };
        debug_assert!(
            self.names_held_slots(loop_, held),
            "the plan names the stored slots the fused loop holds in registers"
        );
        if held.iter().any(|s| self.fused.promoted.contains_key(s)) {
            return None;
        }
        let mut summed: Vec<(u32, &Shape)> = Vec::new();
        for m in members {
            match m.kind {
                MemberKind::Sum | MemberKind::ColumnSum => summed.push((m.slot, g.shape(m.node))),
                // Each part writes its own rows' totals.
                MemberKind::Elementwise | MemberKind::RowSum => {}
            }
        }
        if let Some(rb) = blocked {
            summed.push((rb.after.1, g.shape(rb.after.0)));
        }
        let size = self.dtype.size() as i64;
        let mut partials = Vec::new();
        let mut part_bytes = 0i64;
        for (slot, sh) in summed {
            let elements = sh
                .fixed_elements()
                .expect("the plan splits loops with fixed sums") as i64;
            partials.push((slot, elements, part_bytes));
            // 16-byte aligned, so vector loads and stores of a row stay within one line pair.
            part_bytes += (elements * size + 15) & !15;
        }
        debug_assert!(
            part_bytes * parallel::MAX_PARTS as i64 <= crate::lower::parts::MAX_PARTIAL_BYTES
        );
        let mut regs: Vec<NodeId> = self.held.regs.keys().copied().collect();
        regs.extend(self.spilled_reads(g, plan, members));
        regs.sort_unstable();
        let mut promoted: Vec<u32> = self
            .fused
            .promoted
            .keys()
            .copied()
            .filter(|s| !partials.iter().any(|p| p.0 == *s))
            .collect();
        promoted.sort_unstable();
        Some(PartFrame {
            regs,
            promoted,
            partials,
            part_bytes,
        })
    }

    /// Whether `held` names exactly the slots a loop group stores (elements, row totals, its
    /// first product's rows) that this function holds in registers: in the fused training loop
    /// those the plan found (`lower::parts::fused_registers`), elsewhere none.
    fn names_held_slots(&self, loop_: &GroupLoop, held: &[u32]) -> bool {
        let mut stored = loop_
            .members
            .iter()
            .filter(|m| m.stored && matches!(m.kind, MemberKind::Elementwise | MemberKind::RowSum))
            .map(|m| m.slot)
            .chain(loop_.blocked.map(|rb| rb.before.1));
        let fused = !self.fused.promoted.is_empty();
        stored.all(|s| self.fused.promoted.contains_key(&s) == (fused && held.contains(&s)))
    }

    /// Runs a loop group split between cores: the loop becomes a function over a range of its
    /// outer axis (`build_part`), called through `parallel::run_parts` with a frame on this
    /// function's stack that holds the tables, the registers the loop reads, and one area per
    /// part for the sums it writes. The parts' sums are then added here, in part order.
    pub(super) fn parallel_group(
        &mut self,
        g: &Graph,
        plan: &Plan,
        loop_: &GroupLoop,
        parts: &Parts,
        frame: &PartFrame,
    ) {
        let &GroupLoop { shape, blocked, .. } = loop_;
        let Parts::Split { rule, .. } = parts else {
            unreachable!("a frame is made only for a loop the plan splits")
        };
        let first_scalar = frame.regs.len() + frame.promoted.len();
        let entry = PartEntry::Frame { first_scalar };
        let part = self.build_part(entry, &mut |tx, base, lo, hi, index| {
            for (k, id) in frame.regs.iter().enumerate() {
                let v =
                    tx.b.ins()
                        .load(tx.ty, flags(), base, PartFrame::capture_at(k));
                tx.held.regs.insert(*id, v);
            }
            for (k, &s) in frame.promoted.iter().enumerate() {
                let at = PartFrame::capture_at(frame.regs.len() + k);
                let v = tx.b.ins().load(tx.ty, flags(), base, at);
                let var = tx.b.declare_var(tx.ty);
                tx.b.def_var(var, v);
                tx.fused.promoted.insert(s, var);
            }
            let stride = tx.iconst(frame.part_bytes);
            let off = tx.b.ins().imul(index, stride);
            let area = tx.add(base, off);
            let area = tx.add_imm(area, frame.partial_base());
            for &(slot, _, offset) in &frame.partials {
                let p = tx.add_imm(area, offset);
                tx.part.overrides.insert(slot, p);
            }
            tx.group_over(g, plan, loop_, Some((lo, hi)));
        });
        let Some(part) = part else { return };
        let mut captured = Vec::with_capacity(frame.regs.len() + frame.promoted.len());
        for id in &frame.regs {
            captured.push(self.scalar_node(*id));
        }
        for s in &frame.promoted {
            captured.push(self.b.use_var(self.fused.promoted[s]));
        }
        let bytes = frame.partial_base() + frame.part_bytes * parallel::MAX_PARTS as i64;
        let base = self.frame_with(&captured, bytes, &part);
        let sizes = self.sizes(shape);
        // The items and work of the plan's rule, which `run_parts` cuts with `parts_for`.
        debug_assert_eq!(
            rule.axis, shape.0[0],
            "a split loop's parts run along its outer axis"
        );
        let (items, work) = match rule.block {
            1 => {
                debug_assert!(blocked.is_none() && rule.work == shape.0[1..]);
                let mut work = self.iconst(1);
                for &d in &sizes[1..] {
                    work = self.mul(work, d);
                }
                (sizes[0], work)
            }
            block => {
                debug_assert!(blocked.is_some() && block == crate::lower::ROW_BLOCK);
                let n = self.row_blocks(sizes[0]);
                let [crate::ir::Dim::Fixed(work)] = rule.work[..] else {
                    unreachable!("a row block's work is fixed")
                };
                (n, self.iconst(work as i64))
            }
        };
        let parts = self.run_parts(part.id, base, items, work);
        let size = self.dtype.size() as i64;
        let first = self.add_imm(base, frame.partial_base());
        let stride = self.iconst(frame.part_bytes);
        for &(slot, elements, offset) in &frame.partials {
            let n = self.iconst(elements);
            self.for_loop(n, &mut |tx, i| {
                let acc = tx.b.declare_var(tx.ty);
                let zero = tx.fconst(0.0);
                tx.b.def_var(acc, zero);
                let at = tx.mul_imm(i, size);
                let at = tx.add_imm(at, offset);
                let row = tx.add(first, at);
                tx.for_loop(parts, &mut |tx, p| {
                    let off = tx.mul(p, stride);
                    let addr = tx.add(row, off);
                    let v = tx.b.ins().load(tx.ty, flags(), addr, 0);
                    let a = tx.b.use_var(acc);
                    let a = tx.b.ins().fadd(a, v);
                    tx.b.def_var(acc, a);
                });
                let total = tx.b.use_var(acc);
                tx.store_at(slot, i, total);
            });
        }
    }

    /// A frame of at least `bytes` on this function's stack for a part (`PartFrame`): the
    /// three tables, the address of the part's list of slots, then `captured` and the scalars
    /// the part reads. Returns its address.
    pub(super) fn frame_with(&mut self, captured: &[Value], bytes: i64, part: &BuiltPart) -> Value {
        let reads = &part.reads;
        debug_assert!(
            matches!(reads.entry, PartEntry::Frame { first_scalar } if first_scalar == captured.len())
        );
        let end = PartFrame::capture_at(captured.len() + reads.scalars.len()) as i64;
        let slot = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            bytes.max(end) as u32,
            4,
        ));
        let base = self.b.ins().stack_addr(types::I64, slot, 0);
        let list = self.slot_list(&reads.slots);
        let tables = [
            self.tables.ptrs,
            self.tables.dims,
            self.tables.scalars,
            list,
        ];
        for (k, v) in tables.into_iter().enumerate() {
            self.b.ins().store(flags(), v, base, 8 * k as i32);
        }
        let scalars: Vec<Value> = reads.scalars.iter().map(|&n| self.scalar_node(n)).collect();
        for (k, &v) in captured.iter().chain(&scalars).enumerate() {
            self.b
                .ins()
                .store(flags(), v, base, PartFrame::capture_at(k));
        }
        base
    }

    /// The address of a list, kept with the code, of the byte offsets in this function's table
    /// of the pointers of `slots` (address slots), eight bytes each.
    pub(super) fn slot_list(&mut self, slots: &[u32]) -> Value {
        if slots.is_empty() {
            return self.iconst(0);
        }
        let at = |i: usize| slots.get(i).map_or(0, |&s| s as u64 * 8) as u128;
        let words: Vec<u128> = (0..slots.len().div_ceil(2))
            .map(|w| at(2 * w) | at(2 * w + 1) << 64)
            .collect();
        let addr = words.as_ptr() as i64;
        // The buffer keeps its address when the vector moves into the module's data.
        self.pool.literals.push(words);
        self.address(addr)
    }

    /// Calls `parallel::run_parts` on a compiled part; returns the number of parts that ran.
    pub(super) fn run_parts(
        &mut self,
        part: FuncId,
        frame: Value,
        items: Value,
        work: Value,
    ) -> Value {
        let fref = self.module.declare_func_in_func(part, self.b.func);
        let addr = self.b.ins().func_addr(types::I64, fref);
        let run = self.helper(Helper::RunParts);
        let call = self.b.ins().call(run, &[addr, frame, items, work]);
        self.b.inst_results(call)[0]
    }

    /// A function of its own, entered as `entry` says: for one part of a split loop, `body`
    /// reads what it needs from the frame (`PartFrame`) and generates the loop over items
    /// `lo..hi` (its arguments are the frame, lo, hi and the part's index). The part reads
    /// its slots' pointers through a list of them, in the order of `PartReads::slots`, and its
    /// caller's scalars in the order of `PartReads::scalars`. A part that is the same function
    /// as one compiled before is not compiled again (`part_code`). `None` after an error,
    /// which `define` reports.
    pub(super) fn build_part(
        &mut self,
        entry: PartEntry,
        body: &mut dyn FnMut(&mut Tx, Value, Value, Value, Value),
    ) -> Option<BuiltPart> {
        let built = self
            .part_function(entry, body)
            .and_then(|f| self.define_part(f));
        match built {
            Ok(part) => Some(part),
            Err(e) => {
                self.part.failure.get_or_insert(e);
                None
            }
        }
    }

    /// A part's Cranelift function, not yet compiled (see `build_part`).
    pub(super) fn part_function(
        &mut self,
        entry: PartEntry,
        body: &mut dyn FnMut(&mut Tx, Value, Value, Value, Value),
    ) -> Result<PartFunction, CodegenError> {
        let mut sig = self.module.make_signature();
        for _ in 0..entry.params() {
            sig.params.push(AbiParam::new(types::I64));
        }
        // Named once it is known to be new; the name is not part of what is compared.
        let mut func =
            cranelift::codegen::ir::Function::with_name_signature(UserFuncName::default(), sig);
        let (local, literals);
        let mut fctx = self.part_code.building.pop().unwrap_or_default();
        let target = self.module.target_config();
        let fn_shape = FnShape {
            n_slots: self.tables.n_slots,
            n_syms: self.tables.dim_vals.len(),
            dtype: self.dtype,
            bounded: self.bounded,
            address_slot: self.tables.address_slot.clone(),
            outline: false,
        };
        {
            let mut b = FunctionBuilder::new(&mut func, &mut fctx);
            let block = b.create_block();
            b.append_block_params_for_function_params(block);
            b.switch_to_block(block);
            let p = b.block_params(block).to_vec();
            let ([ptrs, dims, scalars, list], frame, scalars_at) = match entry {
                PartEntry::Frame { first_scalar } => (
                    [0, 8, 16, 24].map(|at| b.ins().load(types::I64, flags(), p[0], at)),
                    p[0],
                    PartFrame::capture_at(first_scalar),
                ),
                PartEntry::Call => ([p[0], p[1], p[2], p[3]], p[4], 0),
            };
            let mut tx = Tx::new(
                b,
                block,
                [ptrs, dims, scalars],
                fn_shape,
                InModule {
                    module: &mut *self.module,
                    helper_ids: self.helper_ids,
                    part_code: &mut *self.part_code,
                },
                &mut *self.pool.vectors,
            );
            tx.tables.local = Some(LocalTables {
                frame,
                scalars_at,
                list,
                slots: Vec::new(),
                scalars: Vec::new(),
            });
            body(&mut tx, p[0], p[1], p[2], p[3]);
            literals = std::mem::take(&mut tx.pool.literals);
            if let Some(e) = tx.part.failure.take() {
                return Err(e);
            }
            local = tx.tables.local.take().expect("set above");
            tx.b.ins().return_(&[]);
            tx.b.seal_all_blocks();
            tx.b.finalize(target);
        }
        self.part_code.building.push(fctx);
        // An array literal's elements live as long as the code that copies them.
        self.pool.literals.extend(literals);
        Ok(PartFunction {
            func,
            reads: PartReads {
                slots: local.slots,
                scalars: local.scalars,
                entry,
            },
        })
    }

    /// A part's function compiled, or the same one compiled before.
    pub(super) fn define_part(&mut self, f: PartFunction) -> Result<BuiltPart, CodegenError> {
        let PartFunction { mut func, reads } = f;
        let key = match self.part_code.find(&func) {
            Ok(id) => return Ok(BuiltPart { id, reads }),
            Err(key) => key,
        };
        let id = self
            .module
            .declare_anonymous_function(&func.signature)
            .map_err(|e| CodegenError::Define {
                name: "loop part".into(),
                message: format!("{e:?}"),
            })?;
        func.name = UserFuncName::user(0, id.as_u32());
        // Compiling changes the function in place: the copy kept is the one compared.
        self.part_code.insert(key, func.clone(), id);
        let ctx = &mut self.part_code.compiling;
        ctx.clear();
        ctx.func = func;
        define_dumped(self.module, id, ctx, "loop part", None)?;
        Ok(BuiltPart { id, reads })
    }
}

/// A part's function before it is compiled, with what its caller must give it.
pub(super) struct PartFunction {
    pub(super) func: cranelift::codegen::ir::Function,
    pub(super) reads: PartReads,
}

/// A part's function, and what its caller gives it.
pub(super) struct BuiltPart {
    pub(super) id: FuncId,
    pub(super) reads: PartReads,
}

/// What a part's caller gives it (`Tx::frame_with`).
pub(super) struct PartReads {
    /// The address slots whose pointers it reads, in its list's order.
    pub(super) slots: Vec<u32>,
    /// The scalar nodes it reads, in this order.
    pub(super) scalars: Vec<NodeId>,
    pub(super) entry: PartEntry,
}

/// How a part is entered.
#[derive(Clone, Copy, Debug)]
pub(super) enum PartEntry {
    /// `part(frame, lo, hi, index)`, run by the worker pool: the tables and the list of slots
    /// come from the frame (`PartFrame`), the scalars it reads from capture `first_scalar` on.
    Frame { first_scalar: usize },
    /// `step(slots, dims, scalars, list, captures)`, called directly (an outlined step): the
    /// scalars it reads are eight bytes apart from `captures`.
    Call,
}

impl PartEntry {
    fn params(self) -> usize {
        match self {
            PartEntry::Frame { .. } => 4,
            PartEntry::Call => 5,
        }
    }
}

/// The frame a part reads: the three tables at bytes 0, 8 and 16, the address of its list of
/// slots at 24, then one 8-byte entry per captured value (of a loop group split between cores
/// (`Tx::parallel_group`), registers of `regs`, then `promoted` slots; of an outlined step the
/// scalars it reads), then for a split loop group `MAX_PARTS` areas of `part_bytes` for the
/// sums.
pub(super) struct PartFrame {
    pub(super) regs: Vec<NodeId>,
    pub(super) promoted: Vec<u32>,
    /// Each summed output: its slot, its elements, and its byte offset in a part's area.
    pub(super) partials: Vec<(u32, i64, i64)>,
    pub(super) part_bytes: i64,
}

impl PartFrame {
    pub(super) fn capture_at(k: usize) -> i32 {
        32 + 8 * k as i32
    }

    pub(super) fn partial_base(&self) -> i64 {
        let end = Self::capture_at(self.regs.len() + self.promoted.len()) as i64;
        (end + 15) & !15
    }
}
