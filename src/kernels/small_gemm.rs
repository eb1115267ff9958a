//! Single-precision products too small for a packing GEMM: a minibatch layer's forward and
//! backward products (32×64 by 64×128, 32×128 by 128×10, …). matrixmultiply packs both
//! operands into panels, allocates the packing buffer and dispatches through its threading
//! layer on every call; for these sizes that costs more than the arithmetic. Here the tile of
//! C stays in AVX-512 registers while the loop over k streams B's rows and broadcasts A's
//! elements. A B with strided rows (a transpose) is first copied row-major: for these sizes
//! that costs less than packing both operands.

use super::blocks::{load_transposed, low_lanes};
use std::arch::x86_64::*;

/// Products up to this many multiply-adds take this path (when the CPU has AVX-512F).
pub const MAX_WORK: usize = 1 << 20;

/// A product whose A has contiguous rows and whose B is a transpose (contiguous columns) is
/// summed as dot products along k when k is at least this long: the weight gradient of an
/// im2col convolution (6×576 by 576×25 in LeNet's first layer) repacked B with a gather per
/// sixteen elements, which cost more than its arithmetic. Shorter dot products spend more on
/// summing their lanes than a repacked B costs.
const MIN_DOT_K: usize = 128;

/// Whether this CPU runs the kernel.
pub fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// C = A·B for strided A (m×k), B (k×n) and C (m×n); m, k, n ≥ 1.
///
/// # Safety
/// The views must address valid memory for the given sizes, C must not overlap A or B, and the
/// CPU must support AVX-512F (`available()`).
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    c: *mut f32,
    rsc: isize,
    csc: isize,
) {
    let tile = Tile {
        m,
        k,
        n,
        a,
        rsa,
        csa,
        c,
        rsc,
        csc,
    };
    if csb == 1 {
        // SAFETY: forwarded from the caller; B's rows are contiguous.
        unsafe { tile.run(b, rsb) };
        return;
    }
    if rsb == 1 && csa == 1 && k >= MIN_DOT_K {
        // A's rows and B's columns are both contiguous along k (B is a transpose): each element
        // of C is a dot product of two contiguous vectors, with nothing to repack.
        // SAFETY: forwarded from the caller; row i of A and column j of B are k contiguous
        // floats.
        unsafe { tile.dots(b, csb) };
        return;
    }
    PACKED_B.with_borrow_mut(|packed| {
        packed.resize(k * n, 0.0);
        if rsb == 1 {
            // B is a transpose (its columns contiguous), transposed back in registers.
            // SAFETY: forwarded; column j of B is k contiguous floats at b + j·csb.
            unsafe { transpose_columns(b, csb, k, n, packed) };
            // SAFETY: `packed` holds B row-major, n floats per row.
            unsafe { tile.run(packed.as_ptr(), n as isize) };
            return;
        }
        // Read B along its memory order (columns, when it is a transpose), write row-major.
        let (outer, inner, so, si) = if rsb.abs() < csb.abs() {
            (n, k, csb, rsb)
        } else {
            (k, n, rsb, csb)
        };
        let (po, pi) = if rsb.abs() < csb.abs() {
            (1, n)
        } else {
            (n, 1)
        };
        for x in 0..outer {
            for y in 0..inner {
                // SAFETY: (x, y) in memory order is an element of B.
                packed[x * po + y * pi] = unsafe { *b.offset(x as isize * so + y as isize * si) };
            }
        }
        // SAFETY: `packed` holds B row-major, n floats per row.
        unsafe { tile.run(packed.as_ptr(), n as isize) };
    })
}

