//! The native functions that generated code calls, each described once: [`Helper`] gives its
//! symbol, its Cranelift signature and its address, for each float type. Helpers are
//! registered by address, so nothing is looked up in the process's symbol table at run time,
//! and a helper without a signature or an address does not compile.
//!
//! The entry points taking pointers are `unsafe extern "C"`: generated code is their only
//! caller, and it passes slot buffers whose lengths the runtime checked against the plan that
//! produced the sizes and strides (see `runtime::call_checked`).

use super::parallel;
use crate::ir::DType;
use crate::kernels::{gather, gemm, gemv};
use cranelift::prelude::{AbiParam, Signature, types};
use cranelift_jit::JITModule;
use cranelift_module::Module;

/// Defines [`Math`]: each function's name, its arguments and its value in f64, from which both
/// native entry points are made (the f32 one rounds the f64 result, which is at least as
/// accurate as the f32 libm functions).
macro_rules! math_functions {
    ($($variant:ident $name:literal |$($arg:ident),+| $body:expr;)*) => {
        /// A scalar function that generated code calls outside loops (inside loops, `exp`,
        /// `log`, `log1p`, `sigmoid` and `softplus` are generated inline: `jit::math`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Math {
            $($variant),*
        }

        impl Math {
            pub const ALL: &[Math] = &[$(Math::$variant),*];

            /// Its name in symbols and in dumps of generated code.
            pub fn name(self) -> &'static str {
                match self {
                    $(Math::$variant => $name),*
                }
            }

            /// How many floats it takes.
            pub fn arity(self) -> usize {
                match self {
                    $(Math::$variant => [$(stringify!($arg)),+].len()),*
                }
            }

            fn address(self, dtype: DType) -> *const u8 {
                match self {
                    $(Math::$variant => {
                        extern "C" fn in_f64($($arg: f64),+) -> f64 {
                            $body
                        }
                        extern "C" fn in_f32($($arg: f32),+) -> f32 {
                            in_f64($($arg as f64),+) as f32
                        }
                        match dtype {
                            DType::F64 => in_f64 as *const u8,
                            DType::F32 => in_f32 as *const u8,
                        }
                    })*
                }
            }
        }
    };
}

math_functions! {
    Exp "exp" |x| x.exp();
    Log "log" |x| x.ln();
    Tanh "tanh" |x| x.tanh();
    Sigmoid "sigmoid" |x| crate::ir::interp::sigmoid(x);
    Pow "pow" |x, y| crate::ir::interp::pow(x, y);
    Log1p "log1p" |x| x.ln_1p();
    Expm1 "expm1" |x| x.exp_m1();
    Sin "sin" |x| x.sin();
    Cos "cos" |x| x.cos();
    Softplus "softplus" |x| crate::ir::interp::softplus(x);
    Erf "erf" |x| libm::erf(x);
    Erfc "erfc" |x| libm::erfc(x);
}

/// A native function generated code calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Helper {
    Math(Math, DType),
    /// C = A·B, strided (`kernels::gemm`).
    Gemm(DType),
    /// C[i] = A[i]·B[i] over batch axes, described by a `BatchedProduct` in memory
    /// (`kernels::gemm::batched_gemm`).
    BatchedGemm(DType),
    /// y = A·x or y += A·x, strided (`kernels::gemv`).
    Gemv(DType),
    /// Rows of an array picked by whole-number indices (`kernels::gather::gather`).
    Gather(DType),
    /// Rows added into the rows their indices name (`kernels::gather::scatter_add`).
    ScatterAdd(DType),
    /// Runs a compiled part over a range in parts on the worker pool (`parallel::run_parts`).
    RunParts,
}

const DTYPES: [DType; 2] = [DType::F64, DType::F32];

impl Helper {
    /// Every helper, for registering them all with a module.
    pub fn all() -> Vec<Helper> {
        let math = Math::ALL
            .iter()
            .flat_map(|&m| DTYPES.map(|d| Helper::Math(m, d)));
        let products = DTYPES
            .iter()
            .flat_map(|&d| [Helper::Gemm(d), Helper::BatchedGemm(d), Helper::Gemv(d)]);
        let indexing = DTYPES
            .iter()
            .flat_map(|&d| [Helper::Gather(d), Helper::ScatterAdd(d)]);
        math.chain(products)
            .chain(indexing)
            .chain(std::iter::once(Helper::RunParts))
            .collect()
    }

    /// The symbol it is declared under: `adjoint_exp`, `adjoint_exp_f32`, `adjoint_gemm_f64`.
    pub fn symbol(self) -> String {
        match self {
            Helper::Math(m, DType::F64) => format!("adjoint_{}", m.name()),
            Helper::Math(m, DType::F32) => format!("adjoint_{}_f32", m.name()),
            Helper::Gemm(d) => format!("adjoint_gemm_{}", d.name()),
            Helper::BatchedGemm(d) => format!("adjoint_batched_gemm_{}", d.name()),
            Helper::Gemv(d) => format!("adjoint_gemv_{}", d.name()),
            Helper::Gather(d) => format!("adjoint_gather_{}", d.name()),
            Helper::ScatterAdd(d) => format!("adjoint_scatter_add_{}", d.name()),
            Helper::RunParts => "adjoint_parallel".into(),
        }
    }

