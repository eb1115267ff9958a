//! Text in pictures: the font compiled into the binary, and a bitmap backend that lays glyphs
//! out at fractional positions.

use super::*;

pub(super) const FONT_BYTES: &[u8] = include_bytes!("../../examples/fonts/DejaVuSans.ttf");
pub(super) const FONT: &str = "sans-serif";

pub(super) fn register_font(path: &Path) -> Result<(), PlotError> {
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

/// The bitmap backend with its own text rasterizer. Plotters' ab_glyph text drawing places each
/// glyph at a whole pixel and ignores its side bearing, which opens visible gaps inside words
/// ("gradi ent"); here glyphs sit at their exact positions and are anti-aliased by coverage.
pub(super) struct Bitmap<'a>(pub(super) BitMapBackend<'a>);

pub(super) type BitmapError<'a> =
    DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

pub(super) fn glyph_font() -> Option<&'static FontRef<'static>> {
    static PARSED: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    PARSED
        .get_or_init(|| FontRef::try_from_slice(FONT_BYTES).ok())
        .as_ref()
}

/// Glyphs of one line of text at their positions, the baseline `ascent` below the top, and the
/// line's advance width and height. The em is size / 1.24 pixels, the size plotters gives text in
/// SVG, so that PNG and SVG output match.
pub(super) fn layout_text(
    font: &FontRef<'static>,
    size: f64,
    text: &str,
) -> (Vec<ab_glyph::Glyph>, f32, f32) {
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
