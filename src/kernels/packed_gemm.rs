//! Single-precision products too large for `small_gemm`, on CPUs with AVX-512F: blocked and
//! packed as matrixmultiply does (blocks of 256 along k, B in panels of the tile's width, A in
//! panels of its height), with a tile of 8 rows by 32 columns held in 16 registers.
//!
//! Why not matrixmultiply's kernel: its tile is 16 by 16, so each step along k loads sixteen
//! elements of A for sixteen multiply-adds; eight rows by two vectors load ten. On the
//! transformer's fifteen dense product shapes, one core whose multiply-adds alone reach 220
//! GFLOP/s, matrixmultiply ran 122–158 GFLOP/s and this kernel 8% less time in all; its packing
//! transposes sixteen by sixteen in registers where matrixmultiply's gathers.
//!
//! The same sums in the same order: each element of C is the fused multiply-adds of its terms
//! in order of k within a block of 256, the first block stored and each later one added to C,
//! as matrixmultiply computes them. Every result is the same to the bit (a test checks it
//! against matrixmultiply), so models train to the same figures whichever kernel runs.

use super::blocks::{load_transposed, low_lanes};
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Rows of A (and C) per tile.
const MR: usize = 8;
/// Columns of B (and C) per tile: two vectors.
const NR: usize = 32;
/// Terms of each sum per block, matrixmultiply's: the order of additions depends on it.
const KC: usize = 256;
/// Rows of A packed at a time: 128 KiB of A, kept in L2 while every panel of B passes.
const MC: usize = 128;
/// Columns of B packed at a time: 512 KiB of B.
const NC: usize = 512;
/// Steps along k per turn of the kernel's loop.
const UNROLL: usize = 4;
// `Tile::run` holds a row as two vectors; `pack_a` writes two panels from one 16×16 transpose.
const _: () = assert!(NR == 32 && 2 * MR == 16);

/// Whether this CPU runs the kernel.
pub fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// A cache line of floats, so that packed panels are aligned as vectors.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

