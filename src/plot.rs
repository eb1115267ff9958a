//! Pictures of optimizer runs: a filled contour map of a 2-D objective with the optimizers'
//! trajectories racing across it (a still, or an animation), and line plots of training curves.
//!
//! The file extension picks the format. Text is drawn with a font compiled into the binary, so the
//! pictures come out the same on a machine that has no fonts installed.
//!
//! Invariant: no user input (NaN or infinite values, points far outside the plotted range, empty
//! trajectories, an unwritable path) makes these functions panic; bad values are skipped and every
//! error names the file.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::element::BitMapElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::{BackendColor, BackendCoord, DrawingErrorKind};
use std::collections::HashMap;
use std::error::Error;
use std::path::Path;
use std::sync::OnceLock;

const FONT_BYTES: &[u8] = include_bytes!("../examples/fonts/DejaVuSans.ttf");
const FONT: &str = "sans-serif";

/// Why a picture was not written; each names the file.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlotError {
    #[error("{file}: unsupported file extension; expected {expected}")]
    Format {
        file: String,
        expected: &'static str,
    },
    #[error("{file}: {problem}")]
    Input { file: String, problem: String },
    #[error("{file}: cannot draw the plot: {message}")]
    Draw { file: String, message: String },
    #[error("{file}: cannot write: {message}")]
    Write { file: String, message: String },
}

/// The format of a still picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    /// The format named by the path's extension (`.svg` or `.png`, in any case).
    pub fn from_path(path: &Path) -> Result<Format, PlotError> {
        match extension(path).as_deref() {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            _ => Err(PlotError::Format {
                file: file_name(path),
                expected: ".svg or .png",
            }),
        }
    }
}

/// The format of an animation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Animation {
    Gif,
    /// An SVG animated with SMIL.
    Svg,
}

impl Animation {
    /// The format named by the path's extension (`.gif` or `.svg`, in any case).
    pub fn from_path(path: &Path) -> Result<Animation, PlotError> {
        match extension(path).as_deref() {
            Some("gif") => Ok(Animation::Gif),
            Some("svg") => Ok(Animation::Svg),
            _ => Err(PlotError::Format {
                file: file_name(path),
                expected: ".gif or .svg",
            }),
        }
    }
}

/// One optimizer's path: the iterates in order, starting point first.
#[derive(Clone, Debug, PartialEq)]
pub struct Trajectory {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A filled contour map of f over \[x0,x1\]×\[y0,y1\] (levels spaced in log scale of f − min f, so
/// narrow valleys such as Rosenbrock's show), with each trajectory drawn as a coloured line with
/// markers, its start and end marked, a legend with the names, axis labels and a title.
/// `minimum`, when given, is marked with a star.
pub fn race_still(
    path: &Path,
    title: &str,
    f: &dyn Fn(f64, f64) -> f64,
    x: (f64, f64),
    y: (f64, f64),
    trajectories: &[Trajectory],
    minimum: Option<(f64, f64)>,
) -> Result<(), PlotError> {
    let format = Format::from_path(path)?;
    let race = Race::new(path, title, f, x, y, trajectories, minimum)?;
    register_font(path)?;
    let look = Look { scale: 1.0 };
    let size = race.canvas(&look);
    match format {
        Format::Png => {
            let root = Bitmap(BitMapBackend::new(path, size)).into_drawing_area();
            race.draw_still(&root, &look).map_err(draw_error(path))?;
            root.present().map_err(write_error(path))
        }
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
                race.draw_still(&root, &look).map_err(draw_error(path))?;
                root.present().map_err(draw_error(path))?;
            }
            write_svg(path, svg)
        }
    }
}

/// The same scene as [`race_still`], animated: frame k shows every trajectory up to step k (long
/// runs are subsampled to at most 100 frames, and the last frame is held for a moment). A `.gif`
/// path gives an animated GIF; an `.svg` path gives an SVG animated with SMIL, which shows the
/// finished race in viewers that do not animate.
pub fn race_animation(
    path: &Path,
    title: &str,
    f: &dyn Fn(f64, f64) -> f64,
    x: (f64, f64),
    y: (f64, f64),
    trajectories: &[Trajectory],
    minimum: Option<(f64, f64)>,
) -> Result<(), PlotError> {
    let format = Animation::from_path(path)?;
    let race = Race::new(path, title, f, x, y, trajectories, minimum)?;
    register_font(path)?;
    match format {
        Animation::Gif => race.write_gif(path),
        Animation::Svg => race.write_animated_svg(path),
    }
}

/// Line plot of named series against step (e.g. training loss, validation loss, accuracy), with a
/// legend. The y axis is logarithmic when every value is positive and they span more than two
/// decades. Non-finite values leave a gap in their line.
pub fn curves(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<(), PlotError> {
    let format = Format::from_path(path)?;
    register_font(path)?;
    let size = (900, 560);
    match format {
        Format::Png => {
            let root = Bitmap(BitMapBackend::new(path, size)).into_drawing_area();
            draw_curves(&root, title, x_label, series).map_err(draw_error(path))?;
            root.present().map_err(write_error(path))
        }
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
                draw_curves(&root, title, x_label, series).map_err(draw_error(path))?;
                root.present().map_err(draw_error(path))?;
            }
            write_svg(path, svg)
        }
    }
}

type Res<T> = Result<T, Box<dyn Error>>;

fn extension(path: &Path) -> Option<String> {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
}

fn file_name(path: &Path) -> String {
    path.display().to_string()
}

