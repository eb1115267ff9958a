//! Long sums of like terms, rerolled: `(x - 0)^2 + (x - 1)^2 + … + (x - 999)^2` is checked as
//! `sum((x - [0, 1, …, 999])^2, 0)`, one term over an array literal of the numbers that differ
//! from term to term.
//!
//! Why: source written out term by term, as generated source often is, would otherwise give
//! about ten graph nodes per term in every stage (simplify, differentiate, lower, Cranelift): a
//! sum of 10⁵ terms took seconds to compile, where the same sum over an array takes
//! milliseconds.
//!
//! When: a chain of `+` (`a + b + c` parses as `(a + b) + c`) of at least [`MIN_RUN`] terms,
//! in which at least [`MIN_RUN`] consecutive terms are alike: the same tree of names, numbers,
//! `+ - * / ^`, negation and one-argument elementwise built-ins (`exp`, `tanh`, …), differing
//! only in their numbers. Every one of those operations is elementwise, so a term over an
//! array whose first axis runs over the terms (`[…][:, None, …]` for terms of higher rank)
//! holds each term in one row, and the sum over that axis is their sum. The other terms of the
//! chain, and the runs themselves, are added in the order written.
//!
//! What it changes: the order in which a run's terms are added, which is `sum`'s (in vector
//! lanes where the loop runs in vectors), not left to right. In real arithmetic the value is the
//! same; in floating point the two differ by rounding, at most about (k − 1)·u·Σ|tᵢ| for k terms
//! and unit roundoff u, as any two orders of a sum do. Nothing else about the model changes: its
//! parameters, its loss's definition and its derivative are those written.

use crate::diagnostics::Span;
use crate::syntax::ast::{Arg, BinOp, Expr, ExprKind, Ident, Index};

/// The fewest like terms in a row that are rerolled: below this a sum costs little to compile
/// term by term, and a model's own few similar terms (a mixture's components) keep their form.
pub const MIN_RUN: usize = 64;

/// The most terms one run holds: its array is a literal, of at most
/// `LiteralData::MAX_ELEMENTS` numbers. A longer run is cut into runs of this length.
pub const MAX_RUN: usize = crate::ir::LiteralData::MAX_ELEMENTS;

/// Whether `e` is a chain of `+` with at least [`MIN_RUN`] terms (looking no further down its
/// left spine than that, so that a short chain costs nothing to test).
pub(super) fn is_long_chain(e: &Expr) -> bool {
    let mut terms = 1;
    let mut at = e;
    while let ExprKind::Binary(BinOp::Add, left, _) = &at.kind {
        terms += 1;
        if terms >= MIN_RUN {
            return true;
        }
        at = left;
    }
    false
}

/// The terms of a chain of `+`, first to last.
pub(super) fn terms(e: &Expr) -> Vec<&Expr> {
    let mut out = Vec::new();
    let mut at = e;
    while let ExprKind::Binary(BinOp::Add, left, right) = &at.kind {
        out.push(&**right);
        at = left;
    }
    out.push(at);
    out.reverse();
    out
}

/// The chain's terms cut into pieces added one after another: runs of [`MIN_RUN`] to
/// [`MAX_RUN`] like terms (the same `key`) whose numbers differ somewhere, and single terms. (Terms that
/// are all the same term stay single: k·t is not their sum in floating point, and there is no
/// axis to sum over.)
pub(super) fn pieces(terms: &[&Expr], keys: &[Option<String>]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < keys.len() {
        let same = |k: &Option<String>| k.is_some() && *k == keys[start];
        let alike = keys[start..].iter().take_while(|k| same(k)).count();
        let end = start + alike.clamp(1, MAX_RUN);
        if end - start >= MIN_RUN && numbers_differ(&terms[start..end]) {
            out.push(start..end);
        } else {
            out.extend((start..end).map(|i| i..i + 1));
        }
        start = end;
    }
    out
}

/// Whether some number of a run of like terms differs from the first term's.
fn numbers_differ(run: &[&Expr]) -> bool {
    let bits = |t: &Expr| -> Vec<u64> { numbers_of(t).iter().map(|n| n.0.to_bits()).collect() };
    let first = bits(run[0]);
    run[1..].iter().any(|t| bits(t) != first)
}

/// A term's numbers with their places, in the order `with_numbers` replaces them.
fn numbers_of(e: &Expr) -> Vec<(f64, Span)> {
    let mut out = Vec::new();
    numbers(e, &mut out);
    out
}

