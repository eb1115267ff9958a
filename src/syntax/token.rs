//! The tokens of the model language, recognised by `logos`.
//!
//! Invariant: no semantic work happens here beyond reading literals.

use logos::Logos;
use std::fmt;

/// Why a piece of source is not a token.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum LexErrorKind {
    #[default]
    UnexpectedChar,
    BadNumber,
    UnterminatedString,
}

#[derive(Logos, Clone, Debug, PartialEq)]
#[logos(error = LexErrorKind)]
pub enum Tok {
    /// Whitespace and comments are tokens that the lexer adapter drops, rather than logos
    /// skips: logos skips by recursion, which long runs of comments turn into a stack overflow.
    #[regex(r"[ \t\r\n\f]+")]
    #[regex(r"#[^\n]*", allow_greedy = true)]
    Trivia,

    #[token("input")]
    Input,
    #[token("param")]
    Param,
    #[token("let")]
    Let,
    #[token("loss")]
    Loss,
    #[token("metric")]
    Metric,
    #[token("output")]
    Output,
    #[token("optimizer")]
    Optimizer,
    #[token("train")]
    Train,
    #[token("schedule")]
    Schedule,
    #[token("data")]
    Data,
    #[token("dtype")]
    Dtype,
    #[token("from")]
    From,
    #[token("int")]
    Int,
    #[token("fn")]
    Fn,

    #[regex(r"[A-Za-z_][A-Za-z0-9_]*", |lex| lex.slice().to_string())]
    Ident(String),
    #[regex(r"[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?", parse_number)]
    #[regex(r"\.[0-9]+([eE][+-]?[0-9]+)?", parse_number)]
    Number(f64),
    #[regex(r#""[^"\n]*""#, |lex| { let s = lex.slice(); s[1..s.len() - 1].to_string() })]
    #[regex(r#""[^"\n]*"#, |_| Err(LexErrorKind::UnterminatedString))]
    Str(String),

    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token(",")]
    Comma,
    #[token("=")]
    Assign,
    #[token("==")]
    EqEq,
    #[token("!=")]
    NotEq,
    #[token("<")]
    Less,
    #[token("<=")]
    LessEq,
    #[token(">")]
    Greater,
    #[token(">=")]
    GreaterEq,
    #[token(":")]
    Colon,
    #[token("~")]
    Tilde,
    #[token("..")]
    DotDot,
    /// Not in the language: read so that `X.T` and `x.sum()` get a hint.
    #[token(".")]
    Dot,
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    /// Not in the language: read so that Python's `**` gets a hint.
    #[token("**")]
    StarStar,
    #[token("/")]
    Slash,
    #[token("^")]
    Caret,
    #[token("@")]
    At,

    /// Never produced by logos: the lexer adapter emits it in place of a lexing error so that
    /// the parser can recover and go on reporting.
    LexError,
}

fn parse_number(lex: &mut logos::Lexer<Tok>) -> Result<f64, LexErrorKind> {
    lex.slice().parse().map_err(|_| LexErrorKind::BadNumber)
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "identifier `{s}`"),
            Tok::Number(n) => write!(f, "number `{n}`"),
            Tok::Str(s) => write!(f, "string \"{s}\""),
            Tok::LexError => f.write_str("invalid token"),
            Tok::Trivia => f.write_str("whitespace"),
            other => write!(f, "`{}`", token_text(other)),
        }
    }
}

/// The literal text of a fixed token.
pub fn token_text(tok: &Tok) -> &'static str {
    match tok {
        Tok::Input => "input",
        Tok::Param => "param",
        Tok::Let => "let",
        Tok::Loss => "loss",
        Tok::Metric => "metric",
        Tok::Output => "output",
        Tok::Optimizer => "optimizer",
        Tok::Train => "train",
        Tok::Schedule => "schedule",
        Tok::Data => "data",
        Tok::Dtype => "dtype",
        Tok::From => "from",
        Tok::Int => "int",
        Tok::Fn => "fn",
        Tok::NotEq => "!=",
        Tok::Less => "<",
        Tok::LessEq => "<=",
        Tok::Greater => ">",
        Tok::GreaterEq => ">=",
        Tok::LParen => "(",
        Tok::RParen => ")",
        Tok::LBracket => "[",
        Tok::RBracket => "]",
        Tok::Comma => ",",
        Tok::Assign => "=",
        Tok::EqEq => "==",
        Tok::Colon => ":",
        Tok::Tilde => "~",
        Tok::DotDot => "..",
        Tok::Dot => ".",
        Tok::StarStar => "**",
        Tok::Plus => "+",
        Tok::Minus => "-",
        Tok::Star => "*",
        Tok::Slash => "/",
        Tok::Caret => "^",
        Tok::At => "@",
        Tok::Ident(_) | Tok::Number(_) | Tok::Str(_) | Tok::LexError | Tok::Trivia => "",
    }
}
