//! Training curves: a line per series against the step, with a log axis when it helps.

use super::*;

/// Axis ranges for the curves: the finite data, padded; log scale when it spans over two decades.
pub(super) struct CurveAxes {
    pub(super) x: (f64, f64),
    pub(super) y: (f64, f64),
    pub(super) log_y: bool,
}

impl CurveAxes {
    pub(super) fn new(series: &[(String, Vec<(f64, f64)>)]) -> CurveAxes {
        let points = || {
            series
                .iter()
                .flat_map(|(_, p)| p.iter())
                .filter(|(x, y)| x.is_finite() && y.is_finite())
        };
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for &(x, y) in points() {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x0 > x1 {
            return CurveAxes {
                x: (0.0, 1.0),
                y: (0.0, 1.0),
                log_y: false,
            };
        }
        let pad = |lo: f64, hi: f64, fraction: f64| -> (f64, f64) {
            let span = hi - lo;
            if !span.is_finite() {
                return (lo.max(-f64::MAX / 4.0), hi.min(f64::MAX / 4.0));
            }
            if span <= 0.0 {
                let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
                return (lo - d, hi + d);
            }
            (lo - span * fraction, hi + span * fraction)
        };
        let x = pad(x0, x1, 0.0);
        let x = if x.0 == x.1 {
            (x.0 - 1.0, x.1 + 1.0)
        } else {
            x
        };
        let log_y = y0 > 0.0 && y1 / y0 > 100.0;
        let margin = 10f64.powf(0.1);
        let y = if log_y {
            (y0 / margin, (y1 * margin).min(f64::MAX))
        } else {
            pad(y0, y1, 0.05)
        };
        CurveAxes { x, y, log_y }
    }
}

/// Log-axis ticks: 1, 2 and 5 times the powers of ten over a few decades, only powers of ten
/// (every n-th one) over many; plotters' own choice labels just the powers of ten, which leaves a
/// two-decade axis with two labels.
pub(super) fn log_ticks((lo, hi): (f64, f64)) -> Vec<f64> {
    let exponent = |v: f64| v.log10().clamp(-330.0, 330.0);
    let (first, last) = (exponent(lo).floor() as i32, exponent(hi).ceil() as i32);
    let decades = (last - first).max(1);
    let (multiples, stride): (&[f64], i32) = if decades <= 4 {
        (&[1.0, 2.0, 5.0], 1)
    } else {
        (&[1.0], (decades + 7) / 8)
    };
    let mut ticks = Vec::new();
    for e in (first..=last).filter(|e| (e - first) % stride == 0) {
        for m in multiples {
            let v = m * 10f64.powi(e);
            if v >= lo && v <= hi {
                ticks.push(v);
            }
        }
    }
    ticks
}

/// Consecutive points in the same pixel column reduce to the first, lowest, highest and last of
/// them: the drawn line looks the same, and a series of a million steps stays a small path.
pub(super) fn thin_columns(run: Vec<(i32, i32)>) -> Vec<(i32, i32)> {
    let mut thin = Vec::new();
    for group in run.chunk_by(|a, b| a.0 == b.0) {
        let lowest = (0..group.len()).min_by_key(|&k| group[k].1).unwrap_or(0);
        let highest = (0..group.len()).max_by_key(|&k| group[k].1).unwrap_or(0);
        let mut keep = [0, lowest, highest, group.len() - 1];
        keep.sort_unstable();
        thin.extend(keep.iter().map(|&k| group[k]));
    }
    thin.dedup();
    thin
}

pub(super) fn draw_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let axes = CurveAxes::new(series);
    if axes.log_y {
        let ticks = log_ticks(axes.y);
        let y_spec = (axes.y.0..axes.y.1)
            .log_scale()
            .with_key_points(ticks.clone())
            .with_light_points(ticks);
        draw_curves_on(root, title, x_label, series, &axes, y_spec)
    } else {
        draw_curves_on(root, title, x_label, series, &axes, axes.y.0..axes.y.1)
    }
}

pub(super) fn draw_curves_on<DB: DrawingBackend, Y>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    axes: &CurveAxes,
    y_spec: Y,
) -> Res<()>
where
    DB::ErrorType: 'static,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let look = Look { scale: 1.0 };
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(root);
    builder
        .margin_top(look.px(10.0))
        .margin_right(look.px(24.0))
        .margin_left(look.px(6.0))
        .margin_bottom(look.px(10.0))
        .x_label_area_size(look.px(46.0))
        .y_label_area_size(look.px(72.0));
    if !title.is_empty() {
        builder.caption(title, look.font(24.0));
    }
    let mut chart = builder.build_cartesian_2d(axes.x.0..axes.x.1, y_spec)?;
    let (span_x, span_y) = (axes.x.1 - axes.x.0, axes.y.1 - axes.y.0);
    let fx = move |v: &f64| tick(*v, span_x);
    let fy = move |v: &f64| tick(*v, span_y);
    chart
        .configure_mesh()
        .x_desc(x_label)
        .label_style(look.font(15.0))
        .axis_desc_style(look.font(18.0))
        .bold_line_style(RGBColor(225, 225, 225).stroke_width(1))
        .max_light_lines(0)
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .draw()?;
    let inside = |&(x, y): &(f64, f64)| {
        x.is_finite()
            && y.is_finite()
            && x >= axes.x.0
            && x <= axes.x.1
            && y >= axes.y.0
            && y <= axes.y.1
    };
    let mut avoid = Vec::new();
    let mut entries = Vec::new();
    for (k, (name, points)) in series.iter().enumerate() {
        let color = CURVE_COLORS[k % CURVE_COLORS.len()];
        entries.push((name.clone(), color, None));
        let mut run: Vec<(i32, i32)> = Vec::new();
        let mut runs = Vec::new();
        for p in points {
            if inside(p) {
                run.push(chart.backend_coord(p));
            } else if !run.is_empty() {
                runs.push(std::mem::take(&mut run));
            }
        }
        runs.push(run);
        for run in runs.into_iter().map(thin_columns) {
            avoid.extend(run.iter().map(|&(x, y)| (x as f64, y as f64)));
            if run.len() == 1 {
                root.draw(&Circle::new(run[0], look.px(3.0), color.filled()))?;
            } else if run.len() > 1 {
                root.draw(&PathElement::new(run, color.stroke_width(look.width(2.0))))?;
            }
        }
    }
    let (left, top) = chart.backend_coord(&(axes.x.0, axes.y.1));
    let (right, bottom) = chart.backend_coord(&(axes.x.1, axes.y.0));
    let plot = (left as f64, top as f64, right as f64, bottom as f64);
    Legend::place(entries, &look, plot, &avoid).draw(root, &look)
}
