//! Adapter from logos' `(token, span)` pairs to the `(start, token, end)` triples lalrpop reads.
//!
//! Invariant: spans are byte offsets into the source. A lexing error never ends the parse: it is
//! recorded on the side and replaced by `Tok::LexError`, from which the grammar recovers.

use super::token::{LexErrorKind, Tok};
use crate::diagnostics::Span;
use logos::Logos;

pub type Spanned = Result<(usize, Tok, usize), super::Habit>;

pub struct Lexer<'src> {
    inner: logos::SpannedIter<'src, Tok>,
    pub errors: Vec<(Span, LexErrorKind)>,
}

impl<'src> Lexer<'src> {
    pub fn new(src: &'src str) -> Lexer<'src> {
        Lexer {
            inner: Tok::lexer(src).spanned(),
            errors: Vec::new(),
        }
    }
}

impl Iterator for Lexer<'_> {
    type Item = Spanned;

    fn next(&mut self) -> Option<Spanned> {
        let (tok, span) = loop {
            match self.inner.next()? {
                (Ok(Tok::Trivia), _) => continue,
                other => break other,
            }
        };
        let tok = tok.unwrap_or_else(|kind| {
            self.errors.push((Span::new(span.start, span.end), kind));
            Tok::LexError
        });
        Some(Ok((span.start, tok, span.end)))
    }
}
