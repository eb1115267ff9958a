//! The legend: what it lists, and where it goes so that it hides the least.

use super::*;

/// Where the legend goes and what it lists.
pub(super) struct Legend {
    pub(super) left: f64,
    pub(super) top: f64,
    pub(super) width: f64,
    pub(super) height: f64,
    pub(super) row: f64,
    pub(super) entries: Vec<(String, RGBColor, Option<Shape>)>,
}

impl Legend {
    /// Puts the legend in the corner (or at the middle of the top or bottom edge) of the plot
    /// rectangle where it hides the fewest of the pixels in `avoid`.
    pub(super) fn place(
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

    pub(super) fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        look: &Look,
    ) -> Res<()>
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