fn draw_error<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> PlotError + '_ {
    move |e| PlotError::Draw {
        file: file_name(path),
        message: e.to_string(),
    }
}

fn write_error<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> PlotError + '_ {
    move |e| PlotError::Write {
        file: file_name(path),
        message: e.to_string(),
    }
}

fn register_font(path: &Path) -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError::Draw {
            file: file_name(path),
            message: "the built-in font does not load".into(),
        })
    }
}

/// Plotters labels an embedded PNG `data:png`, which strict SVG renderers refuse as a MIME type.
fn write_svg(path: &Path, svg: String) -> Result<(), PlotError> {
    let svg = svg.replace("href=\"data:png;base64,", "href=\"data:image/png;base64,");
    std::fs::write(path, svg).map_err(write_error(path))
}

/// The bitmap backend with its own text rasterizer. Plotters' ab_glyph text drawing places each
/// glyph at a whole pixel and ignores its side bearing, which opens visible gaps inside words
/// ("gradi ent"); here glyphs sit at their exact positions and are anti-aliased by coverage.
struct Bitmap<'a>(BitMapBackend<'a>);

type BitmapError<'a> = DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

fn glyph_font() -> Option<&'static FontRef<'static>> {
    static PARSED: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    PARSED
        .get_or_init(|| FontRef::try_from_slice(FONT_BYTES).ok())
        .as_ref()
}

/// Glyphs of one line of text at their positions, the baseline `ascent` below the top, and the
/// line's advance width and height. The em is size / 1.24 pixels, the size plotters gives text in
/// SVG, so that PNG and SVG output match.
fn layout_text(font: &FontRef<'static>, size: f64, text: &str) -> (Vec<ab_glyph::Glyph>, f32, f32) {
    let em = size as f32 / 1.24;
    let scale = PxScale::from(em * font.height_unscaled() / font.units_per_em().unwrap_or(2048.0));
    let scaled = font.as_scaled(scale);
    let mut glyphs = Vec::new();
    let mut caret = 0.0f32;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            caret += scaled.kern(p, id);
        }
        glyphs.push(id.with_scale_and_position(scale, point(caret, scaled.ascent())));
        caret += scaled.h_advance(id);
        previous = Some(id);
    }
    (glyphs, caret, scaled.ascent() - scaled.descent())
}

impl<'a> DrawingBackend for Bitmap<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), BitmapError<'a>> {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), BitmapError<'a>> {
        self.0.present()
    }
    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), BitmapError<'a>> {
        self.0.draw_pixel(point, color)
    }
    fn draw_line<S: plotters_backend::BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), BitmapError<'a>> {
        self.0.draw_line(from, to, style)
    }
    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), BitmapError<'a>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }
    fn draw_path<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), BitmapError<'a>> {
        self.0.draw_path(path, style)
    }
    fn draw_circle<S: plotters_backend::BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), BitmapError<'a>> {
        self.0.draw_circle(center, radius, style, fill)
    }
    fn fill_polygon<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), BitmapError<'a>> {
        self.0.fill_polygon(vert, style)
    }
    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), BitmapError<'a>> {
        self.0.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<S: plotters_backend::BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), BitmapError<'a>> {
        let Some(font) = glyph_font() else {
            return self.0.estimate_text_size(text, style);
        };
        let (_, width, height) = layout_text(font, style.size(), text);
        Ok((width.ceil() as u32, height.ceil() as u32))
    }

    fn draw_text<S: plotters_backend::BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), BitmapError<'a>> {
        let Some(font) = glyph_font() else {
            return self.0.draw_text(text, style, pos);
        };
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let (glyphs, width, height) = layout_text(font, style.size(), text);
        // Whole-pixel anchoring: the glyphs already carry their sub-pixel positions, and a
        // fractional shift here would round neighbouring rows of a glyph onto the same pixel row.
        let dx = match style.anchor().h_pos {
            HPos::Left => 0.0,
            HPos::Center => -width / 2.0,
            HPos::Right => -width,
        }
        .round() as i32;
        let dy = match style.anchor().v_pos {
            VPos::Top => 0.0,
            VPos::Center => -height / 2.0,
            VPos::Bottom => -height,
        }
        .round() as i32;
        let transform = style.transform();
        let (w, h) = self.0.get_size();
        let mut result = Ok(());
        for glyph in glyphs {
            let Some(outline) = font.outline_glyph(glyph) else {
                continue;
            };
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                if coverage <= 0.0 || result.is_err() {
                    return;
                }
                let x = bounds.min.x as i32 + gx as i32 + dx;
                let y = bounds.min.y as i32 + gy as i32 + dy;
                let (x, y) = transform.transform(x, y);
                let (x, y) = (pos.0 + x, pos.1 + y);
                if x >= 0 && y >= 0 && (x as u32) < w && (y as u32) < h {
                    let ink = BackendColor {
                        alpha: color.alpha * coverage.min(1.0) as f64,
                        rgb: color.rgb,
                    };
                    result = self.0.draw_pixel((x, y), ink);
                }
            });
        }
        result
    }
}

/// Sizes in pixels at scale 1; the animation is drawn smaller to keep the GIF light.
struct Look {
    scale: f64,
}

impl Look {
    fn px(&self, v: f64) -> f64 {
        v * self.scale
    }
    fn font(&self, size: f64) -> TextStyle<'static> {
        (FONT, self.px(size)).into_font().into()
    }
    fn width(&self, v: f64) -> u32 {
        self.px(v).round().max(1.0) as u32
    }
}

