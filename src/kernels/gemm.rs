//! Matrix–matrix products, C = A·B with any strides: for f32 on CPUs with AVX-512F a packed
//! kernel (`packed_gemm`) and one for small products (`small_gemm`), elsewhere matrixmultiply's
//! kernels; split into blocks of C across the worker pool when large. How a product is shared
//! between cores is the rule the plan records (`lower::sharing::RULE`).

use crate::lower::sharing::RULE;

/// A float type's product kernels: matrixmultiply's, and optionally one for small products.
pub trait Gemm: Sized + Copy {
    /// C = A·B through the type's packed kernel (f32 on AVX-512F: `packed_gemm`; else
    /// matrixmultiply), strided, on the calling thread.
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

    /// C += A·B through the type's packed kernel, strided, on the calling thread.
    ///
    /// # Safety
    /// As for [`gemm`], and C is initialized.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_add(
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
            unsafe fn gemm_add(
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
                        m, k, n, 1.0, a, sa[0], sa[1], b, sb[0], sb[1], 1.0, c, sc[0], sc[1],
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
gemm_with!(f32, sgemm_f32, small_f32);

/// f32 products through the packed AVX-512 kernel (`packed_gemm`, the same sums as
/// matrixmultiply's to the bit) where the CPU has AVX-512F, else through matrixmultiply.
///
/// # Safety
/// As for `matrixmultiply::sgemm`.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_f32(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    beta: f32,
    c: *mut f32,
    rsc: isize,
    csc: isize,
) {
    #[cfg(target_arch = "x86_64")]
    if alpha == 1.0
        && (beta == 0.0 || beta == 1.0)
        && m.min(k).min(n) >= 1
        && super::packed_gemm::available()
    {
        let (sa, sb, sc) = ([rsa, csa], [rsb, csb], [rsc, csc]);
        // SAFETY: forwarded; the CPU has AVX-512F (checked just above).
        unsafe { super::packed_gemm::sgemm(m, k, n, a, sa, b, sb, c, sc, beta == 1.0) };
        return;
    }
    // SAFETY: forwarded.
    unsafe { matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
}

/// C = A·B for strided A (m×k), B (k×n) and C (m×n): a small-product kernel where the type
/// and CPU have one, else the type's kernel (`Gemm::gemm`), as blocks of C on several cores
/// when the product is large (`on_cores`). `sa`, `sb`, `sc` are each operand's (row, column) strides in elements.
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
    if sc[1] != 1 && sc[0] == 1 {
        // C's columns are contiguous (a product written transposed into its reader's layout):
        // Cᵀ = Bᵀ·Aᵀ writes rows. The choice depends on the layout alone, never on the
        // thread count.
        let t = |s: [isize; 2]| [s[1], s[0]];
        // SAFETY: the same elements, addressed through transposed views.
        return unsafe { gemm(n, k, m, b, t(sb), a, t(sa), c, t(sc)) };
    }
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

/// One batch axis of a batched product: its length and the element stride of A, B and C
/// along it (0 where an operand is broadcast). Laid out as four machine words, as generated
/// code writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BatchAxis {
    pub len: usize,
    pub strides: [isize; 3],
}

/// C[i] = A[i]·B[i] for every index i of the batch axes (numpy's `matmul`), each product as
/// [`gemm`] computes it. Small products are shared between cores a batch at a time; a product
/// large enough to be split runs split, one after another. Either way each element of C is
/// the same kernel's sum, so the result does not depend on the thread count. While a small
/// product runs, the cache is asked for the next one's operands (`prefetch_view`).
///
/// A batch axis along which C's stride is 0 is summed over: C = Σᵢ A[i]·B[i] along it (a
/// weight's gradient summed over the batch). Where A's columns and B's rows continue across
/// it, it becomes part of the inner dimension of one product (`fold_sums`); otherwise the
/// products are added into C one after another, in index order, on the calling thread.
///
/// # Safety
/// For every index of the batch axes, the product at the offsets the axes' strides give
/// satisfies [`gemm`]'s contract, and two indices write the same element of C only where
/// they differ along axes with C's stride 0.
#[allow(clippy::too_many_arguments)]
pub unsafe fn batched_gemm<T: Gemm>(
    batch: &[BatchAxis],
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
    // Batch axes that only stack rows of A and C (B broadcast along them) make one product of
    // more rows: a layer `[B, T, d] @ W` runs as one `[B·T, d] @ W`, with the same sums.
    let (batch, m) = fold_rows(batch, m, sa[0], sc[0]);
    let (batch, k) = fold_sums(batch, k, sa[1], sb[0]);
    let count: usize = batch.iter().map(|x| x.len).product();
    if batch.iter().any(|x| x.strides[2] == 0 && x.len > 1) {
        // SAFETY: forwarded from the caller.
        return unsafe { add_products(batch, count, m, k, n, a, sa, b, sb, c, sc) };
    }
    let work = m.saturating_mul(k).saturating_mul(n);
    // Addresses cross to the worker threads as integers: raw pointers are not `Sync`.
    let (a, b, c) = (a as usize, b as usize, c as usize);
    let ahead = work <= PREFETCH_MAX_WORK;
    let run = |lo: usize, hi: usize| {
        for i in lo..hi {
            let [oa, ob, oc] = batch_offsets(batch, i);
            if ahead && i + 1 < hi {
                // The operands only: C is written, and its lines are fetched by the writes.
                let [na, nb, _] = batch_offsets(batch, i + 1);
                prefetch_view((a as *const T).wrapping_offset(na), m, k, sa);
                prefetch_view((b as *const T).wrapping_offset(nb), k, n, sb);
            }
            // SAFETY: the product at batch index i lies inside A, B and C (the caller's
            // contract), and no other index writes its part of C.
            unsafe {
                gemm(
                    m,
                    k,
                    n,
                    (a as *const T).offset(oa),
                    sa,
                    (b as *const T).offset(ob),
                    sb,
                    (c as *mut T).offset(oc),
                    sc,
                )
            }
        }
    };
    let threads = crate::jit::parallel::threads();
    let min = RULE.min_work;
    if threads == 1 || work >= min || work.saturating_mul(count) < min {
        return run(0, count);
    }
    let parts = threads.min(count);
    crate::jit::parallel::for_parts(count as i64, parts, &|lo, hi| run(lo as usize, hi as usize));
}

/// Products up to this many multiply-adds have the next product's operands asked for while
/// they run: attention's 64×32 by 32×64 products each read rows strided across a `[T, 3d]`
/// buffer written long before, which the hardware prefetchers do not follow.
const PREFETCH_MAX_WORK: usize = 1 << 20;

/// Asks the cache for every line of a `rows × cols` view with strides `s` whose rows (or
/// columns) are contiguous but lie apart: the hardware prefetchers follow a contiguous run
/// (a view whose rows follow each other), not rows strided across a wider buffer. Other views
/// are left alone. Prefetches never fault, so any address is fine.
fn prefetch_view<T>(p: *const T, rows: usize, cols: usize, s: [isize; 2]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        const LINE: usize = 64;
        let (lines, len, apart) = match s {
            [r, 1] => (rows, cols, r),
            [1, c] => (cols, rows, c),
            _ => return,
        };
        if lines < 2 || apart == len as isize {
            return;
        }
        let size = std::mem::size_of::<T>();
        for l in 0..lines as isize {
            let start = p.wrapping_offset(l * apart) as usize;
            let end = start.wrapping_add(len * size);
            for line in (start / LINE)..end.div_ceil(LINE) {
                let at = (line * LINE) as *const i8;
                // SAFETY: a prefetch reads nothing architecturally and never faults.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(at) };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, rows, cols, s);
}

/// The batch axes left and the rows of each product once the innermost batch axes along which
/// B is broadcast and A's and C's rows continue (a stride of `m` rows) are made rows.
pub(crate) fn fold_rows(
    batch: &[BatchAxis],
    mut m: usize,
    row_a: isize,
    row_c: isize,
) -> (&[BatchAxis], usize) {
    let mut kept = batch.len();
    while let Some(axis) = kept.checked_sub(1).map(|i| batch[i]) {
        let rows = m as isize;
        let [a, b, c] = axis.strides;
        // C's stride 0 is a sum over the axis (`fold_sums`), never more rows.
        if b != 0 || a != rows * row_a || c != rows * row_c || m == 0 || c == 0 {
            break;
        }
        m *= axis.len;
        kept -= 1;
    }
    (&batch[..kept], m)
}

/// The batch axes left and the inner dimension of each product once the innermost batch axes
/// along which C is summed (stride 0) and A's columns and B's rows continue (a stride of `k`
/// of them) are made part of the inner dimension: a weight's gradient `Σ_b x_bᵀ g_b` over
/// `[B, T, d]` and `[B, T, e]` runs as one `[d, B·T] @ [B·T, e]`. Axes of length 1 go too.
fn fold_sums(
    batch: &[BatchAxis],
    mut k: usize,
    col_a: isize,
    row_b: isize,
) -> (&[BatchAxis], usize) {
    let mut kept = batch.len();
    while let Some(axis) = kept.checked_sub(1).map(|i| batch[i]) {
        let inner = k as isize;
        let [a, b, c] = axis.strides;
        let continues = c == 0 && a == inner * col_a && b == inner * row_b;
        if !continues && axis.len != 1 {
            break;
        }
        k *= axis.len;
        kept -= 1;
    }
    (&batch[..kept], k)
}

/// C = Σ A[i]·B[i] over batch axes with C's stride 0 that do not fold into the inner
/// dimension, the products run in index order on the calling thread: the first product into
/// each element of C sets it, the others add to it.
///
/// # Safety
/// As for [`batched_gemm`].
#[allow(clippy::too_many_arguments)]
unsafe fn add_products<T: Gemm>(
    batch: &[BatchAxis],
    count: usize,
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
    for i in 0..count {
        let [oa, ob, oc] = batch_offsets(batch, i);
        let (a, b, c) = (
            a.wrapping_offset(oa),
            b.wrapping_offset(ob),
            c.wrapping_offset(oc),
        );
        // SAFETY: the product at batch index i lies inside A, B and C (the caller's
        // contract); an element of C it adds to was set by an earlier index.
        unsafe {
            if first_of_sum(batch, i) {
                gemm(m, k, n, a, sa, b, sb, c, sc)
            } else {
                T::gemm_add(m, k, n, a, sa, b, sb, c, sc)
            }
        }
    }
}

/// Whether batch index `i` is at 0 along every axis that C is summed along (stride 0): the
/// first index, in index order, to write its elements of C.
fn first_of_sum(batch: &[BatchAxis], mut i: usize) -> bool {
    let mut first = true;
    for axis in batch.iter().rev() {
        first &= axis.strides[2] != 0 || i.is_multiple_of(axis.len);
        i /= axis.len;
    }
    first
}

/// The element offsets of A, B and C at linear batch index `i` (the last axis fastest).
fn batch_offsets(batch: &[BatchAxis], mut i: usize) -> [isize; 3] {
    let mut off = [0isize; 3];
    for axis in batch.iter().rev() {
        let at = (i % axis.len) as isize;
        i /= axis.len;
        for (o, s) in off.iter_mut().zip(axis.strides) {
            *o += at * s;
        }
    }
    off
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

/// Runs `run(first_row, rows, first_column, columns)` over blocks of C that together cover
/// it, by the plan's sharing rule (`lower::sharing::RULE`): all of it on one core for products
/// below `min_work` multiply-adds, else one block per thread on the worker pool, of rows when
/// C is taller than wide and of columns otherwise. Each element of C is still the same
/// kernel's sum over k, so the result does not depend on the split.
fn on_cores(m: usize, k: usize, n: usize, run: &(dyn Fn(usize, usize, usize, usize) + Sync)) {
    let threads = crate::jit::parallel::threads();
    if threads == 1 || m.saturating_mul(k).saturating_mul(n) < RULE.min_work {
        return run(0, m, 0, n);
    }
    // Blocks in whole kernel tiles.
    let (len, unit) = if m > n {
        (m, RULE.row_block)
    } else {
        (n, RULE.column_block)
    };
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

    /// A batch with a broadcast axis (stride 0 in B) and transposed operands equals the
    /// products computed one by one, on one thread and on three.
    #[test]
    fn batched_products_equal_the_products_one_by_one() {
        // 16 products of 2^18 multiply-adds: shared between cores a product at a time.
        let (m, k, n) = (64, 64, 64);
        let (a, b) = (operand_a(4 * 4 * m * k), operand_b(4 * k * n));
        // A is [4, 4, m, k] read transposed (stored [4, 4, k, m]); B is [4, k, n], broadcast
        // along the first batch axis.
        let batch = [
            super::BatchAxis {
                len: 4,
                strides: [(4 * m * k) as isize, 0, (4 * m * n) as isize],
            },
            super::BatchAxis {
                len: 4,
                strides: [(m * k) as isize, (k * n) as isize, (m * n) as isize],
            },
        ];
        let (sa, sb, sc) = ([1, m as isize], [n as isize, 1], [n as isize, 1]);
        for threads in [1, 3] {
            crate::jit::parallel::set_threads(threads);
            let mut c = vec![0.0; 16 * m * n];
            // SAFETY: every batch index's product lies inside the buffers.
            unsafe {
                super::batched_gemm(
                    &batch,
                    m,
                    k,
                    n,
                    a.as_ptr(),
                    sa,
                    b.as_ptr(),
                    sb,
                    c.as_mut_ptr(),
                    sc,
                )
            };
            for i in 0..4 {
                for j in 0..4 {
                    let (pa, pb) = (&a[(i * 4 + j) * m * k..], &b[j * k * n..]);
                    for r in 0..m {
                        for q in 0..n {
                            let want: f64 = (0..k).map(|p| pa[p * m + r] * pb[p * n + q]).sum();
                            let got = c[(i * 4 + j) * m * n + r * n + q];
                            assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0));
                        }
                    }
                }
            }
        }
    }

    /// Batch axes along which B is broadcast and A's and C's rows run on become rows of one
    /// product; a transposed A, a B that differs per index or a gap between rows keeps them.
    #[test]
    fn broadcast_right_operands_fold_batch_axes_into_rows() {
        let axis = |len: usize, a: isize, b: isize, c: isize| super::BatchAxis {
            len,
            strides: [a, b, c],
        };
        // [16, 64, 128] @ [128, 384]: one product of 1,024 rows.
        let layer = [axis(16, 64 * 128, 0, 64 * 384)];
        assert_eq!(super::fold_rows(&layer, 64, 128, 384), (&[][..], 1024));
        // [2, 16, 64, 128] @ [2, 128, 384]: B differs along the outer axis, which stays.
        let outer = axis(2, 16 * 64 * 128, 128 * 384, 16 * 64 * 384);
        let two = [outer, axis(16, 64 * 128, 0, 64 * 384)];
        assert_eq!(super::fold_rows(&two, 64, 128, 384), (&two[..1], 1024));
        // A transposed (rows one element apart): its batch axis does not continue its rows.
        assert_eq!(super::fold_rows(&layer, 64, 1, 384).1, 64);
        // B per index, or C's rows padded: kept.
        let per_index = [axis(16, 64 * 128, 128 * 384, 64 * 384)];
        assert_eq!(super::fold_rows(&per_index, 64, 128, 384).1, 64);
        let padded = [axis(16, 64 * 128, 0, 65 * 384)];
        assert_eq!(super::fold_rows(&padded, 64, 128, 384).1, 64);
    }

    /// A folded batch computes what the products one by one do.
    #[test]
    fn a_folded_batch_equals_the_products_one_by_one() {
        let (batches, m, k, n) = (8, 24, 40, 36);
        let (a, b) = (operand_a(batches * m * k), operand_b(k * n));
        let batch = [super::BatchAxis {
            len: batches,
            strides: [(m * k) as isize, 0, (m * n) as isize],
        }];
        let mut c = vec![0.0; batches * m * n];
        // SAFETY: every batch index's product lies inside the buffers.
        unsafe {
            super::batched_gemm(
                &batch,
                m,
                k,
                n,
                a.as_ptr(),
                [k as isize, 1],
                b.as_ptr(),
                [n as isize, 1],
                c.as_mut_ptr(),
                [n as isize, 1],
            )
        };
        for r in 0..batches * m {
            for q in 0..n {
                let want: f64 = (0..k).map(|p| a[r * k + p] * b[p * n + q]).sum();
                let got = c[r * n + q];
                assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "{r} {q}");
            }
        }
    }

    /// Batch axes along which C is summed (stride 0) and A's columns and B's rows run on
    /// become inner dimension of one product; a gap, a C that differs per index or a B read
    /// transposed keeps them, and an outer axis that C keeps stays a batch axis.
    #[test]
    fn summed_batch_axes_fold_into_the_inner_dimension() {
        let axis = |len: usize, a: isize, b: isize, c: isize| super::BatchAxis {
            len,
            strides: [a, b, c],
        };
        // Σ_b x_bᵀ g_b over x [16, 64, 128], g [16, 64, 384]: one [128, 1024] @ [1024, 384].
        let grad = [axis(16, 64 * 128, 64 * 384, 0)];
        assert_eq!(super::fold_sums(&grad, 64, 128, 384), (&[][..], 1024));
        // A kept outer axis (C differs along it) stays; the summed inner axis folds.
        let outer = axis(3, 16 * 64 * 128, 16 * 64 * 384, 128 * 384);
        let two = [outer, grad[0]];
        assert_eq!(super::fold_sums(&two, 64, 128, 384), (&two[..1], 1024));
        // Axes of length 1 fold whatever their strides.
        let unit = [grad[0], axis(1, 7, 0, 5)];
        assert_eq!(super::fold_sums(&unit, 64, 128, 384), (&[][..], 1024));
        // A padded, B transposed (rows one element apart), C kept: no fold.
        let padded = [axis(16, 65 * 128, 64 * 384, 0)];
        assert_eq!(super::fold_sums(&padded, 64, 128, 384).1, 64);
        assert_eq!(super::fold_sums(&grad, 64, 128, 1).1, 64);
        let kept = [axis(16, 64 * 128, 64 * 384, 128 * 384)];
        assert_eq!(super::fold_sums(&kept, 64, 128, 384).1, 64);
        // And a summed axis is never folded into rows.
        let rows = [axis(16, 64 * 128, 0, 0)];
        assert_eq!(super::fold_rows(&rows, 64, 128, 0).1, 64);
    }

    /// A product summed over batch axes (C's stride 0) equals the sum of the products one by
    /// one, folded into one product or, where the operands do not continue across the summed
    /// axis, added up product by product; on one thread and on three.
    #[test]
    fn summed_batches_equal_the_sum_of_the_products() {
        let (kept, summed, m, k, n) = (2, 5, 12, 9, 7);
        let (a, b) = (
            operand_a(kept * summed * m * k),
            operand_b(kept * summed * k * n),
        );
        // A is [2, 5, m, k] read transposed (stored [2, 5, k, m]); B is [2, 5, k, n]; C [2, m, n].
        let (sa, sb, sc) = ([1, m as isize], [n as isize, 1], [n as isize, 1]);
        let folded = [
            super::BatchAxis {
                len: kept,
                strides: [
                    (summed * m * k) as isize,
                    (summed * k * n) as isize,
                    (m * n) as isize,
                ],
            },
            super::BatchAxis {
                len: summed,
                strides: [(m * k) as isize, (k * n) as isize, 0],
            },
        ];
        // The same arrays with the batch axes swapped in A and B: [5, 2, …] read as [2, 5, …],
        // so the summed axis does not continue the inner one and the products are added.
        let unfolded = [
            super::BatchAxis {
                len: kept,
                strides: [(m * k) as isize, (k * n) as isize, (m * n) as isize],
            },
            super::BatchAxis {
                len: summed,
                strides: [(kept * m * k) as isize, (kept * k * n) as isize, 0],
            },
        ];
        let at = |axes: &[super::BatchAxis], i: usize, j: usize| {
            [0, 1].map(|w| i as isize * axes[0].strides[w] + j as isize * axes[1].strides[w])
        };
        for batch in [folded, unfolded] {
            for threads in [1, 3] {
                crate::jit::parallel::set_threads(threads);
                let mut c = vec![f64::NAN; kept * m * n];
                // SAFETY: every batch index's product lies inside the buffers.
                unsafe {
                    super::batched_gemm(
                        &batch,
                        m,
                        k,
                        n,
                        a.as_ptr(),
                        sa,
                        b.as_ptr(),
                        sb,
                        c.as_mut_ptr(),
                        sc,
                    )
                };
                for i in 0..kept {
                    for r in 0..m {
                        for q in 0..n {
                            let want: f64 = (0..summed)
                                .map(|j| {
                                    let [oa, ob] = at(&batch, i, j);
                                    let (pa, pb) = (&a[oa as usize..], &b[ob as usize..]);
                                    (0..k).map(|p| pa[p * m + r] * pb[p * n + q]).sum::<f64>()
                                })
                                .sum();
                            let got = c[i * m * n + r * n + q];
                            assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0));
                        }
                    }
                }
            }
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