    pub fn signature(self, module: &JITModule) -> Signature {
        let mut sig = module.make_signature();
        let ints = |n: usize| vec![AbiParam::new(types::I64); n];
        match self {
            Helper::Math(m, d) => {
                sig.params = vec![AbiParam::new(float_type(d)); m.arity()];
                sig.returns.push(AbiParam::new(float_type(d)));
            }
            Helper::Gemm(_) => sig.params = ints(12),
            Helper::BatchedGemm(_) => sig.params = ints(4),
            Helper::Gemv(_) => sig.params = ints(9),
            Helper::Gather(_) | Helper::ScatterAdd(_) => sig.params = ints(7),
            Helper::RunParts => {
                sig.params = ints(4);
                sig.returns.push(AbiParam::new(types::I64));
            }
        }
        sig
    }

    pub fn address(self) -> *const u8 {
        match self {
            Helper::Math(m, d) => m.address(d),
            Helper::Gemm(DType::F64) => gemm_f64 as *const u8,
            Helper::Gemm(DType::F32) => gemm_f32 as *const u8,
            Helper::BatchedGemm(DType::F64) => batched_gemm_f64 as *const u8,
            Helper::BatchedGemm(DType::F32) => batched_gemm_f32 as *const u8,
            Helper::Gemv(DType::F64) => gemv_f64 as *const u8,
            Helper::Gemv(DType::F32) => gemv_f32 as *const u8,
            Helper::Gather(DType::F64) => gather_f64 as *const u8,
            Helper::Gather(DType::F32) => gather_f32 as *const u8,
            Helper::ScatterAdd(DType::F64) => scatter_add_f64 as *const u8,
            Helper::ScatterAdd(DType::F32) => scatter_add_f32 as *const u8,
            Helper::RunParts => parallel::run_parts as *const u8,
        }
    }
}

fn float_type(d: DType) -> types::Type {
    match d {
        DType::F64 => types::F64,
        DType::F32 => types::F32,
    }
}

/// Defines the entry point of a matrix–matrix product for one float type.
macro_rules! gemm_entry {
    ($name:ident, $t:ty) => {
        /// C = A·B for strided A (m×k), B (k×n), C (m×n), from generated code.
        ///
        /// # Safety
        /// As for `kernels::gemm::gemm`, with the strides in elements.
        #[allow(clippy::too_many_arguments)]
        unsafe extern "C" fn $name(
            m: i64,
            k: i64,
            n: i64,
            a: *const $t,
            rsa: i64,
            csa: i64,
            b: *const $t,
            rsb: i64,
            csb: i64,
            c: *mut $t,
            rsc: i64,
            csc: i64,
        ) {
            let s = |r: i64, c: i64| [r as isize, c as isize];
            // SAFETY: forwarded from generated code, which keeps `gemm`'s contract.
            unsafe {
                gemm::gemm(
                    m as usize,
                    k as usize,
                    n as usize,
                    a,
                    s(rsa, csa),
                    b,
                    s(rsb, csb),
                    c,
                    s(rsc, csc),
                )
            }
        }
    };
}
gemm_entry!(gemm_f64, f64);
gemm_entry!(gemm_f32, f32);

/// The description of a batched product that generated code writes to its stack and passes
/// to `adjoint_batched_gemm_*`: sizes and (row, column) strides of the matrices, in elements,
/// followed in memory by `rank` `kernels::gemm::BatchAxis` entries (64-bit words: generated
/// code targets 64-bit machines only), outermost first.
#[repr(C)]
pub struct BatchedProduct {
    pub rank: i64,
    pub m: i64,
    pub k: i64,
    pub n: i64,
    pub sa: [i64; 2],
    pub sb: [i64; 2],
    pub sc: [i64; 2],
}

/// Defines the entry point of a batched matrix–matrix product for one float type.
macro_rules! batched_gemm_entry {
    ($name:ident, $t:ty) => {
        /// C[i] = A[i]·B[i] for every index i of the batch axes `desc` describes (summed
        /// along those where C's stride is 0), from generated code.
        ///
        /// # Safety
        /// `desc` points to a `BatchedProduct` followed by its `rank` `BatchAxis` entries,
        /// and A, B and C keep `kernels::gemm::batched_gemm`'s contract for them.
        unsafe extern "C" fn $name(
            desc: *const BatchedProduct,
            a: *const $t,
            b: *const $t,
            c: *mut $t,
        ) {
            // SAFETY: generated code writes the header and its axes before the call.
            let (p, batch) = unsafe {
                let p = &*desc;
                let first = desc.add(1) as *const gemm::BatchAxis;
                (p, std::slice::from_raw_parts(first, p.rank as usize))
            };
            let s = |x: [i64; 2]| x.map(|v| v as isize);
            // SAFETY: forwarded from generated code, which keeps `batched_gemm`'s contract.
            unsafe {
                gemm::batched_gemm(
                    batch,
                    p.m as usize,
                    p.k as usize,
                    p.n as usize,
                    a,
                    s(p.sa),
                    b,
                    s(p.sb),
                    c,
                    s(p.sc),
                )
            }
        }
    };
}
batched_gemm_entry!(batched_gemm_f64, f64);
batched_gemm_entry!(batched_gemm_f32, f32);

