//! Training curves: a line per series against the step, with a log axis when it helps.

use super::*;

/// Axis ranges for the curves: the finite data, padded; log scale when it spans over two decades.
pub(super) struct CurveAxes {
    pub(super) x: (f64, f64),
    pub(super) y: (f64, f64),
    pub(super) log_y: bool,
}

impl CurveAxes {
    pub(super) fn new(series: &[Series]) -> CurveAxes {
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

/// A y tick's label. A log axis's ticks are read at their own magnitude: against the axis's
/// span, 1e-12 on an axis up to 0.1 is as good as zero, and every low tick of a loss that fell
/// over many decades would read "0".
pub(super) fn y_tick(v: f64, span: f64, log: bool) -> String {
    if log { tick(v, v) } else { tick(v, span) }
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

/// The figure: a title, then the panels stacked with one x axis (labelled on the bottom one).
pub(super) fn draw_figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    panels: &[Panel],
    marker: Option<&Marker>,
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let look = Look { scale: 1.0 };
    root.fill(&WHITE)?;
    let body = if title.is_empty() {
        root.clone()
    } else {
        root.titled(title, look.font(24.0))?
    };
    let all: Vec<Series> = panels.iter().flat_map(|p| p.series.clone()).collect();
    let x = CurveAxes::new(&all).x;
    let areas = body.split_evenly((panels.len().max(1), 1));
    for (k, (panel, area)) in panels.iter().zip(&areas).enumerate() {
        let mut axes = CurveAxes::new(&panel.series);
        axes.x = x;
        let bottom = k + 1 == panels.len();
        let labels = Labels {
            x: if bottom { x_label } else { "" },
            y: &panel.y_label,
            marker: marker.filter(|m| m.x >= x.0 && m.x <= x.1),
            marker_text: k == 0,
        };
        if axes.log_y {
            let ticks = log_ticks(axes.y);
            let y_spec = (axes.y.0..axes.y.1)
                .log_scale()
                .with_key_points(ticks.clone())
                .with_light_points(ticks);
            draw_panel(root, area, &panel.series, &axes, y_spec, &labels)?;
        } else {
            let y_spec = axes.y.0..axes.y.1;
            draw_panel(root, area, &panel.series, &axes, y_spec, &labels)?;
        }
    }
    Ok(())
}

/// What a panel's axes and marker say.
pub(super) struct Labels<'a> {
    pub(super) x: &'a str,
    pub(super) y: &'a str,
    pub(super) marker: Option<&'a Marker>,
    /// Whether this panel writes the marker's label (the top one does).
    pub(super) marker_text: bool,
}

/// One panel's chart in `area`; its lines, marker and legend are drawn on `root` in the
/// backend's own pixels, which is where the chart's coordinates map to.
pub(super) fn draw_panel<DB: DrawingBackend, Y>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
    axes: &CurveAxes,
    y_spec: Y,
    labels: &Labels,
) -> Res<()>
where
    DB::ErrorType: 'static,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let look = Look { scale: 1.0 };
    let mut builder = ChartBuilder::on(area);
    builder
        .margin_top(look.px(10.0))
        .margin_right(look.px(24.0))
        .margin_left(look.px(6.0))
        .margin_bottom(look.px(10.0))
        .x_label_area_size(look.px(if labels.x.is_empty() { 28.0 } else { 46.0 }))
        .y_label_area_size(look.px(82.0));
    let mut chart = builder.build_cartesian_2d(axes.x.0..axes.x.1, y_spec)?;
    let (span_x, span_y) = (axes.x.1 - axes.x.0, axes.y.1 - axes.y.0);
    let log_y = axes.log_y;
    let fx = move |v: &f64| tick(*v, span_x);
    let fy = move |v: &f64| y_tick(*v, span_y, log_y);
    chart
        .configure_mesh()
        .x_desc(labels.x)
        .y_desc(labels.y)
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
    let (left, top) = chart.backend_coord(&(axes.x.0, axes.y.1));
    let (right, bottom) = chart.backend_coord(&(axes.x.1, axes.y.0));
    if let Some(m) = labels.marker {
        let (x, _) = chart.backend_coord(&(m.x, axes.y.0));
        let gray = RGBColor(110, 110, 110);
        root.draw(&plotters::element::DashedPathElement::new(
            vec![(x, top), (x, bottom)],
            look.px(6.0).round() as i32,
            look.px(4.0).round() as i32,
            gray.stroke_width(look.width(1.5)),
        ))?;
        if labels.marker_text {
            let style = look
                .font(14.0)
                .color(&gray)
                .pos(Pos::new(HPos::Left, VPos::Top));
            root.draw(&Text::new(
                m.label.clone(),
                ipt((x as f64 + look.px(4.0), top as f64 + look.px(4.0))),
                style,
            ))?;
        }
    }
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
    let plot = (left as f64, top as f64, right as f64, bottom as f64);
    Legend::place(entries, &look, plot, &avoid).draw(root, &look)
}
