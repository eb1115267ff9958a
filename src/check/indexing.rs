//! Index expressions: `x[i]`, `x[:, 2:5]`, `x[::-1]`, `x[:, None]`, `x[..., 0]`.
//!
//! A position removes its axis (`Take`), a range keeps it with fewer elements (`Slice`), `None`
//! adds a unit axis (`Reshape`) and `...` stands for the axes not written. Bounds are constants
//! checked against the axis here, so a slice never reads outside its operand.

use super::Checker;
use crate::diagnostics::{Diagnostic, Span};
use crate::ir::{Dim, Graph, NodeId, Op, Shape};
use crate::syntax::ast::{self, ExprKind};

/// The largest step a slice takes: any step past the axis's length gives one element.
const MAX_STEP: i64 = 1 << 40;

/// What one index entry does to its axis, once its bounds are known.
enum Entry {
    /// The whole axis, unchanged.
    Keep,
    /// One position; the axis is removed.
    At(u64),
    /// `len` elements from `start`, `step` apart.
    Range { start: u64, step: i64, len: u64 },
    /// A new axis of length 1.
    NewAxis,
    /// `...`: this many whole axes.
    Rest(usize),
}

/// Whether an index entry is `None`, which adds an axis.
fn is_new_axis(ix: &ast::Index) -> bool {
    matches!(ix, ast::Index::At(e) if matches!(&e.kind, ExprKind::Name(n) if n == "None"))
}

/// The one entry that is an array rather than a constant, with every other a whole axis
/// (`E[tok]`, `E[:, tok]`), and its axis: a gather.
fn array_index(indices: &[ast::Index]) -> Option<(u32, &ast::Expr)> {
    let mut found = None;
    for (axis, ix) in indices.iter().enumerate() {
        match ix {
            ast::Index::Range {
                start: None,
                stop: None,
                step: None,
                ..
            } => {}
            ast::Index::At(e)
                if found.is_none() && !is_new_axis(ix) && super::const_eval(e).is_none() =>
            {
                found = Some((axis as u32, e))
            }
            _ => return None,
        }
    }
    found
}

impl Checker {
    /// Lowers `base[indices]`.
    pub(super) fn index(
        &mut self,
        g: &mut Graph,
        base: &ast::Expr,
        indices: &[ast::Index],
        span: Span,
    ) -> Option<NodeId> {
        if let Some((axis, ix)) = array_index(indices) {
            let x = self.expr(g, base)?;
            let i = self.expr(g, ix)?;
            let at = (x, base.span);
            return super::builtins::gather(self, g, None, at, (i, ix.span), axis, span);
        }
        let x = self.expr(g, base)?;
        let shape = g.shape(x).clone();
        let entries = self.index_entries(g, base, &shape, indices, span)?;
        // From the last entry to the first, so that the axis of an entry is the number of
        // axes before it, whatever the entries after it did.
        let mut positions = Vec::with_capacity(entries.len());
        let mut axis = 0usize;
        for e in &entries {
            positions.push(axis);
            axis += match e {
                Entry::NewAxis => 0,
                Entry::Rest(k) => *k,
                Entry::Keep | Entry::At(..) | Entry::Range { .. } => 1,
            };
        }
        let mut cur = x;
        for (e, &axis) in entries.iter().zip(&positions).rev() {
            let op = match *e {
                Entry::Keep | Entry::Rest(_) => continue,
                Entry::At(index) => Op::Take {
                    axis: axis as u32,
                    index,
                },
                Entry::Range { start, step, len } => Op::Slice {
                    axis: axis as u32,
                    start,
                    step,
                    len,
                },
                Entry::NewAxis => {
                    let mut dims = g.shape(cur).0.clone();
                    dims.insert(axis, Dim::Fixed(1));
                    Op::Reshape(Shape(dims))
                }
            };
            cur = self.node(g, op, &[cur], &[base.span], "index", span)?;
        }
        Some(cur)
    }