thread_local! {
    /// Packed A and packed B, reused from call to call.
    static PACKED: RefCell<(Vec<Line>, Vec<Line>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A buffer of at least `floats` floats, aligned to a cache line.
fn room(buf: &mut Vec<Line>, floats: usize) -> *mut f32 {
    let lines = floats.div_ceil(16);
    if buf.len() < lines {
        buf.resize(lines, Line([0.0; 16]));
    }
    buf.as_mut_ptr() as *mut f32
}

/// C = A·B (or C += A·B with `add`) for strided A (m×k), B (k×n) and C (m×n); m, k, n ≥ 1.
///
/// # Safety
/// For every i < m, p < k, j < n, the elements `a[i·rsa + p·csa]` and `b[p·rsb + j·csb]` are
/// readable and `c[i·rsc + j·csc]` writable (and initialized, with `add`), inside live
/// allocations; C overlaps neither A nor B; the CPU has AVX-512F (`available()`).
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    [rsa, csa]: [isize; 2],
    b: *const f32,
    [rsb, csb]: [isize; 2],
    c: *mut f32,
    [rsc, csc]: [isize; 2],
    add: bool,
) {
    PACKED.with_borrow_mut(|(pa, pb)| {
        let pb = room(pb, KC * NC.min(n).next_multiple_of(NR));
        let pa = room(pa, KC * MC.min(m).next_multiple_of(MR));
        for j0 in (0..n).step_by(NC) {
            let nc = NC.min(n - j0);
            for p0 in (0..k).step_by(KC) {
                let kc = KC.min(k - p0);
                let b_block = b.wrapping_offset(p0 as isize * rsb + j0 as isize * csb);
                // SAFETY: the block's elements lie inside B (the caller's contract); `pb`
                // holds kc·nc rounded up to whole panels.
                unsafe { pack_b(kc, nc, b_block, rsb, csb, pb) };
                let add = add || p0 > 0;
                for i0 in (0..m).step_by(MC) {
                    let mc = MC.min(m - i0);
                    let a_block = a.wrapping_offset(i0 as isize * rsa + p0 as isize * csa);
                    // SAFETY: as for B.
                    unsafe { pack_a(mc, kc, a_block, rsa, csa, pa) };
                    for jr in (0..nc).step_by(NR) {
                        for ir in (0..mc).step_by(MR) {
                            let tile = Tile {
                                rows: MR.min(mc - ir),
                                cols: NR.min(nc - jr),
                                c: c.wrapping_offset(
                                    (i0 + ir) as isize * rsc + (j0 + jr) as isize * csc,
                                ),
                                rsc,
                                csc,
                                add,
                            };
                            // SAFETY: panel ir / MR of packed A and jr / NR of packed B each
                            // hold kc steps; the tile's elements lie inside C.
                            unsafe { tile.run(kc, pa.add(ir * kc), pb.add(jr * kc)) };
                        }
                    }
                }
            }
        }
    })
}

/// Packs `mc` rows by `kc` columns of A into panels of MR rows: panel q holds, for each p, the
/// elements p of rows q·MR .. q·MR + MR, rows past `mc` as zeros.
///
/// # Safety
/// The block's elements are readable; `out` holds kc·mc rounded up to whole panels; AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn pack_a(mc: usize, kc: usize, a: *const f32, rsa: isize, csa: isize, out: *mut f32) {
    if csa == 1 {
        // Rows contiguous along k: sixteen rows (two panels) by sixteen columns at a time,
        // transposed in registers.
        for i in (0..mc).step_by(2 * MR) {
            let rows = (mc - i).min(2 * MR);
            for p in (0..kc).step_by(16) {
                let cols = (kc - p).min(16);
                // SAFETY: rows i .. i + rows < mc, columns p .. p + cols < kc of each.
                let t =
                    unsafe { load_transposed(a.offset(i as isize * rsa).add(p), rsa, rows, cols) };
                let panel = out.wrapping_add(i * kc);
                for (q, x) in t.iter().enumerate().take(cols) {
                    let at = panel.wrapping_add((p + q) * MR);
                    // SAFETY: step p + q < kc of this panel and, where `rows` reaches it, of
                    // the next, whose lanes 8 .. 16 land MR·kc floats on.
                    unsafe {
                        _mm512_mask_storeu_ps(at, 0x00ff, *x);
                        if rows > MR {
                            let next = at.wrapping_add(MR * kc).wrapping_sub(MR);
                            _mm512_mask_storeu_ps(next, 0xff00, *x);
                        }
                    }
                }
            }
        }
        return;
    }
    if rsa == 1 {
        // Columns contiguous along the rows (a transpose): each step of a panel is a copy.
        for i in (0..mc).step_by(MR) {
            let read = low_lanes(mc - i) & 0x00ff;
            let panel = out.wrapping_add(i * kc);
            for p in 0..kc {
                // SAFETY: rows i .. min(i + MR, mc) of column p < kc (the mask); step p of
                // the panel, whose MR lanes the low half of the store writes.
                unsafe {
                    let x = _mm512_maskz_loadu_ps(read, a.offset(p as isize * csa).add(i));
                    _mm512_mask_storeu_ps(panel.add(p * MR), 0x00ff, x);
                }
            }
        }
        return;
    }
    for i in (0..mc).step_by(MR) {
        let rows = (mc - i).min(MR);
        let panel = out.wrapping_add(i * kc);
        for p in 0..kc {
            for r in 0..MR {
                let x = match r < rows {
                    // SAFETY: row i + r < mc, column p < kc.
                    true => unsafe { *a.offset((i + r) as isize * rsa + p as isize * csa) },
                    false => 0.0,
                };
                // SAFETY: step p of this panel.
                unsafe { *panel.add(p * MR + r) = x };
            }
        }
    }
}

