//! Matrix–matrix products, C = A·B with any strides: matrixmultiply's kernels, split into
//! blocks of C across the worker pool when large, and a small-product kernel for f32.

/// A float type's product kernels: matrixmultiply's, and optionally one for small products.
pub trait Gemm: Sized + Copy {
    /// C = A·B through matrixmultiply, strided, on the calling thread.
    ///
    /// # Safety
    /// As for [`gemm`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        sa: [isize; 2],
        b: *const Self,
        sb: [isize; 2],
        c: *mut Self,
        sc: [isize; 2],
    );

    /// Computes C = A·B with a kernel for small products and returns true, or returns false
    /// without touching C when there is none for this type, size or CPU.
    ///
    /// # Safety
    /// As for [`gemm`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn small(
        _m: usize,
        _k: usize,
        _n: usize,
        _a: *const Self,
        _sa: [isize; 2],
        _b: *const Self,
        _sb: [isize; 2],
        _c: *mut Self,
        _sc: [isize; 2],
    ) -> bool {
        false
    }
}

macro_rules! gemm_with {
    ($t:ty, $kernel:path $(, $small:ident)?) => {
        impl Gemm for $t {
            unsafe fn gemm(
                m: usize,
                k: usize,
                n: usize,
                a: *const $t,
                sa: [isize; 2],
                b: *const $t,
                sb: [isize; 2],
                c: *mut $t,
                sc: [isize; 2],
            ) {
                // SAFETY: forwarded.
                unsafe {
                    $kernel(
                        m, k, n, 1.0, a, sa[0], sa[1], b, sb[0], sb[1], 0.0, c, sc[0], sc[1],
                    )
                }
            }
            $(
                unsafe fn small(
                    m: usize,
                    k: usize,
                    n: usize,
                    a: *const $t,
                    sa: [isize; 2],
                    b: *const $t,
                    sb: [isize; 2],
                    c: *mut $t,
                    sc: [isize; 2],
                ) -> bool {
                    // SAFETY: forwarded.
                    unsafe { $small(m, k, n, a, sa, b, sb, c, sc) }
                }
            )?
        }
    };
}
gemm_with!(f64, matrixmultiply::dgemm);
gemm_with!(f32, matrixmultiply::sgemm, small_f32);

/// C = A·B for strided A (m×k), B (k×n) and C (m×n): a small-product kernel where the type
/// and CPU have one, else matrixmultiply, as blocks of C on several cores when the product is
/// large (`on_cores`). `sa`, `sb`, `sc` are each operand's (row, column) strides in elements.
///
/// # Safety
/// For every i < m, p < k, j < n, the elements `a[i·sa₀ + p·sa₁]` and `b[p·sb₀ + j·sb₁]` are
/// readable and `c[i·sc₀ + j·sc₁]` writable, inside live allocations, and C overlaps neither A
/// nor B.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm<T: Gemm>(
    m: usize,
    k: usize,
    n: usize,
    a: *const T,
    sa: [isize; 2],
    b: *const T,
    sb: [isize; 2],
    c: *mut T,
    sc: [isize; 2],
) {
    // SAFETY: forwarded from the caller.
    if unsafe { T::small(m, k, n, a, sa, b, sb, c, sc) } {
        return;
    }
    // Addresses cross to the worker threads as integers: raw pointers are not `Sync`.
    let (a, b, c) = (a as usize, b as usize, c as usize);
    on_cores(m, k, n, &|r0, rows, c0, cols| {
        let (r0, c0) = (r0 as isize, c0 as isize);
        // SAFETY: each block lies inside the product, so its corners are inside A, B, C.
        unsafe {
            T::gemm(
                rows,
                k,
                cols,
                (a as *const T).offset(r0 * sa[0]),
                sa,
                (b as *const T).offset(c0 * sb[1]),
                sb,
                (c as *mut T).offset(r0 * sc[0] + c0 * sc[1]),
                sc,
            )
        }
    });
}