/// `packed[kk·n + j] = b[kk + j·csb]`: B's columns, each k contiguous floats, written as rows.
/// Sixteen columns by sixteen rows at a time, transposed in registers: a gather per sixteen
/// elements cost about as much as the product that reads them (Q·Kᵀ in attention, k = 32).
///
/// # Safety
/// `b + kk + j·csb` must be readable for every kk < k, j < n; `packed` holds k·n floats;
/// AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn transpose_columns(b: *const f32, csb: isize, k: usize, n: usize, packed: &mut [f32]) {
    assert!(packed.len() >= k * n, "room for B row-major");
    for j0 in (0..n).step_by(16) {
        let cols = (n - j0).min(16);
        for k0 in (0..k).step_by(16) {
            let rows = (k - k0).min(16);
            // SAFETY: columns j0 .. j0 + cols < n, elements k0 .. k0 + rows < k of each.
            let t =
                unsafe { load_transposed(b.offset(j0 as isize * csb).add(k0), csb, cols, rows) };
            let write = low_lanes(cols);
            for (r, x) in t.iter().enumerate().take(rows) {
                let at = (k0 + r) * n + j0;
                // SAFETY: row k0 + r < k of `packed`, columns j0 .. j0 + cols < n (the mask).
                unsafe { _mm512_mask_storeu_ps(packed.as_mut_ptr().add(at), write, *x) };
            }
        }
    }
}

/// `f(i0, rows, j0, cols)` for each block of `r` rows by `w` columns of an m × n result, in
/// row-major order of blocks; the last block of each row and column holds what is left.
#[inline(always)]
fn each_block(
    m: usize,
    n: usize,
    r: usize,
    w: usize,
    mut f: impl FnMut(usize, usize, usize, usize),
) {
    for i0 in (0..m).step_by(r) {
        for j0 in (0..n).step_by(w) {
            f(i0, r.min(m - i0), j0, w.min(n - j0));
        }
    }
}

