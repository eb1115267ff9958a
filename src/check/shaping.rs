//! The shaping functions: `reshape`'s target shape, and `concat` and `stack`, which join arrays
//! as a sum of embeddings (`Unslice`), so that their derivative is a slice of each part.

use super::Checker;
use super::builtins::normalize_axis;
use crate::diagnostics::{Diagnostic, Span};
use crate::ir::shape::element_count;
use crate::ir::{Dim, Graph, NodeId, Op, Shape};
use crate::syntax::ast::{self, ExprKind};

/// A shape argument: `(a, b, -1)`, or one entry alone. Each entry is a whole number ≥ 1, a
/// dimension name (`n`), or `-1` (`None` here) for the one entry inferred from the others.
pub(super) fn shape_spec(cx: &mut Checker, e: &ast::Expr) -> Option<(Vec<Option<Dim>>, Span)> {
    let items: Vec<&ast::Expr> = match &e.kind {
        ExprKind::Tuple(items) => items.iter().collect(),
        _ => vec![e],
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let entry = match &item.kind {
            ExprKind::Name(n) if cx.syms.iter().any(|s| s == n) => Some(Dim::Sym(cx.sym(n))),
            _ => match super::const_eval(item) {
                Some(-1.0) => None,
                Some(k) if k >= 1.0 && k.fract() == 0.0 && k < 1e15 => Some(Dim::Fixed(k as u64)),
                _ => {
                    cx.error(
                        Diagnostic::error(
                            "a shape entry is a whole number ≥ 1, a dimension name or -1",
                        )
                        .with_label(item.span, "not a dimension"),
                    );
                    return None;
                }
            },
        };
        out.push(entry);
    }
    if out.iter().filter(|d| d.is_none()).count() > 1 {
        cx.error(
            Diagnostic::error("only one entry of a shape can be inferred (-1)")
                .with_label(e.span, "more than one -1"),
        );
        return None;
    }
    Some((out, e.span))
}

/// The shape `x` is reshaped to: the entries given, with a `-1` replaced by what the element
/// count leaves (a fixed size, or one of `x`'s dimension names).
pub(super) fn reshape_target(
    cx: &mut Checker,
    g: &Graph,
    x: NodeId,
    xs: Span,
    entries: &[Option<Dim>],
    span: Span,
) -> Option<Shape> {
    let from = g.shape(x).clone();
    let known: Vec<Dim> = entries.iter().flatten().copied().collect();
    let inferred = entries.iter().position(|d| d.is_none()).map(|at| {
        let (mut syms, fixed) = element_count(&from);
        let (given_syms, given_fixed) = element_count(&Shape(known.clone()));
        for s in given_syms {
            match syms.iter().position(|t| *t == s) {
                Some(i) => {
                    syms.remove(i);
                }
                None => return (at, None),
            }
        }
        let dim = match syms.as_slice() {
            [] if given_fixed > 0 && fixed % given_fixed == 0 => {
                Some(Dim::Fixed((fixed / given_fixed) as u64))
            }
            [s] if given_fixed == fixed => Some(Dim::Sym(*s)),
            _ => None,
        };
        (at, dim)
    });
    let mut dims = known;
    if let Some((at, dim)) = inferred {
        let Some(dim) = dim else {
            cx.error(
                Diagnostic::error(format!(
                    "cannot infer the -1 of this shape: the other entries do not divide the {} elements of the operand",
                    count_text(g, &from)
                ))
                .with_label(span, "shape")
                .with_label(xs, format!("has shape {}", g.shape_text(&from))),
            );
            return None;
        };
        dims.insert(at, dim);
    }
    let to = Shape(dims);
    if !crate::ir::shape::same_element_count(&from, &to) {
        cx.error(
            Diagnostic::error(format!(
                "cannot reshape {} elements into shape {}",
                count_text(g, &from),
                g.shape_text(&to)
            ))
            .with_label(span, format!("{} elements", count_text(g, &to)))
            .with_label(xs, format!("has shape {}", g.shape_text(&from))),
        );
        return None;
    }
    Some(to)
}

