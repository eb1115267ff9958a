//! Cranelift code generation: a lowering plan becomes one native function; an optimizer becomes
//! a fused update loop.
//!
//! Every generated function has the signature
//! `extern "C" fn(slots: *const *mut u8, dims: *const i64, scalars: *const f64)`:
//! `slots` holds one pointer per plan slot, `dims` the size of each symbolic dimension, and
//! `scalars` per-call values such as the learning rate.
//!
//! Invariant: generated code cannot trap. It has no integer division, reads only the slots it
//! is given, and the runtime checks every slot's length against the plan before calling it.

use crate::ir::shape::MatMulParts;
use crate::ir::{Class, DType, Dim, Graph, NodeId, Op, Shape};
use crate::lower::{Member, MemberKind, Plan, RowBlocks, Step, Stride, Val};
use crate::model::GraphFn;
use crate::optim::{self, OptimizerSpec};
use cranelift::codegen::cursor::{Cursor, FuncCursor};
use cranelift::codegen::ir::{BlockArg, FuncRef, MemFlagsData, UserFuncName};
use cranelift::codegen::{Context, settings};
use cranelift::prelude::*;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module};
pub mod fpenv;
mod helpers;
mod math;
pub mod parallel;

use helpers::{Helper, Math};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub type KernelFn = unsafe extern "C" fn(*const *mut u8, *const i64, *const f64);

/// A JIT module whose code is finished: it only keeps the machine code mapped.
pub struct CodeOwner(#[allow(dead_code)] Jit);

// SAFETY: after `finalize` the module is never touched again: the code it owns, and the constant
// pools that code reads, are read-only and executed or read concurrently only through plain
// pointers, and dropping them from any thread just frees memory. No interior mutability is
// reachable from a `&CodeOwner`.
unsafe impl Send for CodeOwner {}
// SAFETY: as for `Send`, just above.
unsafe impl Sync for CodeOwner {}

impl CodeOwner {
    pub fn new(jit: Jit) -> CodeOwner {
        CodeOwner(jit)
    }
}

type Build = Box<dyn FnOnce() -> Result<(KernelFn, Jit), CodegenError> + Send>;

/// A native function compiled on first call, in a module of its own.
///
/// Training needs only the fused train loop, so the forward pass, the standalone gradient and
/// the standalone update wait until something calls them: the first step is not delayed by
/// code it does not run. Clones share one compilation.
#[derive(Clone)]
pub struct NativeFn(Arc<NativeState>);

struct NativeState {
    code: OnceLock<Result<(KernelFn, CodeOwner), CodegenError>>,
    build: Mutex<Option<Build>>,
}

impl NativeFn {
    pub fn lazy(
        build: impl FnOnce() -> Result<(KernelFn, Jit), CodegenError> + Send + 'static,
    ) -> NativeFn {
        NativeFn(Arc::new(NativeState {
            code: OnceLock::new(),
            build: Mutex::new(Some(Box::new(build))),
        }))
    }

    /// The entry point, compiling it on the first call from any thread.
    pub fn get(&self) -> Result<KernelFn, CodegenError> {
        let state = &self.0;
        let done = state.code.get_or_init(|| {
            let build = state
                .build
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .expect("a NativeFn is built once");
            build().map(|(f, jit)| (f, CodeOwner(jit)))
        });
        match done {
            Ok((f, _)) => Ok(*f),
            Err(e) => Err(e.clone()),
        }
    }

    /// Whether the code exists yet.
    pub fn is_compiled(&self) -> bool {
        self.0.code.get().is_some()
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CodegenError {
    #[error("cannot target this CPU: {0}")]
    Isa(String),
    #[error("Cranelift rejected generated code for `{name}`: {message}")]
    Define { name: String, message: String },
}

/// Slots of the fused training loop that can live in registers for all K steps: the
/// single-element parameters, their optimizer state and gradients, and a single-element loss.
/// Excluded: any slot a matrix product or a gather touches, since their helpers read and write
/// memory.
fn promotable_slots(f: &GraphFn, plan: &Plan, sizes: &[usize], slots: &UpdateSlots) -> Vec<u32> {
    let g = &f.graph;
    let mut in_memory = std::collections::HashSet::new();
    let view_slot = |id: NodeId, set: &mut std::collections::HashSet<u32>| {
        if let Some(Val::View { slot, .. }) = &plan.values[id.index()] {
            set.insert(*slot);
        }
    };
    for id in g.ids() {
        let calls_helper =
            g.node(id).op == Op::MatMul || g.node(id).op.facts().class == Class::Indexing;
        if plan.values[id.index()].is_some() && calls_helper {
            view_slot(id, &mut in_memory);
            for &a in &g.node(id).inputs {
                view_slot(a, &mut in_memory);
            }
        }
    }
    let mut out = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        if size != 1 {
            continue;
        }
        out.push(slots.params[i]);
        out.push(slots.grads[i]);
        out.extend(&slots.states[i]);
    }
    if crate::lower::single_element(&plan.slots[plan.outputs[0] as usize].shape) {
        out.push(plan.outputs[0]);
    }
    out.retain(|s| !in_memory.contains(s));
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether a function over `n_slots` slots running `plan` is generated `bounded` (see `Tx`).
fn is_bounded(n_slots: usize, plan: &Plan) -> bool {
    let scalar_steps = plan
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Scalar { .. }))
        .count();
    n_slots > MAX_HELD_VALUES || scalar_steps > MAX_HELD_VALUES
}

/// A JIT module holding compiled functions. The code lives as long as this value.
pub struct Jit {
    module: JITModule,
    ctx: Context,
    fctx: FunctionBuilderContext,
    helpers: HashMap<Helper, FuncId>,
    n_functions: usize,
    /// Each function's vector constants, read by its code: kept as long as the code.
    pools: Vec<Vec<u128>>,
}

impl Jit {
    pub fn new() -> Result<Jit, CodegenError> {
        let mut flags = settings::builder();
        let set = |f: &mut settings::Builder, k: &str, v: &str| {
            f.set(k, v).map_err(|e| CodegenError::Isa(e.to_string()))
        };
        // The code arrives folded (index arithmetic, constants) and placed (loop-invariant values
        // outside their loops). Cranelift's optimizer measured slower here: it re-places pure
        // values at their uses, inside the loops (`exp(ls)` of a scalar parameter was evaluated
        // once per element of a vectorized loop). W3 ran 2.3× and W1 1.4× faster without it.
        set(&mut flags, "opt_level", "none")?;
        set(&mut flags, "is_pic", "false")?;
        set(&mut flags, "use_colocated_libcalls", "false")?;
        // The verifier re-checks every function Cranelift builds; it is for debugging adjoint
        // itself, and costs compile time in release builds.
        set(
            &mut flags,
            "enable_verifier",
            if cfg!(debug_assertions) {
                "true"
            } else {
                "false"
            },
        )?;
        let isa = cranelift_native::builder()
            .map_err(|e| CodegenError::Isa(e.to_string()))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| CodegenError::Isa(e.to_string()))?;
        let mut jb = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
        let all = Helper::all();
        for h in &all {
            jb.symbol(h.symbol(), h.address());
        }
        let mut module = JITModule::new(jb);
        let mut helpers = HashMap::new();
        for &h in &all {
            let id = module
                .declare_function(&h.symbol(), Linkage::Import, &h.signature(&module))
                .map_err(|e| CodegenError::Isa(e.to_string()))?;
            helpers.insert(h, id);
        }
        let ctx = module.make_context();
        Ok(Jit {
            module,
            ctx,
            fctx: FunctionBuilderContext::new(),
            helpers,
            n_functions: 0,
            pools: Vec::new(),
        })
    }

    fn kernel_signature(&self) -> Signature {
        let mut sig = self.module.make_signature();
        let ptr = self.module.target_config().pointer_type();
        for _ in 0..3 {
            sig.params.push(AbiParam::new(ptr));
        }
        sig
    }

    /// Compiles a graph function under its plan.
    pub fn compile_graph(&mut self, f: &GraphFn, plan: &Plan) -> Result<FuncId, CodegenError> {
        let n_slots = plan.slots.len();
        let bounded = is_bounded(n_slots, plan);
        let shape = FnShape {
            n_slots,
            n_syms: f.graph.syms.len(),
            dtype: f.graph.dtype,
            bounded,
            address_slot: plan.storage.address_slots(n_slots),
        };
        self.define(shape, |tx| {
            for step in &plan.steps {
                tx.step(&f.graph, plan, step);
            }
        })
    }

    /// Compiles the update loop of an optimizer over parameters of the given sizes. Slots:
    /// params, then gradients, then each param's state arrays.
    pub fn compile_update(
        &mut self,
        spec: &OptimizerSpec,
        sizes: &[usize],
        dtype: DType,
    ) -> Result<FuncId, CodegenError> {
        let spec = spec.clone();
        let sizes = sizes.to_vec();
        let n_slots = sizes.len() * (2 + spec.kind.state_arrays());
        let slots = UpdateSlots::standalone(sizes.len(), spec.kind.state_arrays());
        let shape = FnShape {
            n_slots,
            n_syms: 0,
            dtype,
            bounded: n_slots > MAX_HELD_VALUES,
            address_slot: Vec::new(),
        };
        self.define(shape, move |tx| tx.update(&spec, &sizes, &slots, 0))
    }

    /// Compiles the whole training step, looped. The table `scalars` holds the number of steps
    /// K, a reserved entry, β1ᵗ and β2ᵗ before the first step, then each step's learning rate;
    /// the loop derives the optimizer's other per-step scalars itself (`step_scalar`). Each
    /// iteration runs the gradient plan, then the update, which reads the gradients from the
    /// plan's output slots. Slots: the plan's, then every parameter's optimizer state arrays.
    pub fn compile_train_loop(
        &mut self,
        f: &GraphFn,
        plan: &Plan,
        spec: &OptimizerSpec,
        sizes: &[usize],
    ) -> Result<FuncId, CodegenError> {
        let n_state = spec.kind.state_arrays();
        let n_params = sizes.len();
        let first_state = plan.slots.len();
        let mut param_slots = vec![u32::MAX; n_params];
        for (k, s) in plan.slots.iter().enumerate() {
            if let crate::lower::SlotKind::Param(i) = s.kind {
                param_slots[i as usize] = k as u32;
            }
        }
        debug_assert!(
            param_slots.iter().all(|&s| s != u32::MAX),
            "a slot per parameter"
        );
        let slots = UpdateSlots {
            params: param_slots,
            grads: plan.outputs[1..=n_params].to_vec(),
            states: (0..n_params)
                .map(|i| {
                    (0..n_state)
                        .map(|k| (first_state + i * n_state + k) as u32)
                        .collect()
                })
                .collect(),
        };
        let n_slots = first_state + n_params * n_state;
        let bounded = is_bounded(n_slots, plan);
        // Held in registers for all K steps, a bounded function's many slots would be spilled
        // across the whole loop anyway.
        let promotable = if bounded {
            Vec::new()
        } else {
            promotable_slots(f, plan, sizes, &slots)
        };
        let constants = spec.constants();
        let step_scalars = spec.step_scalars(&constants);
        let shape = FnShape {
            n_slots,
            n_syms: f.graph.syms.len(),
            dtype: f.graph.dtype,
            bounded,
            // The optimizer's state arrays, after the plan's slots, have addresses of their own.
            address_slot: plan.storage.address_slots(n_slots),
        };
        self.define(shape, |tx| {
            let count = tx.b.ins().load(types::F64, flags(), tx.scalars, 0);
            let count = tx.b.ins().fcvt_to_sint_sat(types::I64, count);
            for &slot in &promotable {
                let var = tx.b.declare_var(tx.ty);
                let zero = tx.iconst(0);
                let v = tx.load_at(slot, zero);
                tx.b.def_var(var, v);
                tx.promoted.insert(slot, var);
            }
            // β1ᵗ and β2ᵗ before the first step, advanced in the loop as in `advance_with`.
            // A bounded function keeps them in stack slots: in registers they would be live
            // across the whole step, and be spilled around every value of it.
            let pow = [0, 1].map(|_| match tx.bounded {
                true => Held::Slot(tx.vector_slot()),
                false => Held::Var(tx.b.declare_var(types::F64)),
            });
            for (k, home) in pow.iter().enumerate() {
                let v =
                    tx.b.ins()
                        .load(types::F64, flags(), tx.scalars, 16 + 8 * k as i32);
                tx.set_held(*home, v);
            }
            let table_block = tx.b.create_block();
            let done = tx.b.create_block();
            tx.b.ins().jump(table_block, &[]);
            tx.b.switch_to_block(table_block);
            tx.hoist_into_loops = !tx.bounded;
            tx.for_loop(count, &mut |tx, i| {
                for step in &plan.steps {
                    tx.step(&f.graph, plan, step);
                }
                let mut powers = [Value::from_u32(0); 2];
                for (k, beta) in [constants.beta1, constants.beta2].into_iter().enumerate() {
                    // As `optim::next_power`: flushed to zero below the normal range.
                    let p = tx.get_held(pow[k], types::F64);
                    let b = tx.float_const(types::F64, beta);
                    let q = tx.b.ins().fmul(p, b);
                    let min = tx.float_const(types::F64, f64::MIN_POSITIVE);
                    let zero = tx.float_const(types::F64, 0.0);
                    let tiny = tx.b.ins().fcmp(FloatCC::LessThan, q, min);
                    powers[k] = tx.b.ins().select(tiny, zero, q);
                    tx.set_held(pow[k], powers[k]);
                }
                let off = tx.mul_imm(i, 8);
                let scalars = tx.scalars;
                let addr = tx.add(scalars, off);
                let lr = tx.b.ins().load(types::F64, flags(), addr, 32);
                let values = step_scalars
                    .iter()
                    .map(|x| tx.step_scalar(*x, lr, powers))
                    .collect();
                tx.step_values = Some(values);
                tx.update(spec, sizes, &slots, 0);
                tx.step_values = None;
            });
            tx.b.ins().jump(done, &[]);
            tx.b.switch_to_block(done);
            // In slot order, so that the generated code does not depend on hash order.
            let mut promoted: Vec<(u32, Variable)> = tx.promoted.drain().collect();
            promoted.sort_unstable_by_key(|&(slot, _)| slot);
            for (slot, var) in promoted {
                let v = tx.b.use_var(var);
                let zero = tx.iconst(0);
                tx.store_at(slot, zero, v);
            }
        })
    }

    fn define(
        &mut self,
        shape: FnShape,
        body: impl FnOnce(&mut Tx),
    ) -> Result<FuncId, CodegenError> {
        let name = format!("kernel{}", self.n_functions);
        self.n_functions += 1;
        let sig = self.kernel_signature();
        let id = self
            .module
            .declare_function(&name, Linkage::Local, &sig)
            .map_err(|e| CodegenError::Define {
                name: name.clone(),
                message: e.to_string(),
            })?;
        self.ctx.func.signature = sig;
        self.ctx.func.name = UserFuncName::user(0, id.as_u32());
        let target = self.module.target_config();
        // The pool's buffer never grows past its capacity, so its address is fixed while the
        // code that embeds it is generated, and after the vector moves into `self.pools`.
        let mut pool: Vec<u128> = Vec::with_capacity(POOL_CAPACITY);
        pool.push(pool.as_ptr() as u128);
        let failure;
        let literals;
        {
            let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let params = b.block_params(entry).to_vec();
            let tables = [params[0], params[1], params[2]];
            let mut tx = Tx::new(
                b,
                entry,
                tables,
                shape,
                &mut self.module,
                &self.helpers,
                &mut pool,
            );
            body(&mut tx);
            failure = tx.failure.take();
            literals = std::mem::take(&mut tx.literals);
            tx.b.ins().return_(&[]);
            tx.b.seal_all_blocks();
            tx.b.finalize(target);
        }
        self.pools.push(pool);
        self.pools.extend(literals);
        if let Some(e) = failure {
            self.module.clear_context(&mut self.ctx);
            return Err(e);
        }
        define_dumped(&mut self.module, id, &mut self.ctx, &name)?;
        self.module.clear_context(&mut self.ctx);
        Ok(id)
    }

    /// Makes every defined function callable and returns their entry points.
    pub fn finalize(&mut self, ids: &[FuncId]) -> Result<Vec<KernelFn>, CodegenError> {
        self.module
            .finalize_definitions()
            .map_err(|e| CodegenError::Define {
                name: "module".into(),
                message: e.to_string(),
            })?;
        Ok(ids
            .iter()
            .map(|id| {
                let ptr = self.module.get_finalized_function(*id);
                // SAFETY: every kernel was defined with `kernel_signature`, which is this type
                // under the platform's C calling convention.
                unsafe { std::mem::transmute::<*const u8, KernelFn>(ptr) }
            })
            .collect())
    }
}

