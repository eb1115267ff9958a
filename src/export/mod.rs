//! Export: a checked model written for other engines, one module per target (`jax`), and what
//! they share here: the names of values as identifiers, comments that point at the source, and
//! the diagnostic for a construct a target cannot express exactly.
//!
//! Invariant: an export is generated from the simplified graphs (the stability rewrites
//! applied), never from the source; a construct without an exact counterpart in the target is
//! a located error, never an approximation. Pure: no files, no terminal.

pub mod jax;
#[cfg(feature = "onnx")]
pub mod onnx;

use crate::compile::Graphs;
use crate::diagnostics::{Diagnostic, SourceFile, Span};
use crate::ir::{Graph, NodeId};
use crate::model::Model;
use std::collections::HashSet;

/// What an export works from: the checked model, its simplified graphs and its source.
pub struct Source<'a> {
    pub model: &'a Model,
    pub graphs: &'a Graphs,
    pub file: &'a SourceFile,
}

impl Source<'_> {
    /// The model file's name without its directories, as exported code cites it.
    pub fn file_name(&self) -> &str {
        let name = self.file.name.as_str();
        name.rsplit(['/', '\\']).next().unwrap_or(name)
    }

    /// `iris.dsl:9: let logits = X @ W + b`, the source line a span starts on.
    pub fn cite(&self, span: Span) -> String {
        let (line, _) = self.file.line_col(span.start);
        format!(
            "{}:{line}: {}",
            self.file_name(),
            self.file.line_text(line - 1).trim()
        )
    }
}

/// The error for a construct `target` has no exact counterpart for, at its place in the source.
pub fn unsupported(target: &str, what: &str, span: Option<Span>, note: &str) -> Diagnostic {
    let d = Diagnostic::error(format!("{what} has no exact export to {target}"));
    let d = match span {
        Some(s) => d.with_label(s, format!("{what} is used here")),
        None => d,
    };
    d.with_note(note.to_string())
}

/// Identifiers for the values of one function: the user's names where the source gave them,
/// made distinct and kept clear of the target's reserved words.
pub struct Identifiers {
    taken: HashSet<String>,
}

impl Identifiers {
    pub fn new(reserved: &[&str]) -> Identifiers {
        Identifiers {
            taken: reserved.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `wanted`, or `wanted_2`, `wanted_3`, ... when it is taken.
    pub fn fresh(&mut self, wanted: &str) -> String {
        let base: String = wanted
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let base = if base.starts_with(|c: char| c.is_ascii_digit()) || base.is_empty() {
            format!("v{base}")
        } else {
            base
        };
        let mut name = base.clone();
        let mut k = 2;
        while self.taken.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    /// The identifier for node `id`: its user's name, or `t` and its number.
    pub fn for_node(&mut self, g: &Graph, id: NodeId) -> String {
        match g.name(id) {
            Some(n) => self.fresh(n),
            None => self.fresh(&format!("t{}", id.0)),
        }
    }
}
