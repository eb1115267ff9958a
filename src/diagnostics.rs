//! Source files, byte spans and user-facing diagnostics, rendered the way rustc renders them.
//!
//! Invariant: rendering is deterministic (no colour, no absolute paths beyond the name the
//! caller gave), so rendered diagnostics can be pinned by snapshot tests.

use std::fmt::{self, Write};

/// A half-open byte range `[start, end)` into one source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The bytes `start..end`.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn join(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// A named source text; the name is what diagnostics print (usually the path given by the user).
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// What diagnostics call the file.
    pub name: String,
    /// Its contents.
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// A source file from its name and text.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> SourceFile {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// Zero-based line index containing byte `offset`.
    pub fn line_index(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(line) => line,
            Err(next) => next - 1,
        }
    }

    /// One-based (line, column); the column counts characters, as editors do.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = self.clamp(offset);
        let line = self.line_index(offset);
        let start = self.line_starts[line];
        (line + 1, self.text[start..offset].chars().count() + 1)
    }

    /// The text of zero-based line `line`, without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        let start = self.line_starts[line];
        let end = self
            .line_starts
            .get(line + 1)
            .copied()
            .unwrap_or(self.text.len());
        self.text[start..end].trim_end_matches(['\n', '\r'])
    }

    fn clamp(&self, offset: usize) -> usize {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }

    /// The text a span covers.
    pub fn snippet(&self, span: Span) -> &str {
        &self.text[self.clamp(span.start)..self.clamp(span.end)]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The model cannot be compiled.
    Error,
    /// The model compiles, but something is probably wrong.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// A span with a short message; the first label of a diagnostic is its primary location.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What about it.
    pub message: String,
}

/// A problem in the user's source, with everything needed to point at it.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The headline.
    pub message: String,
    /// Labelled places in the source; the first is the primary location.
    pub labels: Vec<Label>,
    /// Further explanation, printed after the source lines.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error with no location yet.
    pub fn error(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            labels: vec![],
            notes: vec![],
        }
    }

    /// A warning with no location yet.
    pub fn warning(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message)
        }
    }

    /// Adds a labelled place.
    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The first label's place.
    pub fn primary_span(&self) -> Option<Span> {
        self.labels.first().map(|l| l.span)
    }

    /// rustc-style text: header, `--> file:line:col`, each labelled source line with carets.
    pub fn render(&self, file: &SourceFile) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}: {}", self.severity, self.message);
        let mut lines: Vec<(usize, &Label)> = self
            .labels
            .iter()
            .map(|l| (file.line_index(file.clamp(l.span.start)), l))
            .collect();
        lines.sort_by_key(|(line, l)| (*line, l.span.start));
        let gutter = lines
            .iter()
            .map(|(line, _)| (line + 1).to_string().len())
            .max()
            .unwrap_or(1);
        let pad = " ".repeat(gutter);
        if let Some(primary) = self.labels.first() {
            let (line, col) = file.line_col(primary.span.start);
            let _ = writeln!(out, "{pad}--> {}:{line}:{col}", file.name);
            let _ = writeln!(out, "{pad} |");
            let mut i = 0;
            while i < lines.len() {
                let line = lines[i].0;
                let text = file.line_text(line);
                let same_line = lines[i..].iter().take_while(|(l, _)| *l == line).count();
                // Each label's indent and width, in terminal columns.
                let marks: Vec<(usize, usize)> = lines[i..i + same_line]
                    .iter()
                    .map(|(_, label)| {
                        let line_start = file.line_starts[line];
                        let line_end = file
                            .line_starts
                            .get(line + 1)
                            .copied()
                            .unwrap_or(file.text.len());
                        let start = file.clamp(label.span.start).max(line_start);
                        let end = label.span.end.min(line_end).max(start);
                        let indent = display_width(file.snippet(Span::new(line_start, start)));
                        let width =
                            display_width(file.snippet(Span::new(start, end)).trim_end()).max(1);
                        (indent, width)
                    })
                    .collect();
                let shown = Window::around(display_width(text), &marks);
                let _ = writeln!(out, "{:>gutter$} | {}", line + 1, shown.text(text));
                for (&(_, label), &(indent, width)) in lines[i..i + same_line].iter().zip(&marks) {
                    let (indent, width) = shown.mark(indent, width);
                    let mark = if std::ptr::eq(label, primary) {
                        "^"
                    } else {
                        "-"
                    };
                    let _ = writeln!(
                        out,
                        "{pad} | {}{} {}",
                        " ".repeat(indent),
                        mark.repeat(width),
                        label.message
                    );
                }
                i += same_line;
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "{pad} = note: {note}");
        }
        out
    }
}

