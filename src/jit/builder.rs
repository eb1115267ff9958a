//! A graph-independent instruction builder over Cranelift: integer and float constants (folded
//! when known), constant pools, values hoisted to loop entries, loops and branches. The
//! translator of one function body (`Tx`) is defined here; where it finds its data (tables,
//! slot and row addresses) is `address`.

use super::*;

/// What a `Tx::memo` entry was computed from its keyed value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Memo {
    /// e^−|x|.
    ExpNegAbs,
    /// 1 / (1 + e^−|x|).
    RecipOnePlusExpNegAbs,
    /// A scalar in every lane.
    Splat,
    /// An element offset in bytes.
    Bytes,
    /// An element's address from its row's pointer.
    Addr,
    /// A vector loaded from an address.
    Load,
}

/// What a value computed where a loop is entered is kept under (`LoopEntry::ptrs`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum EntryKey {
    /// A slot's pointer.
    Slot(u32),
    /// The constant pool's address.
    Pool,
    /// A loop-invariant vector stored to this stack slot.
    Splat(codegen::ir::StackSlot),
}

/// Values computed once where a loop is entered, for its body: they live only as long as the
/// loop, so they stay in registers (entry-block values are spilled in large functions and
/// reloaded on every iteration).
pub(super) struct LoopEntry {
    /// The branch into the loop; the values are inserted before it.
    pub(super) enter: cranelift::codegen::ir::Inst,
    /// Values numbered below this existed before the loop was entered; only those can be
    /// used before the branch.
    pub(super) mark: u32,
    /// Slot pointers, the constant pool's address and splatted invariants.
    pub(super) ptrs: HashMap<EntryKey, Value>,
    /// Row pointers: a slot's address plus a loop-invariant offset, by slot, outer indices
    /// and their strides.
    pub(super) rows: HashMap<(u32, Vec<Value>), Value>,
    /// Whether values are computed here at all (`Loops::hoist_next`).
    pub(super) hoists: bool,
}

/// Where a value carried from one step of a loop to the next waits.
#[derive(Clone, Copy)]
pub(super) enum Held {
    Var(Variable),
    Slot(codegen::ir::StackSlot),
}

/// Constants known when the code is generated, each defined once at the top of the entry
/// block (or, in a bounded function, scalars where they are used).
pub(super) struct Constants {
    /// Integer values known at generation time, both ways.
    pub(super) ints: HashMap<Value, i64>,
    pub(super) int_values: HashMap<i64, Value>,
    /// Float constants by type and bits, and the value of each.
    pub(super) floats: HashMap<(Type, u64), Value>,
    pub(super) float_known: HashMap<Value, f64>,
    pub(super) entry: Block,
    /// The last constant emitted into the entry block.
    pub(super) tail: Option<cranelift::codegen::ir::Inst>,
}

/// Data the generated code reads, kept as long as the code.
pub(super) struct CodeData<'a> {
    /// Vector constants of loop bodies, loaded where they are used (see `Tx::pool_load`).
    pub(super) vectors: &'a mut Vec<u128>,
    /// Array literals' elements in the function's float type, which its code copies into their
    /// slots: moved with the pools when the function is done.
    pub(super) literals: Vec<Vec<u128>>,
}

/// The loops being generated and what their bodies reuse.
pub(super) struct Loops {
    /// The loops being generated, innermost last.
    pub(super) entries: Vec<LoopEntry>,
    /// Whether the next loop computes slot and row pointers where it is entered (not so for
    /// the step loop of a bounded training function: they would live across all of it).
    pub(super) hoist_next: bool,
    /// Within one straight-line loop body: values computed from a given input, reusable there.
    pub(super) memo: Option<HashMap<(Memo, Value), Value>>,
    /// Stack slots of loop-invariant scalars splatted for vector loops (`invariant_vector`).
    pub(super) splat_slots: HashMap<Value, cranelift::codegen::ir::StackSlot>,
    /// The stack slot of `use_barrier`, created on first use.
    pub(super) barrier_slot: Option<codegen::ir::StackSlot>,
}

/// Scalar nodes' values, held in registers or, in a bounded function, in stack slots.
pub(super) struct HeldScalars {
    /// Scalar nodes held in registers.
    pub(super) regs: HashMap<NodeId, Value>,
    /// In a bounded function: scalar nodes, each with its value, the number of scalar steps
    /// made before it, and the stack slot it was stored to.
    pub(super) spilled: HashMap<NodeId, (Value, u32, codegen::ir::StackSlot)>,
    /// Scalar steps generated so far.
    pub(super) steps: u32,
}

