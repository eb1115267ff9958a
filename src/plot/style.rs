//! The look shared by every picture: sizes, colours, marker shapes.

use super::*;

/// Sizes in pixels at scale 1; the animation is drawn smaller to keep the GIF light.
pub(super) struct Look {
    pub(super) scale: f64,
}

impl Look {
    pub(super) fn px(&self, v: f64) -> f64 {
        v * self.scale
    }
    pub(super) fn font(&self, size: f64) -> TextStyle<'static> {
        (FONT, self.px(size)).into_font().into()
    }
    pub(super) fn width(&self, v: f64) -> u32 {
        self.px(v).round().max(1.0) as u32
    }
}

/// Trajectory colours: saturated, and none of them close to the pale blues of the contour map.
pub(super) const RACE_COLORS: [RGBColor; 8] = [
    RGBColor(228, 26, 28),
    RGBColor(255, 127, 0),
    RGBColor(51, 160, 44),
    RGBColor(152, 78, 163),
    RGBColor(25, 25, 25),
    RGBColor(231, 41, 138),
    RGBColor(166, 86, 40),
    RGBColor(0, 139, 139),
];

/// Curve colours on a white background (Tableau 10).
pub(super) const CURVE_COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Marker shapes cycle with the colours so that trajectories stay apart in greyscale too.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Shape {
    Circle,
    Square,
    TriangleUp,
    Diamond,
    TriangleDown,
    Star,
}

pub(super) const SHAPES: [Shape; 5] = [
    Shape::Circle,
    Shape::Square,
    Shape::TriangleUp,
    Shape::Diamond,
    Shape::TriangleDown,
];

impl Shape {
    /// Outline of a shape whose area roughly matches a circle of radius r.
    pub(super) fn polygon(self, (cx, cy): (f64, f64), r: f64) -> Vec<(f64, f64)> {
        let ring = |n: usize, radius: &dyn Fn(usize) -> f64, turn: f64| -> Vec<(f64, f64)> {
            (0..n)
                .map(|k| {
                    let a = turn + k as f64 * std::f64::consts::TAU / n as f64;
                    (cx + radius(k) * a.sin(), cy - radius(k) * a.cos())
                })
                .collect()
        };
        match self {
            Shape::Circle => ring(24, &|_| r, 0.0),
            Shape::Square => ring(4, &|_| r * 1.25, std::f64::consts::FRAC_PI_4),
            Shape::TriangleUp => ring(3, &|_| r * 1.45, 0.0),
            Shape::TriangleDown => ring(3, &|_| r * 1.45, std::f64::consts::PI),
            Shape::Diamond => ring(4, &|_| r * 1.35, 0.0),
            Shape::Star => ring(10, &|k| if k % 2 == 0 { r * 1.5 } else { r * 0.62 }, 0.0),
        }
    }
}

pub(super) fn ipt((x, y): (f64, f64)) -> (i32, i32) {
    (x.round() as i32, y.round() as i32)
}

pub(super) fn draw_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    shape: Shape,
    c: (f64, f64),
    r: f64,
    fill: RGBColor,
    edge: Option<(RGBColor, u32)>,
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    if shape == Shape::Circle {
        area.draw(&Circle::new(ipt(c), r, fill.filled()))?;
        if let Some((color, width)) = edge {
            area.draw(&Circle::new(ipt(c), r, color.stroke_width(width)))?;
        }
        return Ok(());
    }
    let points: Vec<(i32, i32)> = shape.polygon(c, r).into_iter().map(ipt).collect();
    area.draw(&Polygon::new(points.clone(), fill.filled()))?;
    if let Some((color, width)) = edge {
        let mut closed = points;
        closed.push(closed[0]);
        area.draw(&PathElement::new(closed, color.stroke_width(width)))?;
    }
    Ok(())
}

pub(super) fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// An SVG element for a marker; `inner` goes inside it (animation elements).
pub(super) fn svg_marker(
    shape: Shape,
    c: (f64, f64),
    r: f64,
    fill: RGBColor,
    edge: Option<(RGBColor, f64)>,
    inner: &str,
) -> String {
    let stroke = match edge {
        Some((color, width)) => format!(" stroke=\"{}\" stroke-width=\"{width:.1}\"", hex(color)),
        None => String::new(),
    };
    let (open, close) = if shape == Shape::Circle {
        (
            format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r:.1}\"", c.0, c.1),
            "</circle>",
        )
    } else {
        let points: Vec<String> = shape
            .polygon(c, r)
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        (
            format!("<polygon points=\"{}\"", points.join(" ")),
            "</polygon>",
        )
    };
    format!("{open} fill=\"{}\"{stroke}>{inner}{close}\n", hex(fill))
}

pub(super) const GOLD: RGBColor = RGBColor(255, 215, 0);
