//! Native kernels that generated code calls: matrix–matrix products ([`gemm`]), matrix–vector
//! products ([`gemv`]), on x86-64 CPUs with AVX-512F a register-tile kernel for small f32
//! products (`small_gemm`) and a packed one for the others (`packed_gemm`), and gathers of rows
//! by index with their scatter-adds ([`gather`]). They know nothing of graphs, plans or
//! Cranelift; `jit::helpers` hands their addresses to generated code.
//!
//! Every kernel takes raw pointers with strides and is `unsafe`: the caller promises that every
//! element the sizes and strides address lies inside a live allocation, and that the output
//! overlaps neither input. Generated code keeps that promise because the runtime checks each
//! slot's length against the plan that produced the sizes and strides before every call.
//!
//! x86-64-only code (AVX2, FMA, AVX-512 intrinsics) is behind `cfg(target_arch = "x86_64")`
//! and chosen at run time by feature detection; elsewhere the portable loops and matrixmultiply
//! run, with the same results up to the order of additions.

#[cfg(target_arch = "x86_64")]
mod blocks;
pub mod gather;
pub mod gemm;
pub mod gemv;
#[cfg(target_arch = "x86_64")]
mod packed_gemm;
#[cfg(target_arch = "x86_64")]
mod small_gemm;

/// Operands for product tests: small values in patterns that a transposed or strided read
/// could not get right by accident.
#[cfg(test)]
pub(crate) mod test_operands {
    /// A left operand.
    pub fn operand_a(len: usize) -> Vec<f64> {
        (0..len)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 7.0)
            .collect()
    }

    /// A right operand, built like `operand_a` from another pattern.
    pub fn operand_b(len: usize) -> Vec<f64> {
        (0..len)
            .map(|i| ((i * 13 % 17) as f64 - 8.0) / 3.0)
            .collect()
    }
}
