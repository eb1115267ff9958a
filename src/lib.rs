//! adjoint: a symbolic-plus-numeric autodiff compiler.
//!
//! A model and its loss are written in a small language. adjoint parses and shape-checks it into
//! a graph, differentiates the graph symbolically into a gradient graph in the same IR,
//! simplifies both, and compiles the forward pass, the backward pass and the optimizer update
//! to native code with Cranelift.
//!
//! Modules are listed in the order data flows through them; see ARCHITECTURE.md.

pub mod diagnostics;
pub mod syntax;
pub mod ir;
pub mod model;
pub mod check;
pub mod autodiff;
pub mod simplify;
pub mod lower;
pub mod jit;
pub mod runtime;
pub mod init;
pub mod optim;
pub mod data;
pub mod compile;
pub mod train;
pub mod bench;
pub mod cli;

pub use compile::{CompileError, CompiledModel, check_source};
pub use diagnostics::{Diagnostic, Severity, SourceFile, Span};
pub use ir::{DType, Tensor};
pub use model::{GraphFn, Model};