/// A term's form with its numbers left out: alike terms have equal keys. `None` for a term
/// with anything but names, finite numbers, `+ - * / ^`, negation and calls of one-argument
/// elementwise built-ins (`elementwise` says which names are those).
pub(super) fn key(e: &Expr, elementwise: &dyn Fn(&str) -> bool) -> Option<String> {
    let mut out = String::new();
    write_key(e, elementwise, &mut out).then_some(out)
}

fn write_key(e: &Expr, elementwise: &dyn Fn(&str) -> bool, out: &mut String) -> bool {
    match &e.kind {
        ExprKind::Number(v) => {
            out.push('#');
            v.is_finite()
        }
        ExprKind::Name(name) => {
            out.push_str(name);
            true
        }
        ExprKind::Neg(x) => {
            out.push_str("-(");
            let ok = write_key(x, elementwise, out);
            out.push(')');
            ok
        }
        ExprKind::Binary(op, a, b) => {
            let arithmetic = matches!(
                op,
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Pow
            );
            out.push('(');
            let ok = arithmetic && write_key(a, elementwise, out);
            out.push_str(op.symbol());
            let ok = ok && write_key(b, elementwise, out);
            out.push(')');
            ok
        }
        ExprKind::Call { func, args } => {
            let [Arg { name: None, value }] = args.as_slice() else {
                return false;
            };
            out.push_str(&func.name);
            out.push('(');
            let ok = elementwise(&func.name) && write_key(value, elementwise, out);
            out.push(')');
            ok
        }
        ExprKind::Index { .. }
        | ExprKind::Tuple(_)
        | ExprKind::Str(_)
        | ExprKind::List(_)
        | ExprKind::Error => false,
    }
}

/// Appends the numbers of a term with a key to `out` (see `numbers_of`).
fn numbers(e: &Expr, out: &mut Vec<(f64, Span)>) {
    match &e.kind {
        ExprKind::Number(v) => out.push((*v, e.span)),
        ExprKind::Neg(x) => numbers(x, out),
        ExprKind::Binary(_, a, b) => {
            numbers(a, out);
            numbers(b, out);
        }
        ExprKind::Call { args, .. } => args.iter().for_each(|a| numbers(&a.value, out)),
        ExprKind::Name(_)
        | ExprKind::Index { .. }
        | ExprKind::Tuple(_)
        | ExprKind::Str(_)
        | ExprKind::List(_)
        | ExprKind::Error => {}
    }
}

/// A copy of `e` with its k-th number replaced by `arrays[k]` where that is `Some`.
fn with_numbers(e: &Expr, arrays: &[Option<Expr>], next: &mut usize) -> Expr {
    let kind = match &e.kind {
        ExprKind::Number(_) => {
            let k = *next;
            *next += 1;
            match &arrays[k] {
                Some(array) => return array.clone(),
                None => e.kind.clone(),
            }
        }
        ExprKind::Neg(x) => ExprKind::Neg(Box::new(with_numbers(x, arrays, next))),
        ExprKind::Binary(op, a, b) => {
            let a = with_numbers(a, arrays, next);
            ExprKind::Binary(*op, Box::new(a), Box::new(with_numbers(b, arrays, next)))
        }
        ExprKind::Call { func, args } => ExprKind::Call {
            func: func.clone(),
            args: args
                .iter()
                .map(|a| Arg {
                    name: a.name.clone(),
                    value: with_numbers(&a.value, arrays, next),
                })
                .collect(),
        },
        other => other.clone(),
    };
    Expr { kind, span: e.span }
}

/// The span from the first term's start to the last's end.
pub(super) fn span_of(terms: &[&Expr]) -> Span {
    Span::new(terms[0].span.start, terms[terms.len() - 1].span.end)
}

/// The rerolled form of a run of like terms whose values have rank `rank`: `sum(t, 0)`, where
/// `t` is the first term with each number that differs along the run replaced by the array of
/// the run's numbers in that place, given as many new axes as the terms have.
pub(super) fn rerolled(run: &[&Expr], rank: usize) -> Expr {
    let span = span_of(run);
    let columns: Vec<Vec<(f64, Span)>> = run.iter().map(|t| numbers_of(t)).collect();
    let arrays: Vec<Option<Expr>> = (0..columns[0].len())
        .map(|k| {
            let first = columns[0][k].0.to_bits();
            if columns.iter().all(|c| c[k].0.to_bits() == first) {
                return None;
            }
            let elements = columns
                .iter()
                .map(|c| Expr {
                    kind: ExprKind::Number(c[k].0),
                    span: c[k].1,
                })
                .collect();
            Some(with_new_axes(
                Expr {
                    kind: ExprKind::List(elements),
                    span,
                },
                rank,
            ))
        })
        .collect();
    let term = with_numbers(run[0], &arrays, &mut 0);
    let axis = Expr {
        kind: ExprKind::Number(0.0),
        span,
    };
    Expr {
        kind: ExprKind::Call {
            func: Ident {
                name: "sum".into(),
                span,
            },
            args: vec![
                Arg {
                    name: None,
                    value: term,
                },
                Arg {
                    name: None,
                    value: axis,
                },
            ],
        },
        span,
    }
}

