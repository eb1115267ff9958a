//! The race as an animated GIF: frames rendered in memory, written as the rectangles that change.

use super::*;

impl Race<'_> {
    /// Frames are rendered in memory and written as differences from the frame before: a full
    /// frame of the contour map is some 80 kB, and a hundred of them would make a 10 MB file.
    /// The frames have the still picture's size, so the two can stand side by side.
    pub(super) fn write_gif(&self, path: &Path) -> Result<(), PlotError> {
        let look = Look { scale: 1.0 };
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
}

/// An animated GIF written frame by frame, each frame only the rectangle that changed.
pub(super) struct GifWriter<W: std::io::Write> {
    pub(super) encoder: gif::Encoder<W>,
    pub(super) size: (usize, usize),
    /// Held back so that a frame identical to it can lengthen its delay instead of being written.
    pub(super) pending: Option<gif::Frame<'static>>,
}

impl<W: std::io::Write> GifWriter<W> {
    pub(super) fn new(out: W, size: (usize, usize)) -> Result<Self, gif::EncodingError> {
        let mut encoder = gif::Encoder::new(out, size.0 as u16, size.1 as u16, &[])?;
        encoder.set_repeat(gif::Repeat::Infinite)?;
        Ok(GifWriter {
            encoder,
            size,
            pending: None,
        })
    }

    /// Adds `current` (RGB, row by row), shown for `delay` hundredths of a second.
    pub(super) fn push(
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

    pub(super) fn finish(mut self) -> Result<(), gif::EncodingError> {
        if let Some(pending) = self.pending.take() {
            self.encoder.write_frame(&pending)?;
        }
        self.encoder.into_inner()?.flush()?;
        Ok(())
    }
}

/// The smallest rectangle (x0, y0, x1, y1), ends exclusive, holding every pixel that differs.
pub(super) fn changed_rect(
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
pub(super) fn gif_frame(
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

pub(super) const MAX_FRAMES: usize = 100;
pub(super) const HOLD_MS: u32 = 1500;

/// About six seconds of motion whatever the number of frames, within what GIF viewers honour.
pub(super) fn frame_delay_ms(frames: usize) -> u32 {
    ((6000 / frames.max(1)) as u32).clamp(60, 200)
}
