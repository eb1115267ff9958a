#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]
// Matrix code (eigenvalues, orthogonal initialization) indexes rows and columns by name.
#![allow(clippy::needless_range_loop)]
//! adjoint: a symbolic-plus-numeric autodiff compiler.
//!
//! A model and its loss are written in a small language. adjoint parses and shape-checks it into
//! a graph, differentiates the graph symbolically into a gradient graph in the same IR,
//! simplifies both, and compiles the forward pass, the backward pass and the optimizer update
//! to native code with Cranelift.
//!
//! Modules are listed in the order data flows through them; see ARCHITECTURE.md.
//!
//! # Embedding
//!
//! ```
//! // A model in the adjoint language, compiled to native code.
//! let model = adjoint::compile("
//!     input x[n, 2]
//!     input y[n]
//!     param w[2] ~ zeros
//!     param b = 0
//!     loss bce_with_logits(x @ w + b, y)
//!     metric accuracy = mean((x @ w + b > 0) == y)
//!     optimizer adam(lr = 0.1)
//! ")?;
//! let x = [0.0, 1.0, 1.0, 0.0, 2.0, 2.0, -1.0, -2.0];
//! let y = [1.0, 0.0, 1.0, 0.0];
//! let mut session = model.session(0)?;
//! session.set_input("x", &x, &[4, 2])?;
//! session.set_input("y", &y, &[4])?;
//! for _ in 0..100 {
//!     session.step()?;
//! }
//! let metrics = session.evaluate()?;
//! assert_eq!(metrics[1].0, "accuracy");
//! println!("w = {:?}", session.param("w")?.data);
//! # Ok::<(), adjoint::Error>(())
//! ```
//!
//! The API: [`compile`], [`compile_file`] → [`CompiledModel`] (`params`, `inputs`,
//! `forward_text`, `gradient_text`, `session`) → [`Session`] (`set_input`, `set_inputs`,
//! `step`, `steps`, `value_and_grad`, `evaluate`, `evaluate_on`, `predict`, `predict_on`,
//! `param`, `set_param`, `save`, `load`); [`validation_rows`] gives the rows that
//! `adjoint train --validation` holds out. Errors are [`Error`] values with the diagnostics both
//! structured and rendered.
//!
//! The compiler's stages are public modules too, for the test suite and for tools built on
//! adjoint; they are hidden from this documentation because they are not the supported API.

pub mod api;
#[doc(hidden)]
pub mod autodiff;
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench;
#[doc(hidden)]
pub mod check;
#[doc(hidden)]
pub mod checkpoint;
#[doc(hidden)]
pub mod chunks;
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod compile;
#[doc(hidden)]
pub mod data;
#[doc(hidden)]
pub mod diagnostics;
#[doc(hidden)]
pub mod export;
#[doc(hidden)]
pub mod fuzz;
#[doc(hidden)]
pub mod init;
#[doc(hidden)]
pub mod inspect;
#[doc(hidden)]
pub mod ir;
#[doc(hidden)]
pub mod jit;
#[doc(hidden)]
pub mod kernels;
#[doc(hidden)]
pub mod limits;
#[doc(hidden)]
pub mod lower;
#[doc(hidden)]
pub mod memory;
#[doc(hidden)]
pub mod model;
#[doc(hidden)]
pub mod optim;
#[cfg(feature = "plot")]
#[doc(hidden)]
pub mod plot;
#[doc(hidden)]
pub mod resume;
#[doc(hidden)]
pub mod runtime;
#[doc(hidden)]
pub mod scratch;
#[doc(hidden)]
pub mod simplify;
#[doc(hidden)]
pub mod syntax;
#[doc(hidden)]
pub mod train;

pub use api::{
    Error, InputValues, Session, Var, compile, compile_file, compile_named, compile_with,
    validation_rows,
};
// The types inside `Error`, so that every type the API hands out can be named from here.
pub use checkpoint::{CheckpointError, MismatchKind};
pub use compile::CompiledModel;
// The checker's and compiler's own types, for the test suite and tools: like the modules they
// come from, not the supported API.
#[doc(hidden)]
pub use compile::{CompileError, check_source};
pub use data::DataError;
pub use diagnostics::{Diagnostic, Severity, SourceFile, Span};
pub use ir::{DType, Tensor};
pub use jit::CodegenError;
pub use jit::parallel::set_threads;
pub use limits::Limits;
pub use memory::{Footprint, MemoryError};
#[doc(hidden)]
pub use model::{GraphFn, Model};
pub use runtime::RunError;
pub use train::{NonFiniteOrigin, TrainError};
