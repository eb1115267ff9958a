//! The syntax tree: what the user wrote, with spans, before any name or shape is resolved.
//!
//! Invariant: the AST holds no shapes, ids or resolved names.

use crate::diagnostics::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    Fixed(u64, Span),
    Named(Ident),
}

impl Dim {
    pub fn span(&self) -> Span {
        match self {
            Dim::Fixed(_, s) => *s,
            Dim::Named(id) => id.span,
        }
    }
}

/// Where an input's columns come from in a CSV file.
#[derive(Clone, Debug, PartialEq)]
pub enum Columns {
    /// `from a, b, c`
    List(Vec<Ident>),
    /// `from p0..p63`: a common prefix and an inclusive numeric range.
    Range { first: Ident, last: Ident },
    /// `from "pixels.npy"`: a whole NumPy array file, relative to the model file.
    File(String, Span),
    /// `from text "corpus.txt" offset 1`: windows of a text's characters as tokens; `kind` is
    /// the word before the file (`text`), `offset` the word after it and its count.
    Text {
        kind: Ident,
        path: String,
        path_span: Span,
        offset: Option<(Ident, f64, Span)>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// `param x = -1.2`
    Value(f64, Span),
    /// `param W[3, 4] ~ normal(0, 0.1)`: a named initializer with its arguments.
    Named { name: Ident, args: Vec<Arg> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub name: Ident,
    pub value: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Input {
        name: Ident,
        shape: Vec<Dim>,
        is_int: bool,
        columns: Option<Columns>,
        span: Span,
    },
    Param {
        name: Ident,
        shape: Vec<Dim>,
        init: Init,
        span: Span,
    },
    Let {
        name: Ident,
        value: Expr,
    },
    /// `let a, b = split(x, 2, axis=1)`: a name for each part of a split.
    LetParts {
        names: Vec<Ident>,
        value: Expr,
    },
    Loss {
        name: Option<Ident>,
        value: Expr,
        span: Span,
    },
    Metric {
        name: Ident,
        value: Expr,
    },
    /// `output probs = softmax(logits)`: a per-row value that `adjoint predict` writes.
    Output {
        name: Ident,
        value: Expr,
    },
    Optimizer {
        name: Ident,
        args: Vec<Arg>,
        span: Span,
    },
    /// `schedule cosine(min = 0, warmup = 100)`
    Schedule {
        name: Ident,
        args: Vec<Arg>,
        span: Span,
    },
    Train {
        settings: Vec<Setting>,
        span: Span,
    },
    Data {
        path: String,
        span: Span,
    },
    Dtype {
        name: Ident,
    },
    /// `fn name(a, b) = expr`: inlined at each call.
    Fn {
        name: Ident,
        params: Vec<Ident>,
        body: Expr,
    },
    /// A statement the parser could not read; its error has been reported.
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    MatMul,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Pow => "^",
            BinOp::MatMul => "@",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Number(f64),
    Name(String),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Call {
        func: Ident,
        args: Vec<Arg>,
    },
    /// `x[:, j]`, `x[1:, None]`, `x[..., ::-1]`: one entry per axis written.
    Index {
        base: Box<Expr>,
        indices: Vec<Index>,
    },
    /// `(0, 2, 1)`, `(a, b, -1)`: a tuple, such as the axes of `transpose` or a shape.
    Tuple(Vec<Expr>),
    /// `"ij,jk->ik"`: a string, such as the spec of `einsum`.
    Str(String),
    /// `[a, b, c]`: the arrays `concat` and `stack` join.
    List(Vec<Expr>),
    Error,
}

/// One entry of an index expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Index {
    /// `start:stop:step`, each bound optional (`:` keeps the whole axis).
    Range {
        start: Option<Expr>,
        stop: Option<Expr>,
        step: Option<Expr>,
        span: Span,
    },
    /// One position (the axis is removed), or `None` (a new axis of length 1).
    At(Expr),
    /// `...`: as many whole axes as the other entries leave.
    Ellipsis(Span),
}

impl Index {
    pub fn span(&self) -> Span {
        match self {
            Index::Range { span, .. } | Index::Ellipsis(span) => *span,
            Index::At(e) => e.span,
        }
    }

    /// The expressions inside the entry.
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        let (a, b, c) = match self {
            Index::Range {
                start, stop, step, ..
            } => (start.as_ref(), stop.as_ref(), step.as_ref()),
            Index::At(e) => (Some(e), None, None),
            Index::Ellipsis(_) => (None, None, None),
        };
        a.into_iter().chain(b).chain(c)
    }
}

impl std::fmt::Display for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Index::Range {
                start, stop, step, ..
            } => {
                if let Some(e) = start {
                    write!(f, "{e}")?;
                }
                f.write_str(":")?;
                if let Some(e) = stop {
                    write!(f, "{e}")?;
                }
                if let Some(e) = step {
                    write!(f, ":{e}")?;
                }
                Ok(())
            }
            Index::At(e) => write!(f, "{e}"),
            Index::Ellipsis(_) => f.write_str("..."),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

impl Expr {
    pub fn new(kind: ExprKind, start: usize, end: usize) -> Expr {
        Expr {
            kind,
            span: Span::new(start, end),
        }
    }
}

/// Fully parenthesised form, the readable oracle for precedence in tests.
impl std::fmt::Display for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            ExprKind::Number(n) => write!(f, "{n}"),
            ExprKind::Name(n) => f.write_str(n),
            ExprKind::Neg(e) => write!(f, "(-{e})"),
            ExprKind::Binary(op, l, r) => write!(f, "({l} {} {r})", op.symbol()),
            ExprKind::Call { func, args } => {
                write!(f, "{}(", func.name)?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    if let Some(n) = &a.name {
                        write!(f, "{}=", n.name)?;
                    }
                    write!(f, "{}", a.value)?;
                }
                f.write_str(")")
            }
            ExprKind::Index { base, indices } => {
                write!(f, "{base}[")?;
                for (i, ix) in indices.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{ix}")?;
                }
                f.write_str("]")
            }
            ExprKind::Tuple(items) | ExprKind::List(items) => {
                let (open, close) = match &self.kind {
                    ExprKind::Tuple(_) => ("(", ")"),
                    _ => ("[", "]"),
                };
                f.write_str(open)?;
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{e}")?;
                }
                if items.len() == 1 && open == "(" {
                    f.write_str(",")?;
                }
                f.write_str(close)
            }
            ExprKind::Str(text) => write!(f, "\"{text}\""),
            ExprKind::Error => f.write_str("<error>"),
        }
    }
}