/// What of the generated code to hand to a sink as it is compiled: its Cranelift IR, its
/// machine code, or both. The code generator reads no environment and prints nothing itself;
/// the command line sets this from `ADJOINT_DUMP_CLIF` and `ADJOINT_DUMP_ASM`.
#[derive(Clone, Copy, Debug)]
pub struct Dump {
    pub clif: bool,
    pub asm: bool,
    /// Receives each function's text.
    pub sink: fn(&str),
}

static DUMP: Mutex<Option<Dump>> = Mutex::new(None);

/// Sets what every later compilation in this process dumps (`None`: nothing, the default).
pub fn set_dump(dump: Option<Dump>) {
    *DUMP.lock().unwrap_or_else(|e| e.into_inner()) = dump;
}

fn dump() -> Option<Dump> {
    *DUMP.lock().unwrap_or_else(|e| e.into_inner())
}

/// Compiles the function built in `ctx` as `id`, handing its text to the `Dump` sink if one
/// is set.
fn define_dumped(
    module: &mut JITModule,
    id: FuncId,
    ctx: &mut Context,
    name: &str,
) -> Result<(), CodegenError> {
    let dump = dump();
    if let Some(d) = dump.filter(|d| d.clif) {
        (d.sink)(&ctx.func.display().to_string());
    }
    let disasm = dump.is_some_and(|d| d.asm);
    ctx.set_disasm(disasm);
    module
        .define_function(id, ctx)
        .map_err(|e| CodegenError::Define {
            name: name.into(),
            message: format!("{e:?}"),
        })?;
    if let Some(d) = dump.filter(|d| d.asm) {
        let code = ctx.compiled_code().and_then(|c| c.vcode.clone());
        (d.sink)(&code.unwrap_or_default());
    }
    Ok(())
}

/// Tags of `Tx::memo` entries: what was computed from the keyed value.
const SPLAT: u32 = 8;
const BYTES: u32 = 9;
/// An element's address from its row's pointer.
const ADDR: u32 = 10;
const LOAD: u32 = 16;

/// Values computed once where a loop is entered, for its body: they live only as long as the
/// loop, so they stay in registers (entry-block values are spilled in large functions and
/// reloaded on every iteration).
struct LoopEntry {
    /// The branch into the loop; the values are inserted before it.
    enter: cranelift::codegen::ir::Inst,
    /// Values numbered below this existed before the loop was entered; only those can be
    /// used before the branch.
    mark: u32,
    /// Slot pointers (and the constant pool's, under `POOL_KEY`).
    ptrs: HashMap<u32, Value>,
    /// Row pointers: a slot's address plus a loop-invariant offset, by slot, outer indices
    /// and their strides.
    rows: HashMap<(u32, Vec<Value>), Value>,
    /// Whether values are computed here at all (`Tx::hoist_into_loops`).
    hoists: bool,
}

/// Where a value carried from one step of a loop to the next waits.
#[derive(Clone, Copy)]
enum Held {
    Var(Variable),
    Slot(codegen::ir::StackSlot),
}

/// The translator of one function body.
struct Tx<'a> {
    b: FunctionBuilder<'a>,
    ty: Type,
    dtype: DType,
    scalars: Value,
    module: &'a mut JITModule,
    helper_ids: &'a HashMap<Helper, FuncId>,
    /// Helpers declared in this function so far: only those it calls.
    helpers: HashMap<Helper, FuncRef>,
    /// Integer values known at generation time, both ways.
    consts: HashMap<Value, i64>,
    const_values: HashMap<i64, Value>,
    /// Float constants by type and bits, and the value of each.
    typed_consts: HashMap<(Type, u64), Value>,
    float_known: HashMap<Value, f64>,
    entry: Block,
    /// The last constant emitted into the entry block.
    const_tail: Option<cranelift::codegen::ir::Inst>,
    /// Every slot pointer and dimension size, loaded once in the entry block so that they
    /// dominate every use (slot pointers only when not `bounded`).
    slot_ptrs: Vec<Value>,
    n_slots: usize,
    /// See `FnShape::address_slot`.
    address_slot: Vec<u32>,
    /// A function too large to hold its values in registers for long (`is_bounded`): slot
    /// pointers and scalar constants are made where they are used, scalar nodes are kept in
    /// stack slots (`spilled`), and nothing is promoted. Otherwise every such value would live
    /// from the entry block (or from its definition) to its last use, and the register
    /// allocator's work grows with the square of the number of values live at once.
    bounded: bool,
    /// In a bounded function: scalar nodes, each with its value, the number of scalar steps
    /// made before it, and the stack slot it was stored to.
    spilled: HashMap<NodeId, (Value, u32, codegen::ir::StackSlot)>,
    /// Scalar steps generated so far.
    scalar_steps: u32,
    /// Whether the next loop computes slot and row pointers where it is entered (not so for
    /// the step loop of a bounded training function: they would live across all of it).
    hoist_into_loops: bool,
    dim_vals: Vec<Value>,
    /// The function's table of slot pointers, and of dimension sizes.
    ptr_table: Value,
    dims_table: Value,
    /// Slots whose pointer is not the table's: in a part of a parallel loop, the outputs it
    /// sums into its own area of the frame.
    slot_override: HashMap<u32, Value>,
    /// The first error met while generating a helper function (a part); reported by `define`.
    failure: Option<CodegenError>,
    /// The stack slot of `use_barrier`, created on first use.
    barrier_slot: Option<codegen::ir::StackSlot>,
    /// Stack slots of loop-invariant scalars splatted for vector loops (`invariant_vector`).
    splat_slots: HashMap<Value, cranelift::codegen::ir::StackSlot>,
    /// The loops being generated, innermost last.
    loop_ptrs: Vec<LoopEntry>,
    /// Vector constants of loop bodies, loaded where they are used (see `pool_load`).
    pool: &'a mut Vec<u128>,
    /// Array literals' elements in the function's float type, which its code copies into their
    /// slots: moved with the pools when the function is done, and kept as long as the code.
    literals: Vec<Vec<u128>>,
    /// The current step's optimizer scalars, inside a fused training loop.
    step_values: Option<Vec<Value>>,
    /// Single-element slots held in variables for the whole fused training loop.
    promoted: HashMap<u32, Variable>,
    /// Scalar nodes held in registers.
    regs: HashMap<NodeId, Value>,
    /// Inside a loop group: the members' slots, and each member's current element.
    group_slots: std::collections::HashSet<u32>,
    lanes: HashMap<u32, Value>,
    /// Within one straight-line loop body: values computed from a given input, reusable there.
    body_memo: Option<HashMap<(u32, Value), Value>>,
    /// Set by `reduction_strides`: whether the last axis of the reduced operand is summed over.
    last_reduced: bool,
}

