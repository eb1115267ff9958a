//! Blocks of sixteen by sixteen f32 moved through AVX-512 registers: masks of a vector's first
//! lanes, and a block loaded line by line and transposed. Packing an operand whose contiguous
//! axis is the wrong one for its kernel is such a transpose (a B stored as its transpose, an A
//! stored row-major), done here once for every kernel that packs.

use std::arch::x86_64::*;

/// A mask of the first `n` of sixteen lanes (all of them from sixteen on).
pub(super) fn low_lanes(n: usize) -> u16 {
    match n {
        0 => 0,
        n if n >= 16 => u16::MAX,
        n => (1u16 << n) - 1,
    }
}

/// The transpose of the block whose line l is `len` floats at `base + l·stride`, for the
/// first `lines` lines (up to sixteen each): element i of result r is element r of line i,
/// zero past `lines` and past `len`.
///
/// # Safety
/// Elements 0 .. min(len, 16) of each of the `lines` lines are readable; AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn load_transposed(
    base: *const f32,
    stride: isize,
    lines: usize,
    len: usize,
) -> [__m512; 16] {
    let read = low_lanes(len);
    let mut v = [_mm512_setzero_ps(); 16];
    for (l, x) in v.iter_mut().enumerate().take(lines) {
        // SAFETY: elements 0 .. len of line l (the mask), readable by the caller's contract.
        *x = unsafe { _mm512_maskz_loadu_ps(read, base.wrapping_offset(l as isize * stride)) };
    }
    transpose16(v)
}

/// The transpose of a 16×16 block held as sixteen rows: element c of row r goes to element r
/// of row c. Interleaving pairs of rows, then pairs of pairs, then 128-bit quarters twice.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    let mut u = [_mm512_setzero_ps(); 16];
    for i in 0..4 {
        let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
        u[4 * i] = pd_lo(a, c);
        u[4 * i + 1] = pd_hi(a, c);
        u[4 * i + 2] = pd_lo(b, d);
        u[4 * i + 3] = pd_hi(b, d);
    }
    // Row c of each 4×4 block is now in u[4·g + c] (g: the group of four rows), quarter q
    // holding columns 4q .. 4q + 4.
    let mut w = [_mm512_setzero_ps(); 16];
    for c in 0..4 {
        w[c] = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
        w[4 + c] = _mm512_shuffle_f32x4::<0xdd>(u[c], u[4 + c]);
        w[8 + c] = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
        w[12 + c] = _mm512_shuffle_f32x4::<0xdd>(u[8 + c], u[12 + c]);
    }
    let mut out = [_mm512_setzero_ps(); 16];
    for c in 0..4 {
        out[c] = _mm512_shuffle_f32x4::<0x88>(w[c], w[8 + c]);
        out[8 + c] = _mm512_shuffle_f32x4::<0xdd>(w[c], w[8 + c]);
        out[4 + c] = _mm512_shuffle_f32x4::<0x88>(w[4 + c], w[12 + c]);
        out[12 + c] = _mm512_shuffle_f32x4::<0xdd>(w[4 + c], w[12 + c]);
    }
    out
}

#[inline]
#[target_feature(enable = "avx512f")]
fn pd_lo(a: __m512, b: __m512) -> __m512 {
    _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
}

#[inline]
#[target_feature(enable = "avx512f")]
fn pd_hi(a: __m512, b: __m512) -> __m512 {
    _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
}