thread_local! {
    /// B repacked row-major, when its rows are strided.
    static PACKED_B: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct Tile {
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    c: *mut f32,
    rsc: isize,
    csc: isize,
}

impl Tile {
    /// C = A·B with B's row kk at `b + kk*ldb`, contiguous.
    ///
    /// # Safety
    /// As for `sgemm`.
    unsafe fn run(&self, b: *const f32, ldb: isize) {
        // At least eight accumulators keep both FMA pipes busy (latency 4, two per cycle):
        // eight rows of one vector when C is narrow, eight rows of two vectors otherwise (10 %
        // faster than four rows of two on 32×64×128, measured). Blocks of six rows where they
        // compute fewer rows past the last than blocks of eight: a convolution with six output
        // channels spent a quarter of its multiply-adds on two rows it never stored.
        let six = self.m.div_ceil(6) * 6 < self.m.div_ceil(8) * 8;
        // SAFETY: forwarded.
        unsafe {
            match (six, self.n <= 16) {
                (false, true) => self.blocks::<8, 1>(b, ldb),
                (false, false) => self.blocks::<8, 2>(b, ldb),
                (true, true) => self.blocks::<6, 1>(b, ldb),
                (true, false) => self.blocks::<6, 2>(b, ldb),
            }
        }
    }

    /// C = A·B where row i of A is `a + i·rsa` and column j of B is `b + j·ldb`, each k
    /// contiguous floats: blocks of six rows of A by three columns of B, each element of the
    /// block a sum along k in sixteen lanes: nine vectors loaded for 18 fused multiply-adds into
    /// 18 accumulators. Six by four measured no faster: LeNet's weight gradient (6 by 25 of 576)
    /// is bound by streaming B, its im2col copy, from memory.
    ///
    /// # Safety
    /// As for `sgemm`, with `csa == 1` and B's columns contiguous.
    #[target_feature(enable = "avx512f")]
    unsafe fn dots(&self, b: *const f32, ldb: isize) {
        const R: usize = 6;
        const S: usize = 3;
        each_block(self.m, self.n, R, S, |i0, rows, j0, cols| {
            // SAFETY: forwarded; the block's rows and columns are inside A, B and C.
            unsafe { self.dot_block::<R, S>(b, ldb, i0, rows, j0, cols) }
        });
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dot_block<const R: usize, const S: usize>(
        &self,
        b: *const f32,
        ldb: isize,
        i0: usize,
        rows: usize,
        j0: usize,
        cols: usize,
    ) {
        // Rows and columns past the last are read as the last again and never stored.
        let a_rows: [*const f32; R] = std::array::from_fn(|r| {
            let i = (i0 + r.min(rows - 1)) as isize;
            // SAFETY: row i is inside A.
            unsafe { self.a.offset(i * self.rsa) }
        });
        let b_cols: [*const f32; S] = std::array::from_fn(|s| {
            let j = (j0 + s.min(cols - 1)) as isize;
            // SAFETY: column j is inside B.
            unsafe { b.offset(j * ldb) }
        });
        let mut acc = [[_mm512_setzero_ps(); S]; R];
        for kk in (0..self.k).step_by(16) {
            let live = (self.k - kk).min(16);
            let mask = low_lanes(live);
            // SAFETY: elements kk..kk+live of each row and column, under the mask.
            let xs: [__m512; R] =
                std::array::from_fn(|r| unsafe { _mm512_maskz_loadu_ps(mask, a_rows[r].add(kk)) });
            for s in 0..S {
                // SAFETY: as above.
                let y = unsafe { _mm512_maskz_loadu_ps(mask, b_cols[s].add(kk)) };
                for r in 0..R {
                    acc[r][s] = _mm512_fmadd_ps(xs[r], y, acc[r][s]);
                }
            }
        }
        for (r, row) in acc.iter().enumerate().take(rows) {
            for (s, &x) in row.iter().enumerate().take(cols) {
                let (i, j) = ((i0 + r) as isize, (j0 + s) as isize);
                // SAFETY: (i, j) is inside C.
                unsafe { *self.c.offset(i * self.rsc + j * self.csc) = _mm512_reduce_add_ps(x) };
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn blocks<const R: usize, const V: usize>(&self, b: *const f32, ldb: isize) {
        each_block(self.m, self.n, R, 16 * V, |i0, rows, j0, cols| {
            // SAFETY: the block lies inside C and the rows inside A; B's columns j0.. are read
            // under lane masks.
            unsafe { self.block::<R, V>(b, ldb, i0, rows, j0, cols) }
        });
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block<const R: usize, const V: usize>(
        &self,
        b: *const f32,
        ldb: isize,
        i0: usize,
        rows: usize,
        j0: usize,
        cols: usize,
    ) {
        let masks: [u16; V] = std::array::from_fn(|v| low_lanes(cols.saturating_sub(16 * v)));
        // Rows past the last are read as the last row again and never stored.
        let row_ptrs: [*const f32; R] = std::array::from_fn(|r| {
            let i = (i0 + r.min(rows - 1)) as isize;
            // SAFETY: row i is inside A.
            unsafe { self.a.offset(i * self.rsa) }
        });
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for kk in 0..self.k as isize {
            let mut bs = [_mm512_setzero_ps(); V];
            for (v, bv) in bs.iter_mut().enumerate() {
                // SAFETY: row kk of B, columns j0..j0+cols, under the mask.
                *bv = unsafe {
                    _mm512_maskz_loadu_ps(masks[v], b.offset(kk * ldb + (j0 + 16 * v) as isize))
                };
            }
            for r in 0..R {
                // SAFETY: (row r, kk) is inside A.
                let x = _mm512_set1_ps(unsafe { *row_ptrs[r].offset(kk * self.csa) });
                for v in 0..V {
                    acc[r][v] = _mm512_fmadd_ps(x, bs[v], acc[r][v]);
                }
            }
        }
        for (r, row) in acc.iter().enumerate().take(rows) {
            let i = (i0 + r) as isize;
            for (v, &x) in row.iter().enumerate() {
                let j = (j0 + 16 * v) as isize;
                if self.csc == 1 {
                    // SAFETY: row i, columns j.. under the mask, are inside C.
                    unsafe { _mm512_mask_storeu_ps(self.c.offset(i * self.rsc + j), masks[v], x) };
                } else {
                    let mut lanes = [0f32; 16];
                    // SAFETY: `lanes` holds 16 floats; (i, j + t) for the masked lanes is in C.
                    unsafe {
                        _mm512_storeu_ps(lanes.as_mut_ptr(), x);
                        let live = cols.saturating_sub(16 * v).min(16);
                        for (t, &y) in lanes.iter().enumerate().take(live) {
                            *self.c.offset(i * self.rsc + (j + t as isize) * self.csc) = y;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Row kk of the repacked B is element kk of every column, for blocks cut anywhere: sizes
    /// below, at and past sixteen either way, columns further apart than they are long.
    #[test]
    fn repacked_rows_are_the_columns_of_b() {
        if !super::available() {
            return;
        }
        for (k, n, gap) in [
            (1, 1, 0),
            (16, 16, 0),
            (32, 64, 352),
            (17, 33, 5),
            (15, 47, 1),
        ] {
            let csb = k + gap;
            let b: Vec<f32> = (0..n * csb).map(|i| i as f32).collect();
            let mut packed = vec![f32::NAN; k * n];
            // SAFETY: column j of B is b[j·csb ..][.. k], inside `b`; the CPU has AVX-512F.
            unsafe { super::transpose_columns(b.as_ptr(), csb as isize, k, n, &mut packed) };
            for kk in 0..k {
                for j in 0..n {
                    assert_eq!(packed[kk * n + j], b[kk + j * csb], "{k}×{n}: ({kk}, {j})");
                }
            }
        }
    }

    /// Sizes around the block shapes (8×16 and 8×32 tiles, partial rows and lanes) and every
    /// layout of A and C the JIT passes, against the sum in f64. Skipped without AVX-512F.
    #[test]
    fn small_products_match_the_definition() {
        if !super::available() {
            return;
        }
        let sizes = [
            (1, 1, 1),
            (3, 5, 7),
            (9, 3, 16),
            (8, 2, 17),
            (13, 17, 33),
            (32, 64, 128),
            (33, 2, 1),
            (6, 576, 25),
            (7, 129, 5),
            (16, 200, 150),
        ];
        for &(m, k, n) in &sizes {
            let in_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
            let a = in_f32(crate::kernels::test_operands::operand_a(m * k));
            let b = in_f32(crate::kernels::test_operands::operand_b(k * n));
            for (rsa, csa, rsb, csb) in [
                (k as isize, 1, n as isize, 1),
                (1, m as isize, n as isize, 1),
                (k as isize, 1, 1, k as isize),
            ] {
                for (rsc, csc) in [(n as isize, 1), (1, m as isize)] {
                    let mut c = vec![f32::NAN; m * n];
                    // SAFETY: every view addresses its own buffer; the CPU has AVX-512F.
                    unsafe {
                        super::sgemm(
                            m,
                            k,
                            n,
                            a.as_ptr(),
                            rsa,
                            csa,
                            b.as_ptr(),
                            rsb,
                            csb,
                            c.as_mut_ptr(),
                            rsc,
                            csc,
                        )
                    };
                    for i in 0..m {
                        for j in 0..n {
                            let want: f64 = (0..k)
                                .map(|p| {
                                    a[(i as isize * rsa + p as isize * csa) as usize] as f64
                                        * b[(p as isize * rsb + j as isize * csb) as usize] as f64
                                })
                                .sum();
                            let got = c[(i as isize * rsc + j as isize * csc) as usize] as f64;
                            assert!(
                                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                "{m}×{k}×{n} A ({rsa}, {csa}) B ({rsb}, {csb}) C ({rsc}, {csc}) at ({i}, {j}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
