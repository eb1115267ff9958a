//! Matrix–vector products, y = A·x with any strides. They are memory-bound, and a GEMM
//! kernel's packing costs more than the product itself, so they get loops of their own.

/// y = A·x (or y += A·x when `acc`) in f64.
///
/// # Safety
/// For every i < m and p < k, `a[i·rsa + p·csa]` and `x[p·incx]` are readable and `y[i]`
/// writable, inside live allocations, and y overlaps neither A nor x.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemv_f64(
    m: usize,
    k: usize,
    a: *const f64,
    rsa: isize,
    csa: isize,
    x: *const f64,
    incx: isize,
    y: *mut f64,
    acc: bool,
) {
    // SAFETY: forwarded from the caller.
    unsafe { gemv(m, k, a, rsa, csa, x, incx, y, acc) }
}

/// y = A·x (or y += A·x when `acc`) in f32: dedicated AVX2/FMA kernels for rows that are
/// contiguous and a multiple of 8 long and for contiguous columns, where the CPU has them; the
/// generic loops for the rest.
///
/// # Safety
/// As for [`gemv_f64`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemv_f32(
    m: usize,
    k: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    x: *const f32,
    incx: isize,
    y: *mut f32,
    acc: bool,
) {
    // Rows done by a dedicated kernel; the generic loops take the rest.
    #[cfg(target_arch = "x86_64")]
    let done = if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
        0
    } else if csa == 1 && incx == 1 && k % 8 == 0 {
        // SAFETY: the CPU has AVX2 and FMA (checked above); the pointers are the caller's.
        unsafe { dot_rows_f32(m, k, a, rsa, x, y, acc) }
    } else if rsa == 1 && m >= 16 {
        // SAFETY: as above.
        unsafe { column_updates_f32(m, k, a, csa, x, incx, y, acc) }
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    // SAFETY: rows past `done` of the same checked buffers.
    let (a, y) = unsafe { (a.offset(done as isize * rsa), y.add(done)) };
    // SAFETY: as above.
    unsafe { gemv(m - done, k, a, rsa, csa, x, incx, y, acc) }
}
/// y = A·x (or y += A·x when `acc`) for a strided m×k matrix A. Matrix–vector products are
/// memory-bound, and a GEMM kernel's packing costs more than the product itself, so they
/// get their own loops: dot products when A's rows are contiguous, column updates (axpy)
/// when its columns are.
///
/// # Safety
/// For every i < m and p < k, `a[i·rsa + p·csa]` and `x[p·incx]` are readable and `y[i]`
/// writable, inside live allocations, and y overlaps neither A nor x.
#[allow(clippy::too_many_arguments)]
unsafe fn gemv<T>(
    m: usize,
    k: usize,
    a: *const T,
    rsa: isize,
    csa: isize,
    x: *const T,
    incx: isize,
    y: *mut T,
    acc: bool,
) where
    T: Copy + Default + std::ops::Add<Output = T> + std::ops::Mul<Output = T>,
{
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above); the pointers are the caller's.
        return unsafe { gemv_avx2(m, k, a, rsa, csa, x, incx, y, acc) };
    }
    // SAFETY: forwarded from the caller.
    unsafe { gemv_body(m, k, a, rsa, csa, x, incx, y, acc) }
}

/// The same loops compiled for AVX2, so they run 256 bits wide on CPUs that have it.
///
/// # Safety
/// As for `gemv`, and the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemv_avx2<T>(
    m: usize,
    k: usize,
    a: *const T,
    rsa: isize,
    csa: isize,
    x: *const T,
    incx: isize,
    y: *mut T,
    acc: bool,
) where
    T: Copy + Default + std::ops::Add<Output = T> + std::ops::Mul<Output = T>,
{
    // SAFETY: forwarded from the caller.
    unsafe { gemv_body(m, k, a, rsa, csa, x, incx, y, acc) }
}

