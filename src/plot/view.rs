//! Plot coordinates to pixels: the view, clipping paths to it, tick labels.
/// Maps plot coordinates to canvas pixels, with the same corners as the chart's axes.
#[derive(Clone, Copy)]
pub(super) struct View {
    pub(super) x: (f64, f64),
    pub(super) y: (f64, f64),
    pub(super) left: f64,
    pub(super) right: f64,
    pub(super) top: f64,
    pub(super) bottom: f64,
}

impl View {
    pub(super) fn pixel(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (
            self.left + (x - self.x.0) / (self.x.1 - self.x.0) * (self.right - self.left),
            self.bottom - (y - self.y.0) / (self.y.1 - self.y.0) * (self.bottom - self.top),
        )
    }
    pub(super) fn contains(&self, (x, y): (f64, f64)) -> bool {
        x >= self.x.0 && x <= self.x.1 && y >= self.y.0 && y <= self.y.1
    }
}

/// The part of the segment a→b inside the box, as the parameters (t0, t1) ⊆ [0, 1] along it
/// (Liang–Barsky).
pub(super) fn clip_segment(
    a: (f64, f64),
    b: (f64, f64),
    x: (f64, f64),
    y: (f64, f64),
) -> Option<(f64, f64)> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.0 - x.0),
        (dx, x.1 - a.0),
        (-dy, a.1 - y.0),
        (dy, y.1 - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    (t0.is_finite() && t1.is_finite() && t0 <= t1).then_some((t0, t1))
}

/// A stretch of a trajectory that stays inside the plot: its points (in plot coordinates, or in
/// pixels once mapped), each with its position along the trajectory (index of the step plus the
/// fraction of the next segment), which is what the animation is timed by.
pub(super) struct Run {
    pub(super) points: Vec<(f64, f64)>,
    pub(super) params: Vec<f64>,
}

/// Splits a polyline into the runs that lie inside the box, cutting at its edges and dropping
/// non-finite points.
pub(super) fn visible_runs(points: &[(f64, f64)], x: (f64, f64), y: (f64, f64)) -> Vec<Run> {
    let finite = |p: (f64, f64)| p.0.is_finite() && p.1.is_finite();
    let inside = |p: (f64, f64)| p.0 >= x.0 && p.0 <= x.1 && p.1 >= y.0 && p.1 <= y.1;
    let mut runs = Vec::new();
    if points.len() == 1 {
        if finite(points[0]) && inside(points[0]) {
            runs.push(Run {
                points: vec![points[0]],
                params: vec![0.0],
            });
        }
        return runs;
    }
    let mut current: Option<Run> = None;
    for (i, pair) in points.windows(2).enumerate() {
        let (a, b) = (pair[0], pair[1]);
        let clipped = if finite(a) && finite(b) {
            clip_segment(a, b, x, y)
        } else {
            None
        };
        let Some((t0, t1)) = clipped else {
            runs.extend(current.take());
            continue;
        };
        let at = |t: f64| (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
        let (start, end) = (at(t0), at(t1));
        if !(finite(start) && finite(end)) {
            runs.extend(current.take());
            continue;
        }
        let continues = t0 == 0.0
            && current
                .as_ref()
                .is_some_and(|r| r.params.last() == Some(&(i as f64)));
        if !continues {
            runs.extend(current.take());
            current = Some(Run {
                points: vec![start],
                params: vec![i as f64 + t0],
            });
        }
        if let Some(run) = current.as_mut() {
            run.points.push(end);
            run.params.push(i as f64 + t1);
        }
        if t1 < 1.0 {
            runs.extend(current.take());
        }
    }
    runs.extend(current);
    runs
}

/// The visible runs of a polyline in canvas pixels. A vertex within 1.5 pixels of the one kept
/// before it is dropped: a run of a million steps would otherwise become a million-vertex path,
/// and whole-pixel segments shorter than that turn a smooth curve into a staircase.
pub(super) fn pixel_runs(points: &[(f64, f64)], view: &View) -> Vec<Run> {
    visible_runs(points, view.x, view.y)
        .into_iter()
        .map(|run| {
            let n = run.points.len();
            let mut thin = Run {
                points: Vec::new(),
                params: Vec::new(),
            };
            for (k, (p, t)) in run.points.iter().zip(&run.params).enumerate() {
                let q = view.pixel(*p);
                let keep = match thin.points.last() {
                    None => true,
                    Some(last) => k + 1 == n || (q.0 - last.0).hypot(q.1 - last.1) >= 1.5,
                };
                if keep {
                    thin.points.push(q);
                    thin.params.push(*t);
                }
            }
            thin
        })
        .collect()
}

/// Plot-axis tick text: short, and without float noise such as 0.30000000000000004 or -4e-17.
pub(super) fn tick(v: f64, span: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    if v.abs() <= span.abs() * 1e-9 {
        return "0".into();
    }
    let a = v.abs();
    let text = if (1e-3..1e5).contains(&a) {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        let s = format!("{v:.2e}");
        match s.split_once('e') {
            Some((mantissa, exponent)) => {
                format!(
                    "{}e{exponent}",
                    mantissa.trim_end_matches('0').trim_end_matches('.')
                )
            }
            None => s,
        }
    };
    if text == "-0" { "0".into() } else { text }
}
