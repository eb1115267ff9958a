//! Declarations of data: dimension symbols, inputs from tables, `.npy` files and texts, and the
//! shapes each input may take.

use super::*;

impl Checker {
    /// The symbolic dimension a name stands for, unless a value of that name hides it (the
    /// same order of lookup as `name`).
    pub(super) fn dim_symbol(&self, name: &str) -> Option<u32> {
        let bound = self.frames.last().is_some_and(|f| f.contains_key(name))
            || self.names.contains_key(name);
        if bound {
            return None;
        }
        self.syms.iter().position(|s| s == name).map(|i| i as u32)
    }

    pub(super) fn sym(&mut self, name: &str) -> u32 {
        match self.syms.iter().position(|s| s == name) {
            Some(i) => i as u32,
            None => {
                self.syms.push(name.to_string());
                (self.syms.len() - 1) as u32
            }
        }
    }

    pub(super) fn inputs(
        &mut self,
        module: &ast::Module,
    ) -> (Vec<InputInfo>, Vec<InputBinding>, Option<u32>) {
        let mut infos = Vec::new();
        let mut bindings = Vec::new();
        let mut row_dim: Option<(u32, Span)> = None;
        // The first text-bound input (for messages) and the first input read from a table.
        let mut first_text: Option<FirstText> = None;
        let mut first_table: Option<Span> = None;
        for item in &module.items {
            let Item::Input {
                name,
                shape,
                is_int,
                columns,
                span,
            } = item
            else {
                continue;
            };
            let text = match columns {
                Some(ast::Columns::Text {
                    kind,
                    path,
                    path_span,
                    offset,
                }) => match self.text_windows(kind, path, *path_span, offset) {
                    Some(t) => Some(t),
                    None => continue,
                },
                _ => None,
            };
            let source = match (columns, &text) {
                (_, Some(_)) => InputSource::Text,
                (Some(ast::Columns::File(..)), _) => InputSource::Array,
                _ => InputSource::Table,
            };
            let dims = self.input_dims(name, shape, source, &mut row_dim);
            let Some(dims) = dims else { continue };
            if let Some(t) = &text
                && !self.text_input_ok(name, *is_int, &dims, t, *span, &mut first_text)
            {
                continue;
            }
            if text.is_none() && matches!(dims.first(), Some(Dim::Sym(_))) {
                first_table.get_or_insert(*span);
            }
            let width = match dims.get(1) {
                Some(Dim::Fixed(k)) => *k as usize,
                _ => 1,
            };
            let symbolic_width = matches!(dims.get(1), Some(Dim::Sym(_)));
            let file = match columns {
                Some(ast::Columns::File(path, _)) => Some(path.clone()),
                _ => None,
            };
            if symbolic_width && source == InputSource::Table && columns.is_some() {
                self.error(
                    Diagnostic::error("a column dimension given by name takes its size from the data; it cannot name its columns")
                        .with_label(*span, "remove `from …` or give the number of columns"),
                );
            }
            let columns = match columns {
                _ if symbolic_width || source != InputSource::Table => vec![],
                None if dims.len() == 1 => vec![name.name.clone()],
                None => (0..width).map(|j| format!("{}{j}", name.name)).collect(),
                Some(ast::Columns::List(list)) => list.iter().map(|c| c.name.clone()).collect(),
                Some(ast::Columns::File(..) | ast::Columns::Text { .. }) => {
                    unreachable!("handled above")
                }
                Some(ast::Columns::Range { first, last }) => {
                    match column_range(&first.name, &last.name) {
                        Some(cols) => cols,
                        None => {
                            self.error(
                            Diagnostic::error("column range must be `prefixA..prefixB` with whole numbers A ≤ B")
                                .with_label(first.span.join(last.span), "not a column range"),
                        );
                            continue;
                        }
                    }
                }
            };
            if columns.len() != width && !symbolic_width && source == InputSource::Table {
                self.error(
                    Diagnostic::error(format!(
                        "`{}` has {width} column(s) per row but {} are named",
                        name.name,
                        columns.len()
                    ))
                    .with_label(*span, "declared here"),
                );
                continue;
            }
            let index = infos.len() as u32;
            infos.push(InputInfo {
                name: name.name.clone(),
                shape: Shape(dims),
                is_int: *is_int,
            });
            let prefix =
                (symbolic_width && source == InputSource::Table).then(|| name.name.clone());
            bindings.push(InputBinding {
                columns,
                prefix,
                file,
                text,
                span: *span,
            });
            self.define(name, Binding::Input(index));
        }
        if let (Some(text), Some(table)) = (&first_text, first_table) {
            self.error(
                Diagnostic::error("a model's rows are either rows of data or windows of a text, not both")
                    .with_label(table, "rows of data")
                    .with_label(text.span, format!("windows of a text (`{}`)", text.input))
                    .with_note("inputs without the row dimension (`input K[3] from \"k.npy\"`) may join either"),
            );
        }
        (infos, bindings, row_dim.map(|r| r.0))
    }

