//! Front end: source text to syntax tree.
//!
//! Invariant: parsing never fails. It always yields a tree, plus the diagnostics of everything
//! it could not read, so one run reports several syntax errors.

pub mod ast;
pub mod lexer;
pub mod token;

use crate::diagnostics::{Diagnostic, Span};
use lalrpop_util::{ParseError, lalrpop_mod};
use token::{LexErrorKind, Tok};

lalrpop_mod!(
    #[allow(clippy::all, unused_parens, dead_code)]
    grammar,
    "/dsl.rs"
);

/// Parses a whole model file.
pub fn parse(src: &str) -> (ast::Module, Vec<Diagnostic>) {
    let mut lexer = lexer::Lexer::new(src);
    let mut recovered = Vec::new();
    let result = grammar::ModuleParser::new().parse(&mut recovered, &mut lexer);
    let mut diags: Vec<Diagnostic> = lexer.errors.iter().map(|(span, kind)| lex_error(*span, kind)).collect();
    let module = match result {
        Ok(m) => m,
        Err(e) => {
            diags.push(parse_error(e, src.len()));
            ast::Module { items: vec![] }
        }
    };
    for r in recovered {
        // Recovery from the stand-in token of a lexing error was already reported by the lexer.
        if let ParseError::UnrecognizedToken { token: (_, Tok::LexError, _), .. } = &r.error {
            continue;
        }
        diags.push(parse_error(r.error, src.len()));
    }
    diags.sort_by_key(|d| d.primary_span().map(|s| s.start));
    (module, diags)
}

fn lex_error(span: Span, kind: &LexErrorKind) -> Diagnostic {
    match kind {
        LexErrorKind::UnexpectedChar => Diagnostic::error("unexpected character").with_label(span, "not part of the language"),
        LexErrorKind::BadNumber => Diagnostic::error("malformed number").with_label(span, "cannot be read as a number"),
        LexErrorKind::UnterminatedString => Diagnostic::error("unterminated string").with_label(span, "missing closing `\"`"),
    }
}

fn parse_error(e: ParseError<usize, Tok, std::convert::Infallible>, len: usize) -> Diagnostic {
    match e {
        ParseError::InvalidToken { location } => {
            Diagnostic::error("invalid token").with_label(Span::new(location, location + 1), "here")
        }
        ParseError::UnrecognizedEof { location, expected } => Diagnostic::error("unexpected end of file")
            .with_label(Span::new(location.min(len), location.min(len)), format!("expected {}", expected_list(&expected))),
        ParseError::UnrecognizedToken { token: (l, tok, r), expected } => {
            Diagnostic::error(format!("unexpected {tok}"))
                .with_label(Span::new(l, r), format!("expected {}", expected_list(&expected)))
        }
        ParseError::ExtraToken { token: (l, tok, r) } => {
            Diagnostic::error(format!("unexpected {tok}")).with_label(Span::new(l, r), "expected end of file")
        }
        ParseError::User { error } => match error {},
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
