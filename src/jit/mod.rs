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
use crate::ir::{DType, Dim, Graph, NodeId, Op, Shape};
use crate::lower::{
    Decision, Member, MemberKind, Parts, Plan, RowBlocks, Sharing, Step, Stride, SumBlocks, Update,
    Val, Vector, Walk,
};
use crate::model::GraphFn;
use crate::optim::{self, OptimizerSpec};
use cranelift::codegen::cursor::{Cursor, FuncCursor};
use cranelift::codegen::ir::{BlockArg, FuncRef, MemFlagsData, UserFuncName};
use cranelift::codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift::codegen::{Context, settings};
use cranelift::prelude::*;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module, ModuleReloc};
use elementwise::Run;
mod address;
mod builder;
mod elementwise;
pub mod fpenv;
mod groups;
mod helpers;
mod math;
mod outline;
pub mod parallel;
mod part_code;
mod parts;
mod products;
mod reduce;
mod train_loop;
mod translate;
mod update;

use address::*;
use builder::*;
use elementwise::*;
use groups::GroupLoop;
use parts::*;
use reduce::SumLoop;
pub use update::UpdateSlots;

use helpers::{Helper, Math};
use part_code::PartCode;
use rustc_hash::FxHashMap as HashMap;
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

/// Whether a function over `n_slots` slots running `plan` is generated `bounded` (see `Tx`).
fn is_bounded(n_slots: usize, plan: &Plan) -> bool {
    let scalar_steps = plan
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Scalar { .. }))
        .count();
    n_slots > MAX_HELD_VALUES || scalar_steps > MAX_HELD_VALUES || plan.steps.len() > MAX_HELD_STEPS
}

/// Whether a function running `plan` generates its steps as functions of their own
/// (`outline`): one of more than `MAX_HELD_STEPS` steps, which draws no dropout mask (in the
/// fused training loop a mask reads the step's key from a register).
fn outlines_steps(g: &Graph, plan: &Plan) -> bool {
    plan.steps.len() > MAX_HELD_STEPS && !g.ids().any(|id| matches!(g.op(id), Op::DropMask { .. }))
}

/// A JIT module holding compiled functions. The code lives as long as this value.
pub struct Jit {
    module: JITModule,
    ctx: Context,
    fctx: FunctionBuilderContext,
    helpers: HashMap<Helper, FuncId>,
    parts: PartCode,
    n_functions: usize,
    /// Each function's vector constants, read by its code: kept as long as the code.
    pools: Vec<Vec<u128>>,
    /// The target with the single-pass register allocator, for functions that dispatch
    /// (`Allocator::for_shape`).
    dispatch_isa: OwnedTargetIsa,
}

/// Which of Cranelift's register allocators compiles a function.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Allocator {
    /// Splits live ranges to keep values in registers through loops: the allocator of every
    /// function whose loops do the work.
    Backtracking,
    /// One pass, values in their stack slots between blocks: for a function that outlines its
    /// steps (`outlines_steps`). Its work is in the functions it calls; it keeps values across
    /// fifty calls, each of which clobbers every register they could be in, and backtracking
    /// spent most of its time splitting their ranges around the calls (W8's training function:
    /// 2.8 ms of Cranelift's 14, against 1.2 ms in one pass), for code that runs once a step.
    SinglePass,
}

impl Allocator {
    fn for_shape(shape: &FnShape) -> Allocator {
        match shape.outline {
            true => Allocator::SinglePass,
            false => Allocator::Backtracking,
        }
    }

    fn setting(self) -> &'static str {
        match self {
            Allocator::Backtracking => "backtracking",
            Allocator::SinglePass => "single_pass",
        }
    }
}

/// The host's target with adjoint's settings and the given register allocator.
fn target_isa(allocator: Allocator) -> Result<OwnedTargetIsa, CodegenError> {
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
    set(&mut flags, "regalloc_algorithm", allocator.setting())?;
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
    cranelift_native::builder()
        .map_err(|e| CodegenError::Isa(e.to_string()))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| CodegenError::Isa(e.to_string()))
}

