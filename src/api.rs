//! The embedding API: compile a model from source, bind data, train and evaluate it from Rust.
//!
//! ```
//! let model = adjoint::compile("
//!     dtype f64
//!     input x[n]
//!     input y[n]
//!     param w = 0
//!     param b = 0
//!     loss mean((w * x + b - y)^2)
//!     optimizer sgd(lr = 0.1)
//! ").unwrap();
//! let mut session = model.session(0).unwrap();
//! session.set_input("x", &[0.0, 1.0, 2.0, 3.0], &[4]).unwrap();
//! session.set_input("y", &[1.0, 3.0, 5.0, 7.0], &[4]).unwrap();
//! for _ in 0..500 {
//!     session.step().unwrap();
//! }
//! let w = session.param("w").unwrap().item();
//! assert!((w - 2.0).abs() < 1e-6);
//! ```
//!
//! Sessions save and load checkpoints (`save`, `load`) in the safetensors format, compute the
//! model's `output` values for new rows (`predict`, `predict_on`: what `adjoint predict`
//! writes) and its loss and metrics on rows it does not train on (`evaluate_on`; the rows that
//! `adjoint train --validation F --seed S` holds out are [`validation_rows`]`(n, F, S)`).
//!
//! A `CompiledModel` is cheap to clone and can be shared across threads; each thread makes its
//! own `Session`, which owns parameters, optimizer state and input data.
//!
//! Large loops, updates and matrix products use every core (up to 8) through a pool of worker
//! threads; `adjoint::set_threads(1)` keeps all work on the calling thread. Results are the same
//! bit for bit either way.

use crate::compile::{CompileError, CompiledModel};
use crate::data::DataError;
use crate::diagnostics::{Diagnostic, SourceFile, render_all};
use crate::ir::{Dim, Tensor};
use crate::limits::Limits;
use crate::runtime::{Buffer, RunError};
use crate::train::{TrainError, Trainer};
use std::path::Path;

/// Everything that can go wrong through the API. No panic crosses it on bad input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source has errors.
    #[error("{rendered}")]
    Compile {
        /// Structured diagnostics: severity, message, labelled spans, notes.
        diagnostics: Vec<Diagnostic>,
        /// The same, rendered as the command line prints them.
        rendered: String,
    },
    /// Cranelift could not generate code (a bug in adjoint or an unsupported CPU).
    #[error("code generation failed: {0}")]
    Codegen(String),
    /// A model file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What the operating system said.
        message: String,
    },
    /// No input or parameter of that name.
    #[error("the model has no {kind} named `{name}`; it has: {known}")]
    UnknownName {
        /// `input` or `parameter`.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// The names the model has.
        known: String,
    },
    /// A shape that does not match the declaration.
    #[error("`{name}` expects shape {expected}, got {found:?}")]
    Shape {
        /// The input or parameter.
        name: String,
        /// The declared shape, as the model writes it.
        expected: String,
        /// The shape given.
        found: Vec<usize>,
    },
    /// Values that do not fill the shape given with them.
    #[error("`{name}` has {found} values but its shape {shape:?} needs {expected}")]
    Length {
        /// The input.
        name: String,
        /// The shape given.
        shape: Vec<usize>,
        /// The number of values that shape holds.
        expected: usize,
        /// The number of values given.
        found: usize,
    },
    /// A value an input cannot hold: an `int` input's value that is not a whole number ≥ 0, or
    /// an index beyond the axis a gather (or the classes a `one_hot`) reads it for.
    #[error("input `{name}`, row {row}, column {column}: {problem}")]
    Value {
        /// The input.
        name: String,
        /// The value's row, from 1.
        row: usize,
        /// The value's place in its row (row-major over the other axes), from 1.
        column: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// Inputs disagree on the number of rows.
    #[error("input `{name}` has {found} rows but other inputs have {expected}")]
    Rows {
        /// The input set last.
        name: String,
        /// The rows of the inputs already set.
        expected: usize,
        /// The rows given.
        found: usize,
    },
    /// A step or evaluation was asked for before this input was set.
    #[error("input `{0}` has not been set")]
    MissingInput(String),
    /// Buffers that do not fit the compiled code (checked before it runs).
    #[error(transparent)]
    Run(#[from] RunError),
    /// A data file that cannot be used.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Training stopped: no data, or a non-finite value.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// A checkpoint that cannot be read, or belongs to another model.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// The session's buffers at the bound row count would not fit in memory (checked when the
    /// inputs are bound, before anything is allocated for them).
    #[error(transparent)]
    Memory(#[from] crate::memory::MemoryError),
    /// `predict` on a model that declares no `output` values.
    #[error(
        "the model declares no `output` values to predict (add e.g. `output probs = softmax(logits, axis=1)`)"
    )]
    NoOutputs,
}