/// f32 products up to `small_gemm::MAX_WORK` multiply-adds run the AVX-512 register-tile
/// kernel where the CPU has AVX-512F.
///
/// # Safety
/// As for [`gemm`].
#[allow(clippy::too_many_arguments)]
unsafe fn small_f32(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    sa: [isize; 2],
    b: *const f32,
    sb: [isize; 2],
    c: *mut f32,
    sc: [isize; 2],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if m.min(k).min(n) >= 1
        && m * k * n <= super::small_gemm::MAX_WORK
        && super::small_gemm::available()
    {
        // SAFETY: as for `gemm`, and the CPU has AVX-512F (checked just above).
        unsafe {
            super::small_gemm::sgemm(m, k, n, a, sa[0], sa[1], b, sb[0], sb[1], c, sc[0], sc[1])
        };
        return true;
    }
    let _ = (m, k, n, a, sa, b, sb, c, sc);
    false
}

/// Products above this many multiply-adds are split between cores.
const SPLIT_WORK: usize = 1 << 22;

/// Runs `run(first_row, rows, first_column, columns)` over blocks of C that together cover
/// it: all of it on one core for products below `SPLIT_WORK` multiply-adds, else one block
/// per thread on the worker pool, of rows when C is taller than wide and of columns
/// otherwise. Each element of C is still the same kernel's sum over k, so the result does
/// not depend on the split.
fn on_cores(m: usize, k: usize, n: usize, run: &(dyn Fn(usize, usize, usize, usize) + Sync)) {
    let threads = crate::jit::parallel::threads();
    if threads == 1 || m.saturating_mul(k).saturating_mul(n) < SPLIT_WORK {
        return run(0, m, 0, n);
    }
    // Blocks in whole kernel tiles (at most 16 rows and 32 columns in matrixmultiply).
    let (len, unit) = if m > n { (m, 16) } else { (n, 32) };
    let items = len.div_ceil(unit) as i64;
    let parts = threads.min(items as usize);
    crate::jit::parallel::for_parts(items, parts, &|lo, hi| {
        let from = lo as usize * unit;
        let to = (hi as usize * unit).min(len);
        if to > from {
            if m > n {
                run(from, to - from, 0, n)
            } else {
                run(0, m, from, to - from)
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::Gemm;
    use crate::kernels::test_operands::{operand_a, operand_b};

    /// Products large enough to be split between cores (blocks of rows when C is taller than
    /// wide, of columns otherwise, ending in partial tiles) equal the product on one core bit
    /// for bit, in every layout of A and B.
    #[test]
    fn split_products_equal_the_unsplit_product() {
        crate::jit::parallel::set_threads(3);
        for &(m, k, n) in &[(301, 100, 150), (90, 120, 411)] {
            let (a, b) = (operand_a(m * k), operand_b(k * n));
            let a32: Vec<f32> = a.iter().map(|&v| v as f32).collect();
            let b32: Vec<f32> = b.iter().map(|&v| v as f32).collect();
            check_split(m, k, n, &a, &b);
            check_split(m, k, n, &a32, &b32);
        }
    }

    fn check_split<T: Gemm + Copy + PartialEq + Default>(
        m: usize,
        k: usize,
        n: usize,
        a: &[T],
        b: &[T],
    ) {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
            let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
            let mut split = vec![T::default(); m * n];
            // SAFETY: the buffers hold the shapes the strides describe.
            unsafe {
                super::gemm(
                    m,
                    k,
                    n,
                    a.as_ptr(),
                    [rsa, csa],
                    b.as_ptr(),
                    [rsb, csb],
                    split.as_mut_ptr(),
                    [n as isize, 1],
                )
            };
            let mut whole = vec![T::default(); m * n];
            // SAFETY: the buffers hold the shapes the strides describe.
            unsafe {
                T::gemm(
                    m,
                    k,
                    n,
                    a.as_ptr(),
                    [rsa, csa],
                    b.as_ptr(),
                    [rsb, csb],
                    whole.as_mut_ptr(),
                    [n as isize, 1],
                )
            };
            assert!(split == whole, "{m}×{k}×{n} ({ta}, {tb})");
        }
    }
}