    /// `from text "corpus.txt"` or `from text "corpus.txt" offset K`, checked.
    pub(super) fn text_windows(
        &mut self,
        kind: &ast::Ident,
        path: &str,
        path_span: Span,
        offset: &Option<(ast::Ident, f64, Span)>,
    ) -> Option<TextWindows> {
        if kind.name != "text" {
            self.error(
                Diagnostic::error(format!("unknown data source `{}`", kind.name))
                    .with_label(kind.span, "expected `text` before the file name")
                    .with_note("`from text \"corpus.txt\"` reads windows of a text's characters; `from \"x.npy\"` reads an array"),
            );
            return None;
        }
        let offset = match offset {
            None => 0,
            Some((word, _, _)) if word.name != "offset" => {
                self.error(
                    Diagnostic::error(format!("unknown text setting `{}`", word.name))
                        .with_label(word.span, "expected `offset`"),
                );
                return None;
            }
            Some((_, k, span)) if k.fract() != 0.0 || !(0.0..1e9).contains(k) => {
                self.error(
                    Diagnostic::error(
                        "a text window's offset is a whole number of characters, 0 ≤ offset < 10⁹",
                    )
                    .with_label(*span, "here"),
                );
                return None;
            }
            Some((_, k, _)) => *k as u64,
        };
        if !path.ends_with(".txt") && path.ends_with(".npy") {
            self.error(
                Diagnostic::error("`from text` reads a plain-text file")
                    .with_label(path_span, "a NumPy array")
                    .with_note("an array is read with `from \"x.npy\"`"),
            );
            return None;
        }
        Some(TextWindows {
            file: path.to_string(),
            offset,
        })
    }

    /// A text-bound input holds token indices (`: int`) in windows `[n, T]` of a fixed length,
    /// and every text-bound input reads the same text with the same window length.
    pub(super) fn text_input_ok(
        &mut self,
        name: &ast::Ident,
        is_int: bool,
        dims: &[Dim],
        text: &TextWindows,
        span: Span,
        first: &mut Option<FirstText>,
    ) -> bool {
        let window = match dims {
            [Dim::Sym(_), Dim::Fixed(t)] => *t,
            _ => {
                self.error(
                    Diagnostic::error(format!("input `{}` reads windows of a text: its shape is `[n, T]`", name.name))
                        .with_label(span, "declared here")
                        .with_note("n counts the windows, T (a whole number) is the characters in each: `input x[n, 64]: int from text \"corpus.txt\"`"),
                );
                return false;
            }
        };
        if !is_int {
            self.error(
                Diagnostic::error(format!(
                    "input `{}` reads a text's characters as token indices: declare it `: int`",
                    name.name
                ))
                .with_label(span, "declared here"),
            );
            return false;
        }
        let Some(first) = first else {
            *first = Some(FirstText {
                input: name.name.clone(),
                span,
                window,
                file: text.file.clone(),
            });
            return true;
        };
        if first.file != text.file {
            self.error(
                Diagnostic::error("a model reads one text")
                    .with_label(span, format!("reads \"{}\"", text.file))
                    .with_label(first.span, format!("but this reads \"{}\"", first.file)),
            );
            return false;
        }
        if first.window != window {
            self.error(
                Diagnostic::error("windows of one text have one length")
                    .with_label(span, format!("{window} characters"))
                    .with_label(first.span, format!("but {} here", first.window)),
            );
            return false;
        }
        true
    }