/// One input's values, as [`Session::set_input`] takes them: its name, row-major values and
/// shape.
pub type InputValues<'a> = (&'a str, &'a [f64], &'a [usize]);

/// The rows that `adjoint train --validation fraction --seed seed` holds out of `n_rows` rows,
/// and those it trains on: (training rows, held-out rows), each in increasing order. At least
/// one row is left to train on.
pub fn validation_rows(n_rows: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    crate::data::split_rows(n_rows, fraction, seed)
}

fn compile_error(e: CompileError, file: &SourceFile) -> Error {
    match e {
        CompileError::Diagnostics(d) => Error::Compile {
            rendered: render_all(&d, file),
            diagnostics: d,
        },
        CompileError::Codegen(c) => Error::Codegen(c.to_string()),
    }
}

/// Compiles model source text to native code.
pub fn compile(source: &str) -> Result<CompiledModel, Error> {
    compile_named("model.dsl", source)
}

/// Compiles source text; `name` is what diagnostics call the file. The model is checked
/// against this host's limits ([`Limits::of_host`]).
pub fn compile_named(name: &str, source: &str) -> Result<CompiledModel, Error> {
    compile_with(name, source, &Limits::of_host())
}

/// Compiles source text, checking it against `limits` (a parameter larger than
/// `limits.memory_budget` is an error): the same source and limits give the same result on
/// every host.
pub fn compile_with(name: &str, source: &str, limits: &Limits) -> Result<CompiledModel, Error> {
    let file = SourceFile::new(name, source);
    CompiledModel::compile(&file, limits)
        .map(|(c, _)| c)
        .map_err(|e| compile_error(e, &file))
}

/// Compiles a model file.
pub fn compile_file(path: impl AsRef<Path>) -> Result<CompiledModel, Error> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    compile_named(&path.display().to_string(), &text)
}

/// A declared input or parameter: its name and shape (`None` for a dimension bound by data).
/// It prints as the model declares it: `W[4, 3]`, `X[n, 4]`, `b` for a scalar.
#[derive(Clone, Debug, PartialEq)]
pub struct Var {
    /// The declared name.
    pub name: String,
    /// Each dimension's size; `None` for the row dimension bound by data.
    pub shape: Vec<Option<usize>>,
    /// The dimensions as the model writes them (`n`, `4`).
    dim_names: Vec<String>,
}

impl std::fmt::Display for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if !self.dim_names.is_empty() {
            write!(f, "[{}]", self.dim_names.join(", "))?;
        }
        Ok(())
    }
}

impl Var {
    fn declared(g: &crate::ir::Graph, name: &str, shape: &crate::ir::shape::Shape) -> Var {
        Var {
            name: name.to_string(),
            shape: dims(&shape.0),
            dim_names: shape
                .0
                .iter()
                .map(|d| match d {
                    Dim::Fixed(k) => k.to_string(),
                    Dim::Sym(s) => g.syms[*s as usize].clone(),
                })
                .collect(),
        }
    }
}

impl CompiledModel {
    /// The parameters, in declaration order.
    pub fn params(&self) -> Vec<Var> {
        let g = self.model.graph();
        g.params
            .iter()
            .map(|p| Var::declared(g, &p.name, &p.shape))
            .collect()
    }

    /// The inputs, in declaration order.
    pub fn inputs(&self) -> Vec<Var> {
        let g = self.model.graph();
        g.inputs
            .iter()
            .map(|p| Var::declared(g, &p.name, &p.shape))
            .collect()
    }

    /// The simplified forward graph in its canonical text form.
    pub fn forward_text(&self) -> String {
        self.graphs.forward.text()
    }

    /// The simplified gradient graph in its canonical text form.
    pub fn gradient_text(&self) -> String {
        self.graphs.gradient.text()
    }

