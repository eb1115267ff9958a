//! Array literals (`[[1, 2], [3, 4]]`) and the constant scalars they are made of.
//!
//! Invariant: a literal's elements are constants known while checking, its axes are all of one
//! length (no ragged rows), and it holds at most `MAX_LITERAL_ELEMENTS` numbers: constant data
//! written in a model, not a data set.

use super::Checker;
use crate::diagnostics::Diagnostic;
use crate::ir::{Dim, Graph, LiteralData, NodeId, Op, Shape, interp};
use crate::syntax::ast::{self, ExprKind};

const MAX_LITERAL_ELEMENTS: usize = LiteralData::MAX_ELEMENTS;

/// A constant array, flattened while its nesting is checked.
struct Flat {
    dims: Vec<u64>,
    values: Vec<f64>,
}

pub(super) fn array(cx: &mut Checker, g: &mut Graph, e: &ast::Expr) -> Option<NodeId> {
    let flat = flatten(cx, g, e)?;
    let shape = Shape::fixed(&flat.dims);
    Some(g.build(
        Op::Literal(Box::new(LiteralData::new(shape, &flat.values))),
        &[],
    ))
}

fn flatten(cx: &mut Checker, g: &mut Graph, e: &ast::Expr) -> Option<Flat> {
    let ExprKind::List(elements) = &e.kind else {
        return element(cx, g, e);
    };
    if elements.is_empty() {
        cx.error(
            Diagnostic::error("an array literal needs at least one element")
                .with_label(e.span, "empty"),
        );
        return None;
    }
    let mut inner: Option<Vec<u64>> = None;
    let mut values = Vec::new();
    for el in elements {
        // One error for the literal: the elements after a bad one are usually bad alike.
        let f = flatten(cx, g, el)?;
        match &inner {
            Some(dims) if *dims != f.dims => {
                cx.error(
                    Diagnostic::error("the elements of an array literal differ in shape")
                        .with_label(el.span, format!("has shape {}", dims_text(&f.dims)))
                        .with_label(elements[0].span, format!("has shape {}", dims_text(dims)))
                        .with_note("every row of an array literal has the same length"),
                );
                return None;
            }
            Some(_) => {}
            None => inner = Some(f.dims.clone()),
        }
        values.extend(f.values);
        if values.len() > MAX_LITERAL_ELEMENTS {
            cx.error(
                Diagnostic::error(format!(
                    "an array literal holds at most {MAX_LITERAL_ELEMENTS} numbers"
                ))
                .with_label(e.span, "too large")
                .with_note("read larger constant data from a file, as an input"),
            );
            return None;
        }
    }
    let mut dims = vec![elements.len() as u64];
    dims.extend(inner.unwrap_or_default());
    Some(Flat { dims, values })
}

/// One element: a constant number, or a constant array (a name bound to a literal).
fn element(cx: &mut Checker, g: &mut Graph, e: &ast::Expr) -> Option<Flat> {
    // A number written as such is its value: no graph node is made for it (a rerolled sum's
    // array holds thousands, `check::reroll`).
    if let ExprKind::Number(v) = e.kind
        && v.is_finite()
    {
        return Some(Flat {
            dims: vec![],
            values: vec![v],
        });
    }
    let id = cx.expr(g, e)?;
    if let Op::Literal(data) = g.op(id) {
        let dims = data
            .shape
            .0
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n,
                Dim::Sym(_) => unreachable!("a literal's shape is fixed"),
            })
            .collect();
        return Some(Flat {
            dims,
            values: data.values().collect(),
        });
    }
    match constant_value(g, id) {
        Some(v) if v.is_nan() => {
            cx.error(
                Diagnostic::error("an array literal's element is not a number")
                    .with_label(e.span, "evaluates to NaN"),
            );
            None
        }
        Some(v) => Some(Flat {
            dims: vec![],
            values: vec![v],
        }),
        None => {
            cx.error(
                Diagnostic::error("the elements of an array literal must be constants")
                    .with_label(e.span, "not a constant")
                    .with_note("numbers, `pi`, `e`, `inf` and arithmetic on them")
                    .with_note("arrays are joined by `concat([a, b])` or `stack([a, b])`"),
            );
            None
        }
    }
}

/// The value of a scalar node computed from constants alone (`-inf`, `2 * pi`), as the
/// reference interpreter computes it.
pub(super) fn constant_value(g: &Graph, id: NodeId) -> Option<f64> {
    let node = g.node(id);
    if let Some(v) = node.op.const_value() {
        return Some(v);
    }
    if !node.op.is_elementwise() || !node.shape.is_scalar() {
        return None;
    }
    let args: Vec<f64> = node
        .inputs
        .iter()
        .map(|&a| constant_value(g, a))
        .collect::<Option<_>>()?;
    Some(match args.as_slice() {
        [x] => interp::unary(&node.op, *x),
        [a, b] => interp::binary(&node.op, *a, *b),
        [c, a, b] => {
            if *c != 0.0 {
                *a
            } else {
                *b
            }
        }
        _ => return None,
    })
}

fn dims_text(dims: &[u64]) -> String {
    let inner: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", inner.join(", "))
}
