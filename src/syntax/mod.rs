//! Front end: source text to syntax tree.
//!
//! Invariant: parsing never fails. It always yields a tree, plus the diagnostics of everything
//! it could not read, so one run reports several syntax errors.

pub mod ast;
pub mod lexer;
pub mod token;

use crate::diagnostics::{Diagnostic, Span};
use lalrpop_util::{ParseError, lalrpop_mod};
use logos::Logos;
use token::{LexErrorKind, Tok};

lalrpop_mod!(
    #[allow(clippy::all, unused_parens, dead_code)]
    grammar,
    "/dsl.rs"
);

/// Deepest nesting of parentheses and brackets accepted; deeper input is refused before it is
/// parsed, so no later stage recurses without bound.
pub const MAX_NESTING: usize = 256;
/// Deepest expression accepted (a sum of n terms is n deep).
pub const MAX_DEPTH: usize = 20_000;
/// At most this many diagnostics are reported from one file.
pub const MAX_DIAGNOSTICS: usize = 100;

/// A construct that the grammar reads only to say what adjoint writes instead (habits from
/// Python and numpy, a type written twice); each is a syntax error with that hint.
#[derive(Clone, Debug, PartialEq)]
pub enum Habit {
    /// `a ** b`: the span of `**`.
    DoubleStar(Span),
    /// `input y[n]: int from label: int`: the span of the second `: int`.
    TypeTwice(Span),
    /// `x.T`, `x.sum()`: the span of `x`, the member's name, and the number of arguments when
    /// it was called as a method.
    Member {
        base: Span,
        name: ast::Ident,
        args: Option<usize>,
    },
}

/// Parses a whole model file.
pub fn parse(src: &str) -> (ast::Module, Vec<Diagnostic>) {
    if let Some(d) = too_nested(src) {
        return (ast::Module { items: vec![] }, vec![d]);
    }
    let (module, mut diags) = parse_unchecked(src);
    for item in &module.items {
        if let Some(d) = item_too_deep(item) {
            diags.push(d);
            return (ast::Module { items: vec![] }, diags);
        }
    }
    if diags.len() > MAX_DIAGNOSTICS {
        let more = diags.len() - MAX_DIAGNOSTICS;
        diags.truncate(MAX_DIAGNOSTICS);
        diags.push(Diagnostic::error(format!(
            "{more} more syntax errors not shown"
        )));
    }
    (module, diags)
}

fn too_nested(src: &str) -> Option<Diagnostic> {
    let mut depth = 0usize;
    for (tok, span) in Tok::lexer(src).spanned() {
        match tok {
            Ok(Tok::LParen | Tok::LBracket) => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(
                        Diagnostic::error(format!(
                            "brackets nest deeper than {MAX_NESTING} levels"
                        ))
                        .with_label(Span::new(span.start, span.end), "too deep here"),
                    );
                }
            }
            Ok(Tok::RParen | Tok::RBracket) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn item_too_deep(item: &ast::Item) -> Option<Diagnostic> {
    use ast::Item::*;
    let exprs: Vec<&ast::Expr> = match item {
        Let { value, .. }
        | LetParts { value, .. }
        | Loss { value, .. }
        | Metric { value, .. }
        | Output { value, .. } => {
            vec![value]
        }
        Fn { body, .. } => vec![body],
        _ => vec![],
    };
    for e in exprs {
        // Measured with an explicit stack: the point is not to recurse on untrusted depth.
        let mut stack = vec![(e, 1usize)];
        while let Some((e, d)) = stack.pop() {
            if d > MAX_DEPTH {
                return Some(
                    Diagnostic::error(format!("expression deeper than {MAX_DEPTH} levels"))
                        .with_label(e.span, "too deep here"),
                );
            }
            match &e.kind {
                ast::ExprKind::Neg(x) => stack.push((x, d + 1)),
                ast::ExprKind::Binary(_, a, b) => {
                    stack.push((a, d + 1));
                    stack.push((b, d + 1));
                }
                ast::ExprKind::Call { args, .. } => {
                    stack.extend(args.iter().map(|a| (&a.value, d + 1)))
                }
                ast::ExprKind::Index { base, indices } => {
                    stack.push((base, d + 1));
                    stack.extend(indices.iter().flat_map(|i| i.exprs()).map(|i| (i, d + 1)));
                }
                ast::ExprKind::Tuple(items) | ast::ExprKind::List(items) => {
                    stack.extend(items.iter().map(|e| (e, d + 1)))
                }
                _ => {}
            }
        }
    }
    None
}

fn parse_unchecked(src: &str) -> (ast::Module, Vec<Diagnostic>) {
    let mut lexer = lexer::Lexer::new(src);
    let mut recovered = Vec::new();
    let result = grammar::ModuleParser::new().parse(&mut recovered, &mut lexer);
    let mut diags: Vec<Diagnostic> = lexer
        .errors
        .iter()
        .map(|(span, kind)| lex_error(*span, kind))
        .collect();
    let module = match result {
        Ok(m) => m,
        Err(e) => {
            diags.push(parse_error(e, src));
            ast::Module { items: vec![] }
        }
    };
    for r in recovered {
        // Recovery from the stand-in token of a lexing error was already reported by the lexer.
        if let ParseError::UnrecognizedToken {
            token: (_, Tok::LexError, _),
            ..
        } = &r.error
        {
            continue;
        }
        diags.push(parse_error(r.error, src));
    }
    diags.sort_by_key(|d| d.primary_span().map(|s| s.start));
    (module, diags)
}

fn lex_error(span: Span, kind: &LexErrorKind) -> Diagnostic {
    match kind {
        LexErrorKind::UnexpectedChar => {
            Diagnostic::error("unexpected character").with_label(span, "not part of the language")
        }
        LexErrorKind::BadNumber => {
            Diagnostic::error("malformed number").with_label(span, "cannot be read as a number")
        }
        LexErrorKind::UnterminatedString => {
            Diagnostic::error("unterminated string").with_label(span, "missing closing `\"`")
        }
    }
}

fn parse_error(e: ParseError<usize, Tok, Habit>, src: &str) -> Diagnostic {
    let len = src.len();
    match e {
        ParseError::InvalidToken { location } => {
            Diagnostic::error("invalid token").with_label(Span::new(location, location + 1), "here")
        }
        ParseError::UnrecognizedEof { location, expected } => {
            Diagnostic::error("unexpected end of file").with_label(
                Span::new(location.min(len), location.min(len)),
                format!("expected {}", expected_list(&expected)),
            )
        }
        ParseError::UnrecognizedToken {
            token: (l, tok, r),
            expected,
        } => Diagnostic::error(format!("unexpected {tok}")).with_label(
            Span::new(l, r),
            format!("expected {}", expected_list(&expected)),
        ),
        ParseError::ExtraToken { token: (l, tok, r) } => {
            Diagnostic::error(format!("unexpected {tok}"))
                .with_label(Span::new(l, r), "expected end of file")
        }
        ParseError::User { error } => habit_error(error, src),
    }
}

/// True when every `(` in `text` is closed, in order.
fn parens_balance(text: &str) -> bool {
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return false,
            ')' => depth -= 1,
            _ => {}
        }
    }
    depth == 0
}