    /// A training session with parameters initialized from `seed`; refused with
    /// [`Error::Memory`] when its parameters, optimizer state and workspaces would not fit in
    /// memory.
    pub fn session(&self, seed: u64) -> Result<Session, Error> {
        let rows = crate::memory::Rows::of(None, None);
        crate::memory::check(crate::memory::Run::Session, self, rows)?;
        let n = self.model.graph().inputs.len();
        Ok(Session {
            trainer: Trainer::new(self, seed),
            inputs: vec![None; n],
            rows: None,
        })
    }
}

fn dims(d: &[Dim]) -> Vec<Option<usize>> {
    d.iter()
        .map(|d| {
            if let Dim::Fixed(n) = d {
                Some(*n as usize)
            } else {
                None
            }
        })
        .collect()
}

/// Parameters, optimizer state and bound inputs of one training run.
pub struct Session {
    trainer: Trainer,
    inputs: Vec<Option<Buffer>>,
    rows: Option<usize>,
}

impl Session {
    fn known(names: impl Iterator<Item = String>) -> String {
        names.collect::<Vec<_>>().join(", ")
    }

    /// Binds an input from row-major values; `shape` must match the declaration, with the row
    /// dimension free (and the same for every input). An input declared without the row
    /// dimension (`input K[3] from "k.npy"`) is bound whole, in its declared shape, and stays
    /// bound when the rows change.
    pub fn set_input(&mut self, name: &str, values: &[f64], shape: &[usize]) -> Result<(), Error> {
        let g = self.trainer.compiled.model.graph().clone();
        let dims_before = self.trainer.bound_dims.clone();
        let Some(i) = g.inputs.iter().position(|p| p.name == name) else {
            return Err(Error::UnknownName {
                kind: "input",
                name: name.into(),
                known: Session::known(g.inputs.iter().map(|p| p.name.clone())),
            });
        };
        let decl = &g.inputs[i].shape.0;
        let ok = decl.len() == shape.len()
            && decl
                .iter()
                .zip(shape)
                .all(|(d, s)| matches!(d, Dim::Sym(_)) || *d == Dim::Fixed(*s as u64));
        if !ok {
            return Err(Error::Shape {
                name: name.into(),
                expected: g.shape_text(&g.inputs[i].shape),
                found: shape.to_vec(),
            });
        }
        let n: usize = shape.iter().product();
        if values.len() != n {
            return Err(Error::Length {
                name: name.into(),
                shape: shape.to_vec(),
                expected: n,
                found: values.len(),
            });
        }
        self.check_indices(i, values, shape)?;
        let model = &self.trainer.compiled.model;
        // An input without the row dimension is bound whole: it sets no row count.
        let row_input = |k: usize| model.is_row_input(k);
        let rows = row_input(i).then(|| shape[0]);
        // A new row count applies to all inputs: the others must be bound again.
        if let (Some(r), Some(rows)) = (self.rows, rows)
            && r != rows
            && self
                .inputs
                .iter()
                .enumerate()
                .any(|(k, b)| k != i && b.is_some() && row_input(k))
        {
            return Err(Error::Rows {
                name: name.into(),
                expected: r,
                found: rows,
            });
        }
        // Symbolic column dimensions take their size from the first input that has them.
        for (d, &size) in decl.iter().zip(shape).skip(1) {
            if let Dim::Sym(s) = d {
                match self.trainer.bound_dims.iter().find(|b| b.0 == *s) {
                    Some(&(_, v))
                        if v != size as u64
                            && self
                                .inputs
                                .iter()
                                .enumerate()
                                .any(|(k, b)| k != i && b.is_some()) =>
                    {
                        return Err(Error::Shape {
                            name: name.into(),
                            expected: format!(
                                "{} = {v} as in the other inputs",
                                g.syms[*s as usize]
                            ),
                            found: shape.to_vec(),
                        });
                    }
                    _ => {
                        self.trainer.bound_dims.retain(|b| b.0 != *s);
                        self.trainer.bound_dims.push((*s, size as u64));
                    }
                }
            }
        }
        // An input read whole sets no row count: the workspace is sized for the rows bound.
        let budget_rows = rows.or(self.rows).unwrap_or(1);
        if let Err(e) = self.check_memory(i, values.len(), budget_rows) {
            self.trainer.bound_dims = dims_before;
            return Err(e);
        }
        if rows.is_some() {
            self.rows = rows;
        }
        self.inputs[i] = Some(Buffer::from_f64(g.dtype, values));
        Ok(())
    }

