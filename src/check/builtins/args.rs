//! A builtin's arguments: bound by position and by name to the kinds its table row declares,
//! and read as arrays, numbers, axes, lengths and shapes.

use super::*;

#[derive(Clone)]
pub(super) enum Value {
    Array(NodeId, Span),
    Num(f64),
    Axis(Option<i64>, Span),
    Flag(bool),
    /// Each entry of a shape: a dimension, or `None` for the one inferred (`-1`); whether it
    /// was written as a tuple.
    Shape(Vec<Option<Dim>>, Span, bool),
    Arrays(Vec<(NodeId, Span)>, Span),
    /// Each axis with its place in the source, and the place of the whole tuple; `None` when
    /// not given.
    Axes(Option<(Vec<(i64, Span)>, Span)>),
    /// A string and its place in the source, quotes included.
    Spec(String, Span),
    /// An optional argument left out.
    Absent,
    Length(Option<(Length, Span)>),
    Dims(Vec<Dim>),
    Sizes(conv::Sizes),
    Padding(conv::Padding),
}

/// A length argument: a whole number (any sign; each function checks its range) or a
/// symbolic dimension.
#[derive(Clone, Copy)]
pub(super) enum Length {
    Whole(i64),
    Sym(u32),
}

impl Value {
    pub(super) fn array(&self) -> (NodeId, Span) {
        match self {
            Value::Array(id, s) => (*id, *s),
            _ => unreachable!(),
        }
    }
    pub(super) fn num(&self) -> f64 {
        match self {
            Value::Num(v) => *v,
            _ => unreachable!(),
        }
    }
    pub(super) fn sizes(&self) -> &conv::Sizes {
        match self {
            Value::Sizes(s) => s,
            _ => unreachable!(),
        }
    }
    pub(super) fn padding(&self) -> &conv::Padding {
        match self {
            Value::Padding(p) => p,
            _ => unreachable!(),
        }
    }
    pub(super) fn axis(&self) -> (Option<i64>, Span) {
        match self {
            Value::Axis(a, s) => (*a, *s),
            _ => unreachable!(),
        }
    }
}

/// The longest axis a length argument makes (`arange(n)`, `ones([n, 3])`).
pub(super) const MAX_LENGTH: f64 = 1e9;

/// The most elements a shape argument (`ones([a, b])`) makes, besides its dimensions.
pub(super) const MAX_SHAPE_ELEMENTS: f64 = 2147483648.0;

/// A length argument: the name of a symbolic dimension, or a constant whole number.
pub(super) fn length(cx: &mut Checker, g: &mut Graph, e: &ast::Expr) -> Option<Length> {
    if let ast::ExprKind::Name(n) = &e.kind
        && let Some(sym) = cx.dim_symbol(n)
    {
        return Some(Length::Sym(sym));
    }
    let id = cx.expr(g, e)?;
    match crate::check::literal::constant_value(g, id) {
        Some(v) if v.fract() == 0.0 && v.abs() <= MAX_LENGTH => Some(Length::Whole(v as i64)),
        _ => {
            cx.error(
                Diagnostic::error("a length must be a whole number or a dimension's name")
                    .with_label(e.span, "not a whole number")
                    .with_note(format!(
                        "a constant such as `8` or `T` (`let T = 8`), at most {MAX_LENGTH:e}, or a dimension such as `n`"
                    )),
            );
            None
        }
    }
}

/// A length that is an axis: at least 1.
pub(super) fn axis_length(cx: &mut Checker, l: Length, span: Span) -> Option<Dim> {
    match l {
        Length::Sym(s) => Some(Dim::Sym(s)),
        Length::Whole(n) if n >= 1 => Some(Dim::Fixed(n as u64)),
        Length::Whole(n) => {
            cx.error(
                Diagnostic::error(format!("an axis needs a length of at least 1, found {n}"))
                    .with_label(span, "here"),
            );
            None
        }
    }
}