fn habit_error(habit: Habit, src: &str) -> Diagnostic {
    match habit {
        Habit::DoubleStar(span) => Diagnostic::error("`**` is not an operator")
            .with_label(span, "write `^` for a power")
            .with_note("e.g. `x^2`"),
        Habit::TypeTwice(span) => Diagnostic::error("`: int` is written once")
            .with_label(span, "second `: int`")
            .with_note(
                "either order reads: `input y[n]: int from label` or `input y[n] from label: int`",
            ),
        Habit::Member { base, name, args } => {
            let x = src.get(base.start..base.end).unwrap_or("x");
            // `(a + b).T`: the argument's parentheses are the call's.
            let x = x
                .strip_prefix('(')
                .and_then(|inner| inner.strip_suffix(')'))
                .filter(|inner| parens_balance(inner))
                .unwrap_or(x);
            let span = Span::new(base.start, name.span.end);
            match (name.name.as_str(), args) {
                ("T", None) => Diagnostic::error("no `.T` in adjoint")
                    .with_label(span, format!("write `transpose({x})`")),
                (f, Some(0)) => Diagnostic::error(format!("no method `.{f}()` in adjoint"))
                    .with_label(span, format!("functions take the value first: `{f}({x})`")),
                (f, Some(_)) => Diagnostic::error(format!("no method `.{f}(…)` in adjoint"))
                    .with_label(
                        span,
                        format!("functions take the value first: `{f}({x}, …)`"),
                    ),
                (f, None) => Diagnostic::error(format!("no attribute `.{f}` in adjoint"))
                    .with_label(span, "values have no attributes")
                    .with_note(
                        "shapes are declared: `param W[4, 3]`; functions are called: `f(x)`",
                    ),
            }
        }
    }
}

/// lalrpop lists terminals by their grammar names (`"ident"`, `"("`); say them the way a user reads them.
fn expected_list(expected: &[String]) -> String {
    let mut names: Vec<String> = expected
        .iter()
        .filter(|e| e.as_str() != "\"lexerror\"")
        .map(|e| {
            let bare = e.trim_matches('"');
            match bare {
                "ident" => "a name".to_string(),
                "number" => "a number".to_string(),
                "string" => "a string".to_string(),
                other => format!("`{other}`"),
            }
        })
        .collect();
    names.dedup();
    match names.len() {
        0 => "something else".to_string(),
        1 => names.remove(0),
        _ if names.len() > 8 => format!("one of {} or …", names[..8].join(", ")),
        _ => {
            let last = names.pop().unwrap();
            format!("one of {} or {last}", names.join(", "))
        }
    }
}