/// What a fused training loop holds across its steps.
pub(super) struct FusedLoop {
    /// The current step's optimizer scalars.
    pub(super) step_values: Option<Vec<Value>>,
    /// The current step's dropout key (`ir::dropout::step_key`); outside a fused loop a
    /// function reads it as the bits of its first scalar.
    pub(super) step_key: Option<Value>,
    /// Single-element slots held in variables for the whole loop.
    pub(super) promoted: HashMap<u32, Variable>,
}

/// Inside a loop group: the members' slots, and each member's current element.
pub(super) struct GroupLanes {
    pub(super) slots: rustc_hash::FxHashSet<u32>,
    pub(super) lanes: HashMap<u32, Value>,
}

/// The state of a part of a parallel loop (a helper function of its own).
pub(super) struct PartState {
    /// Slots whose pointer is not the table's: the outputs the part sums into its own area
    /// of the frame.
    pub(super) overrides: HashMap<u32, Value>,
    /// The first error met while generating the part; reported by `define`.
    pub(super) failure: Option<CodegenError>,
}

/// The translator of one function body.
pub(super) struct Tx<'a> {
    pub(super) b: FunctionBuilder<'a>,
    pub(super) ty: Type,
    pub(super) dtype: DType,
    pub(super) module: &'a mut JITModule,
    pub(super) helper_ids: &'a HashMap<Helper, FuncId>,
    /// The module's parts compiled so far, for a part to reuse one's code.
    pub(super) part_code: &'a mut PartCode,
    /// Helpers declared in this function so far: only those it calls.
    pub(super) helpers: HashMap<Helper, FuncRef>,
    /// A function too large to hold its values in registers for long (`is_bounded`): slot
    /// pointers and scalar constants are made where they are used, scalar nodes are kept in
    /// stack slots (`HeldScalars::spilled`), and nothing is promoted. Otherwise every such
    /// value would live from the entry block (or from its definition) to its last use, and
    /// the register allocator's work grows with the square of the number of values live at
    /// once.
    pub(super) bounded: bool,
    /// Whether steps are generated as functions of their own where they can be (`outline`).
    pub(super) outlines: bool,
    pub(super) consts: Constants,
    pub(super) pool: CodeData<'a>,
    pub(super) tables: Tables,
    pub(super) loops: Loops,
    pub(super) held: HeldScalars,
    pub(super) fused: FusedLoop,
    pub(super) group: GroupLanes,
    pub(super) part: PartState,
}

/// Vector constants per function that can be read from its pool; later ones are splatted in
/// the entry block.
pub(super) const POOL_CAPACITY: usize = 256;
/// A bounded function reads a scalar node from its register within this many scalar steps of
/// it, from its stack slot beyond.
pub(super) const NEAR_STEPS: u32 = 16;
/// A function with more slots or scalar steps than this is generated `bounded` (see `Tx`).
pub(super) const MAX_HELD_VALUES: usize = 512;
/// A function of more plan steps than this is generated `bounded` too. A value held from its
/// entry is live across every block of every step, and is spilled around each call into a
/// kernel anyway: for W7's 56 steps and W8's 155 the register allocator spent more time on
/// those ranges than the registers saved (Cranelift 8.6 → 7.2–7.7 ms for W7, 21 → 15 ms for
/// W8, their steps as fast). W1–W6 have at most 21 steps and keep their values in registers.
pub(super) const MAX_HELD_STEPS: usize = 32;

/// The 16 bytes of a vector of type `ty` with `bits` in every lane.
pub(super) fn lanes_of(ty: Type, bits: u64) -> u128 {
    let width = ty.lane_bits();
    let lane = bits as u128 & ((1u128 << width) - 1);
    (0..ty.lane_count()).fold(0, |acc, i| acc | lane << (i * width))
}

pub(super) fn flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// Emits `build`'s value in the entry block right after `tail` (at the block's top when there
/// is none yet) and makes its instruction the new tail: a run of entry-block definitions, in
/// the order asked for, that dominate every use.
pub(super) fn emit_after(
    func: &mut cranelift::codegen::ir::Function,
    entry: Block,
    tail: &mut Option<cranelift::codegen::ir::Inst>,
    build: impl FnOnce(&mut FuncCursor) -> Value,
) -> Value {
    let mut cur = FuncCursor::new(func);
    match *tail {
        Some(inst) => cur.goto_after_inst(inst),
        None => cur = cur.at_first_insertion_point(entry),
    }
    let v = build(&mut cur);
    *tail = cur.func.dfg.value_def(v).inst();
    v
}