/// `array[:, None, …]` with `rank` new axes after its first (none for scalar terms).
fn with_new_axes(array: Expr, rank: usize) -> Expr {
    if rank == 0 {
        return array;
    }
    let span = array.span;
    let none = || {
        Index::At(Expr {
            kind: ExprKind::Name("None".into()),
            span,
        })
    };
    let whole = Index::Range {
        start: None,
        stop: None,
        step: None,
        span,
    };
    Expr {
        kind: ExprKind::Index {
            base: Box::new(array),
            indices: std::iter::once(whole)
                .chain(std::iter::repeat_with(none).take(rank))
                .collect(),
        },
        span,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_expr(src: &str) -> Expr {
        let (module, errors) = crate::syntax::parse(&format!("loss {src}\n"));
        assert!(errors.is_empty(), "{src} parses");
        match &module.items[0] {
            crate::syntax::ast::Item::Loss { value, .. } => value.clone(),
            other => panic!("not a loss: {other:?}"),
        }
    }

    fn unary(name: &str) -> bool {
        name == "exp"
    }

    #[test]
    fn like_terms_have_equal_keys_and_others_do_not() {
        let k = |s: &str| key(&parse_expr(s), &unary);
        assert_eq!(k("(x - 1)^2"), k("(x - 7.5)^2"));
        assert_ne!(k("(x - 1)^2"), k("(y - 1)^2"));
        assert_ne!(k("(x - 1)^2"), k("(x + 1)^2"));
        assert_eq!(k("exp(-x * 2)"), k("exp(-x * 3)"));
        assert_eq!(k("tanh(x)"), None, "not elementwise by `unary`");
        assert_eq!(k("W @ x"), None);
        assert_eq!(k("x[0]"), None);
    }

    /// A run of `MIN_RUN` like terms is one piece; a shorter run, an unlike term, terms
    /// without a key and a run of one term repeated are single pieces.
    #[test]
    fn runs_shorter_than_the_minimum_or_of_one_term_stay_single_terms() {
        let like = |i: usize| parse_expr(&format!("(x - {i})^2"));
        let mut written: Vec<Expr> = (0..MIN_RUN).map(like).collect();
        written.push(parse_expr("(y - 1)^2"));
        written.extend((0..MIN_RUN - 1).map(like));
        written.push(parse_expr("W @ x"));
        written.extend(std::iter::repeat_n(parse_expr("(x - 3)^2"), MIN_RUN));
        let terms: Vec<&Expr> = written.iter().collect();
        let keys: Vec<Option<String>> = terms.iter().map(|t| key(t, &unary)).collect();
        let pieces = pieces(&terms, &keys);
        assert_eq!(pieces[0], 0..MIN_RUN);
        assert!(pieces[1..].iter().all(|p| p.len() == 1));
        assert_eq!(pieces.len(), 1 + 1 + (MIN_RUN - 1) + 1 + MIN_RUN);
    }

    #[test]
    fn the_chain_is_its_terms_in_order() {
        let e = parse_expr("a + (b + c) + d * 2");
        let t: Vec<String> = terms(&e).iter().map(|t| t.to_string()).collect();
        assert_eq!(t, ["a", "(b + c)", "(d * 2)"]);
    }

    #[test]
    fn a_rerolled_run_sums_the_varying_numbers_over_a_new_first_axis() {
        let run = [parse_expr("(x - 1)^2"), parse_expr("(x - 2)^2")];
        let run: Vec<&Expr> = run.iter().collect();
        assert_eq!(rerolled(&run, 0).to_string(), "sum(((x - [1, 2]) ^ 2), 0)");
        assert_eq!(
            rerolled(&run, 2).to_string(),
            "sum(((x - [1, 2][:, None, None]) ^ 2), 0)"
        );
    }
}