    /// An input batched by rows starts with the row dimension (`[n]`, `[n, k]`, and from a
    /// `.npy` file any rank: `[n, 1, 28, 28]`), the same symbolic `n` for all of them; an input
    /// without it (`[3]`, `[2, 3]`) is read whole from a `.npy` file.
    pub(super) fn input_dims(
        &mut self,
        name: &ast::Ident,
        shape: &[ast::Dim],
        source: InputSource,
        row_dim: &mut Option<(u32, Span)>,
    ) -> Option<Vec<Dim>> {
        let Some(ast::Dim::Named(rows)) = shape.first() else {
            return self.whole_input_dims(name, shape, source);
        };
        if shape.len() > 2 && source == InputSource::Table {
            self.error(
                Diagnostic::error("inputs read from CSV columns have rank 1 or 2")
                    .with_label(shape[2].span(), "extra dimension")
                    .with_note("an array of any rank is read from a `.npy` file: `input img[n, 1, 28, 28] from \"x.npy\"`"),
            );
            return None;
        }
        let sym = self.sym(&rows.name);
        match row_dim {
            Some((s, first)) if *s != sym => {
                let first = *first;
                self.error(
                    Diagnostic::error("all inputs must share one row dimension")
                        .with_label(rows.span, format!("rows counted by `{}`", rows.name))
                        .with_label(first, "but here by another name"),
                );
                return None;
            }
            Some(_) => {}
            None => *row_dim = Some((sym, rows.span)),
        }
        let mut dims = vec![Dim::Sym(sym)];
        for d in &shape[1..] {
            match d {
                ast::Dim::Fixed(k, _) if *k != u64::MAX && *k > 0 => dims.push(Dim::Fixed(*k)),
                // `input X[n, d]`: as many columns as the data has `X0, X1, …`.
                ast::Dim::Named(id) if id.name != rows.name => {
                    let s = self.sym(&id.name);
                    dims.push(Dim::Sym(s));
                }
                other => {
                    self.error(
                        Diagnostic::error(
                            "the column dimension must be a positive whole number or a name",
                        )
                        .with_label(other.span(), "here"),
                    );
                    return None;
                }
            }
        }
        Some(dims)
    }

    /// The fixed shape of an input read whole from a `.npy` file (rank 0 to any).
    pub(super) fn whole_input_dims(
        &mut self,
        name: &ast::Ident,
        shape: &[ast::Dim],
        source: InputSource,
    ) -> Option<Vec<Dim>> {
        if source != InputSource::Array {
            self.error(
                Diagnostic::error(format!("input `{}` needs a row dimension", name.name))
                    .with_label(name.span, "declared here")
                    .with_note("inputs are rows of data: write `input x[n]` or `input X[n, 4]`; an input without rows is read whole from a `.npy` file: `input K[3] from \"k.npy\"`"),
            );
            return None;
        }
        let mut dims = Vec::with_capacity(shape.len());
        for d in shape {
            match d {
                ast::Dim::Fixed(k, _) if *k != u64::MAX && *k > 0 => dims.push(Dim::Fixed(*k)),
                other => {
                    self.error(
                        Diagnostic::error(format!(
                            "input `{}` has no row dimension: its dimensions are positive whole numbers",
                            name.name
                        ))
                        .with_label(other.span(), "not a fixed size")
                        .with_note("the row dimension, a name such as `n`, comes first"),
                    );
                    return None;
                }
            }
        }
        Some(dims)
    }
}