    /// Each entry's meaning, with every bound checked against its axis.
    fn index_entries(
        &mut self,
        g: &Graph,
        base: &ast::Expr,
        shape: &Shape,
        indices: &[ast::Index],
        span: Span,
    ) -> Option<Vec<Entry>> {
        let rank = shape.rank();
        let ellipses: Vec<Span> = indices
            .iter()
            .filter_map(|i| match i {
                ast::Index::Ellipsis(s) => Some(*s),
                _ => None,
            })
            .collect();
        if ellipses.len() > 1 {
            self.error(
                Diagnostic::error("an index may hold `...` once")
                    .with_label(ellipses[1], "again here")
                    .with_label(ellipses[0], "first here"),
            );
            return None;
        }
        let new_axes = indices.iter().filter(|i| is_new_axis(i)).count();
        let written = indices.len() - ellipses.len() - new_axes;
        if written > rank || (ellipses.is_empty() && written != rank) {
            let mut d = Diagnostic::error(format!("expected {rank} index(es), found {written}"))
                .with_label(span, "here")
                .with_label(base.span, format!("has shape {}", g.shape_text(shape)));
            if written < rank {
                d = d.with_note("write `:` for each whole axis, or `...` for the axes not written");
            }
            self.error(d);
            return None;
        }
        let mut entries = Vec::with_capacity(indices.len());
        let mut axis = 0;
        for ix in indices {
            if is_new_axis(ix) {
                entries.push(Entry::NewAxis);
                continue;
            }
            let entry = match ix {
                ast::Index::Ellipsis(_) => Entry::Rest(rank - written),
                ast::Index::At(e) => {
                    let len = self.indexed_length(shape, axis, e.span)?;
                    let v = self.const_value(e)?;
                    let v = if v < 0.0 { v + len as f64 } else { v };
                    if v.fract() != 0.0 || v < 0.0 || v >= len as f64 {
                        self.error(
                            Diagnostic::error(format!(
                                "index out of range for an axis of length {len}"
                            ))
                            .with_label(e.span, "out of range")
                            .with_label(base.span, format!("has shape {}", g.shape_text(shape))),
                        );
                        return None;
                    }
                    Entry::At(v as u64)
                }
                ast::Index::Range {
                    start: None,
                    stop: None,
                    step: None,
                    ..
                } => Entry::Keep,
                ast::Index::Range {
                    start,
                    stop,
                    step,
                    span,
                } => {
                    let len = self.indexed_length(shape, axis, *span)?;
                    self.range(
                        g,
                        base,
                        shape,
                        len,
                        [start.as_ref(), stop.as_ref(), step.as_ref()],
                        *span,
                    )?
                }
            };
            axis += match entry {
                Entry::Rest(k) => k,
                _ => 1,
            };
            entries.push(entry);
        }
        Some(entries)
    }

    /// The length of an axis that an index or a slice selects from: fixed, or an error.
    fn indexed_length(&mut self, shape: &Shape, axis: usize, at: Span) -> Option<u64> {
        match shape.0[axis] {
            Dim::Fixed(n) => Some(n),
            Dim::Sym(_) => {
                self.error(
                    Diagnostic::error(
                        "cannot index an axis whose length is only known at run time",
                    )
                    .with_label(at, "index into a data axis")
                    .with_note("slice the columns instead: `X[:, j]`"),
                );
                None
            }
        }
    }

    /// `start:stop:step` on an axis of length `len`, as Python reads it (negative bounds count
    /// from the end, a negative step walks backwards), except that a bound past either end
    /// and an empty result are errors rather than silently shortened.
    fn range(
        &mut self,
        g: &Graph,
        base: &ast::Expr,
        shape: &Shape,
        len: u64,
        [start, stop, step]: [Option<&ast::Expr>; 3],
        span: Span,
    ) -> Option<Entry> {
        let size = len as i64;
        let whole = |cx: &mut Checker, e: Option<&ast::Expr>, limit: i64| -> Option<Option<i64>> {
            let Some(e) = e else { return Some(None) };
            let v = cx.const_value(e)?;
            if v.fract() != 0.0 {
                cx.error(
                    Diagnostic::error(format!("slice bound {v} is not a whole number"))
                        .with_label(e.span, "not a position"),
                );
                return None;
            }
            if v.abs() > limit as f64 {
                cx.error(
                    Diagnostic::error(format!(
                        "slice bound {v} is out of range for an axis of length {len}"
                    ))
                    .with_label(e.span, "out of range")
                    .with_label(base.span, format!("has shape {}", g.shape_text(shape)))
                    .with_note(format!("a bound is a whole number from -{len} to {len}")),
                );
                return None;
            }
            Some(Some(v as i64))
        };
        let k = match step {
            None => 1,
            Some(e) => match whole(self, Some(e), MAX_STEP)? {
                Some(0) => {
                    self.error(
                        Diagnostic::error("a slice step cannot be zero")
                            .with_label(e.span, "zero step"),
                    );
                    return None;
                }
                Some(k) => k,
                None => 1,
            },
        };
        let first = whole(self, start, size)?;
        let end = whole(self, stop, size)?;
        let from_end = |b: i64| if b < 0 { b + size } else { b };
        let (first, end) = if k > 0 {
            (
                first.map_or(0, from_end).min(size),
                end.map_or(size, from_end).min(size),
            )
        } else {
            (
                first.map_or(size - 1, from_end).min(size - 1),
                end.map_or(-1, from_end).min(size - 1),
            )
        };
        let count = if k > 0 {
            (end - first + k - 1).div_euclid(k)
        } else {
            (first - end + (-k) - 1).div_euclid(-k)
        };
        if count <= 0 {
            self.error(
                Diagnostic::error("this slice has no elements")
                    .with_label(span, "empty")
                    .with_label(base.span, format!("has shape {}", g.shape_text(shape))),
            );
            return None;
        }
        Some(Entry::Range {
            start: first as u64,
            step: k,
            len: count as u64,
        })
    }
}
