//! Standard normal samples by the ziggurat method (Marsaglia and Tsang, 2000): 256 strips of
//! equal area under the density, built once; a sample is one 64-bit draw, a table lookup and a
//! comparison about 99% of the time, where the Box–Muller transform costs a logarithm, a
//! cosine and a square root every time (a transformer's 430,000 weights took 11 ms).
//!
//! The tables are computed here, not taken from a crate, so that a seed gives the same values
//! whatever version of `rand` or `rand_distr` is in use.

use rand::Rng;
use std::sync::OnceLock;

/// The strips: `x[i]` is strip i's right edge (`x[0]` the base strip's width, the area of
/// a strip over the density at the tail's start; `x[1]` = R, where the tail starts; `x[256]` =
/// 0), and `f[i]` the density at `x[i]`, unnormalized (`exp(−x²/2)`).
struct Strips {
    x: [f64; 257],
    f: [f64; 257],
}

/// Where the tail starts, and each strip's area, for 256 strips (Marsaglia and Tsang, 2000).
const R: f64 = 3.654_152_885_361_009;
const AREA: f64 = 4.928_673_233_974_655e-3;

fn density(x: f64) -> f64 {
    (-0.5 * x * x).exp()
}

fn strips() -> &'static Strips {
    static STRIPS: OnceLock<Strips> = OnceLock::new();
    STRIPS.get_or_init(|| {
        let (mut x, mut f) = ([0.0; 257], [0.0; 257]);
        x[0] = AREA / density(R);
        x[1] = R;
        for i in 2..256 {
            x[i] = (-2.0 * (AREA / x[i - 1] + density(x[i - 1])).ln()).sqrt();
        }
        x[256] = 0.0;
        for i in 0..257 {
            f[i] = density(x[i]);
        }
        Strips { x, f }
    })
}

/// A uniform in (0, 1) from the top 53 bits of `bits`: never 0 or 1, so logarithms stay finite.
fn open01(bits: u64) -> f64 {
    ((bits >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal sample.
pub fn std_normal(rng: &mut impl Rng) -> f64 {
    let s = strips();
    loop {
        let bits = rng.next_u64();
        // The low 8 bits pick the strip; the top 53, disjoint from them, the place in it.
        let i = (bits & 0xff) as usize;
        let x = (2.0 * open01(bits) - 1.0) * s.x[i];
        if x.abs() < s.x[i + 1] {
            return x;
        }
        if i == 0 {
            return tail(rng, x < 0.0);
        }
        let y = s.f[i + 1] + (s.f[i] - s.f[i + 1]) * open01(rng.next_u64());
        if y < density(x) {
            return x;
        }
    }
}

/// A sample beyond R (Marsaglia, 1964), negated when `negative`.
fn tail(rng: &mut impl Rng, negative: bool) -> f64 {
    loop {
        let x = -open01(rng.next_u64()).ln() / R;
        let y = -open01(rng.next_u64()).ln();
        if 2.0 * y >= x * x {
            let z = R + x;
            return if negative { -z } else { z };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Φ(z), by the complementary error function's continued fraction: accurate to ~1e-7,
    /// far below the sampling noise tested against.
    fn normal_cdf(z: f64) -> f64 {
        0.5 * libm_erfc(-z / std::f64::consts::SQRT_2)
    }

    /// erfc by Numerical Recipes' Chebyshev fit (relative error under 1.2e-7).
    fn libm_erfc(x: f64) -> f64 {
        let z = x.abs();
        let t = 1.0 / (1.0 + 0.5 * z);
        let r = t
            * (-z * z - 1.265_512_23
                + t * (1.000_023_68
                    + t * (0.374_091_96
                        + t * (0.096_784_18
                            + t * (-0.186_288_06
                                + t * (0.278_868_07
                                    + t * (-1.135_203_98
                                        + t * (1.488_515_87
                                            + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
                .exp();
        if x >= 0.0 { r } else { 2.0 - r }
    }

    #[test]
    fn the_strips_close_at_zero_with_equal_areas() {
        let s = strips();
        // The recurrence, run from R with the published area, must land near 0 at strip 255:
        // a wrong constant leaves a gap or an overlap there.
        assert!(s.x[255] > 0.0 && s.x[255] < 0.3, "x[255] = {}", s.x[255]);
        for i in 1..255 {
            let area = s.x[i] * (s.f[i + 1] - s.f[i]);
            assert!((area - AREA).abs() < 1e-12, "strip {i}: area {area}");
        }
    }

    #[test]
    fn samples_follow_the_standard_normal_distribution() {
        let mut rng = crate::init::rng(7);
        let n = 1_000_000;
        let mut v: Vec<f64> = (0..n).map(|_| std_normal(&mut rng)).collect();
        assert!(v.iter().all(|x| x.is_finite()));
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        // Four standard errors: the mean's is 1/√n, the variance's √(2/n).
        assert!(mean.abs() < 4.0 / (n as f64).sqrt(), "mean {mean}");
        assert!(
            (var - 1.0).abs() < 4.0 * (2.0 / n as f64).sqrt(),
            "variance {var}"
        );
        // The empirical distribution function against Φ, at points through both tails,
        // R included, each within four binomial standard errors.
        v.sort_by(f64::total_cmp);
        for z in [
            -4.0, -R, -3.0, -2.0, -1.0, -0.5, 0.0, 0.3, 1.0, 2.0, 3.0, R, 4.0,
        ] {
            let below = v.partition_point(|&x| x < z) as f64 / n as f64;
            let p = normal_cdf(z);
            let se = (p * (1.0 - p) / n as f64).sqrt();
            assert!(
                (below - p).abs() < 4.0 * se + 2e-7,
                "P(Z < {z}): {below} against {p}"
            );
        }
    }

    #[test]
    fn a_seed_gives_the_same_samples() {
        let draw = |seed| {
            let mut rng = crate::init::rng(seed);
            (0..1000).map(|_| std_normal(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }
}
