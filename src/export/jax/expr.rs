//! Python expressions with their precedence, so that generated code has the parentheses it needs
//! and no more.

/// Python's binding strengths, loosest first, for parenthesizing inlined expressions.
pub(super) const CMP: u8 = 1;

pub(super) const ADD: u8 = 2;

pub(super) const MUL: u8 = 3;

pub(super) const UNARY: u8 = 4;

pub(super) const POW: u8 = 5;

pub(super) const ATOM: u8 = 6;

/// A Python expression and how tightly it binds.
#[derive(Clone, Debug)]
pub(super) struct Expr {
    pub(super) text: String,
    pub(super) prec: u8,
}

pub(super) fn atom(text: impl Into<String>) -> Expr {
    Expr {
        text: text.into(),
        prec: ATOM,
    }
}

impl Expr {
    /// The text, parenthesized unless it binds at least as tightly as `prec`.
    pub(super) fn at(&self, prec: u8) -> String {
        if self.prec >= prec {
            self.text.clone()
        } else {
            format!("({})", self.text)
        }
    }
}

/// `a op b` for a left-associative operator of strength `prec`: the right operand is
/// parenthesized at equal strength, so floating-point evaluation order is the graph's.
pub(super) fn infix(a: &Expr, op: &str, b: &Expr, prec: u8) -> Expr {
    Expr {
        text: format!("{} {op} {}", a.at(prec), b.at(prec + 1)),
        prec,
    }
}

pub(super) fn call(f: &str, args: &[String]) -> Expr {
    atom(format!("{f}({})", args.join(", ")))
}

/// A float literal that reads back as the same f64.
pub(super) fn literal(v: f64) -> Expr {
    if v.is_nan() {
        atom("jnp.nan")
    } else if v == f64::INFINITY {
        atom("jnp.inf")
    } else if v == f64::NEG_INFINITY {
        Expr {
            text: "-jnp.inf".into(),
            prec: UNARY,
        }
    } else {
        let text = format!("{v:?}");
        let prec = if text.starts_with('-') { UNARY } else { ATOM };
        Expr { text, prec }
    }
}

pub(super) fn axis_arg(axis: Option<u32>) -> String {
    match axis {
        Some(a) => format!("axis={a}"),
        None => "axis=None".into(),
    }
}

pub(super) fn tuple(items: &[String]) -> String {
    match items {
        [one] => format!("({one},)"),
        _ => format!("({})", items.join(", ")),
    }
}