/// Vector constants per function that can be read from its pool; later ones are splatted in
/// the entry block.
const POOL_CAPACITY: usize = 256;
/// A bounded function reads a scalar node from its register within this many scalar steps of
/// it, from its stack slot beyond.
const NEAR_STEPS: u32 = 16;
/// A function with more slots or scalar steps than this is generated `bounded` (see `Tx`).
const MAX_HELD_VALUES: usize = 512;
/// `loop_ptrs` key of the pool's address (slots are numbered from 0).
const POOL_KEY: u32 = u32::MAX;
/// `loop_ptrs` keys of loop-invariant vectors stored where the loop is entered, by stack slot.
const SPLAT_KEY: u32 = 1 << 30;

/// The 16 bytes of a vector of type `ty` with `bits` in every lane.
fn lanes_of(ty: Type, bits: u64) -> u128 {
    let width = ty.lane_bits();
    let lane = bits as u128 & ((1u128 << width) - 1);
    (0..ty.lane_count()).fold(0, |acc, i| acc | lane << (i * width))
}

fn flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// What a generated function's tables hold.
#[derive(Clone)]
struct FnShape {
    n_slots: usize,
    n_syms: usize,
    dtype: DType,
    /// Whether the function holds few values in registers across its body (`Tx::bounded`).
    bounded: bool,
    /// The slot whose table entry gives each slot's address: slots that share a buffer load
    /// one pointer (`Storage::address_slots`); empty when every slot has its own.
    address_slot: Vec<u32>,
}

impl FnShape {
    fn address_slot(&self, slot: u32) -> u32 {
        self.address_slot
            .get(slot as usize)
            .copied()
            .unwrap_or(slot)
    }
}

