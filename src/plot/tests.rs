//! Pictures of every kind, and the geometry and text beneath them.

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
    let dir = std::env::temp_dir().join(format!("adjoint-plot-{}-{name}-{n}", std::process::id()));
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
    assert!(matches!(
        Format::from_path(Path::new("b")),
        Err(PlotError::Format {
            expected: ".svg or .png",
            ..
        })
    ));
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

/// FNV-1a: a hash that is the same on every platform and release, for golden rasters.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The RGB pixels `draw` leaves on a white canvas of `size`.
fn raster(size: (u32, u32), draw: impl FnOnce(&DrawingArea<Bitmap, Shift>)) -> Vec<u8> {
    register_font(Path::new("test")).unwrap();
    let mut pixels = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = Bitmap(BitMapBackend::with_buffer(&mut pixels, size)).into_drawing_area();
        draw(&root);
        root.present().unwrap();
    }
    pixels
}

// Golden hashes: a change to what is drawn changes them. Before updating one, look at the
// picture (`adjoint race`, `train --plot`) and say in the commit what changed and why.

#[test]
fn contour_raster_is_golden() {
    let (w, h) = (64, 48);
    let pixels = contour_raster(
        &rosenbrock,
        (-2.0, 2.0),
        (-1.0, 3.0),
        (w, h),
        Some((1.0, 1.0)),
    );
    assert_eq!(pixels.len(), w * h * 3);
    assert_eq!(fnv(&pixels), 0x77e072094a3255b0, "contour raster changed");
}

#[test]
fn race_still_raster_is_golden() {
    let runs = trajectories();
    let race = Race::new(
        Path::new("race.png"),
        "Rosenbrock",
        &rosenbrock,
        (-2.0, 2.0),
        (-1.0, 3.0),
        &runs,
        Some((1.0, 1.0)),
    )
    .unwrap();
    let look = Look { scale: 1.0 };
    let pixels = raster(race.canvas(&look), |root| {
        race.draw_still(root, &look).unwrap()
    });
    assert_eq!(fnv(&pixels), 0x47e6caf619714071, "race still changed");
}

#[test]
fn gif_frames_are_golden() {
    let dir = temp_dir("golden-gif");
    let gif = dir.join("race.gif");
    let runs = trajectories();
    race_animation(
        &gif,
        "Rosenbrock",
        &rosenbrock,
        (-2.0, 2.0),
        (-1.0, 3.0),
        &runs,
        None,
    )
    .unwrap();
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    let mut decoder = options
        .read_info(std::fs::File::open(&gif).unwrap())
        .unwrap();
    let mut hashes = vec![];
    while let Some(frame) = decoder.read_next_frame().unwrap() {
        let rect = [frame.left, frame.top, frame.width, frame.height];
        let head: Vec<u8> = rect.iter().flat_map(|v| v.to_le_bytes()).collect();
        hashes.push(fnv(&[head, frame.buffer.to_vec()].concat()));
    }
    assert_eq!(hashes.len(), MAX_FRAMES);
    let all: Vec<u8> = hashes.iter().flat_map(|h| h.to_le_bytes()).collect();
    assert_eq!(fnv(&all), 0x504970f6af078680, "GIF frames changed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn changed_rect_bounds_exactly_the_pixels_that_differ() {
    let (w, h) = (5, 4);
    let before = vec![7u8; w * h * 3];
    assert_eq!(changed_rect(&before, &before, (w, h)), None);
    let mut after = before.clone();
    let set =
        |p: &mut Vec<u8>, x: usize, y: usize, channel: usize| p[(y * w + x) * 3 + channel] = 9;
    set(&mut after, 2, 1, 2);
    assert_eq!(changed_rect(&before, &after, (w, h)), Some((2, 1, 3, 2)));
    set(&mut after, 4, 3, 0);
    set(&mut after, 1, 2, 1);
    assert_eq!(changed_rect(&before, &after, (w, h)), Some((1, 1, 5, 4)));
}

#[test]
fn gif_frame_is_transparent_where_nothing_changed() {
    let (w, h) = (4, 2);
    let before = vec![10u8; w * h * 3];
    let mut after = before.clone();
    after[(w + 1) * 3..(w + 1) * 3 + 3].copy_from_slice(&[200, 0, 0]);
    let frame = gif_frame(Some(&before), &after, w, (0, 0, w, h));
    let transparent = frame.transparent.expect("unchanged pixels are transparent");
    let changed = w + 1;
    for (k, &index) in frame.buffer.iter().enumerate() {
        assert_eq!(index == transparent, k != changed, "pixel {k}");
    }
    let palette = frame.palette.as_ref().unwrap();
    let i = frame.buffer[changed] as usize;
    assert_eq!(&palette[i * 3..i * 3 + 3], &[200, 0, 0]);
}

#[test]
fn figure_raster_is_golden() {
    let step = |k: usize| k as f64 * 10.0;
    let loss: Vec<(f64, f64)> = (1..=50)
        .map(|k| (step(k), 2.0 * (-0.1 * k as f64).exp()))
        .collect();
    let val: Vec<(f64, f64)> = (1..=50)
        .map(|k| (step(k), 2.2 * (-0.08 * k as f64).exp() + 0.05))
        .collect();
    let acc: Vec<(f64, f64)> = (1..=50)
        .map(|k| (step(k), 1.0 - 0.6 * (-0.1 * k as f64).exp()))
        .collect();
    let panels = [
        Panel {
            y_label: "loss".into(),
            series: vec![
                ("training loss".into(), loss),
                ("validation loss".into(), val),
            ],
        },
        Panel {
            y_label: "accuracy".into(),
            series: vec![("training accuracy".into(), acc)],
        },
    ];
    let marker = Marker {
        x: 300.0,
        label: "early stopping restored step 300".into(),
    };
    let pixels = raster((900, 890), |root| {
        draw_figure(root, "figure", "step", &panels, Some(&marker)).unwrap()
    });
    assert_eq!(fnv(&pixels), 0x8e91fde5e1f61334, "figure changed");
}

#[test]
fn log_axis_ticks_read_at_their_own_magnitude() {
    let axes = CurveAxes::new(&[("loss".into(), vec![(0.0, 0.1), (1.0, 1e-12)])]);
    assert!(axes.log_y);
    let span = axes.y.1 - axes.y.0;
    let labels: Vec<String> = log_ticks(axes.y)
        .iter()
        .map(|&v| y_tick(v, span, true))
        .collect();
    assert_eq!(labels[..3], ["1e-11", "1e-9", "1e-7"]);
    assert_eq!(labels.last().unwrap(), "0.1");
    assert!(labels.iter().all(|l| l != "0"), "{labels:?}");
    assert_eq!(y_tick(1e-12, span, false), "0");
}
