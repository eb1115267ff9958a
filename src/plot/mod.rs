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

mod contour;
mod curves;
mod gif_animation;
mod legend;
mod race;
mod style;
mod svg_animation;
#[cfg(test)]
mod tests;
mod text;
mod view;

use contour::*;
use curves::*;
use gif_animation::*;
use legend::*;
use race::*;
use style::*;
use text::*;
use view::*;

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
    /// SVG animated with SMIL.
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

/// A named line: its `(x, y)` points in order.
pub type Series = (String, Vec<(f64, f64)>);

/// One panel of a figure: series that share a y axis, and that axis's label.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub y_label: String,
    pub series: Vec<Series>,
}

/// A dashed vertical line across every panel at `x`, labelled in the top one (early stopping's
/// restored point).
#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    pub x: f64,
    pub label: String,
}

/// Line plot of named series against step (e.g. training loss, validation loss, accuracy), with a
/// legend: [`figure`] with one unlabelled panel.
pub fn curves(path: &Path, title: &str, x_label: &str, series: &[Series]) -> Result<(), PlotError> {
    let panel = Panel {
        y_label: String::new(),
        series: series.to_vec(),
    };
    figure(path, title, x_label, &[panel], None)
}

/// Panels of curves stacked over one x axis (say, the losses above and the metrics below), each
/// with a labelled y axis and a legend, and an optional marker. A panel's y axis is logarithmic
/// when every value is positive and they span more than two decades. Non-finite values leave a
/// gap in their line; a series of one point is a dot.
pub fn figure(
    path: &Path,
    title: &str,
    x_label: &str,
    panels: &[Panel],
    marker: Option<&Marker>,
) -> Result<(), PlotError> {
    let format = Format::from_path(path)?;
    register_font(path)?;
    let size = (900, 230 + 330 * panels.len().max(1) as u32);
    match format {
        Format::Png => {
            let root = Bitmap(BitMapBackend::new(path, size)).into_drawing_area();
            draw_figure(&root, title, x_label, panels, marker).map_err(draw_error(path))?;
            root.present().map_err(write_error(path))
        }
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
                draw_figure(&root, title, x_label, panels, marker).map_err(draw_error(path))?;
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

/// Plotters labels an embedded PNG `data:png`, which strict SVG renderers refuse as a MIME type.
fn write_svg(path: &Path, svg: String) -> Result<(), PlotError> {
    let svg = svg.replace("href=\"data:png;base64,", "href=\"data:image/png;base64,");
    std::fs::write(path, svg).map_err(write_error(path))
}