    /// Refuses a binding (input `i` with `n_values` values, `rows` rows) under which the
    /// session's parameters, workspaces and inputs would not fit in memory.
    fn check_memory(&self, i: usize, n_values: usize, rows: usize) -> Result<(), Error> {
        let others: usize = (self.inputs.iter().enumerate())
            .filter(|&(k, _)| k != i)
            .filter_map(|(_, b)| b.as_ref().map(Buffer::len))
            .sum();
        let rows = crate::memory::Rows {
            rows: rows as u64,
            batch: None,
            dims: &self.trainer.bound_dims,
            values: (others + n_values) as u128,
        };
        crate::memory::check(crate::memory::Run::Session, &self.trainer.compiled, rows)?;
        Ok(())
    }

    /// An `int` input's values must be whole numbers ≥ 0 inside the range every gather and
    /// `one_hot` that reads them indexes, as when they are loaded from a file: compiled code
    /// would read them as indices.
    fn check_indices(&self, i: usize, values: &[f64], shape: &[usize]) -> Result<(), Error> {
        let model = &self.trainer.compiled.model;
        let info = &model.graph().inputs[i];
        let limit = model.index_limits[i];
        if !info.is_int && limit.is_none() {
            return Ok(());
        }
        let width = shape.iter().skip(1).product::<usize>().max(1);
        for (k, &v) in values.iter().enumerate() {
            if let Some(problem) = crate::data::value_problem(v, info, limit) {
                return Err(Error::Value {
                    name: info.name.clone(),
                    row: k / width + 1,
                    column: k % width + 1,
                    problem,
                });
            }
        }
        Ok(())
    }

    /// Binds several inputs at once, replacing every binding, so that the row count may change
    /// (from the training rows to a held-out split, say). When one is refused, the bindings
    /// stay as they were.
    pub fn set_inputs(&mut self, inputs: &[InputValues]) -> Result<(), Error> {
        let n = self.inputs.len();
        let saved = (
            std::mem::replace(&mut self.inputs, vec![None; n]),
            self.rows.take(),
            self.trainer.bound_dims.clone(),
        );
        for (name, values, shape) in inputs {
            if let Err(e) = self.set_input(name, values, shape) {
                (self.inputs, self.rows, self.trainer.bound_dims) = saved;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Runs `f` with `inputs` bound in place of the session's own, which are bound again
    /// afterwards whatever `f` returns.
    fn with_inputs<T>(
        &mut self,
        inputs: &[InputValues],
        f: impl FnOnce(&mut Session) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let n = self.inputs.len();
        let saved = (
            std::mem::replace(&mut self.inputs, vec![None; n]),
            self.rows.take(),
            self.trainer.bound_dims.clone(),
        );
        let result = self.set_inputs(inputs).and_then(|()| f(self));
        (self.inputs, self.rows, self.trainer.bound_dims) = saved;
        result
    }

    fn bound(&self) -> Result<(Vec<Buffer>, usize), Error> {
        let g = self.trainer.compiled.model.graph();
        let mut out = Vec::with_capacity(self.inputs.len());
        for (b, info) in self.inputs.iter().zip(&g.inputs) {
            out.push(
                b.clone()
                    .ok_or_else(|| Error::MissingInput(info.name.clone()))?,
            );
        }
        Ok((out, self.rows.unwrap_or(0)))
    }

    /// One optimizer step on the bound inputs; returns the loss before the step.
    pub fn step(&mut self) -> Result<f64, Error> {
        self.steps(1)
    }

    /// `k` optimizer steps in one native call; returns the loss before the last step.
    pub fn steps(&mut self, k: u64) -> Result<f64, Error> {
        let (inputs, rows) = self.bound()?;
        Ok(self.trainer.train_steps(&inputs, rows, k)?)
    }

    /// The loss and every parameter's gradient at the current parameters.
    pub fn value_and_grad(&mut self) -> Result<(f64, Vec<Tensor>), Error> {
        let (inputs, rows) = self.bound()?;
        let loss = self.trainer.value_and_grad(&inputs, rows)?;
        let params = self.trainer.compiled.model.graph().params.clone();
        let grads = params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Tensor::new(
                    p.shape.as_fixed().unwrap(),
                    self.trainer
                        .gradient(i, rows)
                        .expect("just computed")
                        .to_f64(),
                )
            })
            .collect();
        Ok((loss, grads))
    }

    /// The loss and each metric, by name.
    pub fn evaluate(&mut self) -> Result<Vec<(String, f64)>, Error> {
        let (inputs, rows) = self.bound()?;
        Ok(self.trainer.evaluate(&inputs, rows)?)
    }

    /// The loss and each metric on other rows (a held-out split, a test set), by name; the
    /// session's own inputs stay bound.
    pub fn evaluate_on(&mut self, inputs: &[InputValues]) -> Result<Vec<(String, f64)>, Error> {
        self.with_inputs(inputs, Session::evaluate)
    }

    /// The model's `output` values for the bound inputs, by name, a row per data row: what
    /// `adjoint predict` writes. Inputs that no output reads (the labels) need not be bound.
    pub fn predict(&mut self) -> Result<Vec<(String, Tensor)>, Error> {
        let compiled = self.trainer.compiled.clone();
        let Some(p) = &compiled.graphs.predict else {
            return Err(Error::NoOutputs);
        };
        let g = compiled.model.graph();
        let roots: Vec<_> = p.outputs.iter().map(|o| o.1).collect();
        let live = p.graph.reachable(&roots);
        let read = |i: usize| {
            p.graph
                .ids()
                .any(|id| live[id.index()] && *p.graph.op(id) == crate::ir::Op::Input(i as u32))
        };
        let rows = self.rows.unwrap_or(0);
        let mut inputs = Vec::with_capacity(self.inputs.len());
        for (i, (b, info)) in self.inputs.iter().zip(&g.inputs).enumerate() {
            match b {
                Some(b) => inputs.push(b.clone()),
                // Never read: zeros of the declared size only fill its slot.
                None if !read(i) => {
                    let (rows, axes) = match compiled.model.is_row_input(i) {
                        true => (rows, &info.shape.0[1..]),
                        false => (1, &info.shape.0[..]),
                    };
                    let width: u64 = axes
                        .iter()
                        .map(|d| match d {
                            Dim::Fixed(k) => *k,
                            Dim::Sym(s) => self
                                .trainer
                                .bound_dims
                                .iter()
                                .find(|b| b.0 == *s)
                                .map_or(0, |b| b.1),
                        })
                        .product();
                    let zeros = vec![0.0; rows * width as usize];
                    inputs.push(Buffer::from_f64(g.dtype, &zeros));
                }
                None => return Err(Error::MissingInput(info.name.clone())),
            }
        }
        Ok(self.trainer.predict(&inputs, rows)?)
    }

    /// The model's `output` values for other rows (new data), by name, a row per data row;
    /// the session's own inputs stay bound.
    pub fn predict_on(&mut self, inputs: &[InputValues]) -> Result<Vec<(String, Tensor)>, Error> {
        self.with_inputs(inputs, Session::predict)
    }

    fn param_index(&self, name: &str) -> Result<usize, Error> {
        let g = self.trainer.compiled.model.graph();
        g.params
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| Error::UnknownName {
                kind: "parameter",
                name: name.into(),
                known: Session::known(g.params.iter().map(|p| p.name.clone())),
            })
    }