/// Defines the entry point of a matrix–vector product for one float type.
macro_rules! gemv_entry {
    ($name:ident, $t:ty) => {
        /// y = A·x (or y += A·x when `acc` ≠ 0) for a strided m×k matrix A, from generated
        /// code.
        ///
        /// # Safety
        /// As for the kernel `kernels::gemv::$name`.
        #[allow(clippy::too_many_arguments)]
        unsafe extern "C" fn $name(
            m: i64,
            k: i64,
            a: *const $t,
            rsa: i64,
            csa: i64,
            x: *const $t,
            incx: i64,
            y: *mut $t,
            acc: i64,
        ) {
            // SAFETY: forwarded from generated code, which keeps the kernel's contract.
            unsafe {
                gemv::$name(
                    m as usize,
                    k as usize,
                    a,
                    rsa as isize,
                    csa as isize,
                    x,
                    incx as isize,
                    y,
                    acc != 0,
                )
            }
        }
    };
}
gemv_entry!(gemv_f64, f64);
gemv_entry!(gemv_f32, f32);

/// Defines the entry point of a gather or a scatter-add for one float type.
macro_rules! indexing_entry {
    ($name:ident, $kernel:ident, $t:ty, gathers: $gathers:literal) => {
        /// `kernels::gather` on `src` (the array indexed, or the values), the indices and the
        /// output, from generated code.
        ///
        /// # Safety
        /// With `e` the extents `outer × rows × inner` and `count` indices: `idx` holds `count`
        /// elements; for a gather `src` holds `outer·rows·inner` and `out` `outer·count·inner`,
        /// for a scatter-add the other way round; all inside live allocations, `out`
        /// overlapping neither input.
        unsafe extern "C" fn $name(
            src: *const $t,
            idx: *const $t,
            out: *mut $t,
            outer: i64,
            rows: i64,
            count: i64,
            inner: i64,
        ) {
            let e = gather::Extents {
                outer: outer as usize,
                rows: rows as usize,
                count: count as usize,
                inner: inner as usize,
            };
            let (indexed, per_index) = (e.outer * e.rows * e.inner, e.outer * e.count * e.inner);
            let (src_len, out_len) = if $gathers {
                (indexed, per_index)
            } else {
                (per_index, indexed)
            };
            // SAFETY: the extents are the caller's, who keeps them inside the slots.
            let (src, idx, out) = unsafe {
                (
                    gather::slice(src, src_len),
                    gather::slice(idx, e.count),
                    gather::slice_mut(out, out_len),
                )
            };
            gather::$kernel(src, idx, out, e);
        }
    };
}
indexing_entry!(gather_f64, gather, f64, gathers: true);
indexing_entry!(gather_f32, gather, f32, gathers: true);
indexing_entry!(scatter_add_f64, scatter_add, f64, gathers: false);
indexing_entry!(scatter_add_f32, scatter_add, f32, gathers: false);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every helper has a distinct symbol, so none shadows another in a module.
    #[test]
    fn symbols_are_distinct() {
        let all = Helper::all();
        let symbols: std::collections::HashSet<String> = all.iter().map(|h| h.symbol()).collect();
        assert_eq!(symbols.len(), all.len());
    }

    /// The f32 entry of a function rounds its f64 entry's value.
    #[test]
    fn f32_entries_round_the_f64_value() {
        for &m in Math::ALL {
            let args = [0.75f64, 1.5];
            let (x, y) = (args[0], args[1]);
            let (v64, v32) = match m.arity() {
                1 => {
                    // SAFETY: a one-argument function's entries have these signatures.
                    let f: extern "C" fn(f64) -> f64 =
                        unsafe { std::mem::transmute(m.address(DType::F64)) };
                    // SAFETY: as above.
                    let g: extern "C" fn(f32) -> f32 =
                        unsafe { std::mem::transmute(m.address(DType::F32)) };
                    (f(x), g(x as f32))
                }
                _ => {
                    // SAFETY: a two-argument function's entries have these signatures.
                    let f: extern "C" fn(f64, f64) -> f64 =
                        unsafe { std::mem::transmute(m.address(DType::F64)) };
                    // SAFETY: as above.
                    let g: extern "C" fn(f32, f32) -> f32 =
                        unsafe { std::mem::transmute(m.address(DType::F32)) };
                    (f(x, y), g(x as f32, y as f32))
                }
            };
            assert_eq!(v64 as f32, v32, "{}", m.name());
        }
    }
}
