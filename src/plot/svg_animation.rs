//! The race as an SVG animated with SMIL.

use super::*;

impl Race<'_> {
    pub(super) fn write_animated_svg(&self, path: &Path) -> Result<(), PlotError> {
        let look = Look { scale: 1.0 };
        let size = self.canvas(&look);
        let mut base = String::new();
        let view = {
            let root = SVGBackend::with_string(&mut base, size).into_drawing_area();
            let view = self.draw_base(&root, &look).map_err(draw_error(path))?;
            self.draw_minimum(&root, &view, &look)
                .map_err(draw_error(path))?;
            root.present().map_err(draw_error(path))?;
            view
        };
        let mut legend_svg = String::new();
        {
            let root = SVGBackend::with_string(&mut legend_svg, size).into_drawing_area();
            self.legend(&view, &look)
                .draw(&root, &look)
                .map_err(draw_error(path))?;
            root.present().map_err(draw_error(path))?;
        }
        let steps = self.frame_steps();
        let delay = frame_delay_ms(steps.len()) as f64 / 1000.0;
        let play = delay * steps.len() as f64;
        let duration = play + HOLD_MS as f64 / 1000.0;
        let timing = Timing {
            steps: &steps,
            delay,
            duration,
        };
        let mut overlay = String::new();
        for k in 0..self.trajectories.len() {
            overlay.push_str(&self.svg_trajectory(&view, &look, k, &timing));
        }
        let legend_body = svg_body(&legend_svg);
        let Some(end) = base.rfind("</svg>") else {
            return Err(PlotError::Draw {
                file: file_name(path),
                message: "unexpected SVG output".into(),
            });
        };
        base.truncate(end);
        base.push_str(&overlay);
        base.push_str(legend_body);
        base.push_str("</svg>\n");
        write_svg(path, base)
    }

    /// Trajectory k as SVG whose line grows step by step: each visible run is a dashed line
    /// whose single dash lengthens, step markers fade in when reached, and the current point
    /// moves along. The plain attribute values show the finished run.
    pub(super) fn svg_trajectory(
        &self,
        view: &View,
        look: &Look,
        k: usize,
        timing: &Timing,
    ) -> String {
        let points = &self.trajectories[k].points;
        if points.is_empty() {
            return String::new();
        }
        let color = Race::color(k);
        let shape = Race::shape(k);
        let mut out = format!(
            "<g class=\"trajectory\" data-name=\"{}\">\n",
            xml_escape(&self.trajectories[k].name)
        );
        let key_times = timing.key_times().join(";");
        for run in pixel_runs(points, view) {
            let px = &run.points;
            if px.len() < 2 {
                continue;
            }
            let mut lengths = vec![0.0];
            for pair in px.windows(2) {
                let last = lengths[lengths.len() - 1];
                lengths.push(last + (pair[1].0 - pair[0].0).hypot(pair[1].1 - pair[0].1));
            }
            let total = lengths[lengths.len() - 1];
            let dash = total + 1.0;
            let drawn = |step: usize| -> f64 {
                let t = step as f64;
                if t <= run.params[0] {
                    return 0.0;
                }
                for i in 1..run.params.len() {
                    if t <= run.params[i] {
                        let u = (t - run.params[i - 1])
                            / (run.params[i] - run.params[i - 1]).max(1e-12);
                        return lengths[i - 1] + u * (lengths[i] - lengths[i - 1]);
                    }
                }
                total
            };
            let offsets = timing.per_key(|step| format!("{:.1}", dash - drawn(step)));
            let coords: Vec<String> = px.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            out.push_str(&format!(
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{:.1}\" \
                 stroke-linejoin=\"round\" stroke-linecap=\"round\" stroke-dasharray=\"{dash:.1} {dash:.1}\" \
                 stroke-dashoffset=\"0\">{}</polyline>\n",
                coords.join(" "),
                hex(color),
                look.px(2.2),
                smil(
                    "animate attributeName=\"stroke-dashoffset\"",
                    "linear",
                    timing.duration,
                    &key_times,
                    &offsets.join(";")
                ),
            ));
        }
        let stride = marker_stride(points.len());
        for (i, p) in points.iter().enumerate().skip(1) {
            if i % stride != 0 || i + 1 == points.len() || !view.contains(*p) {
                continue;
            }
            let appear = format!("0;{:.4}", timing.time_of_step(i) / timing.duration);
            let inner = smil(
                "animate attributeName=\"opacity\"",
                "discrete",
                timing.duration,
                &appear,
                "0;1",
            );
            out.push_str(&svg_marker(
                shape,
                view.pixel(*p),
                look.px(3.2),
                color,
                None,
                &inner,
            ));
        }
        if view.contains(points[0]) {
            out.push_str(&svg_marker(
                shape,
                view.pixel(points[0]),
                look.px(5.5),
                WHITE,
                Some((color, look.px(2.0))),
                "",
            ));
        }
        // The current point: a marker at the origin moved to each frame's point, hidden while
        // that point is outside the plot and at step 0, where the start marker stands.
        let end = points.len() - 1;
        if end > 0 {
            let mut last_seen = None;
            let mut positions = Vec::new();
            let mut opacity = Vec::new();
            for step in timing
                .steps
                .iter()
                .copied()
                .chain(std::iter::once(usize::MAX))
            {
                let p = points[step.min(end)];
                if view.contains(p) {
                    last_seen = Some(view.pixel(p));
                }
                let (x, y) = last_seen.unwrap_or((0.0, 0.0));
                positions.push(format!("{x:.1} {y:.1}"));
                opacity.push(
                    if step > 0 && view.contains(p) {
                        "1"
                    } else {
                        "0"
                    }
                    .to_string(),
                );
            }
            let (x, y) = last_seen.unwrap_or((0.0, 0.0));
            let shown = if view.contains(points[end]) { "1" } else { "0" };
            out.push_str(&format!(
                "<g transform=\"translate({x:.1} {y:.1})\" opacity=\"{shown}\">\n"
            ));
            out.push_str(&svg_marker(
                shape,
                (0.0, 0.0),
                look.px(6.0),
                color,
                Some((BLACK, 1.0)),
                "",
            ));
            let head = "animateTransform attributeName=\"transform\" type=\"translate\"";
            out.push_str(&smil(
                head,
                "linear",
                timing.duration,
                &key_times,
                &positions.join(";"),
            ));
            out.push('\n');
            out.push_str(&smil(
                "animate attributeName=\"opacity\"",
                "discrete",
                timing.duration,
                &key_times,
                &opacity.join(";"),
            ));
            out.push_str("\n</g>\n");
        }
        out.push_str("</g>\n");
        out
    }
}