/// The loops of `gemv`.
///
/// # Safety
/// As for `gemv`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn gemv_body<T>(
    m: usize,
    k: usize,
    a: *const T,
    rsa: isize,
    csa: isize,
    x: *const T,
    incx: isize,
    y: *mut T,
    acc: bool,
) where
    T: Copy + Default + std::ops::Add<Output = T> + std::ops::Mul<Output = T>,
{
    // SAFETY: the caller's extents cover every index below.
    unsafe {
        if csa == 1 && incx == 1 {
            let xs = std::slice::from_raw_parts(x, k);
            let (x8, x_rest) = xs.split_at(k / 8 * 8);
            for i in 0..m {
                let row = std::slice::from_raw_parts(a.offset(i as isize * rsa), k);
                let (r8, r_rest) = row.split_at(k / 8 * 8);
                // Eight independent partial sums; fixed-size chunks without bounds checks
                // let the compiler keep them in one vector register.
                let mut partial = [T::default(); 8];
                for (rc, xc) in r8.chunks_exact(8).zip(x8.chunks_exact(8)) {
                    for l in 0..8 {
                        partial[l] = partial[l] + rc[l] * xc[l];
                    }
                }
                let mut sum = T::default();
                for v in partial {
                    sum = sum + v;
                }
                for (r, xv) in r_rest.iter().zip(x_rest) {
                    sum = sum + *r * *xv;
                }
                *y.add(i) = if acc { *y.add(i) + sum } else { sum };
            }
        } else if rsa == 1 {
            let ys = std::slice::from_raw_parts_mut(y, m);
            if !acc {
                ys.fill(T::default());
            }
            // Sixteen outputs at a time held in registers across the whole pass over the
            // columns, instead of a load and a store of y per column.
            let blocks = m / 16;
            for blk in 0..blocks {
                let mut sums = [T::default(); 16];
                sums.copy_from_slice(&ys[blk * 16..blk * 16 + 16]);
                for p in 0..k {
                    let xp = *x.offset(p as isize * incx);
                    let col = std::slice::from_raw_parts(
                        a.offset(p as isize * csa + blk as isize * 16),
                        16,
                    );
                    for l in 0..16 {
                        sums[l] = sums[l] + xp * col[l];
                    }
                }
                ys[blk * 16..blk * 16 + 16].copy_from_slice(&sums);
            }
            let rest = &mut ys[blocks * 16..];
            for p in 0..if rest.is_empty() { 0 } else { k } {
                let xp = *x.offset(p as isize * incx);
                let col = std::slice::from_raw_parts(
                    a.offset(p as isize * csa + blocks as isize * 16),
                    rest.len(),
                );
                for (yi, ai) in rest.iter_mut().zip(col) {
                    *yi = *yi + xp * *ai;
                }
            }
        } else {
            for i in 0..m {
                let mut sum = T::default();
                for p in 0..k {
                    sum = sum
                        + *a.offset(i as isize * rsa + p as isize * csa)
                            * *x.offset(p as isize * incx);
                }
                *y.add(i) = if acc { *y.add(i) + sum } else { sum };
            }
        }
    }
}
/// y = A·x for A with contiguous columns, sixteen outputs at a time in two 8-lane
/// registers across the whole pass over the columns (a broadcast and two fused
/// multiply–adds per column). Returns how many outputs it did (a multiple of 16).
///
/// # Safety
/// As for [`gemv_f32`], and the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn column_updates_f32(
    m: usize,
    k: usize,
    a: *const f32,
    csa: isize,
    x: *const f32,
    incx: isize,
    y: *mut f32,
    acc: bool,
) -> usize {
    use std::arch::x86_64::*;
    let blocks = m / 16;
    // SAFETY: outputs blk·16 .. blk·16+16 ≤ m and columns p < k of the caller's checked
    // buffers.
    unsafe {
        for blk in 0..blocks {
            let out = y.add(blk * 16);
            // Four independent chains (columns p ≡ 0, 1, 2, 3 mod 4), so the adds do not
            // wait on each other; summed at the end.
            let mut s = [[_mm256_setzero_ps(); 2]; 4];
            let quads = k / 4 * 4;
            let mut p = 0;
            while p < quads {
                for (q, sq) in s.iter_mut().enumerate() {
                    let xp = _mm256_set1_ps(*x.offset((p + q) as isize * incx));
                    let col = a.offset((p + q) as isize * csa + blk as isize * 16);
                    sq[0] = _mm256_fmadd_ps(_mm256_loadu_ps(col), xp, sq[0]);
                    sq[1] = _mm256_fmadd_ps(_mm256_loadu_ps(col.add(8)), xp, sq[1]);
                }
                p += 4;
            }
            for p in quads..k {
                let xp = _mm256_set1_ps(*x.offset(p as isize * incx));
                let col = a.offset(p as isize * csa + blk as isize * 16);
                s[0][0] = _mm256_fmadd_ps(_mm256_loadu_ps(col), xp, s[0][0]);
                s[0][1] = _mm256_fmadd_ps(_mm256_loadu_ps(col.add(8)), xp, s[0][1]);
            }
            let mut s0 = _mm256_add_ps(
                _mm256_add_ps(s[0][0], s[1][0]),
                _mm256_add_ps(s[2][0], s[3][0]),
            );
            let mut s1 = _mm256_add_ps(
                _mm256_add_ps(s[0][1], s[1][1]),
                _mm256_add_ps(s[2][1], s[3][1]),
            );
            if acc {
                s0 = _mm256_add_ps(s0, _mm256_loadu_ps(out));
                s1 = _mm256_add_ps(s1, _mm256_loadu_ps(out.add(8)));
            }
            _mm256_storeu_ps(out, s0);
            _mm256_storeu_ps(out.add(8), s1);
        }
    }
    blocks * 16
}