/// How many columns a tab takes in a rendered source line (as rustc shows them).
const TAB_WIDTH: usize = 4;

/// A source line as printed under the gutter: tabs become spaces, so that the carets below
/// line up whatever the terminal's tab stops are.
fn expand_tabs(text: &str) -> String {
    text.replace('\t', &" ".repeat(TAB_WIDTH))
}

/// Terminal columns that `text` takes when printed by `expand_tabs`: wide characters (CJK)
/// take two, combining marks none.
fn display_width(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '\t' => TAB_WIDTH,
            c => unicode_width::UnicodeWidthChar::width(c).unwrap_or(0),
        })
        .sum()
}

/// The part of a source line a diagnostic shows: a long line (a generated model's, a data file
/// read as a model) is cut around its labels, with `…` where it was cut. Positions are terminal
/// columns of the line as `expand_tabs` prints it.
struct Window {
    /// The first and one past the last column shown.
    start: usize,
    end: usize,
    len: usize,
}

impl Window {
    /// Lines up to this many columns are shown whole.
    const WIDTH: usize = 120;
    /// Columns shown before the first label of a cut line.
    const BEFORE: usize = 30;

    fn around(len: usize, marks: &[(usize, usize)]) -> Window {
        if len <= Self::WIDTH {
            return Window {
                start: 0,
                end: len,
                len,
            };
        }
        let first = marks.iter().map(|m| m.0).min().unwrap_or(0);
        let start = first.saturating_sub(Self::BEFORE).min(len - Self::WIDTH);
        Window {
            start,
            end: start + Self::WIDTH,
            len,
        }
    }

    fn text(&self, line: &str) -> String {
        let mut shown = String::new();
        if self.start > 0 {
            shown.push('…');
        }
        let mut col = 0;
        for c in expand_tabs(line).chars() {
            let w = display_width(c.encode_utf8(&mut [0; 4]));
            if col >= self.start && col + w <= self.end {
                shown.push(c);
            }
            col += w;
        }
        if self.end < self.len {
            shown.push('…');
        }
        shown
    }

    /// Where a mark at column `col`, `width` columns wide, goes on the shown text.
    fn mark(&self, col: usize, width: usize) -> (usize, usize) {
        let lead = usize::from(self.start > 0);
        let col = col.clamp(self.start, self.end);
        let width = width.min(self.end.saturating_sub(col)).max(1);
        (col - self.start + lead, width)
    }
}

/// Renders a list of diagnostics followed by a summary line, as the CLI prints them.
pub fn render_all(diags: &[Diagnostic], file: &SourceFile) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&d.render(file));
        out.push('\n');
    }
    let n_errors = diags.iter().filter(|d| d.is_error()).count();
    let n_warnings = diags.len() - n_errors;
    if n_errors > 0 {
        let _ = writeln!(
            out,
            "error: could not compile `{}` due to {} error{}{}",
            file.name,
            n_errors,
            if n_errors == 1 { "" } else { "s" },
            if n_warnings > 0 {
                format!("; {n_warnings} warning(s) emitted")
            } else {
                String::new()
            }
        );
    }
    out
}