    /// A parameter's current value.
    pub fn param(&self, name: &str) -> Result<Tensor, Error> {
        let i = self.param_index(name)?;
        let shape = self.trainer.compiled.model.graph().params[i]
            .shape
            .as_fixed()
            .unwrap();
        Ok(Tensor::new(shape, self.trainer.params[i].to_f64()))
    }

    /// Overwrites a parameter; the shape must match its declaration.
    pub fn set_param(&mut self, name: &str, value: &Tensor) -> Result<(), Error> {
        let i = self.param_index(name)?;
        let g = self.trainer.compiled.model.graph();
        let shape = g.params[i].shape.as_fixed().unwrap();
        if value.shape != shape || value.data.len() != shape.iter().product::<usize>() {
            return Err(Error::Shape {
                name: name.into(),
                expected: g.shape_text(&g.params[i].shape),
                found: value.shape.clone(),
            });
        }
        self.trainer.params[i] = Buffer::from_f64(g.dtype, &value.data);
        Ok(())
    }

    /// Saves parameters, optimizer state, step count and data order to a safetensors file,
    /// atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        crate::resume::save(&self.trainer, path.as_ref()).map_err(Error::from)
    }

    /// Restores everything `save` wrote; refuses a checkpoint of another model, naming the
    /// first tensor that does not match.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<(), Error> {
        crate::resume::resume(&mut self.trainer, path.as_ref()).map_err(Error::from)
    }

    /// Optimizer steps taken.
    pub fn step_count(&self) -> u64 {
        self.trainer.step
    }
}