impl Jit {
    pub fn new() -> Result<Jit, CodegenError> {
        let isa = target_isa(Allocator::Backtracking)?;
        let dispatch_isa = target_isa(Allocator::SinglePass)?;
        let mut jb = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
        let all = Helper::all();
        for h in &all {
            jb.symbol(h.symbol(), h.address());
        }
        let mut module = JITModule::new(jb);
        let mut helpers = HashMap::default();
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
            parts: PartCode::default(),
            n_functions: 0,
            pools: Vec::new(),
            dispatch_isa,
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
            outline: outlines_steps(&f.graph, plan),
        };
        self.define(shape, |tx| {
            for (step, decision) in plan.steps.iter().zip(&plan.decisions) {
                tx.step(&f.graph, plan, step, decision);
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
            outline: false,
        };
        // No plan holds a standalone update: its parts and vectors come from the plan's rules
        // directly.
        let updates: Vec<Update> = sizes
            .iter()
            .map(|&n| Update {
                parts: crate::lower::parts::update_parts(n),
                vector: crate::lower::vectorize::update_vector(n, dtype),
            })
            .collect();
        self.define(shape, move |tx| {
            tx.update(&spec, &sizes, &updates, &slots, 0)
        })
    }

    fn define(
        &mut self,
        shape: FnShape,
        body: impl FnOnce(&mut Tx),
    ) -> Result<FuncId, CodegenError> {
        let allocator = Allocator::for_shape(&shape);
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
                InModule {
                    module: &mut self.module,
                    helper_ids: &self.helpers,
                    part_code: &mut self.parts,
                },
                &mut pool,
            );
            body(&mut tx);
            failure = tx.part.failure.take();
            literals = std::mem::take(&mut tx.pool.literals);
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
        let isa = match allocator {
            Allocator::Backtracking => None,
            Allocator::SinglePass => Some(&*self.dispatch_isa),
        };
        define_dumped(&mut self.module, id, &mut self.ctx, &name, isa)?;
        self.module.clear_context(&mut self.ctx);
        Ok(id)
    }

    /// Makes every defined function callable and returns their entry points.
    pub fn finalize(&mut self, ids: &[FuncId]) -> Result<Vec<KernelFn>, CodegenError> {
        // The parts' Cranelift functions were kept to compare new parts with; the finished
        // module compiles no more, and its code lives as long as the model.
        self.parts = PartCode::default();
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
    isa: Option<&dyn TargetIsa>,
) -> Result<(), CodegenError> {
    let dump = dump();
    if let Some(d) = dump.filter(|d| d.clif) {
        (d.sink)(&ctx.func.display().to_string());
    }
    let disasm = dump.is_some_and(|d| d.asm);
    ctx.set_disasm(disasm);
    let defined = match isa {
        None => module
            .define_function(id, ctx)
            .map_err(|e| format!("{e:?}")),
        Some(isa) => define_with(module, id, ctx, isa),
    };
    defined.map_err(|message| CodegenError::Define {
        name: name.into(),
        message,
    })?;
    if let Some(d) = dump.filter(|d| d.asm) {
        let code = ctx.compiled_code().and_then(|c| c.vcode.clone());
        (d.sink)(&code.unwrap_or_default());
    }
    Ok(())
}

/// `Module::define_function` with a target of our choosing in place of the module's: the
/// same compilation, alignment and relocations, then the bytes handed to the module.
fn define_with(
    module: &mut JITModule,
    id: FuncId,
    ctx: &mut Context,
    isa: &dyn TargetIsa,
) -> Result<(), String> {
    ctx.compile(isa, &mut Default::default())
        .map_err(|e| format!("{:?}", e.inner))?;
    let compiled = ctx.compiled_code().expect("compiled just now");
    let alignment = (compiled.buffer.alignment as u64)
        .max(isa.function_alignment().minimum as u64)
        .max(isa.symbol_alignment());
    let relocs: Vec<ModuleReloc> = compiled
        .buffer
        .relocs()
        .iter()
        .map(|r| ModuleReloc::from_mach_reloc(r, &ctx.func, id))
        .collect();
    let bytes = compiled.code_buffer().to_vec();
    module
        .define_function_bytes(id, alignment, &bytes, &relocs)
        .map_err(|e| format!("{e:?}"))
}