/// Packs `kc` rows by `nc` columns of B into panels of NR columns: panel q holds, for each p,
/// the elements q·NR .. q·NR + NR of row p, columns past `nc` as zeros.
///
/// # Safety
/// The block's elements are readable; `out` holds kc·nc rounded up to whole panels; AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn pack_b(kc: usize, nc: usize, b: *const f32, rsb: isize, csb: isize, out: *mut f32) {
    if csb == 1 {
        for j in (0..nc).step_by(NR) {
            let panel = out.wrapping_add(j * kc);
            let (lo, hi) = (low_lanes(nc - j), low_lanes((nc - j).saturating_sub(16)));
            for p in 0..kc {
                let row = b.wrapping_offset(p as isize * rsb).wrapping_add(j);
                // SAFETY: columns j .. min(j + NR, nc) of row p (the masks); step p of the panel.
                unsafe {
                    let x0 = _mm512_maskz_loadu_ps(lo, row);
                    let x1 = _mm512_maskz_loadu_ps(hi, row.add(16));
                    _mm512_store_ps(panel.add(p * NR), x0);
                    _mm512_store_ps(panel.add(p * NR + 16), x1);
                }
            }
        }
        return;
    }
    if rsb == 1 {
        // Columns contiguous along k (a transpose): sixteen columns by sixteen rows at a time,
        // transposed in registers.
        for j in (0..nc).step_by(16) {
            let cols = (nc - j).min(16);
            let panel = out.wrapping_add((j / NR) * NR * kc + j % NR);
            for p in (0..kc).step_by(16) {
                let rows = (kc - p).min(16);
                // SAFETY: columns j .. j + cols < nc, rows p .. p + rows < kc of each.
                let t =
                    unsafe { load_transposed(b.offset(j as isize * csb).add(p), csb, cols, rows) };
                for (r, x) in t.iter().enumerate().take(rows) {
                    // SAFETY: step p + r of the panel, its half that holds columns j ...
                    unsafe { _mm512_storeu_ps(panel.add((p + r) * NR), *x) };
                }
            }
        }
        return;
    }
    for j in (0..nc).step_by(NR) {
        let cols = (nc - j).min(NR);
        let panel = out.wrapping_add(j * kc);
        for p in 0..kc {
            for q in 0..NR {
                let x = match q < cols {
                    // SAFETY: row p < kc, column j + q < nc.
                    true => unsafe { *b.offset(p as isize * rsb + (j + q) as isize * csb) },
                    false => 0.0,
                };
                // SAFETY: step p of this panel.
                unsafe { *panel.add(p * NR + q) = x };
            }
        }
    }
}

/// Where one tile of C goes: its first element, strides and size, and whether its sums add to C.
struct Tile {
    rows: usize,
    cols: usize,
    c: *mut f32,
    rsc: isize,
    csc: isize,
    add: bool,
}