impl<'a> Tx<'a> {
    /// A translator positioned in `entry`, given the function's three tables (slot pointers,
    /// dimension sizes, scalars): every slot pointer and dimension is loaded there once.
    fn new(
        mut b: FunctionBuilder<'a>,
        entry: Block,
        tables: [Value; 3],
        shape: FnShape,
        module: &'a mut JITModule,
        helper_ids: &'a HashMap<Helper, FuncId>,
        pool: &'a mut Vec<u128>,
    ) -> Tx<'a> {
        let ty = match shape.dtype {
            DType::F32 => types::F32,
            DType::F64 => types::F64,
        };
        // A bounded function loads each pointer where it is used instead.
        let entry_slots = if shape.bounded { 0 } else { shape.n_slots };
        // Constants are hoisted to the top of the entry block, which must be laid out first.
        b.ensure_inserted_block();
        let mut loaded: HashMap<u32, Value> = HashMap::new();
        let slot_ptrs = (0..entry_slots as u32)
            .map(|i| {
                let from = shape.address_slot(i);
                *loaded.entry(from).or_insert_with(|| {
                    b.ins()
                        .load(types::I64, flags(), tables[0], from as i32 * 8)
                })
            })
            .collect();
        let dim_vals = (0..shape.n_syms)
            .map(|i| b.ins().load(types::I64, flags(), tables[1], i as i32 * 8))
            .collect();
        Tx {
            b,
            ty,
            dtype: shape.dtype,
            scalars: tables[2],
            module,
            helper_ids,
            helpers: HashMap::new(),
            slot_ptrs,
            n_slots: shape.n_slots,
            address_slot: shape.address_slot.clone(),
            bounded: shape.bounded,
            spilled: HashMap::new(),
            scalar_steps: 0,
            hoist_into_loops: true,
            dim_vals,
            ptr_table: tables[0],
            dims_table: tables[1],
            loop_ptrs: Vec::new(),
            pool,
            literals: Vec::new(),
            step_values: None,
            promoted: HashMap::new(),
            regs: HashMap::new(),
            group_slots: Default::default(),
            lanes: HashMap::new(),
            body_memo: None,
            consts: HashMap::new(),
            const_values: HashMap::new(),
            typed_consts: HashMap::new(),
            float_known: HashMap::new(),
            entry,
            const_tail: None,
            last_reduced: false,
            slot_override: HashMap::new(),
            failure: None,
            barrier_slot: None,
            splat_slots: HashMap::new(),
        }
    }

    // ---- small builders -------------------------------------------------------------------

    fn helper(&mut self, h: Helper) -> FuncRef {
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
    fn iconst(&mut self, v: i64) -> Value {
        if let Some(c) = self.const_values.get(&v) {
            return *c;
        }
        let c = self.hoist(|cur| cur.ins().iconst(types::I64, v));
        self.consts.insert(c, v);
        self.const_values.insert(v, c);
        c
    }

    /// Emits a constant at the end of the entry block's constant prologue.
    fn hoist(&mut self, build: impl FnOnce(&mut FuncCursor) -> Value) -> Value {
        let mut cur = FuncCursor::new(self.b.func);
        match self.const_tail {
            Some(inst) => cur.goto_after_inst(inst),
            None => cur = cur.at_first_insertion_point(self.entry),
        }
        let v = build(&mut cur);
        self.const_tail = cur.func.dfg.value_def(v).inst();
        v
    }

    /// A float constant of type `ty` (scalar or vector): defined once in the entry block, or
    /// for a scalar in a bounded function where it is used (held from the entry block, each
    /// distinct constant would live across the whole function).
    fn float_const(&mut self, ty: Type, v: f64) -> Value {
        if self.bounded && !ty.is_vector() {
            let c = if ty == types::F32 {
                self.b.ins().f32const(v as f32)
            } else {
                self.b.ins().f64const(v)
            };
            self.float_known.insert(c, v);
            return c;
        }
        self.entry_float_const(ty, v)
    }

    fn entry_float_const(&mut self, ty: Type, v: f64) -> Value {
        let scalar = ty.lane_type();
        let bits = if scalar == types::F32 {
            (v as f32).to_bits() as u64
        } else {
            v.to_bits()
        };
        if let Some(c) = self.typed_consts.get(&(ty, bits)) {
            return *c;
        }
        if ty.is_vector()
            && let Some(c) = self.pool_load(ty, lanes_of(ty, bits))
        {
            self.float_known.insert(c, v);
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
        self.typed_consts.insert((ty, bits), c);
        self.float_known.insert(c, v);
        c
    }

    /// A vector constant inside a loop body, as a load from the function's pool placed just
    /// before its use. Cranelift folds such a load into the instruction that consumes it (a
    /// memory operand), so constants take no vector registers: the entry block's splats were
    /// live across the whole function, spilled, and reloaded inside every loop. Outside loop
    /// bodies, or once the pool is full, constants stay in the entry block (`None`).
    fn pool_load(&mut self, ty: Type, bits: u128) -> Option<Value> {
        self.body_memo.as_ref()?;
        let index = match self.pool.iter().position(|&c| c == bits) {
            Some(i) => i,
            None if self.pool.len() < POOL_CAPACITY => {
                self.pool.push(bits);
                self.pool.len() - 1
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
    fn pool_base(&mut self) -> Value {
        let addr = self.pool.as_ptr() as i64;
        let flags = flags().with_readonly().with_aligned();
        let at_entry = self.at_loop_entry(POOL_KEY, |cur| {
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
    fn at_loop_entry(
        &mut self,
        key: u32,
        build: impl FnOnce(&mut FuncCursor) -> Value,
    ) -> Option<Value> {
        let entry = self.loop_ptrs.last_mut().filter(|e| e.hoists)?;
        if let Some(&v) = entry.ptrs.get(&key) {
            return Some(v);
        }
        let mut cur = FuncCursor::new(self.b.func).at_inst(entry.enter);
        let v = build(&mut cur);
        entry.ptrs.insert(key, v);
        Some(v)
    }

    /// A scalar fixed for the whole loop, read as a vector inside the loop body: splatted once
    /// where the loop is entered into a stack slot of its own, and loaded at each use, which
    /// Cranelift folds into the user as a memory operand. Held in a register instead, each such
    /// value took a register for the whole loop (W3's loop reads thirteen and spilled), or a
    /// splat at every iteration. `None` outside loop bodies, for constants (they come from the
    /// pool) and for values defined inside the loop.
    fn invariant_vector(&mut self, vty: Type, v: Value) -> Option<Value> {
        self.body_memo.as_ref()?;
        if self.float_known.contains_key(&v) || v.as_u32() >= self.loop_ptrs.last()?.mark {
            return None;
        }
        let slot = match self.splat_slots.get(&v) {
            Some(&s) => s,
            None => {
                let s = self.vector_slot();
                self.splat_slots.insert(v, s);
                s
            }
        };
        self.at_loop_entry(SPLAT_KEY | slot.as_u32(), |cur| {
            let x = cur.ins().splat(vty, v);
            let addr = cur.ins().stack_addr(types::I64, slot, 0);
            cur.ins().store(flags().with_aligned(), x, addr, 0);
            x
        })?;
        let addr = self.b.ins().stack_addr(types::I64, slot, 0);
        Some(self.b.ins().load(vty, flags().with_aligned(), addr, 0))
    }

    /// `x` in every lane of a vector of type `vty`.
    fn splat(&mut self, vty: Type, x: Value) -> Value {
        match self.float_known.get(&x) {
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
    fn use_barrier(&mut self, v: Value) -> Value {
        if self.body_memo.is_none() || !self.in_loop() {
            return v;
        }
        let ty = self.b.func.dfg.value_type(v);
        let slot = match self.barrier_slot {
            Some(s) => s,
            None => {
                let s = self.vector_slot();
                self.barrier_slot = Some(s);
                s
            }
        };
        self.b.ins().stack_store(types::I64, v, slot, 0);
        self.b.ins().stack_load(types::I64, ty, slot, 0)
    }

    fn set_held(&mut self, home: Held, v: Value) {
        match home {
            Held::Var(var) => self.b.def_var(var, v),
            Held::Slot(slot) => {
                self.b.ins().stack_store(types::I64, v, slot, 0);
            }
        }
    }

    fn get_held(&mut self, home: Held, ty: Type) -> Value {
        match home {
            Held::Var(var) => self.b.use_var(var),
            Held::Slot(slot) => self.b.ins().stack_load(types::I64, ty, slot, 0),
        }
    }

    /// A stack slot of this function that holds one vector (or a scalar).
    fn vector_slot(&mut self) -> codegen::ir::StackSlot {
        self.b
            .create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 16, 4))
    }

    /// Whether code is being generated inside a loop.
    fn in_loop(&self) -> bool {
        !self.loop_ptrs.is_empty()
    }

    /// The value of an integer known when the code is generated.
    fn known(&self, v: Value) -> Option<i64> {
        self.consts.get(&v).copied()
    }

    // Index arithmetic folds what is known here, so shapes fixed at compile time cost Cranelift
    // nothing to optimize away, and loops with known trip counts can be elided.

    fn mul(&mut self, a: Value, b: Value) -> Value {
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

    fn add(&mut self, a: Value, b: Value) -> Value {
        match (self.known(a), self.known(b)) {
            (Some(x), Some(y)) => self.iconst(x.wrapping_add(y)),
            (Some(0), _) => b,
            (_, Some(0)) => a,
            _ => self.b.ins().iadd(a, b),
        }
    }

    fn sub(&mut self, a: Value, b: Value) -> Value {
        match (self.known(a), self.known(b)) {
            (Some(x), Some(y)) => self.iconst(x.wrapping_sub(y)),
            (_, Some(0)) => a,
            _ => self.b.ins().isub(a, b),
        }
    }

    fn mul_imm(&mut self, a: Value, k: i64) -> Value {
        let k = self.iconst(k);
        self.mul(a, k)
    }

    fn add_imm(&mut self, a: Value, k: i64) -> Value {
        let k = self.iconst(k);
        self.add(a, k)
    }

    fn shr_imm(&mut self, a: Value, k: i64) -> Value {
        match self.known(a) {
            Some(x) => self.iconst(((x as u64) >> k) as i64),
            None => {
                let k = self.iconst(k);
                self.b.ins().ushr(a, k)
            }
        }
    }

    fn fconst(&mut self, v: f64) -> Value {
        self.float_const(self.ty, v)
    }

    fn slot_ptr(&mut self, slot: u32) -> Value {
        if let Some(&p) = self.slot_override.get(&slot) {
            return p;
        }
        let table = self.ptr_table;
        // Slots that share a buffer share its address.
        let from = self
            .address_slot
            .get(slot as usize)
            .copied()
            .unwrap_or(slot);
        let load =
            move |cur: &mut FuncCursor| cur.ins().load(types::I64, flags(), table, from as i32 * 8);
        if let Some(p) = self.at_loop_entry(from, load) {
            return p;
        }
        if self.bounded {
            return self
                .b
                .ins()
                .load(types::I64, flags(), table, from as i32 * 8);
        }
        self.slot_ptrs[slot as usize]
    }

    /// The address of element `outer · strides` of `slot`, for indices of enclosing loops:
    /// computed where the innermost loop is entered, so that inside it an element's address is
    /// this pointer plus the inner index's byte offset, a single addressing mode.
    fn row_ptr(&mut self, slot: u32, outer: &[Value], strides: &[Value]) -> Value {
        let ptr = self.slot_ptr(slot);
        let size = self.dtype.size() as i64;
        let terms: Vec<(Value, Option<i64>, Value)> = outer
            .iter()
            .zip(strides)
            .filter(|(i, s)| self.known(**i) != Some(0) && self.known(**s) != Some(0))
            .map(|(i, s)| (*i, self.known(*s), *s))
            .collect();
        if terms.is_empty() {
            return ptr;
        }
        let before_loop = |entry: &LoopEntry| {
            let consts = &self.consts;
            outer
                .iter()
                .chain(strides)
                .all(|v| v.as_u32() < entry.mark || consts.contains_key(v))
        };
        if !self
            .loop_ptrs
            .last()
            .is_some_and(|e| e.hoists && before_loop(e))
        {
            let off = self.dot(outer, strides);
            return self.elem_addr(ptr, off);
        }
        let entry = self.loop_ptrs.last_mut().expect("checked");
        let key = (slot, outer.iter().chain(strides).copied().collect());
        if let Some(&p) = entry.rows.get(&key) {
            return p;
        }
        let mut cur = FuncCursor::new(self.b.func).at_inst(entry.enter);
        let mut addr = ptr;
        for (i, known, s) in terms {
            let bytes = match known {
                Some(k) => cur.ins().imul_imm_s(i, k * size),
                None => {
                    let t = cur.ins().imul(i, s);
                    cur.ins().imul_imm_s(t, size)
                }
            };
            addr = cur.ins().iadd(addr, bytes);
        }
        entry.rows.insert(key, addr);
        addr
    }

    /// The address of element `j` of the row at `row`, inside a straight loop body.
    fn row_elem_addr(&mut self, row: Value, j: Value) -> Value {
        let size = self.dtype.size() as i64;
        let bytes = self.memo(BYTES, j, |tx| tx.mul_imm(j, size));
        self.memo(ADDR, row, |tx| tx.add(row, bytes))
    }

    fn dim(&mut self, d: Dim) -> Value {
        match d {
            Dim::Fixed(n) => self.iconst(n as i64),
            Dim::Sym(s) => self.dim_vals[s as usize],
        }
    }

    fn scalar_arg(&mut self, i: usize) -> Value {
        if let Some(v) = &self.step_values {
            return v[i];
        }
        let v = self
            .b
            .ins()
            .load(types::F64, flags(), self.scalars, i as i32 * 8);
        self.in_dtype(v)
    }

    /// An f64 scalar in the model's dtype.
    fn in_dtype(&mut self, v: Value) -> Value {
        match self.dtype {
            DType::F32 => self.b.ins().fdemote(types::F32, v),
            DType::F64 => v,
        }
    }

    fn stride(&mut self, s: &Stride) -> Value {
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
    fn view_offset(&mut self, terms: &[Stride]) -> Value {
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
    fn view_row_ptr(
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

    fn sizes(&mut self, shape: &Shape) -> Vec<Value> {
        shape.0.iter().map(|d| self.dim(*d)).collect()
    }

    fn elem_addr(&mut self, base: Value, offset: Value) -> Value {
        let size = self.dtype.size() as i64;
        let bytes = self.memo(BYTES, offset, |tx| tx.mul_imm(offset, size));
        self.add(base, bytes)
    }

    /// Generates a loop body without control flow inside, where a value computed once can be
    /// reused by everything after it (`memo`).
    fn straight<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let saved = self.body_memo.replace(HashMap::new());
        let r = f(self);
        self.body_memo = saved;
        r
    }

    fn load_at(&mut self, slot: u32, offset: Value) -> Value {
        if let Some(&var) = self.promoted.get(&slot) {
            return self.b.use_var(var);
        }
        let base = self.slot_ptr(slot);
        let addr = self.elem_addr(base, offset);
        self.b.ins().load(self.ty, flags(), addr, 0)
    }

    fn store_at(&mut self, slot: u32, offset: Value, v: Value) {
        if let Some(&var) = self.promoted.get(&slot) {
            self.b.def_var(var, v);
            return;
        }
        let base = self.slot_ptr(slot);
        let addr = self.elem_addr(base, offset);
        self.b.ins().store(flags(), v, addr, 0);
    }

    fn call(&mut self, m: Math, args: &[Value]) -> Value {
        let f = self.helper(Helper::Math(m, self.dtype));
        let inst = self.b.ins().call(f, args);
        self.b.inst_results(inst)[0]
    }

    /// `for i in 0..n { body(i) }`.
    fn for_loop(&mut self, n: Value, body: &mut dyn FnMut(&mut Self, Value)) {
        self.for_loop_by(n, 1, body)
    }

    /// `for i in (0..n).step_by(step) { body(i) }`, for `n` a multiple of `step`: vector loops
    /// count elements, so an element's byte offset is one multiplication of the index.
    fn for_loop_by(&mut self, n: Value, step: i64, body: &mut dyn FnMut(&mut Self, Value)) {
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
        self.loop_ptrs.push(LoopEntry {
            enter,
            mark,
            ptrs: HashMap::new(),
            rows: HashMap::new(),
            hoists: std::mem::replace(&mut self.hoist_into_loops, true),
        });
        body(self, i);
        self.loop_ptrs.pop();
        let next = self.add_imm(i, step);
        let more = self.b.ins().icmp(IntCC::SignedLessThan, next, n);
        self.b
            .ins()
            .brif(more, body_block, &[BlockArg::Value(next)], exit, &[]);
        self.b.switch_to_block(exit);
    }

    /// Nested loops over `sizes`; the body receives the index of each axis.
    fn nest(&mut self, sizes: &[Value], body: &mut dyn FnMut(&mut Self, &[Value])) {
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

    fn if_then(&mut self, cond: Value, body: &mut dyn FnMut(&mut Self)) {
        let then = self.b.create_block();
        let done = self.b.create_block();
        self.b.ins().brif(cond, then, &[], done, &[]);
        self.b.switch_to_block(then);
        body(self);
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(done);
    }

    fn dot(&mut self, idx: &[Value], strides: &[Value]) -> Value {
        let mut acc = self.iconst(0);
        for (i, s) in idx.iter().zip(strides) {
            let t = self.mul(*i, *s);
            acc = self.add(acc, t);
        }
        acc
    }

    // ---- reading values -------------------------------------------------------------------

    /// A readable value aligned to an iteration space of rank `rank`.
    fn operand(
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
            } if self.group_slots.contains(slot)
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
                let inner = match shape.rank() {
                    0 => Inner::Zero,
                    r if shape.0[r - 1] == Dim::Fixed(1) => Inner::Zero,
                    r => match &strides[r - 1] {
                        Stride::Zero => Inner::Zero,
                        Stride::Prod(dims) if dims.iter().all(|d| *d == Dim::Fixed(1)) => {
                            Inner::One
                        }
                        Stride::Prod(_) | Stride::Scaled(..) => Inner::Other,
                    },
                };
                let inner = if rank > 0 && offset == rank {
                    Inner::Zero
                } else {
                    inner
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

    /// Whether every element of the last axis can be read as a vector: contiguous or broadcast
    /// views, and only ops with vector instructions.
    fn vectorizable(&self, op: &Operand) -> bool {
        match op {
            Operand::Scalar(_) | Operand::Lane(_) => true,
            Operand::View { inner, .. } => *inner != Inner::Other,
            Operand::Inline { op, args, exponent } => {
                self.vector_op_ok(op, *exponent) && args.iter().all(|a| self.vectorizable(a))
            }
        }
    }

    fn vector_op_ok(&self, op: &Op, exponent: Option<f64>) -> bool {
        match op {
            Op::Neg | Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Sqrt | Op::Abs | Op::Relu => true,
            Op::Tanh => self.dtype == DType::F32,
            Op::Exp | Op::Log | Op::Log1p | Op::Sigmoid | Op::Softplus | Op::Erf => true,
            Op::Step | Op::Sign | Op::Max | Op::Min | Op::Select => true,
            Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => true,
            Op::Pow => matches!(exponent, Some(e) if e == 2.0 || e == 1.0 || e == 0.5),
            // Through a call to the native helper, element by element.
            Op::Expm1 | Op::Sin | Op::Cos => false,
            // Not elementwise: never an inline operand.
            Op::Input(_)
            | Op::Param(_)
            | Op::Const(_)
            | Op::DimSize(_)
            | Op::Iota(_)
            | Op::Literal(_)
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
            | Op::OneHot { .. }
            | Op::SumTo(_)
            | Op::Expand(_)
            | Op::Reshape(_)
            | Op::Slice { .. }
            | Op::Unslice { .. } => false,
        }
    }

    fn vector_type(&self) -> (Type, i64) {
        match self.dtype {
            DType::F32 => (types::F32X4, 4),
            DType::F64 => (types::F64X2, 2),
        }
    }

    /// A scalar operand in every lane of a vector: loaded from its stack slot when it is fixed
    /// for the whole loop (`invariant_vector`), else splatted once per loop body.
    fn scalar_in_lanes(&mut self, v: Value) -> Value {
        let (vty, _) = self.vector_type();
        if let Some(x) = self.invariant_vector(vty, v) {
            return x;
        }
        self.memo(SPLAT, v, |tx| tx.splat(vty, v))
    }

    /// Reads lanes `j .. j + lanes` of the last axis at the outer index `outer`.
    fn read_vec(&mut self, op: &Operand, outer: &[Value], j: Value) -> Value {
        let (vty, _) = self.vector_type();
        match op {
            Operand::Scalar(v) => self.scalar_in_lanes(*v),
            Operand::Lane(slot) => self.lanes[slot],
            Operand::View {
                slot,
                strides,
                inner,
                first,
            } => {
                match inner {
                    Inner::One => {
                        let row = self.view_row_ptr(*slot, outer, &strides[..outer.len()], *first);
                        let addr = self.row_elem_addr(row, j);
                        // Several members of a loop group may read the same element.
                        self.memo(LOAD, addr, |tx| tx.b.ins().load(vty, flags(), addr, 0))
                    }
                    _ => {
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

    /// 1 in the lanes where `xs[0] cc xs[1]`, else 0.
    fn vector_truth(&mut self, cc: FloatCC, xs: &[Value]) -> Value {
        let (vty, _) = self.vector_type();
        let zero = self.fconst(0.0);
        let zero = self.splat(vty, zero);
        let one = self.fconst(1.0);
        let one = self.splat(vty, one);
        let c = self.b.ins().fcmp(cc, xs[0], xs[1]);
        self.choose(c, one, zero)
    }

    fn vector_op(&mut self, op: &Op, xs: &[Value], exponent: Option<f64>) -> Value {
        let (vty, _) = self.vector_type();
        let k = |tx: &mut Self, v: f64| {
            let c = tx.fconst(v);
            tx.splat(vty, c)
        };
        // Comparisons give lane masks; `choose` selects lane by lane, as `select` does for
        // the scalar forms in `scalar_op`.
        match op {
            Op::Step => {
                let (zero, one) = (k(self, 0.0), k(self, 1.0));
                let pos = self.b.ins().fcmp(FloatCC::GreaterThan, xs[0], zero);
                return self.choose(pos, one, zero);
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
            | Op::Pow => {}
            // `vector_op_ok` rules these out.
            Op::Expm1 | Op::Sin | Op::Cos => unreachable!("`{}` has no vector form", op.name()),
            Op::Input(_)
            | Op::Param(_)
            | Op::Const(_)
            | Op::DimSize(_)
            | Op::Iota(_)
            | Op::Literal(_)
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
            Op::Pow => match exponent {
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
            | Op::OneHot { .. }
            | Op::SumTo(_)
            | Op::Expand(_)
            | Op::Reshape(_)
            | Op::Slice { .. }
            | Op::Unslice { .. }) => unreachable!("`{}` is not elementwise", other.name()),
        }
    }

    /// An elementwise loop over `shape` writing `slot`: vectors along the last axis with a
    /// scalar tail when every operand allows it, element by element otherwise.
    fn elementwise_loop(
        &mut self,
        shape: &Shape,
        slot: u32,
        args: &[Operand],
        f: &dyn Fn(&mut Self, &[Value], bool) -> Value,
    ) {
        let out = self.contiguous_strides(shape);
        let first = self.iconst(0);
        self.elementwise_loop_into(shape, slot, &out, first, args, f);
    }

    /// An elementwise loop over `shape` that writes element `idx` of its result to element
    /// `first + idx · out` of `slot` (an embedding's place in a larger array); vectorized when
    /// the last axis is written contiguously and every operand reads as vectors.
    fn elementwise_loop_into(
        &mut self,
        shape: &Shape,
        slot: u32,
        out: &[Value],
        first: Value,
        args: &[Operand],
        f: &dyn Fn(&mut Self, &[Value], bool) -> Value,
    ) {
        let sizes = self.sizes(shape);
        let rank = shape.rank();
        let contiguous_rows = rank > 0 && self.known(out[rank - 1]) == Some(1);
        if !contiguous_rows || !args.iter().all(|a| self.vectorizable(a)) {
            self.nest(&sizes, &mut |tx, idx| {
                let xs: Vec<Value> = args.iter().map(|a| tx.read(a, idx)).collect();
                let v = f(tx, &xs, false);
                let o = tx.dot(idx, out);
                let o = tx.add(o, first);
                tx.store_at(slot, o, v);
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
            tx.for_loop_by(span, lanes, &mut |tx, j| {
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

    fn read(&mut self, op: &Operand, idx: &[Value]) -> Value {
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
            Operand::Lane(slot) => self.lanes[slot],
        }
    }

    fn contiguous_strides(&mut self, shape: &Shape) -> Vec<Value> {
        crate::lower::contiguous(shape)
            .iter()
            .map(|s| self.stride(s))
            .collect()
    }

    fn fill(&mut self, slot: u32, shape: &Shape, v: f64) {
        let total = self.total(shape);
        let c = self.fconst(v);
        let mut done = self.iconst(0);
        if !self.promoted.contains_key(&slot) {
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

    fn total(&mut self, shape: &Shape) -> Value {
        let mut acc = self.iconst(1);
        for d in &shape.0 {
            let v = self.dim(*d);
            acc = self.mul(acc, v);
        }
        acc
    }

    // ---- steps ----------------------------------------------------------------------------

    fn step(&mut self, g: &Graph, plan: &Plan, step: &Step) {
        match step {
            Step::Copy {
                src,
                src_shape,
                slot,
            } => {
                let shape = plan.slots[*slot as usize].shape.clone();
                let src = self.operand(g, plan, src, src_shape, shape.rank());
                self.elementwise_loop(&shape, *slot, std::slice::from_ref(&src), &|_, xs, _| xs[0]);
            }
            Step::Compute { node, slot, aux } => self.compute(g, plan, *node, *slot, *aux),
            Step::Group {
                shape,
                members,
                blocked,
            } => self.group(g, plan, shape, members, blocked.as_ref()),
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
    fn hold_scalar(&mut self, node: NodeId, v: Value) {
        self.scalar_steps += 1;
        if !self.bounded {
            self.regs.insert(node, v);
            return;
        }
        let size = self.dtype.size() as u32;
        let slot = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            size,
            size.trailing_zeros() as u8,
        ));
        self.b.ins().stack_store(types::I64, v, slot, 0);
        self.spilled.insert(node, (v, self.scalar_steps, slot));
    }

    /// The value of a scalar node. In a bounded function, a reader within `NEAR_STEPS` scalar
    /// steps of the node uses its register (the steps are straight-line code of one block
    /// chain, so the definition dominates the reader); one further away loads it, so that no
    /// register is held across more than a bounded stretch of code.
    fn scalar_node(&mut self, node: NodeId) -> Value {
        if let Some(&v) = self.regs.get(&node) {
            return v;
        }
        let (v, at, slot) = self.spilled[&node];
        if self.scalar_steps - at < NEAR_STEPS {
            return v;
        }
        self.b.ins().stack_load(types::I64, self.ty, slot, 0)
    }

    /// A loop group: shared between cores when it can be (`parallel_group`), else one loop here.
    fn group(
        &mut self,
        g: &Graph,
        plan: &Plan,
        shape: &Shape,
        members: &[Member],
        blocked: Option<&RowBlocks>,
    ) {
        match self.part_frame(g, plan, shape, members, blocked) {
            Some(frame) => self.parallel_group(g, plan, shape, members, blocked, &frame),
            None => self.group_over(g, plan, shape, members, blocked, None),
        }
    }

    /// One loop over `shape` computing every member: elementwise members read earlier members
    /// from registers and are stored only when read after the loop; full sums accumulate in one
    /// register each (a vector in vector loops) and are stored once at the end; column sums
    /// accumulate into their output row. With `range = (lo, hi)` only those items of the outer
    /// axis run (row blocks when `blocked`).
    fn group_over(
        &mut self,
        g: &Graph,
        plan: &Plan,
        shape: &Shape,
        members: &[Member],
        blocked: Option<&RowBlocks>,
        range: Option<(Value, Value)>,
    ) {
        let rank = shape.rank();
        self.group_slots = members.iter().map(|m| m.slot).collect();
        let ops: Vec<Operand> = members
            .iter()
            .map(|m| match m.kind {
                MemberKind::Elementwise => self.node_expr(g, plan, m.node, rank),
                MemberKind::Sum | MemberKind::ColumnSum | MemberKind::RowSum => {
                    self.arg(g, plan, m.node, 0, rank)
                }
            })
            .collect();
        self.group_slots.clear();
        // Column sums accumulate into their output row in memory, full sums in a register.
        for m in members.iter().filter(|m| m.kind == MemberKind::ColumnSum) {
            self.fill(m.slot, g.shape(m.node), 0.0);
        }
        let (vty, lanes) = self.vector_type();
        let vector = rank > 0 && ops.iter().all(|o| self.vectorizable(o));
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
                    tx.lanes.insert(m.slot, v);
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
        self.lanes.clear();
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
    fn row_blocks(&mut self, n: Value) -> Value {
        let block = crate::lower::ROW_BLOCK;
        let last = self.add_imm(n, block - 1);
        self.shr_imm(last, block.trailing_zeros() as i64)
    }

    /// The frame of a loop group that can be split between cores, or `None` when it stays one
    /// loop: it has no outer axis, it is known to be too small to be worth sharing, one of its
    /// sums has a size fixed only at run time (each part needs its own area for it), or an
    /// element it stores lives in a register of this function.
    fn part_frame(
        &self,
        g: &Graph,
        plan: &Plan,
        shape: &Shape,
        members: &[Member],
        blocked: Option<&RowBlocks>,
    ) -> Option<PartFrame> {
        if shape.rank() == 0 {
            return None;
        }
        let work = shape.fixed_elements();
        if work.is_some_and(|w| (w as i64) < 2 * parallel::MIN_WORK_PER_PART) {
            return None;
        }
        let mut summed: Vec<(u32, &Shape)> = Vec::new();
        for m in members {
            match m.kind {
                MemberKind::Sum | MemberKind::ColumnSum => summed.push((m.slot, g.shape(m.node))),
                MemberKind::Elementwise | MemberKind::RowSum
                    if m.stored && self.promoted.contains_key(&m.slot) =>
                {
                    return None;
                }
                // Each part writes its own rows' totals.
                MemberKind::Elementwise | MemberKind::RowSum => {}
            }
        }
        if let Some(rb) = blocked {
            if self.promoted.contains_key(&rb.before.1) {
                return None;
            }
            summed.push((rb.after.1, g.shape(rb.after.0)));
        }
        let size = self.dtype.size() as i64;
        let mut partials = Vec::new();
        let mut part_bytes = 0i64;
        for (slot, sh) in summed {
            let elements = sh.fixed_elements()? as i64;
            partials.push((slot, elements, part_bytes));
            // 16-byte aligned, so vector loads and stores of a row stay within one line pair.
            part_bytes += (elements * size + 15) & !15;
        }
        if part_bytes * parallel::MAX_PARTS as i64 > 32 << 10 {
            return None;
        }
        let mut regs: Vec<NodeId> = self.regs.keys().copied().collect();
        regs.extend(self.spilled_reads(g, plan, members));
        regs.sort_unstable();
        let mut promoted: Vec<u32> = self
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

    /// The scalar nodes in stack slots that a loop group reads, directly or through the
    /// operands fused into it: a part reads them from its frame.
    fn spilled_reads(&self, g: &Graph, plan: &Plan, members: &[Member]) -> Vec<NodeId> {
        let mut pending: Vec<NodeId> = members
            .iter()
            .flat_map(|m| g.node(m.node).inputs.iter().copied())
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        while let Some(a) = pending.pop() {
            if !seen.insert(a) {
                continue;
            }
            match &plan.values[a.index()] {
                Some(Val::Register(id)) if self.spilled.contains_key(id) => out.push(*id),
                Some(Val::Inline(id)) => pending.extend(&g.node(*id).inputs),
                _ => {}
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Runs a loop group split between cores: the loop becomes a function over a range of its
    /// outer axis (`build_part`), called through `parallel::run_parts` with a frame on this
    /// function's stack that holds the tables, the registers the loop reads, and one area per
    /// part for the sums it writes. The parts' sums are then added here, in part order.
    fn parallel_group(
        &mut self,
        g: &Graph,
        plan: &Plan,
        shape: &Shape,
        members: &[Member],
        blocked: Option<&RowBlocks>,
        frame: &PartFrame,
    ) {
        let part = self.build_part(&mut |tx, base, lo, hi, index| {
            for (k, id) in frame.regs.iter().enumerate() {
                let v =
                    tx.b.ins()
                        .load(tx.ty, flags(), base, PartFrame::capture_at(k));
                tx.regs.insert(*id, v);
            }
            for (k, &s) in frame.promoted.iter().enumerate() {
                let at = PartFrame::capture_at(frame.regs.len() + k);
                let v = tx.b.ins().load(tx.ty, flags(), base, at);
                let var = tx.b.declare_var(tx.ty);
                tx.b.def_var(var, v);
                tx.promoted.insert(s, var);
            }
            let stride = tx.iconst(frame.part_bytes);
            let off = tx.b.ins().imul(index, stride);
            let area = tx.add(base, off);
            let area = tx.add_imm(area, frame.partial_base());
            for &(slot, _, offset) in &frame.partials {
                let p = tx.add_imm(area, offset);
                tx.slot_override.insert(slot, p);
            }
            tx.group_over(g, plan, shape, members, blocked, Some((lo, hi)));
        });
        let Some(part) = part else { return };
        let mut captured = Vec::with_capacity(frame.regs.len() + frame.promoted.len());
        for id in &frame.regs {
            captured.push(self.scalar_node(*id));
        }
        for s in &frame.promoted {
            captured.push(self.b.use_var(self.promoted[s]));
        }
        let bytes = frame.partial_base() + frame.part_bytes * parallel::MAX_PARTS as i64;
        let base = self.frame_with(&captured, bytes);
        let sizes = self.sizes(shape);
        let (items, work) = match blocked {
            Some(_) => {
                let n = self.row_blocks(sizes[0]);
                (n, self.iconst(crate::lower::ROW_BLOCK * 8))
            }
            None => {
                let mut work = self.iconst(1);
                for &d in &sizes[1..] {
                    work = self.mul(work, d);
                }
                (sizes[0], work)
            }
        };
        let parts = self.run_parts(part, base, items, work);
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

    /// A frame of `bytes` on this function's stack for the parts of a split loop: the three
    /// tables, then `captured` (see `PartFrame`). Returns its address.
    fn frame_with(&mut self, captured: &[Value], bytes: i64) -> Value {
        let slot = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            bytes as u32,
            4,
        ));
        let base = self.b.ins().stack_addr(types::I64, slot, 0);
        let tables = [self.ptr_table, self.dims_table, self.scalars];
        for (k, v) in tables.into_iter().enumerate() {
            self.b.ins().store(flags(), v, base, 8 * k as i32);
        }
        for (k, &v) in captured.iter().enumerate() {
            self.b
                .ins()
                .store(flags(), v, base, PartFrame::capture_at(k));
        }
        base
    }

    /// Calls `parallel::run_parts` on a compiled part; returns the number of parts that ran.
    fn run_parts(&mut self, part: FuncId, frame: Value, items: Value, work: Value) -> Value {
        let fref = self.module.declare_func_in_func(part, self.b.func);
        let addr = self.b.ins().func_addr(types::I64, fref);
        let run = self.helper(Helper::RunParts);
        let call = self.b.ins().call(run, &[addr, frame, items, work]);
        self.b.inst_results(call)[0]
    }

    /// Compiles a function `part(frame, lo, hi, index)` of its own, for one part of a split
    /// loop: its entry loads the tables from the frame, then `body` reads what else it needs
    /// from there and generates the loop over items `lo..hi`. `None` after an error, which
    /// `define` reports.
    fn build_part(
        &mut self,
        body: &mut dyn FnMut(&mut Tx, Value, Value, Value, Value),
    ) -> Option<FuncId> {
        match self.try_build_part(body) {
            Ok(id) => Some(id),
            Err(e) => {
                self.failure.get_or_insert(e);
                None
            }
        }
    }

    fn try_build_part(
        &mut self,
        body: &mut dyn FnMut(&mut Tx, Value, Value, Value, Value),
    ) -> Result<FuncId, CodegenError> {
        let define_error = |e: cranelift_module::ModuleError| CodegenError::Define {
            name: "loop part".into(),
            message: format!("{e:?}"),
        };
        let mut sig = self.module.make_signature();
        for _ in 0..4 {
            sig.params.push(AbiParam::new(types::I64));
        }
        let id = self
            .module
            .declare_anonymous_function(&sig)
            .map_err(define_error)?;
        let mut func = cranelift::codegen::ir::Function::with_name_signature(
            UserFuncName::user(0, id.as_u32()),
            sig,
        );
        let mut fctx = FunctionBuilderContext::new();
        let target = self.module.target_config();
        let fn_shape = FnShape {
            n_slots: self.n_slots,
            n_syms: self.dim_vals.len(),
            dtype: self.dtype,
            bounded: self.bounded,
            address_slot: self.address_slot.clone(),
        };
        {
            let mut b = FunctionBuilder::new(&mut func, &mut fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let p = b.block_params(entry).to_vec();
            let tables = [0, 8, 16].map(|at| b.ins().load(types::I64, flags(), p[0], at));
            let mut tx = Tx::new(
                b,
                entry,
                tables,
                fn_shape,
                &mut *self.module,
                self.helper_ids,
                &mut *self.pool,
            );
            body(&mut tx, p[0], p[1], p[2], p[3]);
            debug_assert!(tx.literals.is_empty(), "parts run loop groups only");
            if let Some(e) = tx.failure.take() {
                return Err(e);
            }
            tx.b.ins().return_(&[]);
            tx.b.seal_all_blocks();
            tx.b.finalize(target);
        }
        define_dumped(
            self.module,
            id,
            &mut Context::for_function(func),
            "loop part",
        )?;
        Ok(id)
    }

    /// An elementwise node as an expression over its operands, read at each index of a loop
    /// of rank `rank`. A division the plan names in `reciprocal` becomes multiplication by the
    /// divisor's reciprocal, computed once before the loop.
    fn node_expr(&mut self, g: &Graph, plan: &Plan, id: NodeId, rank: usize) -> Operand {
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

    fn arg(&mut self, g: &Graph, plan: &Plan, node: NodeId, k: usize, rank: usize) -> Operand {
        let a = g.node(node).inputs[k];
        let val = plan.values[a.index()].clone().expect("operand planned");
        self.operand(g, plan, &val, g.shape(a), rank)
    }

    fn compute(&mut self, g: &Graph, plan: &Plan, id: NodeId, slot: u32, aux: Option<u32>) {
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
                self.elementwise_loop(&shape, slot, std::slice::from_ref(&whole), &|_, xs, _| {
                    xs[0]
                });
            }
            Op::Sum { .. } | Op::SumTo(_) => {
                let x = node.inputs[0];
                let xshape = g.shape(x).clone();
                let src = self.arg(g, plan, id, 0, xshape.rank());
                let out_strides = self.reduction_strides(&node.op, &shape, &xshape);
                let last_reduced = self.last_reduced || xshape.rank() == 0;
                self.fill(slot, &shape, 0.0);
                self.sum_loop(&src, &xshape, &out_strides, last_reduced, slot);
            }
            // Planned without a scratch slot: over the last axis.
            Op::LogSumExp { .. } if aux.is_none() => {
                let xshape = g.shape(node.inputs[0]).clone();
                let src = self.arg(g, plan, id, 0, xshape.rank());
                self.row_logsumexp(&src, &xshape, slot);
            }
            Op::LogSumExp { .. } => {
                let aux = aux.expect("logsumexp has a scratch slot");
                let xshape = g.shape(node.inputs[0]).clone();
                let src = self.arg(g, plan, id, 0, xshape.rank());
                let out_strides = self.reduction_strides(&node.op, &shape, &xshape);
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
                let out_strides = self.reduction_strides(&node.op, &shape, &xshape);
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
                let out_strides = self.reduction_strides(&node.op, &shape, &xshape);
                let sizes = self.sizes(&xshape);
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
                self.nest(&sizes, &mut |tx, idx| {
                    let v = tx.read(&src, idx);
                    let o = tx.dot(idx, &out_strides);
                    let m = tx.load_at(slot, o);
                    let better = tx.b.ins().fcmp(
                        if is_max {
                            FloatCC::GreaterThan
                        } else {
                            FloatCC::LessThan
                        },
                        v,
                        m,
                    );
                    let nm = tx.b.ins().select(better, v, m);
                    tx.store_at(slot, o, nm);
                });
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
            Op::MatMul => self.matmul(g, plan, id, slot),
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
                self.elementwise_loop_into(&xshape, slot, &out, first, src, &|_, xs, _| xs[0]);
            }
            Op::Iota(_) => {
                let total = self.total(&shape);
                self.for_loop(total, &mut |tx, i| {
                    let v = tx.b.ins().fcvt_from_sint(tx.ty, i);
                    tx.store_at(slot, i, v);
                });
            }
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
                let base = self.iconst(words.as_ptr() as i64);
                self.literals.push(words);
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

    /// `c < x ? c : x`: the minimum, and `x` when it is NaN. On vectors this is one `minps`
    /// or `minpd`, where `fmin`'s IEEE semantics (NaN from either side, −0 below +0) take seven
    /// instructions.
    fn min_keep_nan(&mut self, c: Value, x: Value) -> Value {
        let lt = self.b.ins().fcmp(FloatCC::LessThan, c, x);
        self.choose(lt, c, x)
    }

    /// `x < c ? c : x`: the maximum, and `x` when it is NaN (one `maxps` or `maxpd`).
    fn max_keep_nan(&mut self, c: Value, x: Value) -> Value {
        let lt = self.b.ins().fcmp(FloatCC::LessThan, x, c);
        self.choose(lt, c, x)
    }

    /// log Σ exp over the last axis. The row's maximum and its sum of exponentials stay in
    /// registers, and exp is computed inline (a call per element costs more than the
    /// exponential, and saves and restores every live vector register). A row whose maximum is
    /// not finite gives that maximum, as the general form does.
    ///
    /// A matrix is done a vector of rows at a time, one row per lane (`read_rows`): rows are
    /// often narrow (a softmax over ten classes), too narrow to vectorize along. The last
    /// vector's lanes past the end take the last row again, and store the same value to it,
    /// so no scalar copy of the loop is needed for the rows left over.
    fn row_logsumexp(&mut self, src: &Operand, xshape: &Shape, slot: u32) {
        let sizes = self.sizes(xshape);
        let rank = sizes.len();
        let n = sizes[rank - 1];
        if rank >= 2 && self.rows_readable(src) && !self.promoted.contains_key(&slot) {
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
    fn logsumexp_along(
        &mut self,
        ty: Type,
        n: Value,
        read: &mut dyn FnMut(&mut Self, Value) -> Value,
    ) -> Value {
        let max = self.b.declare_var(ty);
        let neg_inf = self.float_const(ty, f64::NEG_INFINITY);
        self.b.def_var(max, neg_inf);
        self.for_loop(n, &mut |tx, j| {
            let v = read(tx, j);
            let m = tx.b.use_var(max);
            let gt = tx.b.ins().fcmp(FloatCC::GreaterThan, v, m);
            let m = tx.choose(gt, v, m);
            tx.b.def_var(max, m);
        });
        let m = self.b.use_var(max);
        let sum = self.b.declare_var(ty);
        let zero = self.float_const(ty, 0.0);
        self.b.def_var(sum, zero);
        self.for_loop(n, &mut |tx, j| {
            let v = read(tx, j);
            let d = tx.b.ins().fsub(v, m);
            let e = tx.exp_inline(d);
            let s = tx.b.use_var(sum);
            let s = tx.b.ins().fadd(s, e);
            tx.b.def_var(sum, s);
        });
        let s = self.b.use_var(sum);
        let l = self.log_inline(s);
        let r = self.b.ins().fadd(m, l);
        let finite = self.is_finite(m);
        self.choose(finite, r, m)
    }

    /// Whether `read_rows` can read `op`.
    fn rows_readable(&self, op: &Operand) -> bool {
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
    fn read_rows(&mut self, op: &Operand, outer: &[Value], rows: &[Value], j: Value) -> Value {
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
                    let x = match self.promoted.get(slot) {
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

    fn is_finite(&mut self, x: Value) -> Value {
        // x − x is 0 for finite x and NaN for ±inf and NaN.
        let d = self.b.ins().fsub(x, x);
        let ty = self.value_type(x);
        let zero = self.float_const(ty, 0.0);
        self.b.ins().fcmp(FloatCC::Equal, d, zero)
    }

    /// For each axis of the reduced operand, the stride of the output it accumulates into.
    fn reduction_strides(&mut self, op: &Op, out: &Shape, x: &Shape) -> Vec<Value> {
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
            | Op::OneHot { .. }
            | Op::Expand(_)
            | Op::Reshape(_)
            | Op::Slice { .. }
            | Op::Unslice { .. }) => unreachable!("`{}` is not a reduction", other.name()),
        };
        self.last_reduced = strides.last() == Some(&Stride::Zero);
        strides.iter().map(|s| self.stride(s)).collect()
    }

    /// Horizontal sum of a vector's lanes, in lane order.
    fn hsum(&mut self, v: Value) -> Value {
        let (_, lanes) = self.vector_type();
        let mut acc = self.b.ins().extractlane(v, 0);
        for l in 1..lanes as u8 {
            let x = self.b.ins().extractlane(v, l);
            acc = self.b.ins().fadd(acc, x);
        }
        acc
    }

    /// Sums `src` (iterating over `xshape`) into `slot` at `out_strides`, vectorized along the
    /// last axis when the source allows it: a vector accumulator when that axis is reduced,
    /// vector read-modify-write of the output when it is kept.
    fn sum_loop(
        &mut self,
        src: &Operand,
        xshape: &Shape,
        out_strides: &[Value],
        last_reduced: bool,
        slot: u32,
    ) {
        let sizes = self.sizes(xshape);
        let rank = xshape.rank();
        let (vty, lanes) = self.vector_type();
        let vector = rank > 0 && self.vectorizable(src);
        if !vector {
            self.nest(&sizes, &mut |tx, idx| {
                let v = tx.read(src, idx);
                let o = tx.dot(idx, out_strides);
                let cur = tx.load_at(slot, o);
                let s = tx.b.ins().fadd(cur, v);
                tx.store_at(slot, o, s);
            });
            return;
        }
        let n = sizes[rank - 1];
        self.nest(&sizes[..rank - 1], &mut |tx, outer| {
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
                    let x = tx.read_vec(src, outer, j);
                    let a = tx.b.use_var(acc);
                    let a = tx.b.ins().fadd(a, x);
                    tx.b.def_var(acc, a);
                });
                tx.for_loop(rest, &mut |tx, t| {
                    let j = tx.add(done, t);
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
                tx.for_loop_by(done, lanes, &mut |tx, j| {
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

    /// A gather or a scatter-add: one call of its kernel (`kernels::gather`), which copies or
    /// adds whole rows along the contiguous axis and checks every index against the axis.
    /// Lowering gives both operands contiguous slots. `axes` places the indexed axis in the
    /// first operand: where it is, its length, and where the axes after it start.
    fn indexing(
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

    fn matmul(&mut self, g: &Graph, plan: &Plan, id: NodeId, slot: u32) {
        let node = g.node(id);
        let (a, b) = (node.inputs[0], node.inputs[1]);
        let view = |v: &Option<Val>| match v {
            Some(Val::View {
                slot,
                strides,
                offset,
            }) if offset.is_empty() => (*slot, strides.clone()),
            _ => unreachable!("matmul operands are views from their slot's start"),
        };
        let (sa, stra) = view(&plan.values[a.index()]);
        let (sb, strb) = view(&plan.values[b.index()]);
        let (ash, bsh) = (g.shape(a).clone(), g.shape(b).clone());
        if MatMulParts::of(&ash, &bsh).is_batched() {
            self.batched_matmul(g, (sa, &stra), (sb, &strb), id, slot);
            return;
        }
        let zero = self.iconst(0);
        let one = self.iconst(1);
        if ash.rank() + bsh.rank() == 3 {
            self.matvec(g, plan, id, slot, None, false);
            return;
        }
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
        let pa = self.slot_ptr(sa);
        let pb = self.slot_ptr(sb);
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
    fn batched_matmul(
        &mut self,
        g: &Graph,
        (sa, stra): (u32, &[Stride]),
        (sb, strb): (u32, &[Stride]),
        id: NodeId,
        slot: u32,
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
        let strc = crate::lower::contiguous(out);
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
            let own = shape.rank().saturating_sub(2);
            match (i + own).checked_sub(batch) {
                Some(j) if shape.0[j] != Dim::Fixed(1) => tx.stride(&strides[j]),
                _ => zero,
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
        let (pa, pb, pc) = (self.slot_ptr(sa), self.slot_ptr(sb), self.slot_ptr(slot));
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
    fn matvec(
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
        let view = |v: &Option<Val>| match v {
            Some(Val::View {
                slot,
                strides,
                offset,
            }) if offset.is_empty() => (*slot, strides.clone()),
            _ => unreachable!("matmul operands are views from their slot's start"),
        };
        let (sa, stra) = view(&plan.values[a.index()]);
        let (sb, strb) = view(&plan.values[b.index()]);
        let (ash, bsh) = (g.shape(a).clone(), g.shape(b).clone());
        let (mat, msh, mstr, vec, vstr, transposed) = if ash.rank() == 2 {
            (sa, &ash, &stra, sb, &strb, false)
        } else {
            (sb, &bsh, &strb, sa, &stra, true)
        };
        let (r0, r1) = (self.dim(msh.0[0]), self.dim(msh.0[1]));
        let (s0, s1) = (self.stride(&mstr[0]), self.stride(&mstr[1]));
        let (mut m, mut k, rs, cs) = if transposed {
            (r1, r0, s1, s0)
        } else {
            (r0, r1, s0, s1)
        };
        let inc = self.stride(&vstr[0]);
        let (mut pm, mut pv, mut py) =
            (self.slot_ptr(mat), self.slot_ptr(vec), self.slot_ptr(slot));
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

    /// 1 where `xs[0] cc xs[1]`, else 0.
    fn scalar_truth(&mut self, cc: FloatCC, xs: &[Value]) -> Value {
        let (zero, one) = (self.fconst(0.0), self.fconst(1.0));
        let c = self.b.ins().fcmp(cc, xs[0], xs[1]);
        self.b.ins().select(c, one, zero)
    }

    fn scalar_op(&mut self, op: &Op, xs: &[Value], exponent: Option<f64>) -> Value {
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
            | Op::OneHot { .. }
            | Op::SumTo(_)
            | Op::Expand(_)
            | Op::Reshape(_)
            | Op::Slice { .. }
            | Op::Unslice { .. }) => unreachable!("`{}` is not elementwise", other.name()),
        }
    }

    // ---- optimizer update -----------------------------------------------------------------

    /// One per-step scalar computed natively, exactly as `StepScalar::eval` computes it.
    fn step_scalar(&mut self, x: optim::StepScalar, lr: Value, pow: [Value; 2]) -> Value {
        use optim::StepScalar::*;
        let one = self.float_const(types::F64, 1.0);
        let v = match x {
            Lr => lr,
            Const(c) => self.float_const(types::F64, c),
            LrTimes(c) => {
                let c = self.float_const(types::F64, c);
                self.b.ins().fmul(lr, c)
            }
            InvBias1 | InvBias2 => {
                let p = pow[(x == InvBias2) as usize];
                let d = self.b.ins().fsub(one, p);
                self.b.ins().fdiv(one, d)
            }
            KerasLr => {
                let d2 = self.b.ins().fsub(one, pow[1]);
                let r = self.b.ins().sqrt(d2);
                let n = self.b.ins().fmul(lr, r);
                let d1 = self.b.ins().fsub(one, pow[0]);
                self.b.ins().fdiv(n, d1)
            }
        };
        self.in_dtype(v)
    }

    /// The optimizer update over every parameter: optional weight decay and global-norm
    /// clipping, then the rule, as one vectorized loop per parameter with a scalar tail.
    fn update(
        &mut self,
        spec: &OptimizerSpec,
        sizes: &[usize],
        slots: &UpdateSlots,
        scalar_base: usize,
    ) {
        let n_scalars = spec.n_scalars();
        let k: Vec<Value> = (0..n_scalars)
            .map(|i| self.scalar_arg(scalar_base + i))
            .collect();
        let wd = spec.get("weight_decay");
        let clip = spec.get("clip_norm");
        let scale = (clip > 0.0).then(|| self.clip_scale(sizes, slots, wd, clip));
        let rule = spec.rule();
        let (vty, lanes) = match self.dtype {
            DType::F32 => (types::F32X4, 4usize),
            DType::F64 => (types::F64X2, 2usize),
        };
        let any_vector = sizes.iter().any(|&n| n >= lanes);
        let kv: Vec<Value> = if any_vector {
            k.iter().map(|&v| self.splat(vty, v)).collect()
        } else {
            k.clone()
        };
        let wdv = (wd != 0.0).then(|| {
            let c = self.fconst(wd);
            (c, if any_vector { self.splat(vty, c) } else { c })
        });
        let scalev = scale.map(|c| (c, if any_vector { self.splat(vty, c) } else { c }));
        for (i, &len) in sizes.iter().enumerate() {
            let (p, g, st) = (slots.params[i], slots.grads[i], slots.states[i].clone());
            let n_vec = (len / lanes) as i64;
            let span = self.iconst(n_vec * lanes as i64);
            let ctx = RuleCtx {
                rule: &rule,
                p,
                g,
                st: &st,
            };
            if self.update_is_split(len, &ctx) {
                self.parallel_update(&ctx, &k, wd, scale, len);
                continue;
            }
            let (kvec, wdvec, scvec) = (kv.clone(), wdv.map(|w| w.1), scalev.map(|s| s.1));
            if n_vec > 0 {
                self.for_loop_by(span, lanes as i64, &mut |tx, j| {
                    tx.straight(|tx| {
                        tx.rule_element(&ctx, j, Some(vty), &kvec, wdvec, scvec);
                    })
                });
            }
            let (k, wds, scs) = (k.clone(), wdv.map(|w| w.0), scalev.map(|s| s.0));
            // The few elements past the last full vector are unrolled: no loop.
            for r in 0..(len % lanes) as i64 {
                let j = self.iconst(n_vec * lanes as i64 + r);
                self.rule_element(&ctx, j, None, &k, wds, scs);
            }
        }
    }

    /// Whether a parameter's update is worth sharing between cores: large, and in memory.
    fn update_is_split(&self, len: usize, ctx: &RuleCtx) -> bool {
        let in_memory = [ctx.p, ctx.g]
            .iter()
            .chain(ctx.st)
            .all(|s| !self.promoted.contains_key(s));
        in_memory && len as i64 >= 2 * parallel::MIN_WORK_PER_PART
    }

    /// One parameter's update split between cores: a part function updates chunks `lo..hi` of
    /// `UPDATE_CHUNK` elements (the last one shorter), reading the rule's scalars and the
    /// clipping scale from the frame.
    fn parallel_update(
        &mut self,
        ctx: &RuleCtx,
        k: &[Value],
        wd: f64,
        scale: Option<Value>,
        len: usize,
    ) {
        let n_k = k.len();
        let part = self.build_part(&mut |tx, base, lo, hi, _| {
            let load = |tx: &mut Tx, i: usize| {
                tx.b.ins()
                    .load(tx.ty, flags(), base, PartFrame::capture_at(i))
            };
            let k: Vec<Value> = (0..n_k).map(|i| load(tx, i)).collect();
            let scale = scale.map(|_| load(tx, n_k));
            let wd = (wd != 0.0).then(|| tx.fconst(wd));
            let (vty, lanes) = tx.vector_type();
            let kv: Vec<Value> = k.iter().map(|&v| tx.splat(vty, v)).collect();
            let wdv = wd.map(|w| tx.splat(vty, w));
            let scv = scale.map(|c| tx.splat(vty, c));
            let from = tx.mul_imm(lo, UPDATE_CHUNK);
            let to = tx.mul_imm(hi, UPDATE_CHUNK);
            let end = tx.iconst(len as i64);
            let past = tx.b.ins().icmp(IntCC::SignedGreaterThan, to, end);
            let to = tx.b.ins().select(past, end, to);
            let n = tx.sub(to, from);
            let n_vec = tx.shr_imm(n, lanes.trailing_zeros() as i64);
            let span = tx.mul_imm(n_vec, lanes);
            tx.for_loop_by(span, lanes, &mut |tx, j| {
                tx.straight(|tx| {
                    let j = tx.add(from, j);
                    tx.rule_element(ctx, j, Some(vty), &kv, wdv, scv);
                })
            });
            let rest = tx.sub(n, span);
            let tail = tx.add(from, span);
            tx.for_loop(rest, &mut |tx, t| {
                let j = tx.add(tail, t);
                tx.rule_element(ctx, j, None, &k, wd, scale);
            });
        });
        let Some(part) = part else { return };
        let captured: Vec<Value> = k.iter().copied().chain(scale).collect();
        let bytes = PartFrame::capture_at(captured.len()) as i64;
        let base = self.frame_with(&captured, bytes);
        let chunks = len.div_ceil(UPDATE_CHUNK as usize) as i64;
        let items = self.iconst(chunks);
        let work = self.iconst(UPDATE_CHUNK);
        self.run_parts(part, base, items, work);
    }

    /// min(1, clip / ‖g‖) over all gradients (after weight decay), summed in f64 in order.
    fn clip_scale(&mut self, sizes: &[usize], slots: &UpdateSlots, wd: f64, clip: f64) -> Value {
        let acc = self.b.declare_var(types::F64);
        let zero = self.float_const(types::F64, 0.0);
        self.b.def_var(acc, zero);
        let wdc = self.fconst(wd);
        for (i, &len) in sizes.iter().enumerate() {
            let (p, g) = (slots.params[i], slots.grads[i]);
            let n = self.iconst(len as i64);
            self.for_loop(n, &mut |tx, j| {
                let mut gv = tx.load_at(g, j);
                if wd != 0.0 {
                    let pv = tx.load_at(p, j);
                    let d = tx.b.ins().fmul(wdc, pv);
                    gv = tx.b.ins().fadd(gv, d);
                }
                let gv = if tx.dtype == DType::F32 {
                    tx.b.ins().fpromote(types::F64, gv)
                } else {
                    gv
                };
                let sq = tx.b.ins().fmul(gv, gv);
                let a = tx.b.use_var(acc);
                let a = tx.b.ins().fadd(a, sq);
                tx.b.def_var(acc, a);
            });
        }
        let total = self.b.use_var(acc);
        let norm = self.b.ins().sqrt(total);
        let c = self.float_const(types::F64, clip);
        let one = self.float_const(types::F64, 1.0);
        let ratio = self.b.ins().fdiv(c, norm);
        let over = self.b.ins().fcmp(FloatCC::GreaterThan, norm, c);
        let scale = self.b.ins().select(over, ratio, one);
        match self.dtype {
            DType::F32 => self.b.ins().fdemote(types::F32, scale),
            DType::F64 => scale,
        }
    }

    /// One element (or one vector of elements) of the update rule at offset `j`.
    fn rule_element(
        &mut self,
        ctx: &RuleCtx,
        j: Value,
        vty: Option<Type>,
        k: &[Value],
        wd: Option<Value>,
        scale: Option<Value>,
    ) {
        let load = |tx: &mut Self, slot: u32| match vty {
            None => tx.load_at(slot, j),
            Some(vty) => {
                let base = tx.slot_ptr(slot);
                let addr = tx.elem_addr(base, j);
                tx.b.ins().load(vty, flags(), addr, 0)
            }
        };
        let mut p = load(self, ctx.p);
        let mut g = load(self, ctx.g);
        if let Some(w) = wd {
            let d = self.b.ins().fmul(w, p);
            g = self.b.ins().fadd(g, d);
        }
        if let Some(c) = scale {
            g = self.b.ins().fmul(g, c);
        }
        let mut s: Vec<Value> = ctx.st.iter().map(|&slot| load(self, slot)).collect();
        for (target, e) in ctx.rule {
            let v = self.rule_expr(e, p, g, &s, k);
            match target {
                optim::Target::P => p = v,
                optim::Target::S(i) => s[*i] = v,
            }
        }
        let store = |tx: &mut Self, slot: u32, v: Value| match vty {
            None => tx.store_at(slot, j, v),
            Some(_) => {
                let base = tx.slot_ptr(slot);
                let addr = tx.elem_addr(base, j);
                tx.b.ins().store(flags(), v, addr, 0);
            }
        };
        for (slot, v) in ctx.st.iter().zip(&s) {
            store(self, *slot, *v);
        }
        store(self, ctx.p, p);
    }

    fn rule_expr(&mut self, e: &optim::E, p: Value, g: Value, s: &[Value], k: &[Value]) -> Value {
        use optim::E;
        match e {
            E::P => p,
            E::G => g,
            E::S(i) => s[*i],
            E::K(i) => k[*i],
            E::Add(a, b) | E::Sub(a, b) | E::Mul(a, b) | E::Div(a, b) => {
                let x = self.rule_expr(a, p, g, s, k);
                let y = self.rule_expr(b, p, g, s, k);
                match e {
                    E::Add(..) => self.b.ins().fadd(x, y),
                    E::Sub(..) => self.b.ins().fsub(x, y),
                    E::Mul(..) => self.b.ins().fmul(x, y),
                    _ => self.b.ins().fdiv(x, y),
                }
            }
            E::Sqrt(a) => {
                let x = self.rule_expr(a, p, g, s, k);
                self.b.ins().sqrt(x)
            }
        }
    }
}

/// Slots an update reads and writes.
#[derive(Clone, Debug)]
pub struct UpdateSlots {
    pub params: Vec<u32>,
    pub grads: Vec<u32>,
    /// Per parameter, its state arrays.
    pub states: Vec<Vec<u32>>,
}

impl UpdateSlots {
    /// The layout of a standalone update function: params, then gradients, then states.
    pub fn standalone(n_params: usize, n_state: usize) -> UpdateSlots {
        UpdateSlots {
            params: (0..n_params as u32).collect(),
            grads: (n_params as u32..2 * n_params as u32).collect(),
            states: (0..n_params)
                .map(|i| {
                    (0..n_state)
                        .map(|k| (2 * n_params + i * n_state + k) as u32)
                        .collect()
                })
                .collect(),
        }
    }
}

/// Elements per item of a split update: a few cache lines, so that parts start on a line.
const UPDATE_CHUNK: i64 = 256;

/// The frame a loop group split between cores reads (see `Tx::parallel_group`): the three
/// tables at bytes 0, 8 and 16, then one 8-byte entry per captured value (registers of
/// `regs`, then `promoted` slots), then `MAX_PARTS` areas of `part_bytes` for the sums.
struct PartFrame {
    regs: Vec<NodeId>,
    promoted: Vec<u32>,
    /// Each summed output: its slot, its elements, and its byte offset in a part's area.
    partials: Vec<(u32, i64, i64)>,
    part_bytes: i64,
}

impl PartFrame {
    fn capture_at(k: usize) -> i32 {
        24 + 8 * k as i32
    }

    fn partial_base(&self) -> i64 {
        let end = Self::capture_at(self.regs.len() + self.promoted.len()) as i64;
        (end + 15) & !15
    }
}

struct RuleCtx<'r> {
    rule: &'r [(optim::Target, optim::E)],
    p: u32,
    g: u32,
    st: &'r [u32],
}

/// How a view steps along the last axis of the iteration.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Inner {
    /// Broadcast: the same element for the whole axis.
    Zero,
    /// Contiguous.
    One,
    Other,
}

enum Operand {
    Scalar(Value),
    View {
        slot: u32,
        strides: Vec<Value>,
        inner: Inner,
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