/// Vector loops that only move data (`Tx::for_vectors`: copies, and the places of
/// `unwindows`) of at most this many iterations known when the code is generated are written
/// out: a row of eight floats is two vectors, and its loop's counting and branch cost as much
/// as the copy (an im2col copy of LeNet's second convolution). Not loops that compute: their
/// bodies are larger, and writing them out too grew W4's Cranelift input by 3.4% (6,521 to
/// 6,745 lines) for no gain measured. Not scalar loops: a short one can hold loops of its own (a
/// pooling's two-by-two window axes), and writing those out doubled W7's Cranelift time.
const MAX_UNROLLED_TRIPS: i64 = 4;

/// What a generated function's tables hold.
#[derive(Clone)]
pub(super) struct FnShape {
    pub(super) n_slots: usize,
    pub(super) n_syms: usize,
    pub(super) dtype: DType,
    /// Whether the function holds few values in registers across its body (`Tx::bounded`).
    pub(super) bounded: bool,
    /// The slot whose table entry gives each slot's address: slots that share a buffer load
    /// one pointer (`Storage::address_slots`); empty when every slot has its own.
    pub(super) address_slot: Vec<u32>,
    /// Whether its steps are functions of their own (`outline`).
    pub(super) outline: bool,
}

/// What a function's translator shares with the other functions of its module.
pub(super) struct InModule<'a> {
    pub(super) module: &'a mut JITModule,
    pub(super) helper_ids: &'a HashMap<Helper, FuncId>,
    pub(super) part_code: &'a mut PartCode,
}