/// y = A·x over rows of A that are contiguous and a multiple of 8 long, eight rows at a
/// time: eight 8-lane fused multiply–add accumulators, reduced together by a tree of
/// horizontal adds, so short rows (a 16-column least-squares matrix) do not pay a full
/// horizontal reduction each. Returns how many rows it did (a multiple of 8).
///
/// # Safety
/// As for [`gemv_f32`], with contiguous rows, and the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_rows_f32(
    m: usize,
    k: usize,
    a: *const f32,
    rsa: isize,
    x: *const f32,
    y: *mut f32,
    acc: bool,
) -> usize {
    // SAFETY: rows i..i+8 < m and columns c..c+8 ≤ k of the caller's checked buffers.
    unsafe {
        use std::arch::x86_64::*;
        let mut i = 0;
        while i + 8 <= m {
            let mut s = [_mm256_setzero_ps(); 8];
            for c in (0..k).step_by(8) {
                let xv = _mm256_loadu_ps(x.add(c));
                for (r, sr) in s.iter_mut().enumerate() {
                    let row = a.offset((i + r) as isize * rsa + c as isize);
                    *sr = _mm256_fmadd_ps(_mm256_loadu_ps(row), xv, *sr);
                }
            }
            let h01 = _mm256_hadd_ps(s[0], s[1]);
            let h23 = _mm256_hadd_ps(s[2], s[3]);
            let h45 = _mm256_hadd_ps(s[4], s[5]);
            let h67 = _mm256_hadd_ps(s[6], s[7]);
            let h0123 = _mm256_hadd_ps(h01, h23);
            let h4567 = _mm256_hadd_ps(h45, h67);
            let lo = _mm256_permute2f128_ps(h0123, h4567, 0x20);
            let hi = _mm256_permute2f128_ps(h0123, h4567, 0x31);
            let mut sums = _mm256_add_ps(lo, hi);
            if acc {
                sums = _mm256_add_ps(sums, _mm256_loadu_ps(y.add(i)));
            }
            _mm256_storeu_ps(y.add(i), sums);
            i += 8;
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::{gemv_f32, gemv_f64};
    use crate::kernels::test_operands::{operand_a, operand_b};

    /// Every layout the matrix–vector kernels distinguish (rows contiguous, columns
    /// contiguous, neither), at sizes around their block widths, against the plain sum.
    #[test]
    fn gemv_matches_the_definition_in_every_layout() {
        for &(m, k) in &[
            (1, 1),
            (3, 7),
            (8, 16),
            (16, 5),
            (17, 9),
            (33, 8),
            (40, 31),
            (5, 100),
        ] {
            let (a, x) = (operand_a(m * k), operand_b(k));
            // (row stride, column stride) of A inside the same buffer: row-major, column-major.
            for (rsa, csa) in [(k as isize, 1isize), (1, m as isize)] {
                let at = |i: usize, p: usize| a[i * rsa as usize + p * csa as usize];
                let want: Vec<f64> = (0..m)
                    .map(|i| (0..k).map(|p| at(i, p) * x[p]).sum())
                    .collect();
                let mut y = vec![f64::NAN; m];
                // SAFETY: the buffers hold the shapes the strides describe.
                unsafe {
                    gemv_f64(
                        m,
                        k,
                        a.as_ptr(),
                        rsa,
                        csa,
                        x.as_ptr(),
                        1,
                        y.as_mut_ptr(),
                        false,
                    )
                };
                // Accumulating a second time doubles it.
                // SAFETY: the buffers hold the shapes the strides describe.
                unsafe {
                    gemv_f64(
                        m,
                        k,
                        a.as_ptr(),
                        rsa,
                        csa,
                        x.as_ptr(),
                        1,
                        y.as_mut_ptr(),
                        true,
                    )
                };
                for i in 0..m {
                    assert!(
                        (y[i] - 2.0 * want[i]).abs() <= 1e-12 * (1.0 + want[i].abs()),
                        "f64 {m}×{k} ({rsa}, {csa}) row {i}"
                    );
                }
                let a32: Vec<f32> = a.iter().map(|&v| v as f32).collect();
                let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                let mut y32 = vec![f32::NAN; m];
                // SAFETY: the buffers hold the shapes the strides describe.
                unsafe {
                    gemv_f32(
                        m,
                        k,
                        a32.as_ptr(),
                        rsa,
                        csa,
                        x32.as_ptr(),
                        1,
                        y32.as_mut_ptr(),
                        false,
                    )
                };
                for i in 0..m {
                    assert!(
                        (y32[i] as f64 - want[i]).abs() <= 1e-4 * (1.0 + want[i].abs()),
                        "f32 {m}×{k} ({rsa}, {csa}) row {i}"
                    );
                }
            }
            // Neither contiguous: every other row and column of a 2m×2k buffer, strided x.
            let big: Vec<f64> = (0..4 * m * k).map(|i| (i % 13) as f64 - 6.0).collect();
            let xs: Vec<f64> = (0..2 * k).map(|i| (i % 5) as f64).collect();
            let want: Vec<f64> = (0..m)
                .map(|i| (0..k).map(|p| big[2 * i * 2 * k + 2 * p] * xs[2 * p]).sum())
                .collect();
            let mut y = vec![f64::NAN; m];
            // SAFETY: the buffers hold the shapes the strides describe.
            unsafe {
                gemv_f64(
                    m,
                    k,
                    big.as_ptr(),
                    4 * k as isize,
                    2,
                    xs.as_ptr(),
                    2,
                    y.as_mut_ptr(),
                    false,
                )
            };
            assert_eq!(y, want, "strided {m}×{k}");
        }
    }
}