/// A shape argument: one length, or an array literal of lengths (`[n, 3]`).
pub(super) fn dims(cx: &mut Checker, g: &mut Graph, e: &ast::Expr) -> Option<Vec<Dim>> {
    let parts: Vec<&ast::Expr> = match &e.kind {
        ast::ExprKind::List(elements) => elements.iter().collect(),
        _ => vec![e],
    };
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let l = length(cx, g, p)?;
        out.push(axis_length(cx, l, p.span)?);
    }
    // A constant costs no memory, but every loop over it visits each element.
    let fixed: f64 = out
        .iter()
        .map(|d| match d {
            Dim::Fixed(k) => *k as f64,
            Dim::Sym(_) => 1.0,
        })
        .product();
    if fixed > MAX_SHAPE_ELEMENTS {
        cx.error(
            Diagnostic::error(format!(
                "a shape holds at most 2^31 elements, found {fixed:e}"
            ))
            .with_label(e.span, "too large"),
        );
        return None;
    }
    Some(out)
}

pub(in crate::check) fn normalize_axis(
    cx: &mut Checker,
    g: &Graph,
    x: NodeId,
    xs: Span,
    axis: Option<i64>,
    aspan: Span,
) -> Option<Option<u32>> {
    let Some(a) = axis else { return Some(None) };
    let rank = g.shape(x).rank() as i64;
    let a2 = if a < 0 { a + rank } else { a };
    if a2 < 0 || a2 >= rank {
        cx.error(
            Diagnostic::error(format!("axis {a} is out of range"))
                .with_label(aspan, format!("the operand has rank {rank}"))
                .with_label(xs, format!("has shape {}", g.shape_text(g.shape(x)))),
        );
        return None;
    }
    Some(Some(a2 as u32))
}

/// A tuple or list of whole numbers (or one whole number), each with its place in the source.
pub(super) fn axes_tuple(cx: &mut Checker, e: &ast::Expr) -> Option<(Vec<(i64, Span)>, Span)> {
    let items = match &e.kind {
        ast::ExprKind::Tuple(items) | ast::ExprKind::List(items) => items.as_slice(),
        _ => std::slice::from_ref(e),
    };
    let mut axes = Vec::with_capacity(items.len());
    for item in items {
        match crate::check::const_eval(item) {
            Some(v) if v.fract() == 0.0 && v.abs() < 1e6 => axes.push((v as i64, item.span)),
            _ => {
                cx.error(
                    Diagnostic::error("an axis must be a whole number")
                        .with_label(item.span, "not an axis")
                        .with_note("axes are written as a tuple: `transpose(x, (0, 2, 1))`"),
                );
                return None;
            }
        }
    }
    Some((axes, e.span))
}