impl<'a> Tx<'a> {
    /// A translator positioned in `entry`, given the function's three tables (slot pointers,
    /// dimension sizes, scalars): every slot pointer and dimension is loaded there once.
    pub(super) fn new(
        mut b: FunctionBuilder<'a>,
        entry: Block,
        tables: [Value; 3],
        shape: FnShape,
        module: InModule<'a>,
        pool: &'a mut Vec<u128>,
    ) -> Tx<'a> {
        let InModule {
            module,
            helper_ids,
            part_code,
        } = module;
        let ty = match shape.dtype {
            DType::F32 => types::F32,
            DType::F64 => types::F64,
        };
        // Constants are hoisted to the top of the entry block, which must be laid out first.
        b.ensure_inserted_block();
        let dim_vals = (0..shape.n_syms)
            .map(|i| b.ins().load(types::I64, flags(), tables[1], i as i32 * 8))
            .collect();
        let slot_tail = b.func.layout.last_inst(entry);
        Tx {
            b,
            ty,
            dtype: shape.dtype,
            module,
            helper_ids,
            part_code,
            helpers: HashMap::default(),
            bounded: shape.bounded,
            outlines: shape.outline,
            consts: Constants {
                ints: HashMap::default(),
                int_values: HashMap::default(),
                floats: HashMap::default(),
                float_known: HashMap::default(),
                entry,
                tail: None,
            },
            pool: CodeData {
                vectors: pool,
                literals: Vec::new(),
            },
            tables: Tables {
                ptrs: tables[0],
                dims: tables[1],
                scalars: tables[2],
                slot_ptrs: HashMap::default(),
                slot_tail,
                n_slots: shape.n_slots,
                address_slot: shape.address_slot.clone(),
                local: None,
                dim_vals,
            },
            loops: Loops {
                entries: Vec::new(),
                hoist_next: true,
                memo: None,
                splat_slots: HashMap::default(),
                barrier_slot: None,
            },
            held: HeldScalars {
                regs: HashMap::default(),
                spilled: HashMap::default(),
                steps: 0,
            },
            fused: FusedLoop {
                step_values: None,
                step_key: None,
                promoted: HashMap::default(),
            },
            group: GroupLanes {
                slots: Default::default(),
                lanes: HashMap::default(),
            },
            part: PartState {
                overrides: HashMap::default(),
                failure: None,
            },
        }
    }

    // ---- small builders -------------------------------------------------------------------

    pub(super) fn helper(&mut self, h: Helper) -> FuncRef {
        if let Some(f) = self.helpers.get(&h) {
            return *f;
        }
        let f = self
            .module
            .declare_func_in_func(self.helper_ids[&h], self.b.func);
        self.helpers.insert(h, f);
        f
    }

    /// An integer constant, defined once at the top of the entry block so that it dominates
    /// every use and repeated sizes and strides cost one instruction each.
    pub(super) fn iconst(&mut self, v: i64) -> Value {
        if let Some(c) = self.consts.int_values.get(&v) {
            return *c;
        }
        let c = self.hoist(|cur| cur.ins().iconst(types::I64, v));
        self.consts.ints.insert(c, v);
        self.consts.int_values.insert(v, c);
        c
    }

    /// The address of data kept with the code, defined where it is used: each such address is
    /// used once, by the call or loop that follows. Defined in the entry block, as `iconst`
    /// would, every one lived from the function's start to its use, across the calls between.
    pub(super) fn address(&mut self, addr: i64) -> Value {
        self.b.ins().iconst(types::I64, addr)
    }

    /// Emits a constant at the end of the entry block's constant prologue.
    pub(super) fn hoist(&mut self, build: impl FnOnce(&mut FuncCursor) -> Value) -> Value {
        let entry = self.consts.entry;
        emit_after(self.b.func, entry, &mut self.consts.tail, build)
    }

    /// A float constant of type `ty` (scalar or vector): defined once in the entry block, or
    /// for a scalar in a bounded function where it is used (held from the entry block, each
    /// distinct constant would live across the whole function).
    pub(super) fn float_const(&mut self, ty: Type, v: f64) -> Value {
        if self.bounded && !ty.is_vector() {
            let c = if ty == types::F32 {
                self.b.ins().f32const(v as f32)
            } else {
                self.b.ins().f64const(v)
            };
            self.consts.float_known.insert(c, v);
            return c;
        }
        self.entry_float_const(ty, v)
    }

    pub(super) fn entry_float_const(&mut self, ty: Type, v: f64) -> Value {
        let scalar = ty.lane_type();
        let bits = if scalar == types::F32 {
            (v as f32).to_bits() as u64
        } else {
            v.to_bits()
        };
        if let Some(c) = self.consts.floats.get(&(ty, bits)) {
            return *c;
        }
        if ty.is_vector()
            && let Some(c) = self.pool_load(ty, lanes_of(ty, bits))
        {
            self.consts.float_known.insert(c, v);
            return c;
        }
        let c = if ty.is_vector() {
            let s = self.entry_float_const(scalar, v);
            self.hoist(|cur| cur.ins().splat(ty, s))
        } else if scalar == types::F32 {
            self.hoist(|cur| cur.ins().f32const(v as f32))
        } else {
            self.hoist(|cur| cur.ins().f64const(v))
        };
        self.consts.floats.insert((ty, bits), c);
        self.consts.float_known.insert(c, v);
        c
    }

    /// A vector constant inside a loop body, as a load from the function's pool placed just
    /// before its use. Cranelift folds such a load into the instruction that consumes it (a
    /// memory operand), so constants take no vector registers: the entry block's splats were
    /// live across the whole function, spilled, and reloaded inside every loop. Outside loop
    /// bodies, or once the pool is full, constants stay in the entry block (`None`).
    pub(super) fn pool_load(&mut self, ty: Type, bits: u128) -> Option<Value> {
        self.loops.memo.as_ref()?;
        let index = match self.pool.vectors.iter().position(|&c| c == bits) {
            Some(i) => i,
            None if self.pool.vectors.len() < POOL_CAPACITY => {
                self.pool.vectors.push(bits);
                self.pool.vectors.len() - 1
            }
            None => return None,
        };
        let base = self.pool_base();
        let flags = flags().with_readonly().with_aligned();
        Some(self.b.ins().load(ty, flags, base, index as i32 * 16))
    }

    /// The pool's address, loaded where the innermost loop is entered. It is read from the
    /// pool's first entry rather than written as an immediate, which Cranelift would
    /// rematerialize at every use.
    pub(super) fn pool_base(&mut self) -> Value {
        let addr = self.pool.vectors.as_ptr() as i64;
        let flags = flags().with_readonly().with_aligned();
        let at_entry = self.at_loop_entry(EntryKey::Pool, |cur| {
            let a = cur.ins().iconst(types::I64, addr);
            cur.ins().load(types::I64, flags, a, 0)
        });
        at_entry.unwrap_or_else(|| {
            let a = self.iconst(addr);
            self.b.ins().load(types::I64, flags, a, 0)
        })
    }

    /// The value under `key` computed by `build` just before the branch into the innermost
    /// loop, once per loop; `None` outside loops.
    pub(super) fn at_loop_entry(
        &mut self,
        key: EntryKey,
        build: impl FnOnce(&mut FuncCursor) -> Value,
    ) -> Option<Value> {
        let level = self.loops.entries.len().checked_sub(1)?;
        self.loops.entries[level]
            .hoists
            .then(|| self.at_entry(level, key, build))
    }

    /// The value under `key` computed by `build` just before the branch into loop `level` (an
    /// index into `loops.entries`), once per entry of that loop.
    pub(super) fn at_entry(
        &mut self,
        level: usize,
        key: EntryKey,
        build: impl FnOnce(&mut FuncCursor) -> Value,
    ) -> Value {
        let entry = &mut self.loops.entries[level];
        if let Some(&v) = entry.ptrs.get(&key) {
            return v;
        }
        let mut cur = FuncCursor::new(self.b.func).at_inst(entry.enter);
        let v = build(&mut cur);
        entry.ptrs.insert(key, v);
        v
    }

    /// A scalar fixed for the whole loop, read as a vector inside the loop body: splatted once
    /// where the loop is entered into a stack slot of its own, and loaded at each use, which
    /// Cranelift folds into the user as a memory operand. Held in a register instead, each such
    /// value took a register for the whole loop (W3's loop reads thirteen and spilled), or a
    /// splat at every iteration. `None` outside loop bodies, for constants (they come from the
    /// pool) and for values defined inside the loop.
    pub(super) fn invariant_vector(&mut self, vty: Type, v: Value) -> Option<Value> {
        self.loops.memo.as_ref()?;
        if self.consts.float_known.contains_key(&v) || v.as_u32() >= self.loops.entries.last()?.mark
        {
            return None;
        }
        let slot = match self.loops.splat_slots.get(&v) {
            Some(&s) => s,
            None => {
                let s = self.vector_slot();
                self.loops.splat_slots.insert(v, s);
                s
            }
        };
        self.at_loop_entry(EntryKey::Splat(slot), |cur| {
            let x = cur.ins().splat(vty, v);
            let addr = cur.ins().stack_addr(types::I64, slot, 0);
            cur.ins().store(flags().with_aligned(), x, addr, 0);
            x
        })?;
        let addr = self.b.ins().stack_addr(types::I64, slot, 0);
        Some(self.b.ins().load(vty, flags().with_aligned(), addr, 0))
    }

    /// `x` in every lane of a vector of type `vty`.
    pub(super) fn splat(&mut self, vty: Type, x: Value) -> Value {
        match self.consts.float_known.get(&x) {
            Some(&v) => self.float_const(vty, v),
            None => self.b.ins().splat(vty, x),
        }
    }

    /// `v` stored to a stack slot and loaded back, inside a loop body; `v` itself elsewhere.
    ///
    /// Cranelift folds a load into the instruction that uses it (a memory operand) only when
    /// the loaded value is used once, counting uses through every pure instruction downstream:
    /// one value used twice (the exponential that a sigmoid and a log-sum-exp share) kept every
    /// constant of the polynomials that computed it in a register, loaded by an instruction of
    /// its own. A load ends that count, as a block parameter would if Cranelift did not remove
    /// parameters that always receive the same value. On inline `exp`, `log` and
    /// 1/(1 + e^−|x|), this took W3's loop from 16.4 to 15.2–15.6 ms.
    pub(super) fn use_barrier(&mut self, v: Value) -> Value {
        if self.loops.memo.is_none() || !self.in_loop() {
            return v;
        }
        let ty = self.b.func.dfg.value_type(v);
        let slot = match self.loops.barrier_slot {
            Some(s) => s,
            None => {
                let s = self.vector_slot();
                self.loops.barrier_slot = Some(s);
                s
            }
        };
        self.b.ins().stack_store(types::I64, v, slot, 0);
        self.b.ins().stack_load(types::I64, ty, slot, 0)
    }

    pub(super) fn set_held(&mut self, home: Held, v: Value) {
        match home {
            Held::Var(var) => self.b.def_var(var, v),
            Held::Slot(slot) => {
                self.b.ins().stack_store(types::I64, v, slot, 0);
            }
        }
    }

    pub(super) fn get_held(&mut self, home: Held, ty: Type) -> Value {
        match home {
            Held::Var(var) => self.b.use_var(var),
            Held::Slot(slot) => self.b.ins().stack_load(types::I64, ty, slot, 0),
        }
    }

    /// A stack slot of this function that holds one vector (or a scalar).
    pub(super) fn vector_slot(&mut self) -> codegen::ir::StackSlot {
        self.b
            .create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 16, 4))
    }

    /// Whether code is being generated inside a loop.
    pub(super) fn in_loop(&self) -> bool {
        !self.loops.entries.is_empty()
    }

    /// The value of an integer known when the code is generated.
    pub(super) fn known(&self, v: Value) -> Option<i64> {
        self.consts.ints.get(&v).copied()
    }

    // Index arithmetic folds what is known here, so shapes fixed at compile time cost Cranelift
    // nothing to optimize away, and loops with known trip counts can be elided.

    pub(super) fn mul(&mut self, a: Value, b: Value) -> Value {
        match (self.known(a), self.known(b)) {
            (Some(x), Some(y)) => self.iconst(x.wrapping_mul(y)),
            (Some(1), _) => b,
            (_, Some(1)) => a,
            (Some(0), _) | (_, Some(0)) => self.iconst(0),
            (_, Some(k)) if k > 0 && k.count_ones() == 1 => {
                self.b.ins().ishl_imm_u(a, k.trailing_zeros() as i64)
            }
            (Some(k), _) if k > 0 && k.count_ones() == 1 => {
                self.b.ins().ishl_imm_u(b, k.trailing_zeros() as i64)
            }
            _ => self.b.ins().imul(a, b),
        }
    }

    pub(super) fn add(&mut self, a: Value, b: Value) -> Value {
        match (self.known(a), self.known(b)) {
            (Some(x), Some(y)) => self.iconst(x.wrapping_add(y)),
            (Some(0), _) => b,
            (_, Some(0)) => a,
            _ => self.b.ins().iadd(a, b),
        }
    }

    pub(super) fn sub(&mut self, a: Value, b: Value) -> Value {
        match (self.known(a), self.known(b)) {
            (Some(x), Some(y)) => self.iconst(x.wrapping_sub(y)),
            (_, Some(0)) => a,
            _ => self.b.ins().isub(a, b),
        }
    }

    pub(super) fn mul_imm(&mut self, a: Value, k: i64) -> Value {
        let k = self.iconst(k);
        self.mul(a, k)
    }

    pub(super) fn add_imm(&mut self, a: Value, k: i64) -> Value {
        let k = self.iconst(k);
        self.add(a, k)
    }

    pub(super) fn shr_imm(&mut self, a: Value, k: i64) -> Value {
        match self.known(a) {
            Some(x) => self.iconst(((x as u64) >> k) as i64),
            None => {
                let k = self.iconst(k);
                self.b.ins().ushr(a, k)
            }
        }
    }

    pub(super) fn fconst(&mut self, v: f64) -> Value {
        self.float_const(self.ty, v)
    }

    pub(super) fn dim(&mut self, d: Dim) -> Value {
        match d {
            Dim::Fixed(n) => self.iconst(n as i64),
            Dim::Sym(s) => self.tables.dim_vals[s as usize],
        }
    }

    /// The dropout key of the step being computed.
    pub(super) fn step_key(&mut self) -> Value {
        match self.fused.step_key {
            Some(k) => k,
            None => self
                .b
                .ins()
                .load(types::I64, flags(), self.tables.scalars, 0),
        }
    }

    /// SplitMix64's output function (`ir::dropout::mix64`) on 64-bit integers.
    pub(super) fn mix64(&mut self, z: Value) -> Value {
        use crate::ir::dropout::{MIX1, MIX2};
        let mut z = z;
        for (shift, multiplier) in [(30, MIX1), (27, MIX2)] {
            let s = self.b.ins().ushr_imm_u(z, shift);
            let x = self.b.ins().bxor(z, s);
            let m = self.iconst(multiplier as i64);
            z = self.b.ins().imul(x, m);
        }
        let s = self.b.ins().ushr_imm_u(z, 31);
        self.b.ins().bxor(z, s)
    }

    pub(super) fn scalar_arg(&mut self, i: usize) -> Value {
        if let Some(v) = &self.fused.step_values {
            return v[i];
        }
        let v = self
            .b
            .ins()
            .load(types::F64, flags(), self.tables.scalars, i as i32 * 8);
        self.in_dtype(v)
    }

    /// An f64 scalar in the model's dtype.
    pub(super) fn in_dtype(&mut self, v: Value) -> Value {
        match self.dtype {
            DType::F32 => self.b.ins().fdemote(types::F32, v),
            DType::F64 => v,
        }
    }

    pub(super) fn stride(&mut self, s: &Stride) -> Value {
        match s {
            Stride::Zero => self.iconst(0),
            Stride::Prod(dims) => {
                let mut acc = self.iconst(1);
                for d in dims {
                    let v = self.dim(*d);
                    acc = self.mul(acc, v);
                }
                acc
            }
            Stride::Scaled(k, dims) => {
                let p = self.stride(&Stride::Prod(dims.clone()));
                self.mul_imm(p, *k)
            }
        }
    }

    /// The element offset of a view's first element (a slice's), a sum of strides.
    pub(super) fn view_offset(&mut self, terms: &[Stride]) -> Value {
        let mut acc = self.iconst(0);
        for t in terms {
            let v = self.stride(t);
            acc = self.add(acc, v);
        }
        acc
    }

    /// `row_ptr` of a view whose first element is `first` elements into its slot: the offset
    /// joins the outer terms, so that views of one slot at different offsets have rows of
    /// their own.
    pub(super) fn view_row_ptr(
        &mut self,
        slot: u32,
        outer: &[Value],
        strides: &[Value],
        first: Value,
    ) -> Value {
        if self.known(first) == Some(0) {
            return self.row_ptr(slot, outer, strides);
        }
        let one = self.iconst(1);
        let outer: Vec<Value> = outer.iter().copied().chain([one]).collect();
        let strides: Vec<Value> = strides.iter().copied().chain([first]).collect();
        self.row_ptr(slot, &outer, &strides)
    }

    pub(super) fn sizes(&mut self, shape: &Shape) -> Vec<Value> {
        shape.0.iter().map(|d| self.dim(*d)).collect()
    }

    pub(super) fn elem_addr(&mut self, base: Value, offset: Value) -> Value {
        let size = self.dtype.size() as i64;
        let bytes = self.memo(Memo::Bytes, offset, |tx| tx.mul_imm(offset, size));
        self.add(base, bytes)
    }

    /// Generates a loop body without control flow inside, where a value computed once can be
    /// reused by everything after it (`memo`).
    pub(super) fn straight<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let saved = self.loops.memo.replace(HashMap::default());
        let r = f(self);
        self.loops.memo = saved;
        r
    }

    pub(super) fn load_at(&mut self, slot: u32, offset: Value) -> Value {
        if let Some(&var) = self.fused.promoted.get(&slot) {
            return self.b.use_var(var);
        }
        let base = self.slot_ptr(slot);
        let addr = self.elem_addr(base, offset);
        self.b.ins().load(self.ty, flags(), addr, 0)
    }

    pub(super) fn store_at(&mut self, slot: u32, offset: Value, v: Value) {
        if let Some(&var) = self.fused.promoted.get(&slot) {
            self.b.def_var(var, v);
            return;
        }
        let base = self.slot_ptr(slot);
        let addr = self.elem_addr(base, offset);
        self.b.ins().store(flags(), v, addr, 0);
    }

    pub(super) fn call(&mut self, m: Math, args: &[Value]) -> Value {
        let f = self.helper(Helper::Math(m, self.dtype));
        let inst = self.b.ins().call(f, args);
        self.b.inst_results(inst)[0]
    }

    /// `for i in 0..n { body(i) }`.
    pub(super) fn for_loop(&mut self, n: Value, body: &mut dyn FnMut(&mut Self, Value)) {
        self.for_loop_by(n, 1, body)
    }

    /// `for i in (0..n).step_by(step) { body(i) }`, for `n` a multiple of `step`: vector loops
    /// count elements, so an element's byte offset is one multiplication of the index.
    pub(super) fn for_loop_by(
        &mut self,
        n: Value,
        step: i64,
        body: &mut dyn FnMut(&mut Self, Value),
    ) {
        match self.known(n) {
            Some(k) if k <= 0 => return,
            Some(k) if k == step => {
                let zero = self.iconst(0);
                return body(self, zero);
            }
            _ => {}
        }
        // Taken before the index exists: the index is defined inside the loop.
        let mark = self.b.func.dfg.num_values() as u32;
        // Rotated: the test sits at the bottom, so an iteration takes one branch, and a trip
        // count known to be positive needs no guard.
        let body_block = self.b.create_block();
        let exit = self.b.create_block();
        self.b.append_block_param(body_block, types::I64);
        let zero = self.iconst(0);
        let enter = if self.known(n).is_some() {
            self.b.ins().jump(body_block, &[BlockArg::Value(zero)])
        } else {
            let any = self.b.ins().icmp(IntCC::SignedGreaterThan, n, zero);
            self.b
                .ins()
                .brif(any, body_block, &[BlockArg::Value(zero)], exit, &[])
        };
        self.b.switch_to_block(body_block);
        let i = self.b.block_params(body_block)[0];
        self.loops.entries.push(LoopEntry {
            enter,
            mark,
            ptrs: HashMap::default(),
            rows: HashMap::default(),
            hoists: std::mem::replace(&mut self.loops.hoist_next, true),
        });
        body(self, i);
        self.loops.entries.pop();
        let next = self.add_imm(i, step);
        let more = self.b.ins().icmp(IntCC::SignedLessThan, next, n);
        self.b
            .ins()
            .brif(more, body_block, &[BlockArg::Value(next)], exit, &[]);
        self.b.switch_to_block(exit);
    }

    /// `for_loop_by` over vectors; written out when the body only moves data (`moving`: loads,
    /// stores, shuffles, adds) and there are at most `MAX_UNROLLED_TRIPS` iterations known at
    /// compile time.
    pub(super) fn for_vectors(
        &mut self,
        n: Value,
        lanes: i64,
        moving: bool,
        body: &mut dyn FnMut(&mut Self, Value),
    ) {
        match self.known(n) {
            Some(k) if moving && k > lanes && k % lanes == 0 && k / lanes <= MAX_UNROLLED_TRIPS => {
                self.unrolled(k / lanes, lanes, body)
            }
            _ => self.for_loop_by(n, lanes, body),
        }
    }

    /// A loop of `trips` known iterations written out, each body given its index as a
    /// constant. It is entered like a loop (values invariant in it are computed before its
    /// entry, once), so that a body's addresses are one row pointer plus constant offsets.
    fn unrolled(&mut self, trips: i64, step: i64, body: &mut dyn FnMut(&mut Self, Value)) {
        let mark = self.b.func.dfg.num_values() as u32;
        let block = self.b.create_block();
        let enter = self.b.ins().jump(block, &[]);
        self.b.switch_to_block(block);
        self.loops.entries.push(LoopEntry {
            enter,
            mark,
            ptrs: HashMap::default(),
            rows: HashMap::default(),
            hoists: std::mem::replace(&mut self.loops.hoist_next, true),
        });
        for t in 0..trips {
            let i = self.iconst(t * step);
            body(self, i);
        }
        self.loops.entries.pop();
    }

    /// Nested loops over `sizes`; the body receives the index of each axis.
    pub(super) fn nest(&mut self, sizes: &[Value], body: &mut dyn FnMut(&mut Self, &[Value])) {
        fn go<'a>(
            tx: &mut Tx<'a>,
            sizes: &[Value],
            idx: &mut Vec<Value>,
            body: &mut dyn FnMut(&mut Tx<'a>, &[Value]),
        ) {
            if idx.len() == sizes.len() {
                body(tx, idx);
                return;
            }
            let n = sizes[idx.len()];
            tx.for_loop(n, &mut |tx, i| {
                idx.push(i);
                go(tx, sizes, idx, body);
                idx.pop();
            });
        }
        go(self, sizes, &mut Vec::new(), body);
    }

    pub(super) fn if_then(&mut self, cond: Value, body: &mut dyn FnMut(&mut Self)) {
        let then = self.b.create_block();
        let done = self.b.create_block();
        self.b.ins().brif(cond, then, &[], done, &[]);
        self.b.switch_to_block(then);
        body(self);
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(done);
    }

    pub(super) fn dot(&mut self, idx: &[Value], strides: &[Value]) -> Value {
        let mut acc = self.iconst(0);
        for (i, s) in idx.iter().zip(strides) {
            let t = self.mul(*i, *s);
            acc = self.add(acc, t);
        }
        acc
    }

    // ---- reading values -------------------------------------------------------------------

    pub(super) fn contiguous_strides(&mut self, shape: &Shape) -> Vec<Value> {
        crate::lower::contiguous(shape)
            .iter()
            .map(|s| self.stride(s))
            .collect()
    }

    pub(super) fn total(&mut self, shape: &Shape) -> Value {
        let mut acc = self.iconst(1);
        for d in &shape.0 {
            let v = self.dim(*d);
            acc = self.mul(acc, v);
        }
        acc
    }

    // ---- steps ----------------------------------------------------------------------------

    /// Horizontal sum of a vector's lanes, in lane order.
    pub(super) fn hsum(&mut self, v: Value) -> Value {
        let (_, lanes) = self.vector_type();
        let mut acc = self.b.ins().extractlane(v, 0);
        for l in 1..lanes as u8 {
            let x = self.b.ins().extractlane(v, l);
            acc = self.b.ins().fadd(acc, x);
        }
        acc
    }
}