/// An element count as a message writes it: `24`, or `12·n` with symbolic dimensions.
fn count_text(g: &Graph, s: &Shape) -> String {
    let (syms, fixed) = element_count(s);
    let mut factors: Vec<String> = Vec::new();
    if fixed != 1 || syms.is_empty() {
        factors.push(fixed.to_string());
    }
    factors.extend(syms.iter().map(|&k| g.syms[k as usize].clone()));
    factors.join("·")
}

/// `concat(arrays, axis)`, or with `stacked` `stack(arrays, axis)` (each array gets a new unit
/// axis first): each part embedded at its offset into zeros of the joined length, summed.
#[allow(clippy::too_many_arguments)]
pub(super) fn join(
    cx: &mut Checker,
    g: &mut Graph,
    name: &str,
    arrays: &[(NodeId, Span)],
    list_span: Span,
    axis: Option<i64>,
    aspan: Span,
    stacked: bool,
    span: Span,
) -> Option<NodeId> {
    let (first, first_span) = arrays[0];
    let mut parts: Vec<(NodeId, Span)> = arrays.to_vec();
    let axis = if stacked {
        // The axis counts in the result, one rank above the parts.
        let rank = g.shape(first).rank() as i64 + 1;
        let a = axis.expect("an axis by default");
        let at = if a < 0 { a + rank } else { a };
        if !(0..rank).contains(&at) {
            cx.error(
                Diagnostic::error(format!("axis {a} is out of range"))
                    .with_label(aspan, format!("the result has rank {rank}"))
                    .with_label(
                        first_span,
                        format!("has shape {}", g.shape_text(g.shape(first))),
                    ),
            );
            return None;
        }
        let reference = g.shape(first).clone();
        if let Some(&(odd, odd_span)) = parts.iter().find(|p| *g.shape(p.0) != reference) {
            cx.error(
                Diagnostic::error(format!("`{name}` needs arrays of one shape"))
                    .with_label(
                        odd_span,
                        format!("has shape {}", g.shape_text(g.shape(odd))),
                    )
                    .with_label(
                        first_span,
                        format!("has shape {}", g.shape_text(&reference)),
                    ),
            );
            return None;
        }
        for p in &mut parts {
            let mut dims = g.shape(p.0).0.clone();
            dims.insert(at as usize, Dim::Fixed(1));
            p.0 = g.build(Op::Reshape(Shape(dims)), &[p.0]);
        }
        at as u32
    } else {
        normalize_axis(cx, g, first, first_span, axis, aspan)?.expect("an axis by default")
    };
    let k = axis as usize;
    let reference = g.shape(parts[0].0).clone();
    let mut total = 0u64;
    for &(p, ps) in &parts {
        let shape = g.shape(p);
        let same_elsewhere = shape.rank() == reference.rank()
            && (0..shape.rank()).all(|i| i == k || shape.0[i] == reference.0[i]);
        if !same_elsewhere {
            cx.error(
                Diagnostic::error(format!(
                    "`{name}` needs arrays whose shapes differ only along axis {axis}"
                ))
                .with_label(ps, format!("has shape {}", g.shape_text(shape)))
                .with_label(
                    parts[0].1,
                    format!("has shape {}", g.shape_text(&reference)),
                ),
            );
            return None;
        }
        match shape.0[k] {
            Dim::Fixed(n) => total += n,
            Dim::Sym(_) => {
                cx.error(
                    Diagnostic::error(format!("`{name}` joins along axes of fixed length only"))
                        .with_label(ps, format!("has shape {}", g.shape_text(shape)))
                        .with_label(list_span, format!("joined along axis {axis}")),
                );
                return None;
            }
        }
    }
    if parts.len() == 1 {
        return Some(parts[0].0);
    }
    let mut sum: Option<NodeId> = None;
    let mut offset = 0u64;
    for &(p, ps) in &parts {
        let Dim::Fixed(n) = g.shape(p).0[k] else {
            unreachable!("checked above")
        };
        let op = Op::Unslice {
            axis,
            start: offset,
            step: 1,
            size: total,
        };
        let placed = cx.node(g, op, &[p], &[ps], name, span)?;
        offset += n;
        sum = Some(match sum {
            None => placed,
            Some(s) => g.build(Op::Add, &[s, placed]),
        });
    }
    sum
}