/// A looping SMIL animation element opening with `head` (its name and target attribute); all of
/// them share one duration, so they stay in step.
pub(super) fn smil(head: &str, mode: &str, duration: f64, key_times: &str, values: &str) -> String {
    format!(
        "<{head} dur=\"{duration:.3}s\" repeatCount=\"indefinite\" calcMode=\"{mode}\" keyTimes=\"{key_times}\" \
         values=\"{values}\"/>"
    )
}

/// The animation clock: one key time per frame, then one at the end of the final hold.
pub(super) struct Timing<'a> {
    pub(super) steps: &'a [usize],
    pub(super) delay: f64,
    pub(super) duration: f64,
}

impl Timing<'_> {
    pub(super) fn key_times(&self) -> Vec<String> {
        let mut times: Vec<String> = (0..self.steps.len())
            .map(|k| format!("{:.4}", k as f64 * self.delay / self.duration))
            .collect();
        times.push("1".into());
        times
    }

    pub(super) fn per_key(&self, value: impl Fn(usize) -> String) -> Vec<String> {
        let mut values: Vec<String> = self.steps.iter().map(|s| value(*s)).collect();
        values.push(value(usize::MAX));
        values
    }

    /// When the frame that first shows `step` begins.
    pub(super) fn time_of_step(&self, step: usize) -> f64 {
        let frame = self
            .steps
            .iter()
            .position(|s| *s >= step)
            .unwrap_or(self.steps.len().saturating_sub(1));
        frame as f64 * self.delay
    }
}

/// The elements of an SVG document, without its `<svg>` wrapper.
pub(super) fn svg_body(svg: &str) -> &str {
    let start = svg
        .find("<svg")
        .and_then(|s| svg[s..].find('>').map(|e| s + e + 1))
        .unwrap_or(0);
    let end = svg.rfind("</svg>").unwrap_or(svg.len()).max(start);
    &svg[start..end]
}

pub(super) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
