//! Dropout masks from a counter-based generator: every element of a mask is a pure function of
//! the run's key, the step, the `dropout` call and the element's flat index, so no generator
//! state passes from one element, step or thread to the next.
//!
//! The generator is SplitMix64 (Steele, Lea and Flood, 2014) read as a counter-based one: the
//! i-th output of the stream with state `k` is `mix64(k + (i + 1)·γ)`, which passes BigCrush.
//! It was chosen over Philox-4x32 because an element costs two multiplications and three
//! shift-xors on 64-bit integers, which generated code does inline in the loop that fills the
//! mask, where Philox needs ten rounds of 32-bit multiplications for four outputs. Its
//! statistical quality is far beyond what a keep/drop decision at 32 bits can show.
//!
//! Keys: a run's key comes from its seed; step t's key is `run + t·γ` (wrapping), so the
//! fused training loop gets step i's key from the first one by adding γ; a call's key is
//! `mix64(step ^ (site + 1)·δ)`. An element is kept when the high 32 bits of its output are
//! at least `threshold(p)`, so it is dropped with probability `round(p·2³²)/2³²`.

/// The golden-ratio increment of SplitMix64.
pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
/// What a `dropout` call's number is multiplied by before it enters its key (an odd constant
/// of MurmurHash3's finalizer, so distinct calls are far apart).
pub const SITE_MULTIPLIER: u64 = 0xFF51_AFD7_ED55_8CCD;
/// The first of SplitMix64's two output multipliers (Stafford's Mix13).
pub const MIX1: u64 = 0xBF58_476D_1CE4_E5B9;
/// The second.
pub const MIX2: u64 = 0x94D0_49BB_1331_11EB;

/// SplitMix64's output function.
pub fn mix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(MIX1);
    let z = (z ^ (z >> 27)).wrapping_mul(MIX2);
    z ^ (z >> 31)
}

/// The key of a run, from the 32 bytes of its seed (those of the trainer's data stream, which
/// checkpoints keep, so a resumed run draws the masks of the run it continues).
pub fn run_key(seed: &[u8; 32]) -> u64 {
    seed.chunks_exact(8).fold(0, |k, word| {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        mix64(k ^ w)
    })
}

/// The key of step `t` (counted from 1) of the run with key `run`.
pub fn step_key(run: u64, t: u64) -> u64 {
    run.wrapping_add(t.wrapping_mul(GAMMA))
}

/// The key of the `dropout` call numbered `site` in the step whose key is `step`.
pub fn site_key(step: u64, site: u32) -> u64 {
    mix64(step ^ (u64::from(site) + 1).wrapping_mul(SITE_MULTIPLIER))
}

/// Element `i`'s 64 random bits in the call whose key is `site`.
pub fn element_bits(site: u64, i: u64) -> u64 {
    mix64(site.wrapping_add((i.wrapping_add(1)).wrapping_mul(GAMMA)))
}

/// An element is dropped when the high 32 bits of its output are below this (up to 2³²).
pub fn threshold(p: f64) -> u64 {
    (p * 4_294_967_296.0).round() as u64
}

/// The value of a kept element, 1/(1 − p), before it is rounded to the model's dtype.
pub fn scale(p: f64) -> f64 {
    1.0 / (1.0 - p)
}

/// The mask of one `dropout` call over `len` elements in the step whose key is `step`: the
/// reference the generated code is tested against.
pub fn mask(step: u64, site: u32, p: f64, len: usize) -> Vec<f64> {
    let key = site_key(step, site);
    let (t, s) = (threshold(p), scale(p));
    (0..len as u64)
        .map(|i| match element_bits(key, i) >> 32 >= t {
            true => s,
            false => 0.0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_rate_is_within_three_sigma() {
        for p in [0.1, 0.5, 0.9] {
            let n = 1 << 20;
            let kept = mask(step_key(run_key(&[7; 32]), 3), 0, p, n)
                .iter()
                .filter(|&&m| m != 0.0)
                .count() as f64;
            let q = 1.0 - p;
            let sigma = (n as f64 * p * q).sqrt();
            assert!(
                (kept - n as f64 * q).abs() < 3.0 * sigma,
                "p = {p}: kept {kept} of {n}"
            );
        }
    }

    #[test]
    fn steps_and_calls_draw_different_masks() {
        let run = run_key(&[1; 32]);
        let a = mask(step_key(run, 1), 0, 0.5, 256);
        assert_ne!(a, mask(step_key(run, 2), 0, 0.5, 256));
        assert_ne!(a, mask(step_key(run, 1), 1, 0.5, 256));
        assert_ne!(a, mask(step_key(run_key(&[2; 32]), 1), 0, 0.5, 256));
        assert_eq!(a, mask(step_key(run, 1), 0, 0.5, 256));
    }

    #[test]
    fn no_drop_keeps_everything() {
        assert!(mask(12345, 3, 0.0, 1000).iter().all(|&m| m == 1.0));
    }
}