/// `split(x, parts, axis)`'s slices: `parts` a count of equal parts (`2`), or the parts' sizes
/// (`(2, 3)`), which must fill the axis exactly.
#[allow(clippy::too_many_arguments)]
pub(super) fn split(
    cx: &mut Checker,
    g: &mut Graph,
    func: &ast::Ident,
    x: NodeId,
    xs: Span,
    entries: &[Option<Dim>],
    ps: Span,
    tuple: bool,
    axis: u32,
) -> Option<Vec<NodeId>> {
    let shape = g.shape(x).clone();
    let Dim::Fixed(total) = shape.0[axis as usize] else {
        cx.error(
            Diagnostic::error("`split` divides axes of fixed length only")
                .with_label(xs, format!("has shape {}", g.shape_text(&shape))),
        );
        return None;
    };
    let fixed: Option<Vec<u64>> = entries
        .iter()
        .map(|d| match d {
            Some(Dim::Fixed(k)) => Some(*k),
            _ => None,
        })
        .collect();
    let Some(fixed) = fixed else {
        cx.error(
            Diagnostic::error("the parts of `split` are whole numbers ≥ 1")
                .with_label(ps, "not a count or sizes"),
        );
        return None;
    };
    let sizes = if tuple {
        fixed
    } else {
        let count = fixed[0];
        if total % count != 0 {
            cx.error(
                Diagnostic::error(format!(
                    "`split` cannot divide an axis of length {total} into {count} equal parts"
                ))
                .with_label(ps, format!("{count} parts"))
                .with_label(xs, format!("has shape {}", g.shape_text(&shape)))
                .with_note("give the sizes of the parts instead, as a tuple: `(2, 3)`"),
            );
            return None;
        }
        vec![total / count; count as usize]
    };
    let sum: u64 = sizes.iter().sum();
    if sum != total {
        cx.error(
            Diagnostic::error(format!(
                "the parts of `split` add up to {sum}, but the axis has length {total}"
            ))
            .with_label(ps, format!("{sum} in all"))
            .with_label(xs, format!("has shape {}", g.shape_text(&shape))),
        );
        return None;
    }
    let mut parts = Vec::with_capacity(sizes.len());
    let mut start = 0;
    for len in sizes {
        let op = Op::Slice {
            axis,
            start,
            step: 1,
            len,
        };
        parts.push(cx.node(g, op, &[x], &[xs], &func.name, func.span)?);
        start += len;
    }
    Some(parts)
}

impl Checker {
    /// `let a, b = split(…)`: the parts, one per name.
    pub(super) fn let_parts(
        &mut self,
        g: &mut Graph,
        names: &[ast::Ident],
        value: &ast::Expr,
    ) -> Option<Vec<NodeId>> {
        let ExprKind::Call { func, args } = &value.kind else {
            self.error(
                Diagnostic::error("several names take the parts of a `split`")
                    .with_label(value.span, "not a call of `split`")
                    .with_note("write `let a, b = split(x, 2, axis=1)`"),
            );
            return None;
        };
        if func.name != "split" || self.fns.contains_key(&func.name) {
            self.error(
                Diagnostic::error("several names take the parts of a `split`")
                    .with_label(func.span, "not `split`")
                    .with_note("write `let a, b = split(x, 2, axis=1)`"),
            );
            return None;
        }
        let parts = super::builtins::split(self, g, func, args, value.span)?;
        if parts.len() != names.len() {
            let named = names[0].span.join(names[names.len() - 1].span);
            self.error(
                Diagnostic::error(format!(
                    "`split` gives {} part(s) here, but {} name(s) take them",
                    parts.len(),
                    names.len()
                ))
                .with_label(named, format!("{} name(s)", names.len()))
                .with_label(value.span, format!("{} part(s)", parts.len())),
            );
            return None;
        }
        Some(parts)
    }
}
