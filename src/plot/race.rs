//! A race scene: the contour map, the optimizers' paths, their markers, the still picture.

use super::*;

/// A validated race scene, shared by the still and the animations.
pub(super) struct Race<'a> {
    pub(super) title: &'a str,
    pub(super) f: &'a dyn Fn(f64, f64) -> f64,
    pub(super) x: (f64, f64),
    pub(super) y: (f64, f64),
    pub(super) trajectories: &'a [Trajectory],
    pub(super) minimum: Option<(f64, f64)>,
}

/// Markers on every point would merge into a thick band on long runs.
pub(super) fn marker_stride(len: usize) -> usize {
    len.div_ceil(60).max(1)
}

pub(super) fn check_range(
    path: &Path,
    axis: &str,
    (a, b): (f64, f64),
) -> Result<(f64, f64), PlotError> {
    if !(a.is_finite() && b.is_finite()) || a == b || (b - a).abs() == f64::INFINITY {
        return Err(PlotError::Input {
            file: file_name(path),
            problem: format!("the {axis} range must be two different finite numbers, got {a}..{b}"),
        });
    }
    Ok((a.min(b), a.max(b)))
}

impl<'a> Race<'a> {
    pub(super) fn new(
        path: &Path,
        title: &'a str,
        f: &'a dyn Fn(f64, f64) -> f64,
        x: (f64, f64),
        y: (f64, f64),
        trajectories: &'a [Trajectory],
        minimum: Option<(f64, f64)>,
    ) -> Result<Race<'a>, PlotError> {
        let x = check_range(path, "x", x)?;
        let y = check_range(path, "y", y)?;
        Ok(Race {
            title,
            f,
            x,
            y,
            trajectories,
            minimum,
        })
    }

    /// The canvas size: the plot keeps the data's aspect ratio within limits, so a square domain
    /// gets square contours.
    pub(super) fn canvas(&self, look: &Look) -> (u32, u32) {
        let aspect = ((self.y.1 - self.y.0) / (self.x.1 - self.x.0)).clamp(0.6, 1.25);
        let plot_w = 620.0;
        let plot_h = 620.0 * aspect;
        let title = if self.title.is_empty() { 0.0 } else { 44.0 };
        let w = plot_w + 70.0 + 24.0;
        let h = plot_h + title + 56.0 + 16.0;
        (look.px(w).round() as u32, look.px(h).round() as u32)
    }

    pub(super) fn color(k: usize) -> RGBColor {
        RACE_COLORS[k % RACE_COLORS.len()]
    }

    pub(super) fn shape(k: usize) -> Shape {
        SHAPES[k % SHAPES.len()]
    }

    /// Title, axes and the contour map.
    pub(super) fn draw_base<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        look: &Look,
    ) -> Res<View>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let mut builder = ChartBuilder::on(root);
        builder
            .margin_top(look.px(10.0))
            .margin_right(look.px(24.0))
            .margin_left(look.px(6.0))
            .margin_bottom(look.px(10.0))
            .x_label_area_size(look.px(46.0))
            .y_label_area_size(look.px(64.0));
        if !self.title.is_empty() {
            builder.caption(self.title, look.font(24.0));
        }
        let mut chart = builder.build_cartesian_2d(self.x.0..self.x.1, self.y.0..self.y.1)?;
        let (span_x, span_y) = (self.x.1 - self.x.0, self.y.1 - self.y.0);
        let fx = move |v: &f64| tick(*v, span_x);
        let fy = move |v: &f64| tick(*v, span_y);
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("x")
            .y_desc("y")
            .x_labels(9)
            .y_labels(9)
            .label_style(look.font(15.0))
            .axis_desc_style(look.font(18.0))
            .x_label_formatter(&fx)
            .y_label_formatter(&fy)
            .draw()?;
        let (left, top) = chart.backend_coord(&(self.x.0, self.y.1));
        let (right, bottom) = chart.backend_coord(&(self.x.1, self.y.0));
        let view = View {
            x: self.x,
            y: self.y,
            left: left as f64,
            right: right as f64,
            top: top as f64,
            bottom: bottom as f64,
        };
        let (w, h) = (
            (right - left).max(1) as usize,
            (bottom - top).max(1) as usize,
        );
        let rgb = contour_raster(self.f, self.x, self.y, (w, h), self.minimum);
        let image = BitMapElement::with_owned_buffer((left, top), (w as u32, h as u32), rgb)
            .ok_or("raster size")?;
        root.draw(&image)?;
        root.draw(&Rectangle::new(
            [(left, top), (right, bottom)],
            RGBColor(60, 60, 60).stroke_width(1),
        ))?;
        Ok(view)
    }

    /// The legend, placed away from the finished trajectories so it never moves between frames.
    pub(super) fn legend(&self, view: &View, look: &Look) -> Legend {
        let mut entries: Vec<(String, RGBColor, Option<Shape>)> = self
            .trajectories
            .iter()
            .enumerate()
            .map(|(k, t)| (t.name.clone(), Race::color(k), Some(Race::shape(k))))
            .collect();
        let mut avoid = Vec::new();
        for t in self.trajectories {
            for run in pixel_runs(&t.points, view) {
                let px = run.points;
                avoid.extend(px.iter().copied());
                for pair in px.windows(2) {
                    let (a, b) = (pair[0], pair[1]);
                    let n = (((b.0 - a.0).hypot(b.1 - a.1)) / 4.0).ceil().min(2000.0) as usize;
                    for s in 1..n {
                        let u = s as f64 / n as f64;
                        avoid.push((a.0 + u * (b.0 - a.0), a.1 + u * (b.1 - a.1)));
                    }
                }
            }
        }
        if let Some(m) = self.minimum.filter(|m| view.contains(*m)) {
            entries.push(("minimum".into(), GOLD, Some(Shape::Star)));
            avoid.extend(std::iter::repeat_n(view.pixel(m), 20));
        }
        Legend::place(
            entries,
            look,
            (view.left, view.top, view.right, view.bottom),
            &avoid,
        )
    }

    pub(super) fn draw_minimum<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        view: &View,
        look: &Look,
    ) -> Res<()>
    where
        DB::ErrorType: 'static,
    {
        if let Some(m) = self.minimum.filter(|m| view.contains(*m)) {
            draw_marker(
                root,
                Shape::Star,
                view.pixel(m),
                look.px(8.0),
                GOLD,
                Some((BLACK, 1)),
            )?;
        }
        Ok(())
    }

    /// Trajectory k up to step `upto`: its line, step markers, start (hollow) and current point.
    pub(super) fn draw_trajectory<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        view: &View,
        look: &Look,
        k: usize,
        upto: usize,
    ) -> Res<()>
    where
        DB::ErrorType: 'static,
    {
        let points = &self.trajectories[k].points;
        if points.is_empty() {
            return Ok(());
        }
        let last = upto.min(points.len() - 1);
        let shown = &points[..=last];
        let color = Race::color(k);
        let shape = Race::shape(k);
        for run in pixel_runs(shown, view) {
            let px: Vec<(i32, i32)> = run.points.into_iter().map(ipt).collect();
            if px.len() > 1 {
                root.draw(&PathElement::new(px, color.stroke_width(look.width(2.0))))?;
            }
        }
        let stride = marker_stride(points.len());
        for (i, p) in shown.iter().enumerate().take(last).skip(1) {
            if i % stride == 0 && view.contains(*p) {
                draw_marker(root, shape, view.pixel(*p), look.px(3.2), color, None)?;
            }
        }
        if view.contains(points[0]) {
            draw_marker(
                root,
                shape,
                view.pixel(points[0]),
                look.px(5.5),
                WHITE,
                Some((color, look.width(2.0))),
            )?;
        }
        if last > 0 && view.contains(points[last]) {
            draw_marker(
                root,
                shape,
                view.pixel(points[last]),
                look.px(6.0),
                color,
                Some((BLACK, 1)),
            )?;
        }
        Ok(())
    }

    pub(super) fn draw_still<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        look: &Look,
    ) -> Res<()>
    where
        DB::ErrorType: 'static,
    {
        let view = self.draw_base(root, look)?;
        self.draw_minimum(root, &view, look)?;
        for k in 0..self.trajectories.len() {
            self.draw_trajectory(root, &view, look, k, usize::MAX)?;
        }
        self.legend(&view, look).draw(root, look)
    }

    /// The step shown in each frame: every step, or evenly spread ones for long runs.
    pub(super) fn frame_steps(&self) -> Vec<usize> {
        let steps = self
            .trajectories
            .iter()
            .map(|t| t.points.len())
            .max()
            .unwrap_or(0);
        if steps <= 1 {
            return vec![0];
        }
        let frames = steps.min(MAX_FRAMES);
        (0..frames)
            .map(|k| ((k * (steps - 1)) as f64 / (frames - 1) as f64).round() as usize)
            .collect()
    }
}