/// Trajectory colours: saturated, and none of them close to the pale blues of the contour map.
const RACE_COLORS: [RGBColor; 8] = [
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
const CURVE_COLORS: [RGBColor; 10] = [
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
enum Shape {
    Circle,
    Square,
    TriangleUp,
    Diamond,
    TriangleDown,
    Star,
}

const SHAPES: [Shape; 5] = [
    Shape::Circle,
    Shape::Square,
    Shape::TriangleUp,
    Shape::Diamond,
    Shape::TriangleDown,
];

impl Shape {
    /// Outline of a shape whose area roughly matches a circle of radius r.
    fn polygon(self, (cx, cy): (f64, f64), r: f64) -> Vec<(f64, f64)> {
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

fn ipt((x, y): (f64, f64)) -> (i32, i32) {
    (x.round() as i32, y.round() as i32)
}

fn draw_marker<DB: DrawingBackend>(
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

fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// An SVG element for a marker; `inner` goes inside it (animation elements).
fn svg_marker(
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

/// Maps plot coordinates to canvas pixels, with the same corners as the chart's axes.
#[derive(Clone, Copy)]
struct View {
    x: (f64, f64),
    y: (f64, f64),
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl View {
    fn pixel(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (
            self.left + (x - self.x.0) / (self.x.1 - self.x.0) * (self.right - self.left),
            self.bottom - (y - self.y.0) / (self.y.1 - self.y.0) * (self.bottom - self.top),
        )
    }
    fn contains(&self, (x, y): (f64, f64)) -> bool {
        x >= self.x.0 && x <= self.x.1 && y >= self.y.0 && y <= self.y.1
    }
}

/// The part of the segment a→b inside the box, as the parameters (t0, t1) ⊆ [0, 1] along it
/// (Liang–Barsky).
fn clip_segment(a: (f64, f64), b: (f64, f64), x: (f64, f64), y: (f64, f64)) -> Option<(f64, f64)> {
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
struct Run {
    points: Vec<(f64, f64)>,
    params: Vec<f64>,
}

/// Splits a polyline into the runs that lie inside the box, cutting at its edges and dropping
/// non-finite points.
fn visible_runs(points: &[(f64, f64)], x: (f64, f64), y: (f64, f64)) -> Vec<Run> {
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
fn pixel_runs(points: &[(f64, f64)], view: &View) -> Vec<Run> {
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
fn tick(v: f64, span: f64) -> String {
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

/// Contour colours from the lowest band (pale, so that the valley floor where the optimizers
/// travel stays light behind their lines) to the highest.
fn contour_color(t: f64) -> [f64; 3] {
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
fn contour_raster(
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

/// Where the legend goes and what it lists.
struct Legend {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    row: f64,
    entries: Vec<(String, RGBColor, Option<Shape>)>,
}

impl Legend {
    /// Puts the legend in the corner (or at the middle of the top or bottom edge) of the plot
    /// rectangle where it hides the fewest of the pixels in `avoid`.
    fn place(
        entries: Vec<(String, RGBColor, Option<Shape>)>,
        look: &Look,
        plot: (f64, f64, f64, f64),
        avoid: &[(f64, f64)],
    ) -> Legend {
        let font = look.px(16.0);
        let row = look.px(22.0);
        let pad = look.px(8.0);
        let text_width = entries
            .iter()
            .map(|(name, _, _)| match glyph_font() {
                Some(glyphs) => layout_text(glyphs, font, name).1 as f64,
                None => name.chars().count() as f64 * font * 0.5,
            })
            .fold(0.0, f64::max);
        let width = pad * 2.0 + look.px(34.0) + look.px(8.0) + text_width;
        let height = row * entries.len() as f64 + pad * 2.0 - look.px(4.0);
        let (l, t, r, b) = plot;
        let inset = look.px(10.0);
        let candidates = [
            (l + inset, t + inset),
            (r - inset - width, t + inset),
            (l + inset, b - inset - height),
            (r - inset - width, b - inset - height),
            ((l + r - width) / 2.0, t + inset),
            ((l + r - width) / 2.0, b - inset - height),
        ];
        let margin = look.px(6.0);
        let hidden = |(x0, y0): (f64, f64)| {
            avoid
                .iter()
                .filter(|(px, py)| {
                    *px >= x0 - margin
                        && *px <= x0 + width + margin
                        && *py >= y0 - margin
                        && *py <= y0 + height + margin
                })
                .count()
        };
        let mut best = candidates[0];
        let mut best_hidden = usize::MAX;
        for c in candidates {
            let n = hidden(c);
            if n < best_hidden {
                best = c;
                best_hidden = n;
            }
        }
        Legend {
            left: best.0,
            top: best.1,
            width,
            height,
            row,
            entries,
        }
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, look: &Look) -> Res<()>
    where
        DB::ErrorType: 'static,
    {
        if self.entries.is_empty() {
            return Ok(());
        }
        let pad = look.px(8.0);
        let corners = [
            ipt((self.left, self.top)),
            ipt((self.left + self.width, self.top + self.height)),
        ];
        area.draw(&Rectangle::new(corners, WHITE.mix(0.92).filled()))?;
        area.draw(&Rectangle::new(
            corners,
            RGBColor(150, 150, 150).stroke_width(1),
        ))?;
        let text = look
            .font(16.0)
            .color(&RGBColor(30, 30, 30))
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (k, (name, color, shape)) in self.entries.iter().enumerate() {
            let yc = self.top + pad + self.row * (k as f64 + 0.5) - look.px(2.0);
            let x0 = self.left + pad;
            let x1 = x0 + look.px(34.0);
            match shape {
                Some(Shape::Star) => {
                    draw_marker(
                        area,
                        Shape::Star,
                        ((x0 + x1) / 2.0, yc),
                        look.px(6.0),
                        GOLD,
                        Some((BLACK, 1)),
                    )?;
                }
                Some(shape) => {
                    area.draw(&PathElement::new(
                        vec![ipt((x0, yc)), ipt((x1, yc))],
                        color.stroke_width(look.width(2.0)),
                    ))?;
                    draw_marker(
                        area,
                        *shape,
                        ((x0 + x1) / 2.0, yc),
                        look.px(4.5),
                        *color,
                        Some((WHITE, 1)),
                    )?;
                }
                None => {
                    area.draw(&PathElement::new(
                        vec![ipt((x0, yc)), ipt((x1, yc))],
                        color.stroke_width(look.width(2.5)),
                    ))?;
                }
            }
            area.draw(&Text::new(
                name.clone(),
                ipt((x1 + look.px(8.0), yc)),
                text.clone(),
            ))?;
        }
        Ok(())
    }
}

const GOLD: RGBColor = RGBColor(255, 215, 0);

/// A validated race scene, shared by the still and the animations.
struct Race<'a> {
    title: &'a str,
    f: &'a dyn Fn(f64, f64) -> f64,
    x: (f64, f64),
    y: (f64, f64),
    trajectories: &'a [Trajectory],
    minimum: Option<(f64, f64)>,
}

/// Markers on every point would merge into a thick band on long runs.
fn marker_stride(len: usize) -> usize {
    len.div_ceil(60).max(1)
}

fn check_range(path: &Path, axis: &str, (a, b): (f64, f64)) -> Result<(f64, f64), PlotError> {
    if !(a.is_finite() && b.is_finite()) || a == b || (b - a).abs() == f64::INFINITY {
        return Err(PlotError::Input {
            file: file_name(path),
            problem: format!("the {axis} range must be two different finite numbers, got {a}..{b}"),
        });
    }
    Ok((a.min(b), a.max(b)))
}

impl<'a> Race<'a> {
    fn new(
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
    fn canvas(&self, look: &Look) -> (u32, u32) {
        let aspect = ((self.y.1 - self.y.0) / (self.x.1 - self.x.0)).clamp(0.6, 1.25);
        let plot_w = 620.0;
        let plot_h = 620.0 * aspect;
        let title = if self.title.is_empty() { 0.0 } else { 44.0 };
        let w = plot_w + 70.0 + 24.0;
        let h = plot_h + title + 56.0 + 16.0;
        (look.px(w).round() as u32, look.px(h).round() as u32)
    }

    fn color(k: usize) -> RGBColor {
        RACE_COLORS[k % RACE_COLORS.len()]
    }

    fn shape(k: usize) -> Shape {
        SHAPES[k % SHAPES.len()]
    }

    /// Title, axes and the contour map.
    fn draw_base<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, look: &Look) -> Res<View>
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
    fn legend(&self, view: &View, look: &Look) -> Legend {
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

    fn draw_minimum<DB: DrawingBackend>(
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
    fn draw_trajectory<DB: DrawingBackend>(
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

    fn draw_still<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, look: &Look) -> Res<()>
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
    fn frame_steps(&self) -> Vec<usize> {
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

    /// Frames are rendered in memory and written as differences from the frame before: a full
    /// frame of the contour map is some 80 kB, and a hundred of them would make a 10 MB file.
    fn write_gif(&self, path: &Path) -> Result<(), PlotError> {
        let look = Look { scale: 0.8 };
        let (w, h) = self.canvas(&look);
        let mut base = vec![255u8; w as usize * h as usize * 3];
        let view = {
            let root = Bitmap(BitMapBackend::with_buffer(&mut base, (w, h))).into_drawing_area();
            let view = self.draw_base(&root, &look).map_err(draw_error(path))?;
            self.draw_minimum(&root, &view, &look)
                .map_err(draw_error(path))?;
            root.present().map_err(draw_error(path))?;
            view
        };
        let legend = self.legend(&view, &look);
        let steps = self.frame_steps();
        let total_steps = self
            .trajectories
            .iter()
            .map(|t| t.points.len())
            .max()
            .unwrap_or(0);
        let delay_cs = (frame_delay_ms(steps.len()) / 10) as u16;
        let counter = look
            .font(15.0)
            .color(&RGBColor(90, 90, 90))
            .pos(Pos::new(HPos::Right, VPos::Bottom));
        let file = std::fs::File::create(path).map_err(write_error(path))?;
        let mut gif = GifWriter::new(std::io::BufWriter::new(file), (w as usize, h as usize))
            .map_err(write_error(path))?;
        let mut previous: Option<Vec<u8>> = None;
        for (frame, &step) in steps.iter().enumerate() {
            let mut pixels = base.clone();
            {
                let root =
                    Bitmap(BitMapBackend::with_buffer(&mut pixels, (w, h))).into_drawing_area();
                let draw = || -> Res<()> {
                    for k in 0..self.trajectories.len() {
                        self.draw_trajectory(&root, &view, &look, k, step)?;
                    }
                    legend.draw(&root, &look)?;
                    if total_steps > 1 {
                        let label = format!("step {step}");
                        root.draw(&Text::new(
                            label,
                            ipt((view.right, view.top - look.px(4.0))),
                            counter.clone(),
                        ))?;
                    }
                    root.present()?;
                    Ok(())
                };
                draw().map_err(draw_error(path))?;
            }
            let delay = if frame + 1 == steps.len() {
                (HOLD_MS / 10) as u16
            } else {
                delay_cs
            };
            gif.push(previous.as_deref(), &pixels, delay)
                .map_err(write_error(path))?;
            previous = Some(pixels);
        }
        gif.finish().map_err(write_error(path))
    }

    fn write_animated_svg(&self, path: &Path) -> Result<(), PlotError> {
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
    fn svg_trajectory(&self, view: &View, look: &Look, k: usize, timing: &Timing) -> String {
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

/// An animated GIF written frame by frame, each frame only the rectangle that changed.
struct GifWriter<W: std::io::Write> {
    encoder: gif::Encoder<W>,
    size: (usize, usize),
    /// Held back so that a frame identical to it can lengthen its delay instead of being written.
    pending: Option<gif::Frame<'static>>,
}

impl<W: std::io::Write> GifWriter<W> {
    fn new(out: W, size: (usize, usize)) -> Result<Self, gif::EncodingError> {
        let mut encoder = gif::Encoder::new(out, size.0 as u16, size.1 as u16, &[])?;
        encoder.set_repeat(gif::Repeat::Infinite)?;
        Ok(GifWriter {
            encoder,
            size,
            pending: None,
        })
    }

    /// Adds `current` (RGB, row by row), shown for `delay` hundredths of a second.
    fn push(
        &mut self,
        previous: Option<&[u8]>,
        current: &[u8],
        delay: u16,
    ) -> Result<(), gif::EncodingError> {
        let (w, h) = self.size;
        let rect = match previous {
            None => Some((0, 0, w, h)),
            Some(previous) => changed_rect(previous, current, self.size),
        };
        let Some(rect) = rect else {
            if let Some(pending) = self.pending.as_mut() {
                pending.delay = pending.delay.saturating_add(delay);
            }
            return Ok(());
        };
        let mut frame = gif_frame(previous, current, w, rect);
        frame.delay = delay;
        if let Some(pending) = self.pending.replace(frame) {
            self.encoder.write_frame(&pending)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(), gif::EncodingError> {
        if let Some(pending) = self.pending.take() {
            self.encoder.write_frame(&pending)?;
        }
        self.encoder.into_inner()?.flush()?;
        Ok(())
    }
}

/// The smallest rectangle (x0, y0, x1, y1), ends exclusive, holding every pixel that differs.
fn changed_rect(
    previous: &[u8],
    current: &[u8],
    (w, h): (usize, usize),
) -> Option<(usize, usize, usize, usize)> {
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for y in 0..h {
        let row = y * w * 3..(y + 1) * w * 3;
        if previous[row.clone()] == current[row.clone()] {
            continue;
        }
        let changed = |x: &usize| {
            previous[(y * w + x) * 3..(y * w + x) * 3 + 3]
                != current[(y * w + x) * 3..(y * w + x) * 3 + 3]
        };
        if let (Some(first), Some(last)) = ((0..w).find(changed), (0..w).rev().find(changed)) {
            x0 = x0.min(first);
            x1 = x1.max(last + 1);
            y0 = y0.min(y);
            y1 = y + 1;
        }
    }
    (x0 < x1 && y0 < y1).then_some((x0, y0, x1, y1))
}

/// The pixels of `rect` as a GIF frame. Pixels equal to `previous` are transparent, so the frame
/// before shows through; the others get a palette of the rectangle's most common colours, which
/// keeps the flat contour bands and the line colours exact where a fitted palette would drift
/// between frames.
fn gif_frame(
    previous: Option<&[u8]>,
    current: &[u8],
    width: usize,
    (x0, y0, x1, y1): (usize, usize, usize, usize),
) -> gif::Frame<'static> {
    let rgb = |k: usize| [current[k * 3], current[k * 3 + 1], current[k * 3 + 2]];
    let unchanged =
        |k: usize| previous.is_some_and(|p| p[k * 3..k * 3 + 3] == current[k * 3..k * 3 + 3]);
    let mut counts: HashMap<[u8; 3], u32> = HashMap::new();
    let mut any_unchanged = false;
    for y in y0..y1 {
        for x in x0..x1 {
            let k = y * width + x;
            if unchanged(k) {
                any_unchanged = true;
            } else {
                *counts.entry(rgb(k)).or_default() += 1;
            }
        }
    }
    let mut colors: Vec<([u8; 3], u32)> = counts.into_iter().collect();
    colors.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let slots = if any_unchanged { 255 } else { 256 };
    let palette: Vec<[u8; 3]> = colors.iter().take(slots).map(|(c, _)| *c).collect();
    let mut index: HashMap<[u8; 3], u8> = palette
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, i as u8))
        .collect();
    let distance = |a: &[u8; 3], b: &[u8; 3]| -> i32 {
        (0..3).map(|i| (a[i] as i32 - b[i] as i32).pow(2)).sum()
    };
    for (color, _) in colors.iter().skip(slots) {
        let nearest = (0..palette.len())
            .min_by_key(|&i| distance(color, &palette[i]))
            .unwrap_or(0);
        index.insert(*color, nearest as u8);
    }
    let transparent = any_unchanged.then_some(palette.len() as u8);
    let mut flat: Vec<u8> = palette.iter().flatten().copied().collect();
    if any_unchanged || flat.is_empty() {
        flat.extend([0, 0, 0]);
    }
    let mut buffer = Vec::with_capacity((x1 - x0) * (y1 - y0));
    for y in y0..y1 {
        for x in x0..x1 {
            let k = y * width + x;
            buffer.push(if unchanged(k) {
                palette.len() as u8
            } else {
                index.get(&rgb(k)).copied().unwrap_or(0)
            });
        }
    }
    gif::Frame {
        left: x0 as u16,
        top: y0 as u16,
        width: (x1 - x0) as u16,
        height: (y1 - y0) as u16,
        buffer: std::borrow::Cow::Owned(buffer),
        palette: Some(flat),
        transparent,
        dispose: gif::DisposalMethod::Keep,
        ..gif::Frame::default()
    }
}

const MAX_FRAMES: usize = 100;
const HOLD_MS: u32 = 1500;

/// About six seconds of motion whatever the number of frames, within what GIF viewers honour.
fn frame_delay_ms(frames: usize) -> u32 {
    ((6000 / frames.max(1)) as u32).clamp(60, 200)
}

/// A looping SMIL animation element opening with `head` (its name and target attribute); all of
/// them share one duration, so they stay in step.
fn smil(head: &str, mode: &str, duration: f64, key_times: &str, values: &str) -> String {
    format!(
        "<{head} dur=\"{duration:.3}s\" repeatCount=\"indefinite\" calcMode=\"{mode}\" keyTimes=\"{key_times}\" \
         values=\"{values}\"/>"
    )
}

/// The animation clock: one key time per frame, then one at the end of the final hold.
struct Timing<'a> {
    steps: &'a [usize],
    delay: f64,
    duration: f64,
}

impl Timing<'_> {
    fn key_times(&self) -> Vec<String> {
        let mut times: Vec<String> = (0..self.steps.len())
            .map(|k| format!("{:.4}", k as f64 * self.delay / self.duration))
            .collect();
        times.push("1".into());
        times
    }

    fn per_key(&self, value: impl Fn(usize) -> String) -> Vec<String> {
        let mut values: Vec<String> = self.steps.iter().map(|s| value(*s)).collect();
        values.push(value(usize::MAX));
        values
    }

    /// When the frame that first shows `step` begins.
    fn time_of_step(&self, step: usize) -> f64 {
        let frame = self
            .steps
            .iter()
            .position(|s| *s >= step)
            .unwrap_or(self.steps.len().saturating_sub(1));
        frame as f64 * self.delay
    }
}

/// The elements of an SVG document, without its `<svg>` wrapper.
fn svg_body(svg: &str) -> &str {
    let start = svg
        .find("<svg")
        .and_then(|s| svg[s..].find('>').map(|e| s + e + 1))
        .unwrap_or(0);
    let end = svg.rfind("</svg>").unwrap_or(svg.len()).max(start);
    &svg[start..end]
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Axis ranges for the curves: the finite data, padded; log scale when it spans over two decades.
struct CurveAxes {
    x: (f64, f64),
    y: (f64, f64),
    log_y: bool,
}

impl CurveAxes {
    fn new(series: &[(String, Vec<(f64, f64)>)]) -> CurveAxes {
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
fn log_ticks((lo, hi): (f64, f64)) -> Vec<f64> {
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
fn thin_columns(run: Vec<(i32, i32)>) -> Vec<(i32, i32)> {
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

fn draw_curves<DB: DrawingBackend>(
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

fn draw_curves_on<DB: DrawingBackend, Y>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
    const GIF_MAGIC: &[u8] = b"GIF89a";

    fn rosenbrock(x: f64, y: f64) -> f64 {
        (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2)
    }

    /// A fresh directory per test, so parallel tests never share files.
    fn temp_dir(name: &str) -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("adjoint-plot-{}-{name}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Made-up runs that behave like the usual optimizers on Rosenbrock: one crawls along the
    /// valley, one overshoots and oscillates, one leaves the plotted range for a while.
    fn trajectories() -> Vec<Trajectory> {
        let crawl: Vec<(f64, f64)> = (0..80)
            .map(|i| {
                let t = i as f64 / 79.0;
                let x = -1.5 + 2.4 * t;
                (x, x * x + 0.3 * (1.0 - t).powi(3))
            })
            .collect();
        let swing: Vec<(f64, f64)> = (0..120)
            .map(|i| {
                let t = i as f64 / 119.0;
                let x = -1.8 + 2.8 * t.sqrt();
                (x, x * x + 0.6 * (-(4.0 * t)).exp() * (20.0 * t).cos())
            })
            .collect();
        let wild: Vec<(f64, f64)> = (0..60)
            .map(|i| {
                let t = i as f64 / 59.0;
                (
                    0.5 + 2.5 * (6.0 * t).sin() * (1.0 - t),
                    2.5 - 1.5 * t + 3.0 * (1.0 - t) * (5.0 * t).sin(),
                )
            })
            .collect();
        vec![
            Trajectory {
                name: "gradient descent".into(),
                points: crawl,
            },
            Trajectory {
                name: "momentum".into(),
                points: swing,
            },
            Trajectory {
                name: "adam".into(),
                points: wild,
            },
        ]
    }

    fn starts_with(path: &Path, magic: &[u8]) {
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.len() > magic.len(), "{} is empty", path.display());
        assert!(
            bytes.starts_with(magic),
            "{} starts with {:?}",
            path.display(),
            &bytes[..16.min(bytes.len())]
        );
    }

    fn starts_like_svg(path: &Path) {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            text.trim_start().starts_with("<svg"),
            "{} is not SVG",
            path.display()
        );
        assert!(
            text.trim_end().ends_with("</svg>"),
            "{} is cut short",
            path.display()
        );
    }

    #[test]
    fn still_race_as_svg_and_png() {
        let dir = temp_dir("still");
        let runs = trajectories();
        for name in ["race.svg", "race.png"] {
            let path = dir.join(name);
            race_still(
                &path,
                "Rosenbrock",
                &rosenbrock,
                (-2.0, 2.0),
                (-1.0, 3.0),
                &runs,
                Some((1.0, 1.0)),
            )
            .unwrap();
        }
        starts_like_svg(&dir.join("race.svg"));
        starts_with(&dir.join("race.png"), PNG_MAGIC);
        let svg = std::fs::read_to_string(dir.join("race.svg")).unwrap();
        assert!(
            svg.contains("data:image/png;base64,"),
            "the contour map is embedded as PNG"
        );
        assert!(svg.contains("momentum"), "the legend names the runs");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn animations_as_gif_and_svg() {
        let dir = temp_dir("animation");
        let runs = trajectories();
        let gif = dir.join("race.gif");
        race_animation(
            &gif,
            "Rosenbrock",
            &rosenbrock,
            (-2.0, 2.0),
            (-1.0, 3.0),
            &runs,
            Some((1.0, 1.0)),
        )
        .unwrap();
        starts_with(&gif, GIF_MAGIC);
        let mut decoder = gif::DecodeOptions::new()
            .read_info(std::fs::File::open(&gif).unwrap())
            .unwrap();
        let mut frames = 0;
        while decoder.read_next_frame().unwrap().is_some() {
            frames += 1;
        }
        // One frame per step of the longest run (120 steps), subsampled to the frame limit.
        assert_eq!(frames, MAX_FRAMES);
        let svg = dir.join("race.svg");
        race_animation(
            &svg,
            "Rosenbrock",
            &rosenbrock,
            (-2.0, 2.0),
            (-1.0, 3.0),
            &runs,
            Some((1.0, 1.0)),
        )
        .unwrap();
        starts_like_svg(&svg);
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("<animate attributeName=\"stroke-dashoffset\""));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn curves_as_png_and_svg() {
        let dir = temp_dir("curves");
        let loss: Vec<(f64, f64)> = (0..300)
            .map(|i| (i as f64, 5.0 * (-(i as f64) / 40.0).exp() + 1e-3))
            .collect();
        let val: Vec<(f64, f64)> = (0..300)
            .step_by(10)
            .map(|i| (i as f64, 6.0 * (-(i as f64) / 50.0).exp() + 0.01))
            .collect();
        let accuracy: Vec<(f64, f64)> = (0..300)
            .map(|i| (i as f64, 1.0 - 0.9 * (-(i as f64) / 60.0).exp()))
            .collect();
        let series = vec![
            ("training loss".to_string(), loss),
            ("validation loss".to_string(), val),
        ];
        curves(&dir.join("loss.png"), "Loss", "step", &series).unwrap();
        curves(&dir.join("loss.svg"), "Loss", "step", &series).unwrap();
        curves(
            &dir.join("accuracy.png"),
            "Accuracy",
            "epoch",
            &[("accuracy".to_string(), accuracy)],
        )
        .unwrap();
        starts_with(&dir.join("loss.png"), PNG_MAGIC);
        starts_like_svg(&dir.join("loss.svg"));
        starts_with(&dir.join("accuracy.png"), PNG_MAGIC);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_values_are_skipped_not_fatal() {
        let dir = temp_dir("bad");
        let runs = vec![
            Trajectory {
                name: "nan".into(),
                points: vec![
                    (0.0, 0.0),
                    (f64::NAN, 1.0),
                    (0.5, 0.5),
                    (f64::INFINITY, 0.0),
                ],
            },
            Trajectory {
                name: "far".into(),
                points: vec![(-1e300, 1e300), (1e300, -1e300), (0.0, 0.0), (1e9, 5.0)],
            },
            Trajectory {
                name: "empty".into(),
                points: vec![],
            },
            Trajectory {
                name: "one point".into(),
                points: vec![(0.1, 0.1)],
            },
        ];
        let holes = |x: f64, y: f64| if x > 0.0 { f64::NAN } else { rosenbrock(x, y) };
        race_still(
            &dir.join("bad.png"),
            "",
            &holes,
            (2.0, -2.0),
            (-1.0, 3.0),
            &runs,
            Some((f64::NAN, 0.0)),
        )
        .unwrap();
        race_animation(
            &dir.join("bad.gif"),
            "t",
            &|_, _| 1.0,
            (-2.0, 2.0),
            (-1.0, 3.0),
            &runs,
            None,
        )
        .unwrap();
        race_animation(
            &dir.join("bad.svg"),
            "t",
            &|_, _| f64::NAN,
            (-2.0, 2.0),
            (-1.0, 3.0),
            &runs,
            None,
        )
        .unwrap();
        race_animation(
            &dir.join("none.gif"),
            "t",
            &rosenbrock,
            (-2.0, 2.0),
            (-1.0, 3.0),
            &[],
            None,
        )
        .unwrap();
        let series = vec![
            (
                "gaps".to_string(),
                vec![
                    (0.0, 1.0),
                    (1.0, f64::NAN),
                    (2.0, 3.0),
                    (f64::INFINITY, 2.0),
                    (3.0, 0.5),
                ],
            ),
            ("empty".to_string(), vec![]),
            ("nothing finite".to_string(), vec![(f64::NAN, f64::NAN)]),
        ];
        curves(&dir.join("gaps.svg"), "gaps", "step", &series).unwrap();
        curves(&dir.join("empty.png"), "empty", "step", &[]).unwrap();
        curves(
            &dir.join("flat.png"),
            "flat",
            "step",
            &[("flat".to_string(), vec![(0.0, 2.0), (0.0, 2.0)])],
        )
        .unwrap();
        starts_with(&dir.join("bad.png"), PNG_MAGIC);
        starts_with(&dir.join("bad.gif"), GIF_MAGIC);
        starts_with(&dir.join("empty.png"), PNG_MAGIC);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn extreme_ranges_do_not_panic() {
        let dir = temp_dir("extreme");
        let runs = trajectories();
        let cases = [
            ((0.0, 1e-300), (-1.0, 1.0)),
            ((1e300, 1.0000001e300), (-1e-10, 1e-10)),
            ((-1e307, 1e307), (5.0, 6.0)),
        ];
        for (k, (x, y)) in cases.into_iter().enumerate() {
            race_still(
                &dir.join(format!("r{k}.png")),
                "t",
                &rosenbrock,
                x,
                y,
                &runs,
                Some((0.0, 0.0)),
            )
            .unwrap();
            race_animation(
                &dir.join(format!("r{k}.svg")),
                "t",
                &rosenbrock,
                x,
                y,
                &runs,
                None,
            )
            .unwrap();
        }
        let series = vec![
            (
                "huge".to_string(),
                vec![(-1e308, 1e308), (0.0, -1e308), (1e308, 1.0)],
            ),
            ("tiny".to_string(), vec![(0.0, 1e-310), (1.0, 1e300)]),
        ];
        curves(&dir.join("c.png"), "t", "step", &series).unwrap();
        curves(&dir.join("log.png"), "t", "step", &series[1..]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_file() {
        let dir = temp_dir("errors");
        let missing = dir.join("no-such-dir").join("race.png");
        let err = race_still(
            &missing,
            "t",
            &rosenbrock,
            (-2.0, 2.0),
            (-1.0, 3.0),
            &[],
            None,
        )
        .unwrap_err();
        assert!(matches!(err, PlotError::Write { .. }), "{err}");
        assert!(err.to_string().contains("race.png"), "{err}");
        let missing_svg = dir.join("no-such-dir").join("race.svg");
        let err = race_animation(
            &missing_svg,
            "t",
            &rosenbrock,
            (-2.0, 2.0),
            (-1.0, 3.0),
            &[],
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("race.svg"), "{err}");
        let err = race_animation(
            &dir.join("no-such-dir/a.gif"),
            "t",
            &rosenbrock,
            (-2.0, 2.0),
            (-1.0, 3.0),
            &[],
            None,
        )
        .unwrap_err();
        assert!(matches!(err, PlotError::Write { .. }), "{err}");
        let err = curves(&dir.join("no-such-dir").join("c.png"), "t", "step", &[]).unwrap_err();
        assert!(err.to_string().contains("c.png"), "{err}");
        let err = race_still(
            &dir.join("race.jpg"),
            "t",
            &rosenbrock,
            (-2.0, 2.0),
            (-1.0, 3.0),
            &[],
            None,
        )
        .unwrap_err();
        assert!(matches!(err, PlotError::Format { .. }), "{err}");
        let err = race_animation(
            &dir.join("race.png"),
            "t",
            &rosenbrock,
            (-2.0, 2.0),
            (-1.0, 3.0),
            &[],
            None,
        )
        .unwrap_err();
        assert!(matches!(err, PlotError::Format { .. }), "{err}");
        let err = race_still(
            &dir.join("r.png"),
            "t",
            &rosenbrock,
            (1.0, 1.0),
            (-1.0, 3.0),
            &[],
            None,
        )
        .unwrap_err();
        assert!(matches!(err, PlotError::Input { .. }), "{err}");
        let err = race_still(
            &dir.join("r.png"),
            "t",
            &rosenbrock,
            (0.0, f64::NAN),
            (-1.0, 3.0),
            &[],
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("r.png"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(Format::from_path(Path::new("a/b.SVG")), Ok(Format::Svg));
        assert_eq!(Format::from_path(Path::new("b.png")), Ok(Format::Png));
        assert!(Format::from_path(Path::new("b")).is_err());
    }

    #[test]
    fn clipping_keeps_the_inside_part() {
        let runs = visible_runs(
            &[
                (-2.0, 0.5),
                (2.0, 0.5),
                (0.5, 0.5),
                (f64::NAN, 0.0),
                (0.2, 0.2),
                (0.3, 0.3),
            ],
            (0.0, 1.0),
            (0.0, 1.0),
        );
        assert_eq!(runs.len(), 3);
        assert_eq!(runs[0].points, vec![(0.0, 0.5), (1.0, 0.5)]);
        assert_eq!(runs[0].params, vec![0.5, 0.75]);
        assert_eq!(runs[1].points.len(), 2);
        assert!((runs[1].points[0].0 - 1.0).abs() < 1e-12 && runs[1].points[1] == (0.5, 0.5));
        assert_eq!(runs[2].points, vec![(0.2, 0.2), (0.3, 0.3)]);
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(0.30000000000000004, 4.0), "0.3");
        assert_eq!(tick(-4e-17, 4.0), "0");
        assert_eq!(tick(-1.5, 4.0), "-1.5");
        assert_eq!(tick(1e-5, 1.0), "1e-5");
        assert_eq!(tick(2500.0, 3000.0), "2500");
    }
}