/// Matches arguments (positional, then by name) to a signature and evaluates them.
pub(super) fn bind(
    cx: &mut Checker,
    g: &mut Graph,
    name: &str,
    sig: &[(&str, Kind)],
    args: &[ast::Arg],
    span: Span,
) -> Option<Vec<Value>> {
    let mut slots: Vec<Option<&ast::Arg>> = vec![None; sig.len()];
    let mut next = 0;
    for a in args {
        let i = match &a.name {
            Some(n) => match sig.iter().position(|p| p.0 == n.name) {
                Some(i) => i,
                None => {
                    let known: Vec<_> = sig.iter().map(|p| format!("`{}`", p.0)).collect();
                    cx.error(
                        Diagnostic::error(format!("`{name}` has no argument `{}`", n.name))
                            .with_label(n.span, "unknown argument")
                            .with_note(format!("`{name}` takes {}", known.join(", "))),
                    );
                    return None;
                }
            },
            None => {
                if next >= sig.len() {
                    cx.error(
                        Diagnostic::error(format!(
                            "`{name}` takes at most {} argument(s)",
                            sig.len()
                        ))
                        .with_label(a.value.span, "extra argument"),
                    );
                    return None;
                }
                next += 1;
                next - 1
            }
        };
        if slots[i].is_some() {
            cx.error(
                Diagnostic::error(format!("argument `{}` given twice", sig[i].0))
                    .with_label(a.value.span, "again here"),
            );
            return None;
        }
        slots[i] = Some(a);
    }
    let mut values = Vec::with_capacity(sig.len());
    let mut ok = true;
    for ((pname, kind), slot) in sig.iter().zip(slots) {
        let value = match (kind, slot) {
            (Array, Some(a)) => cx
                .expr(g, &a.value)
                .map(|id| Value::Array(id, a.value.span)),
            (Num(_), Some(a)) => cx.const_value(&a.value).map(Value::Num),
            (Num(Some(d)), None) => Some(Value::Num(*d)),
            (Axis(_) | AxisRequired, Some(a)) => match crate::check::const_eval(&a.value) {
                Some(v) if v.fract() == 0.0 && v.abs() < 1e6 => {
                    Some(Value::Axis(Some(v as i64), a.value.span))
                }
                _ => {
                    cx.error(
                        Diagnostic::error("an axis must be a whole number")
                            .with_label(a.value.span, "not an axis"),
                    );
                    None
                }
            },
            (Axis(d), None) => Some(Value::Axis(*d, span)),
            (Flag, Some(a)) => match &a.value.kind {
                ast::ExprKind::Name(n) if n == "true" || n == "false" => {
                    Some(Value::Flag(n == "true"))
                }
                _ => match crate::check::const_eval(&a.value) {
                    Some(v) if v == 0.0 || v == 1.0 => Some(Value::Flag(v == 1.0)),
                    _ => {
                        let mut d =
                            Diagnostic::error(format!("`{pname}` must be `true` or `false`"))
                                .with_label(a.value.span, "here");
                        if let ast::ExprKind::Name(n) = &a.value.kind {
                            d.notes.extend(crate::check::python_literal_note(n));
                        }
                        cx.error(d);
                        None
                    }
                },
            },
            (Flag, None) => Some(Value::Flag(false)),
            (ShapeSpec, Some(a)) => {
                let tuple = matches!(a.value.kind, ast::ExprKind::Tuple(_));
                shaping::shape_spec(cx, &a.value).map(|(d, s)| Value::Shape(d, s, tuple))
            }
            (Arrays, Some(a)) => match &a.value.kind {
                ast::ExprKind::List(items) if !items.is_empty() => {
                    let ids: Vec<Option<(NodeId, Span)>> = items
                        .iter()
                        .map(|e| cx.expr(g, e).map(|id| (id, e.span)))
                        .collect();
                    ids.into_iter()
                        .collect::<Option<Vec<_>>>()
                        .map(|ids| Value::Arrays(ids, a.value.span))
                }
                _ => {
                    cx.error(
                        Diagnostic::error(format!("`{name}` takes a list of arrays, `[a, b]`"))
                            .with_label(a.value.span, "not a list of arrays"),
                    );
                    None
                }
            },
            (Axes, Some(a)) => axes_tuple(cx, &a.value).map(|t| Value::Axes(Some(t))),
            (Axes, None) => Some(Value::Axes(None)),
            (Spec, Some(a)) => match &a.value.kind {
                ast::ExprKind::Str(text) => Some(Value::Spec(text.clone(), a.value.span)),
                _ => {
                    cx.error(
                        Diagnostic::error(format!("`{pname}` must be a string"))
                            .with_label(a.value.span, "not a string")
                            .with_note(format!("for example `{name}(\"ij,jk->ik\", a, b)`")),
                    );
                    None
                }
            },
            (OptionalArray, Some(a)) => cx
                .expr(g, &a.value)
                .map(|id| Value::Array(id, a.value.span)),
            (OptionalArray, None) => Some(Value::Absent),
            (Length(_), Some(a)) => {
                length(cx, g, &a.value).map(|l| Value::Length(Some((l, a.value.span))))
            }
            (Length(false), None) => Some(Value::Length(None)),
            (Dims, Some(a)) => dims(cx, g, &a.value).map(Value::Dims),
            (Sizes(_) | OptionalSizes, Some(a)) => {
                conv::sizes(cx, &a.value, pname).map(Value::Sizes)
            }
            (Sizes(Some(d)), None) => Some(Value::Sizes(conv::Sizes {
                values: vec![*d],
                span,
            })),
            (OptionalSizes, None) => Some(Value::Absent),
            (Padding, Some(a)) => conv::padding(cx, &a.value).map(Value::Padding),
            (Padding, None) => Some(Value::Padding(conv::Padding::Valid)),
            (
                Array | Num(None) | AxisRequired | ShapeSpec | Arrays | Length(true) | Dims | Spec
                | Sizes(None),
                None,
            ) => {
                cx.error(
                    Diagnostic::error(format!("`{name}` needs an argument `{pname}`"))
                        .with_label(span, "missing argument"),
                );
                None
            }
        };
        match value {
            Some(v) => values.push(v),
            None => ok = false,
        }
    }
    ok.then_some(values)
}
