//! The filled contour map of a race, rendered as a raster.
/// Contour colours from the lowest band (pale, so that the valley floor where the optimizers
/// travel stays light behind their lines) to the highest.
pub(super) fn contour_color(t: f64) -> [f64; 3] {
    const STOPS: [(f64, [f64; 3]); 5] = [
        (0.0, [255.0, 252.0, 232.0]),
        (0.25, [229.0, 240.0, 218.0]),
        (0.5, [196.0, 224.0, 226.0]),
        (0.75, [147.0, 187.0, 214.0]),
        (1.0, [96.0, 131.0, 180.0]),
    ];
    let t = t.clamp(0.0, 1.0);
    for pair in STOPS.windows(2) {
        let ((t0, c0), (t1, c1)) = (pair[0], pair[1]);
        if t <= t1 {
            let u = (t - t0) / (t1 - t0);
            return [
                c0[0] + u * (c1[0] - c0[0]),
                c0[1] + u * (c1[1] - c0[1]),
                c0[2] + u * (c1[2] - c0[2]),
            ];
        }
    }
    STOPS[STOPS.len() - 1].1
}

/// The filled contour map as RGB pixels, row by row from the top: f is sampled at each pixel's
/// centre (narrow valleys such as Rosenbrock's fall apart into dashes when interpolated from a
/// coarser grid), banded on a log scale of f − min f, and the band edges are drawn as
/// anti-aliased lines.
pub(super) fn contour_raster(
    f: &dyn Fn(f64, f64) -> f64,
    x: (f64, f64),
    y: (f64, f64),
    (w, h): (usize, usize),
    minimum: Option<(f64, f64)>,
) -> Vec<u8> {
    let mut z = vec![f64::NAN; w * h];
    for j in 0..h {
        let yy = y.1 - (j as f64 + 0.5) / h as f64 * (y.1 - y.0);
        for i in 0..w {
            let xx = x.0 + (i as f64 + 0.5) / w as f64 * (x.1 - x.0);
            let v = f(xx, yy);
            if v.is_finite() {
                z[j * w + i] = v;
            }
        }
    }
    let mut floor = z
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::INFINITY, f64::min);
    if let Some(m) = minimum {
        let v = f(m.0, m.1);
        if v.is_finite() && v < floor {
            floor = v;
        }
    }
    // The lowest level sits at the 1% quantile of f − min f: low enough to trace the valley floor,
    // high enough that the rings around the minimum do not swallow the picture.
    let mut above: Vec<f64> = z
        .iter()
        .map(|v| v - floor)
        .filter(|d| *d > 0.0 && d.is_finite())
        .collect();
    let mut bands = 1usize;
    let (mut low, mut step) = (1.0f64, 1.0f64);
    if !above.is_empty() {
        let high = above.iter().copied().fold(0.0, f64::max);
        let k = above.len() / 100;
        let (_, q, _) = above.select_nth_unstable_by(k, f64::total_cmp);
        low = q.max(high * 1e-12).min(high);
        let ratio = high / low;
        if ratio.is_finite() && ratio > 1.0 + 1e-9 {
            bands = ((ratio.log10() * 6.0).round() as usize).clamp(8, 30);
            step = ratio.ln() / bands as f64;
        }
    }
    let level: Vec<f64> = z
        .iter()
        .map(|v| {
            if v.is_finite() {
                ((v - floor).max(low).ln() - low.ln()) / step
            } else {
                f64::NAN
            }
        })
        .collect();

    let mut rgb = vec![0u8; w * h * 3];
    for j in 0..h {
        for i in 0..w {
            let s = level[j * w + i];
            let pixel = &mut rgb[(j * w + i) * 3..(j * w + i) * 3 + 3];
            if !s.is_finite() {
                pixel.copy_from_slice(&[232, 232, 232]);
                continue;
            }
            let band = (s.floor().max(0.0) as usize).min(bands - 1);
            let mut color = contour_color(if bands > 1 {
                band as f64 / (bands - 1) as f64
            } else {
                0.0
            });
            let nearest = s.round();
            if nearest >= 1.0 && nearest < bands as f64 {
                // Distance to the level line in pixels, from the level's change per pixel.
                let neighbour = |ii: usize, jj: usize| level[jj * w + ii];
                let gx = match (i > 0, i + 1 < w) {
                    (true, true) => (neighbour(i + 1, j) - neighbour(i - 1, j)) / 2.0,
                    (false, true) => neighbour(i + 1, j) - s,
                    (true, false) => s - neighbour(i - 1, j),
                    (false, false) => 0.0,
                };
                let gy = match (j > 0, j + 1 < h) {
                    (true, true) => (neighbour(i, j + 1) - neighbour(i, j - 1)) / 2.0,
                    (false, true) => neighbour(i, j + 1) - s,
                    (true, false) => s - neighbour(i, j - 1),
                    (false, false) => 0.0,
                };
                let g = (gx * gx + gy * gy).sqrt();
                if g.is_finite() && g > 0.0 {
                    let distance = (s - nearest).abs() / g;
                    // Where bands are under two pixels wide the fill already shows the structure,
                    // and lines would only darken it into a smudge.
                    let fade = ((1.0 - g) / 0.5).clamp(0.0, 1.0);
                    let alpha = 0.45 * (1.0 - distance / 0.9).clamp(0.0, 1.0) * fade;
                    for c in &mut color {
                        *c *= 1.0 - alpha * 0.55;
                    }
                }
            }
            for (p, c) in pixel.iter_mut().zip(color) {
                *p = c.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    rgb
}