impl Tile {
    /// C's tile = (or +=) the sums over `kc` steps of packed panels of A and B.
    ///
    /// # Safety
    /// `a` holds MR·kc floats, `b` NR·kc aligned floats; the tile's `rows` by `cols` elements
    /// lie inside C (initialized, with `add`); AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn run(&self, kc: usize, a: *const f32, b: *const f32) {
        if self.csc == 1 {
            // The tile's rows of C, asked for while the sums run: each would otherwise be a
            // miss at the end (2% of W8's step).
            for r in 0..self.rows {
                let at = self.c.wrapping_offset(r as isize * self.rsc) as *const i8;
                let last = at.wrapping_add(self.cols * 4 - 1);
                _mm_prefetch::<_MM_HINT_ET0>(at);
                _mm_prefetch::<_MM_HINT_ET0>(at.wrapping_add(64));
                _mm_prefetch::<_MM_HINT_ET0>(last);
            }
        }
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        let step = |acc: &mut [[__m512; 2]; MR], p: usize| {
            // SAFETY: step p < kc of each panel.
            let (b0, b1) = unsafe {
                (
                    _mm512_load_ps(b.add(p * NR)),
                    _mm512_load_ps(b.add(p * NR + 16)),
                )
            };
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                let x = _mm512_set1_ps(unsafe { *a.add(p * MR + r) });
                row[0] = _mm512_fmadd_ps(x, b0, row[0]);
                row[1] = _mm512_fmadd_ps(x, b1, row[1]);
            }
        };
        let whole = kc - kc % UNROLL;
        for p in (0..whole).step_by(UNROLL) {
            for u in 0..UNROLL {
                step(&mut acc, p + u);
            }
        }
        for p in whole..kc {
            step(&mut acc, p);
        }
        if self.csc == 1 {
            let masks = [
                low_lanes(self.cols),
                low_lanes(self.cols.saturating_sub(16)),
            ];
            for (r, row) in acc.iter().enumerate().take(self.rows) {
                let at = self.c.wrapping_offset(r as isize * self.rsc);
                for (h, (&sum, &mask)) in row.iter().zip(&masks).enumerate() {
                    let at = at.wrapping_add(16 * h);
                    // SAFETY: the masked lanes are elements of the tile.
                    unsafe {
                        let v = match self.add {
                            true => _mm512_add_ps(_mm512_maskz_loadu_ps(mask, at), sum),
                            false => sum,
                        };
                        _mm512_mask_storeu_ps(at, mask, v);
                    }
                }
            }
            return;
        }
        let mut lanes = [[0f32; NR]; MR];
        for (out, row) in lanes.iter_mut().zip(&acc) {
            // SAFETY: 32 floats of room.
            unsafe {
                _mm512_storeu_ps(out.as_mut_ptr(), row[0]);
                _mm512_storeu_ps(out.as_mut_ptr().add(16), row[1]);
            }
        }
        for (r, row) in lanes.iter().enumerate().take(self.rows) {
            for (q, &sum) in row.iter().enumerate().take(self.cols) {
                let at = self
                    .c
                    .wrapping_offset(r as isize * self.rsc + q as isize * self.csc);
                // SAFETY: an element of the tile.
                unsafe { *at = if self.add { *at + sum } else { sum } };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every layout of A, B and C the code generator passes, sizes around the tile (8×32), the
    /// packed blocks (128 rows, 256 terms, 512 columns) and none of them, storing and adding:
    /// the same bits as matrixmultiply. Skipped without AVX-512F.
    #[test]
    fn products_are_matrixmultiply_s_to_the_bit() {
        if !super::available() {
            return;
        }
        let sizes = [
            (1, 1, 1),
            (8, 32, 32),
            (9, 31, 33),
            (7, 257, 40),
            (130, 300, 515),
            (64, 512, 96),
            (256, 128, 17),
        ];
        for &(m, k, n) in &sizes {
            let in_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
            let a = in_f32(crate::kernels::test_operands::operand_a(m * k));
            let b = in_f32(crate::kernels::test_operands::operand_b(k * n));
            let (mi, ki, ni) = (m as isize, k as isize, n as isize);
            for sa in [[ki, 1], [1, mi], [2 * ki, 2]] {
                for sb in [[ni, 1], [1, ki], [2 * ni, 2]] {
                    for sc in [[ni, 1], [1, mi]] {
                        for add in [false, true] {
                            let start: Vec<f32> =
                                (0..m * n).map(|i| (i % 7) as f32 / 3.0).collect();
                            let len = |s: [isize; 2], r: usize, c: usize| {
                                ((r as isize - 1) * s[0] + (c as isize - 1) * s[1] + 1) as usize
                            };
                            let (a2, b2) = (spread(&a, len(sa, m, k)), spread(&b, len(sb, k, n)));
                            let (mut ours, mut theirs) = (start.clone(), start);
                            // SAFETY: each view addresses its own buffer; AVX-512F is checked.
                            unsafe {
                                super::sgemm(
                                    m,
                                    k,
                                    n,
                                    a2.as_ptr(),
                                    sa,
                                    b2.as_ptr(),
                                    sb,
                                    ours.as_mut_ptr(),
                                    sc,
                                    add,
                                );
                                matrixmultiply::sgemm(
                                    m,
                                    k,
                                    n,
                                    1.0,
                                    a2.as_ptr(),
                                    sa[0],
                                    sa[1],
                                    b2.as_ptr(),
                                    sb[0],
                                    sb[1],
                                    if add { 1.0 } else { 0.0 },
                                    theirs.as_mut_ptr(),
                                    sc[0],
                                    sc[1],
                                );
                            }
                            let same = ours
                                .iter()
                                .zip(&theirs)
                                .all(|(x, y)| x.to_bits() == y.to_bits());
                            assert!(same, "{m}×{k}×{n} A {sa:?} B {sb:?} C {sc:?} add {add}");
                        }
                    }
                }
            }
        }
    }

    /// `len` floats cycling through `x`: an operand for any strides.
    fn spread(x: &[f32], len: usize) -> Vec<f32> {
        (0..len).map(|i| x[i % x.len()]).collect()
    }
}
