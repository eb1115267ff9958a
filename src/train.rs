//! The training loop: parameter initialization, minibatches, the compiled step, evaluation.
//!
//! Invariant: each step calls native code only: the value-and-gradient function, then the
//! optimizer's update loop. Rust shuffles indices, gathers rows into reused batch buffers and
//! computes the per-step scalars (learning rate, bias corrections).

use crate::compile::CompiledModel;
use crate::data::Dataset;
use crate::init;
use crate::jit::fpenv::FlushSubnormals;
use crate::model::TrainSettings;
use crate::optim::{OptimizerSpec, StepConstants, StepScalar, StepState};
use crate::runtime::{Buffer, RunError, Workspace};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use std::collections::HashMap;

/// Steps run when the file and the command line say neither `steps` nor `epochs`.
pub const DEFAULT_STEPS: u64 = 1000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TrainError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(
        "the model has inputs but no data was given (use `data \"file.csv\"` in the model or `--data FILE`)"
    )]
    NoData,
    /// A step made the loss, a gradient or a parameter infinite or NaN; the trainer holds the
    /// state from before that step.
    #[error(
        "step {step}: {what}{}; training stopped with the parameters from before this step{}",
        last_finite_text(*.last_loss),
        if *.located { "" } else { " (run with --check-finite to find the operation that produced it)" }
    )]
    Diverged {
        step: u64,
        what: String,
        /// The step and loss of the last step that was finite throughout.
        last_loss: Option<(u64, f64)>,
        /// Whether the run looked for the op that produced the value (and found none).
        located: bool,
    },
    /// A step produced a non-finite value, traced to the op that produced it; the trainer holds
    /// the state from before that step.
    #[error("step {step}: {}", .origin.describe())]
    NonFiniteAt { step: u64, origin: NonFiniteOrigin },
    #[error("Newton's method needs {0}")]
    Newton(String),
    /// A model reading a text trains on random windows, so many per step.
    #[error(
        "the model trains on random windows of a text: give the windows per step with `batch = B` in `train` (or --batch B)"
    )]
    TextNeedsBatch,
}

fn last_finite_text(last: Option<(u64, f64)>) -> String {
    match last {
        Some((step, loss)) => format!(" (the last finite loss, {loss:e}, was at step {step})"),
        None => String::new(),
    }
}

impl TrainError {
    /// This error with the last finite loss of the run filled in.
    fn after(self, last: Option<(u64, f64)>) -> TrainError {
        match self {
            TrainError::Diverged {
                step,
                what,
                last_loss: None,
                located,
            } => TrainError::Diverged {
                step,
                what,
                last_loss: last,
                located,
            },
            e => e,
        }
    }
}

/// Where the first non-finite value of a step came from.
#[derive(Clone, Debug, PartialEq)]
pub struct NonFiniteOrigin {
    /// The op that produced it from finite operands.
    pub op: &'static str,
    /// Where that op is in the source (for the backward pass: the forward op whose rule built it).
    pub span: Option<crate::diagnostics::Span>,
    /// For the backward pass, the op whose derivative rule produced it.
    pub rule: Option<&'static str>,
    /// The value it produced, e.g. NaN or inf.
    pub value: f64,
}

impl NonFiniteOrigin {
    pub fn describe(&self) -> String {
        match self.rule {
            None => format!("`{}` in the forward pass produced {}", self.op, self.value),
            Some(r) => format!(
                "the derivative rule of `{r}` (its `{}`) produced {} in the backward pass",
                self.op, self.value
            ),
        }
    }
}

/// The value of the loss or of a metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: String,
    /// One value, or one per element of a vector metric.
    pub values: Vec<f64>,
    /// A vector metric (even of length 1), printed element by element.
    pub is_vector: bool,
}

/// One line of progress.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub step: u64,
    pub epoch: u64,
    /// The mean training loss of this epoch's steps so far (weighted by their rows), not one
    /// minibatch's: with full batches, the loss of the last step.
    pub loss: f64,
    /// The metrics on all the training rows, at the parameters of this step (with
    /// `Trainer::training_metrics`; empty otherwise).
    pub training: Vec<(String, f64)>,
    /// Loss and metrics on the validation rows, when there are some.
    pub validation: Vec<(String, f64)>,
    /// The loss of the steps traced since the last report (`Trainer::trace_points`), as
    /// `(step, loss)`: a minibatch's loss with minibatches.
    pub trace: Vec<(u64, f64)>,
    /// Set on the last report when early stopping ended the run: the log point whose
    /// parameters were restored.
    pub restored: Option<BestPoint>,
    /// The step the run will end at.
    pub end: u64,
}

/// The log point with the lowest validation loss, which early stopping restores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BestPoint {
    pub step: u64,
    pub epoch: u64,
    pub validation_loss: f64,
}

/// Everything a step changes, kept at each log point: a run that turns non-finite goes back to
/// it and replays, checking every step, up to the step that did.
struct FiniteState {
    params: Vec<Buffer>,
    state: Vec<Buffer>,
    opt_step: StepState,
    step: u64,
    cursor: Cursor,
    data_rng: ChaCha8Rng,
    /// The step and loss of the log point it was taken at.
    loss: Option<(u64, f64)>,
}

/// The position of minibatching in the data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cursor {
    /// This epoch's order of the rows (empty for a text's windows).
    pub order: Vec<usize>,
    /// The next row of `order` to use, or the windows of a text drawn in this epoch; at the
    /// end, a new epoch starts (with a new shuffle of rows).
    pub pos: usize,
    pub epoch: u64,
    /// Whether the batches are random windows of a text (`data::text`), whose starts come
    /// from the trainer's data stream.
    pub windows: bool,
}

/// Batches of random windows of a text: each window's start is drawn from the run's data
/// stream, so a seeded run sees the same windows, and a resumed one continues them.
struct TextBatches {
    /// The text's tokens, in the model's dtype.
    tokens: Buffer,
    /// Each text-bound input's index and shift.
    inputs: Vec<(usize, usize)>,
    window: usize,
    /// Starts are drawn from `0..starts`.
    starts: usize,
    /// This batch's starts, reused.
    drawn: Vec<usize>,
}

impl TextBatches {
    fn new(c: &crate::data::text::Corpus, dtype: crate::ir::DType) -> TextBatches {
        let tokens: Vec<f64> = c.tokens.iter().map(|&t| t as f64).collect();
        TextBatches {
            tokens: Buffer::from_f64(dtype, &tokens),
            inputs: c.inputs.iter().map(|w| (w.input, w.offset)).collect(),
            window: c.window,
            starts: c.starts(),
            drawn: Vec::new(),
        }
    }

    /// Draws `batch` window starts and copies each text-bound input's windows into its buffer.
    fn draw(&mut self, batch: usize, rng: &mut ChaCha8Rng, bufs: &mut [Buffer]) {
        self.drawn.clear();
        for _ in 0..batch {
            self.drawn.push(rng.random_range(0..self.starts));
        }
        for &(input, offset) in &self.inputs {
            self.tokens
                .gather_windows(self.window, offset, &self.drawn, &mut bufs[input]);
        }
    }
}

/// Parameters and optimizer state of one training run of a compiled model.
pub struct Trainer {
    pub compiled: CompiledModel,
    pub params: Vec<Buffer>,
    /// Optimizer state arrays, `state_arrays()` per parameter.
    pub state: Vec<Buffer>,
    /// Optimizer steps taken.
    pub step: u64,
    /// Step count and powers of β, advanced by the optimizer.
    pub opt_step: StepState,
    /// The step count a schedule that depends on the run's length (cosine) decays over: `fit`
    /// sets it to the length of its run; a resumed run keeps the checkpoint's.
    pub total_steps: u64,
    /// Whether `total_steps` is fixed (by the checkpoint a run resumes from): `fit` sets it to
    /// the length of its run only when it is not.
    pub horizon_fixed: bool,
    /// The step the current (or last) run of `fit` ends at; checkpoints keep it, so that a
    /// resumed run can finish the run it continues.
    pub run_end: u64,
    /// Check every step's loss, gradients and parameters, and locate the first non-finite value.
    pub check_finite: bool,
    /// Run steps with subnormal numbers flushed to zero (`jit::fpenv`); true unless set off.
    pub flush_subnormals: bool,
    /// Evaluate the metrics on all the training rows at every log point (a forward pass over
    /// them, so off unless asked for).
    pub training_metrics: bool,
    /// Record the loss at about this many evenly spaced steps of a run (0: none), for a curve
    /// with more points than the log has; a full-batch run then stops its fused native loop at
    /// each, which costs one call per traced step.
    pub trace_points: u64,
    /// The parameters were given (`--init-from`): `fit` initializes none from the data.
    pub params_given: bool,
    /// Held-out rows evaluated at every log point (and used by early stopping).
    pub validation: Option<Dataset>,
    /// Where minibatching is in the data: the epoch's row order and the next row.
    pub cursor: Cursor,
    /// Sizes of symbolic column dimensions, bound from the data.
    pub bound_dims: Vec<(u32, u64)>,
    /// The text the model trains on (its vocabulary and length), for a model reading one:
    /// set by `fit`, or by resuming to that of the checkpoint's run.
    pub text: Option<crate::data::text::TextIdentity>,
    /// Newton's method: the Hessian-vector-product graph, built on first use.
    hvp: Option<crate::model::GraphFn>,
    /// When this becomes true (say, on Ctrl-C), `fit` stops after the current native call.
    pub interrupt: Option<&'static std::sync::atomic::AtomicBool>,
    pub data_rng: ChaCha8Rng,
    grad_ws: HashMap<Vec<u64>, Workspace>,
    /// Workspaces of the training step's own graph, for a model that has one (`dropout`);
    /// otherwise its steps use `grad_ws`.
    step_ws: HashMap<Vec<u64>, Workspace>,
    /// The dimensions of the last fused step, reused so that a step allocates nothing.
    syms_buf: Vec<u64>,
    /// Reused table of per-step learning rates for the fused loop.
    table: Vec<f64>,
    constants: StepConstants,
    /// How the update rule's per-step scalars follow from the learning rate and β powers.
    step_scalars: Vec<StepScalar>,
    base_lr: f64,
    fwd_ws: HashMap<Vec<u64>, Workspace>,
    pred_ws: HashMap<Vec<u64>, Workspace>,
}

pub use crate::memory::{MemoryError, check_memory};

/// The workspaces of a trainer's training steps: those of the evaluation gradient unless the
/// model has a training graph of its own. A macro, so that the borrow is of the one field.
macro_rules! step_workspaces {
    ($t:expr) => {
        match $t.compiled.graphs.training {
            Some(_) => &mut $t.step_ws,
            None => &mut $t.grad_ws,
        }
    };
}

/// Every gradient the last training step computed on `rows` rows, in parameter order.
fn step_gradients(t: &Trainer, rows: usize) -> Option<Vec<&Buffer>> {
    let ws = match t.compiled.graphs.training {
        Some(_) => t.step_ws.get(&t.syms(rows))?,
        None => t.grad_ws.get(&t.syms(rows))?,
    };
    let plan = &t.compiled.step.plan;
    Some(
        (0..t.params.len())
            .map(|i| ws.output(plan, i + 1))
            .collect(),
    )
}

impl Trainer {
    /// Initializes every parameter from its initializer, in declaration order, from `seed`.
    pub fn new(compiled: &CompiledModel, seed: u64) -> Trainer {
        let model = &compiled.model;
        let dtype = model.graph().dtype;
        let constants = model.optimizer.constants();
        let mut rng = init::rng(seed);
        let params: Vec<Buffer> = model
            .graph()
            .params
            .iter()
            .zip(&model.inits)
            .map(|(p, init)| {
                Buffer::from_f64(dtype, &init.sample(&p.shape.as_fixed().unwrap(), &mut rng))
            })
            .collect();
        let n_state = model.optimizer.kind.state_arrays();
        let init = model.optimizer.initial_state();
        let state = params
            .iter()
            .flat_map(|p| (0..n_state).map(|_| Buffer::from_f64(dtype, &vec![init; p.len()])))
            .collect();
        Trainer {
            compiled: compiled.clone(),
            params,
            state,
            step: 0,
            opt_step: StepState::default(),
            total_steps: DEFAULT_STEPS,
            horizon_fixed: false,
            run_end: 0,
            check_finite: false,
            training_metrics: false,
            trace_points: 0,
            flush_subnormals: true,
            params_given: false,
            validation: None,
            cursor: Cursor::default(),
            interrupt: None,
            bound_dims: Vec::new(),
            text: None,
            hvp: None,
            data_rng: init::rng(seed ^ 0x9E37_79B9_7F4A_7C15),
            grad_ws: HashMap::new(),
            step_ws: HashMap::new(),
            syms_buf: Vec::new(),
            table: Vec::new(),
            step_scalars: model.optimizer.step_scalars(&constants),
            constants,
            base_lr: model.optimizer.get("lr"),
            fwd_ws: HashMap::new(),
            pred_ws: HashMap::new(),
        }
    }

    /// Sets the parameters initialized from data (`~ mean(y)`, `~ log_prior(label)`,
    /// `~ log_odds(t)`) from the data's marginal statistics.
    pub fn init_from_data(&mut self, data: &Dataset) {
        let model = &self.compiled.model;
        let g = model.graph();
        for (i, init) in model.inits.iter().enumerate() {
            if let crate::init::Init::FromData { stat, input } = init {
                let Some(k) = g.inputs.iter().position(|x| &x.name == input) else {
                    continue;
                };
                let len = self.params[i].len();
                self.params[i] = Buffer::from_f64(g.dtype, &stat.compute(&data.inputs[k], len));
            }
        }
    }

    fn syms(&self, rows: usize) -> Vec<u64> {
        let mut syms = Vec::new();
        self.fill_syms(rows, &mut syms);
        syms
    }

    /// The size of every symbolic dimension for a batch of `rows` rows, into `syms`.
    fn fill_syms(&self, rows: usize, syms: &mut Vec<u64>) {
        syms.clear();
        syms.resize(self.compiled.model.graph().syms.len(), 0);
        for &(s, v) in &self.bound_dims {
            syms[s as usize] = v;
        }
        if let Some(r) = self.compiled.model.row_dim {
            syms[r as usize] = rows as u64;
        }
    }

    /// Computes the loss and every parameter's gradient on a batch; returns the loss.
    /// The gradients are then in `gradient(i)`.
    pub fn value_and_grad(&mut self, inputs: &[Buffer], rows: usize) -> Result<f64, RunError> {
        let syms = self.syms(rows);
        let exe = &self.compiled.gradient;
        let ws = workspace(&mut self.grad_ws, exe, &syms)?;
        exe.run(ws, inputs, &self.params)?;
        Ok(ws.output(&exe.plan, 0).get(0))
    }

    /// The gradient of parameter `i` from the last `value_and_grad` on a batch of `rows` rows.
    pub fn gradient(&self, i: usize, rows: usize) -> Option<&Buffer> {
        let ws = self.grad_ws.get(&self.syms(rows))?;
        Some(ws.output(&self.compiled.gradient.plan, i + 1))
    }

    /// The key of the run's dropout masks: from the seed of the data stream, which checkpoints
    /// keep, so a resumed run draws the masks the uninterrupted run would have.
    fn dropout_run_key(&self) -> u64 {
        crate::ir::dropout::run_key(&self.data_rng.get_seed())
    }

    /// The loss and every gradient of the next training step (`step + 1`) on a batch, as the
    /// training graph computes them: its dropout masks are that step's. The gradients are then
    /// in `step_gradient(i)`.
    fn step_value_and_grad(&mut self, inputs: &[Buffer], rows: usize) -> Result<f64, RunError> {
        let syms = self.syms(rows);
        let key = crate::ir::dropout::step_key(self.dropout_run_key(), self.step + 1);
        let exe = &self.compiled.step;
        let ws = workspace(step_workspaces!(self), exe, &syms)?;
        exe.run_step(ws, inputs, &self.params, key)?;
        Ok(ws.output(&exe.plan, 0).get(0))
    }

    /// The gradient of parameter `i` from the last `step_value_and_grad` on `rows` rows.
    fn step_gradient(&self, i: usize, rows: usize) -> Option<&Buffer> {
        step_gradients(self, rows)?.get(i).copied()
    }

    /// The floating-point modes a step runs in, until the returned guard is dropped.
    fn step_modes(&self) -> Option<FlushSubnormals> {
        FlushSubnormals::when(self.flush_subnormals)
    }

    /// Advances the optimizer's step state; returns the new step's learning rate.
    fn next_lr(&mut self) -> f64 {
        let model = &self.compiled.model;
        self.opt_step = OptimizerSpec::advance_with(&self.constants, &self.opt_step);
        self.step = self.opt_step.t;
        if model.schedule.is_constant() {
            self.base_lr
        } else {
            model
                .schedule
                .lr(self.base_lr, self.opt_step.t, self.total_steps)
        }
    }

    /// Advances the optimizer's step state; returns that step's scalars.
    fn next_scalars(&mut self) -> Vec<f64> {
        let lr = self.next_lr();
        let s = &self.opt_step;
        self.step_scalars.iter().map(|x| x.eval(lr, s)).collect()
    }

    /// One optimizer step on a batch through separate native calls (value-and-gradient, then
    /// the update); returns the loss before the step.
    pub fn train_step(&mut self, inputs: &[Buffer], rows: usize) -> Result<f64, RunError> {
        let _modes = self.step_modes();
        let loss = self.step_value_and_grad(inputs, rows)?;
        self.apply_gradients(rows)?;
        Ok(loss)
    }

    /// One full-batch step of the model's optimizer as `fit` takes it (Newton's method through
    /// `newton_step`, the others through their compiled update); returns the loss before it.
    pub fn optimizer_step(&mut self, inputs: &[Buffer], rows: usize) -> Result<f64, TrainError> {
        if self.compiled.model.optimizer.kind == crate::optim::OptimizerKind::Newton {
            self.newton_step(inputs, rows)
        } else {
            Ok(self.train_step(inputs, rows)?)
        }
    }

    /// The compiled update, with the gradients `step_value_and_grad` left for a batch of `rows`
    /// rows.
    fn apply_gradients(&mut self, rows: usize) -> Result<(), RunError> {
        let scalars = self.next_scalars();
        let syms = self.syms(rows);
        let ws = match self.compiled.graphs.training {
            Some(_) => &self.step_ws[&syms],
            None => &self.grad_ws[&syms],
        };
        let plan = &self.compiled.step.plan;
        let grads: Vec<&Buffer> = (0..self.params.len())
            .map(|i| ws.output(plan, i + 1))
            .collect();
        self.compiled
            .update
            .run(&mut self.params, &grads, &mut self.state, &scalars)?;
        Ok(())
    }

    /// One step that checks everything it computes; a non-finite loss, gradient or parameter is
    /// traced to the op that first produced it, by replaying the step in the interpreter.
    /// With `check_finite` set, the value is traced to the op that first produced it, by
    /// replaying the step in the interpreter. On an error the state is as before the step.
    pub fn checked_step(&mut self, inputs: &[Buffer], rows: usize) -> Result<f64, TrainError> {
        // The replay that locates a non-finite value runs in the same modes as the step.
        let _modes = self.step_modes();
        let before = (
            self.params.clone(),
            self.state.clone(),
            self.opt_step.clone(),
            self.step,
        );
        let loss = self.step_value_and_grad(inputs, rows)?;
        let names = &self.compiled.model.graph().params;
        let bad_gradient = (0..self.params.len()).find_map(|i| {
            let v = self.step_gradient(i, rows)?.first_non_finite()?;
            Some(format!("the gradient of `{}` became {v}", names[i].name))
        });
        let step = self.step + 1;
        let bad = match bad_gradient {
            _ if !loss.is_finite() => Some(format!("the loss became {loss}")),
            other => other,
        };
        if let Some(what) = bad {
            let origin = self
                .check_finite
                .then(|| self.locate_non_finite(inputs, rows))
                .flatten();
            return Err(match origin {
                Some(origin) => TrainError::NonFiniteAt { step, origin },
                None => TrainError::Diverged {
                    step,
                    what,
                    last_loss: None,
                    located: self.check_finite,
                },
            });
        }
        self.apply_gradients(rows)?;
        if let Some(what) = self.non_finite_param() {
            (self.params, self.state, self.opt_step, self.step) = before;
            return Err(TrainError::Diverged {
                step,
                what: format!("the optimizer update made {what} (its gradients were finite)"),
                last_loss: None,
                located: true,
            });
        }
        Ok(loss)
    }

    /// Names the first parameter holding a non-finite value, with the value.
    fn non_finite_param(&self) -> Option<String> {
        let names = &self.compiled.model.graph().params;
        self.params.iter().zip(names).find_map(|(p, info)| {
            let v = p.first_non_finite()?;
            Some(format!("parameter `{}` {v}", info.name))
        })
    }

    fn finite_state(&self, loss: Option<(u64, f64)>) -> FiniteState {
        FiniteState {
            params: self.params.clone(),
            state: self.state.clone(),
            opt_step: self.opt_step.clone(),
            step: self.step,
            cursor: self.cursor.clone(),
            data_rng: copy_rng(&self.data_rng),
            loss,
        }
    }

    fn restore(&mut self, s: FiniteState) {
        self.params = s.params;
        self.state = s.state;
        self.opt_step = s.opt_step;
        self.step = s.step;
        self.cursor = s.cursor;
        self.data_rng = s.data_rng;
    }

    fn locate_non_finite(&self, inputs: &[Buffer], rows: usize) -> Option<NonFiniteOrigin> {
        let f = self.compiled.graphs.step_gradient();
        let g = &f.graph;
        let syms = self.syms(rows);
        let tensors = |bufs: &[Buffer], shapes: Vec<crate::ir::Shape>| -> Vec<crate::ir::Tensor> {
            bufs.iter()
                .zip(shapes)
                .map(|(b, s)| crate::ir::Tensor::new(s.concrete(&syms), b.to_f64()))
                .collect()
        };
        let ins = tensors(inputs, g.inputs.iter().map(|i| i.shape.clone()).collect());
        let params = tensors(
            &self.params,
            g.params.iter().map(|p| p.shape.clone()).collect(),
        );
        let roots: Vec<crate::ir::NodeId> = f.outputs.iter().map(|o| o.1).collect();
        let rounding = crate::ir::interp::Rounding {
            dtype: g.dtype,
            flush_subnormals: self.flush_subnormals,
        };
        // The step being replayed is the next one (`checked_step` has not advanced).
        let key = crate::ir::dropout::step_key(self.dropout_run_key(), self.step + 1);
        let values =
            crate::ir::interp::eval_rounded(g, &ins, &params, &syms, &roots, Some(rounding), key);
        let bad = |id: crate::ir::NodeId| {
            values[id.index()]
                .as_ref()
                .and_then(|t| t.data.iter().copied().find(|v| !v.is_finite()))
        };
        g.ids().find_map(|id| {
            let v = bad(id)?;
            if g.node(id).inputs.iter().any(|&a| bad(a).is_some()) {
                return None;
            }
            Some(NonFiniteOrigin {
                op: g.op(id).name(),
                span: g.span(id),
                rule: g.rule(id),
                value: v,
            })
        })
    }

    /// One Newton step: the exact Hessian H (the gradient graph differentiated again, evaluated
    /// in f64), the direction d solving (H + λI)d = g by Cholesky, then the compiled update
    /// θ ← θ − lr·d. When H + λI is not positive definite, λ grows tenfold (from
    /// 1e-8·mean |diag H|) until it is: a Levenberg–Marquardt safeguard.
    pub fn newton_step(&mut self, inputs: &[Buffer], rows: usize) -> Result<f64, TrainError> {
        const MAX_PARAMS: usize = 2000;
        let _modes = self.step_modes();
        let loss = self.step_value_and_grad(inputs, rows)?;
        let g: Vec<f64> = (0..self.params.len())
            .flat_map(|i| self.step_gradient(i, rows).expect("just computed").to_f64())
            .collect();
        let n = g.len();
        if n > MAX_PARAMS {
            return Err(TrainError::Newton(format!(
                "at most {MAX_PARAMS} parameters for its dense Hessian; this model has {n}"
            )));
        }
        let graph = self.compiled.model.graph().clone();
        let syms = self.syms(rows);
        let point = crate::inspect::Point {
            inputs: inputs
                .iter()
                .zip(&graph.inputs)
                .map(|(b, i)| crate::ir::Tensor::new(i.shape.concrete(&syms), b.to_f64()))
                .collect(),
            params: self
                .params
                .iter()
                .zip(&graph.params)
                .map(|(b, p)| crate::ir::Tensor::new(p.shape.concrete(&syms), b.to_f64()))
                .collect(),
            syms,
        };
        let h = self
            .hvp
            .get_or_insert_with(|| crate::inspect::hvp_graph(&self.compiled.graphs.forward));
        let hess = crate::inspect::hessian(h, &point);
        let mut damping = self.compiled.model.optimizer.get("damping");
        let scale = (0..n).map(|i| hess[i][i].abs()).sum::<f64>() / n.max(1) as f64;
        let d = loop {
            if let Some(d) = cholesky_solve(&hess, damping, &g) {
                break d;
            }
            damping = if damping == 0.0 {
                1e-8 * scale.max(1e-300)
            } else {
                damping * 10.0
            };
            if !damping.is_finite() {
                return Err(TrainError::Newton("a Hessian with finite entries".into()));
            }
        };
        let dtype = graph.dtype;
        let mut off = 0;
        let dirs: Vec<Buffer> = self
            .params
            .iter()
            .map(|p| {
                let b = Buffer::from_f64(dtype, &d[off..off + p.len()]);
                off += p.len();
                b
            })
            .collect();
        let scalars = self.next_scalars();
        let refs: Vec<&Buffer> = dirs.iter().collect();
        self.compiled
            .update
            .run(&mut self.params, &refs, &mut self.state, &scalars)?;
        Ok(loss)
    }

    /// `k` steps on the same batch through the fused native loop; returns the loss computed
    /// by the last step, before its update.
    pub fn train_steps(&mut self, inputs: &[Buffer], rows: usize, k: u64) -> Result<f64, RunError> {
        // Each step's learning rate goes through a table; chunks keep it small and in cache.
        const CHUNK: u64 = 2048;
        let mut loss = f64::NAN;
        let mut left = k;
        while left > 0 {
            let n = left.min(CHUNK);
            loss = self.train_chunk(inputs, rows, n)?;
            left -= n;
        }
        Ok(loss)
    }

    fn train_chunk(&mut self, inputs: &[Buffer], rows: usize, k: u64) -> Result<f64, RunError> {
        let _modes = self.step_modes();
        let mut table = std::mem::take(&mut self.table);
        table.clear();
        table.push(0.0); // the step count, filled in by the loop's runner
        // The dropout key of the step before the first: the loop adds γ a step.
        let key = crate::ir::dropout::step_key(self.dropout_run_key(), self.step);
        table.push(f64::from_bits(key));
        table.push(self.opt_step.pow1);
        table.push(self.opt_step.pow2);
        for _ in 0..k {
            let lr = self.next_lr();
            table.push(lr);
        }
        // The dimensions into a buffer kept between steps: no allocation per step.
        let mut syms = std::mem::take(&mut self.syms_buf);
        self.fill_syms(rows, &mut syms);
        let exe = &self.compiled.step;
        let ws = workspace(step_workspaces!(self), exe, &syms)?;
        self.syms_buf = syms;
        let res = self.compiled.train_loop.run(
            exe,
            ws,
            inputs,
            &mut self.params,
            &mut self.state,
            &mut table,
            k,
        );
        self.table = table;
        res?;
        Ok(ws.output(&exe.plan, 0).get(0))
    }

    /// The model's `output` values on a batch: one array per output, a row per data row.
    pub fn predict(
        &mut self,
        inputs: &[Buffer],
        rows: usize,
    ) -> Result<Vec<(String, crate::ir::Tensor)>, RunError> {
        let syms = self.syms(rows);
        let Some(exe) = &self.compiled.predict else {
            return Ok(vec![]);
        };
        let ws = workspace(&mut self.pred_ws, exe, &syms)?;
        exe.run(ws, inputs, &self.params)?;
        let outputs = &self
            .compiled
            .graphs
            .predict
            .as_ref()
            .expect("compiled with its graph")
            .outputs;
        Ok(outputs
            .iter()
            .enumerate()
            .map(|(k, (name, id))| {
                let shape = self
                    .compiled
                    .graphs
                    .predict
                    .as_ref()
                    .unwrap()
                    .graph
                    .shape(*id)
                    .concrete(&syms);
                (
                    name.clone(),
                    crate::ir::Tensor::new(shape, ws.output(&exe.plan, k).to_f64()),
                )
            })
            .collect())
    }

    /// The loss and each metric on a batch, with their names; a vector metric's elements are
    /// entries of their own, `name[i]`.
    pub fn evaluate(
        &mut self,
        inputs: &[Buffer],
        rows: usize,
    ) -> Result<Vec<(String, f64)>, RunError> {
        Ok(self
            .evaluate_metrics(inputs, rows)?
            .into_iter()
            .flat_map(|m| match m.values[..] {
                [v] if !m.is_vector => vec![(m.name, v)],
                _ => m
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{}[{i}]", m.name), *v))
                    .collect(),
            })
            .collect())
    }

    /// The loss and each metric on a batch, a vector metric as one entry with all its values.
    pub fn evaluate_metrics(
        &mut self,
        inputs: &[Buffer],
        rows: usize,
    ) -> Result<Vec<Metric>, RunError> {
        let syms = self.syms(rows);
        let exe = &self.compiled.forward;
        let ws = workspace(&mut self.fwd_ws, exe, &syms)?;
        exe.run(ws, inputs, &self.params)?;
        let f = &self.compiled.graphs.forward;
        Ok(f.outputs
            .iter()
            .enumerate()
            .map(|(k, (name, id))| Metric {
                name: name.clone(),
                values: ws.output(&exe.plan, k).to_f64(),
                is_vector: !f.graph.shape(*id).is_scalar(),
            })
            .collect())
    }

    /// Trains as the settings say, calling `log` every `log_every` steps and at the end.
    /// Returns false when `interrupt` stopped the run early (the state is consistent: every
    /// step taken is complete).
    pub fn fit(
        &mut self,
        data: Option<&Dataset>,
        settings: &TrainSettings,
        mut log: impl FnMut(&Progress),
    ) -> Result<bool, TrainError> {
        let dtype = self.compiled.model.graph().dtype;
        let has_inputs = !self.compiled.model.graph().inputs.is_empty();
        let (full, rows) = match data {
            Some(d) if has_inputs => (
                d.inputs
                    .iter()
                    .map(|v| Buffer::from_f64(dtype, v))
                    .collect::<Vec<_>>(),
                d.n_rows,
            ),
            None if has_inputs => return Err(TrainError::NoData),
            _ => (vec![], 0),
        };
        if let Some(d) = data {
            self.bound_dims = d.dims.clone();
            if self.step == 0 && !self.params_given {
                self.init_from_data(d);
            }
        }
        let corpus = data.and_then(|d| d.corpus.clone());
        if corpus.is_some() && settings.batch.is_none() {
            return Err(TrainError::TextNeedsBatch);
        }
        // Random windows of a text are batches of any size; rows are batched below their count.
        let batch = settings
            .batch
            .map(|b| b as usize)
            .filter(|&b| has_inputs && (b < rows || corpus.is_some()));
        if batch.is_some()
            && self.compiled.model.optimizer.kind == crate::optim::OptimizerKind::Newton
        {
            return Err(TrainError::Newton(
                "full batches: remove `batch`, the Hessian is of the whole loss".into(),
            ));
        }
        // Batches of windows are always whole: `drop_last` is for rows.
        let drop_last = settings.drop_last && corpus.is_none();
        let steps_per_epoch = match batch {
            Some(b) if drop_last => (rows / b) as u64,
            Some(b) => rows.div_ceil(b) as u64,
            None => 1,
        };
        // With `drop_last`, an epoch ends before a batch that would be partial.
        let epoch_rows = match batch {
            Some(b) if drop_last => rows / b * b,
            _ => rows,
        };
        let total = match (settings.steps, settings.epochs) {
            (Some(s), _) => s,
            (None, Some(e)) => e * steps_per_epoch,
            (None, None) => DEFAULT_STEPS,
        };
        let every = if settings.log_every_epochs > 0 {
            settings.log_every_epochs.saturating_mul(steps_per_epoch)
        } else if settings.log_every > 0 {
            settings.log_every
        } else {
            (total / 10).max(1)
        };
        if !self.horizon_fixed {
            self.total_steps = total;
        }
        let trace_every = match self.trace_points {
            0 => u64::MAX,
            n => (total / n).max(1),
        };
        let mut trace = Vec::new();
        let widths: Vec<usize> = data.map(|d| d.widths.clone()).unwrap_or_default();
        // Inputs read whole (without rows) are the same in every batch.
        let whole: Vec<bool> = (0..widths.len())
            .map(|k| data.is_some_and(|d| d.is_whole(k)))
            .collect();
        let mut batch_bufs: Vec<Buffer> = (0..widths.len())
            .map(|k| match whole[k] {
                true => full[k].clone(),
                false => Buffer::zeros(dtype, 0),
            })
            .collect();
        let mut windows = corpus.as_ref().map(|c| TextBatches::new(c, dtype));
        // The data cursor lives in the trainer, so a resumed run continues the same epoch. A
        // text's cursor counts the windows drawn in this epoch; rows' is their shuffled order.
        if let Some(c) = &corpus {
            self.text = Some(c.identity());
            if !self.cursor.windows {
                self.cursor = Cursor {
                    order: vec![],
                    pos: rows,
                    epoch: 0,
                    windows: true,
                };
            }
        } else if self.cursor.order.len() != rows || self.cursor.windows {
            self.cursor = Cursor {
                order: (0..rows).collect(),
                pos: rows,
                epoch: 0,
                windows: false,
            };
        }
        let mut epoch = self.cursor.epoch;
        let mut s = self.step;
        let end = self.step.saturating_add(total);
        self.run_end = end;
        let mut chunk = InterruptibleChunk::new();
        let mut best: Option<(BestPoint, Vec<Buffer>)> = None;
        let mut since_best = 0;
        // This epoch's training loss so far: the sum of its steps' losses times their rows (and
        // its value at the last log point, where a replay starts from).
        let (mut epoch_loss, mut epoch_loss_rows) = (0.0, 0usize);
        let mut epoch_loss_at_log = (epoch_loss, epoch_loss_rows);
        // Unchecked steps are checked at log points; when one finds a non-finite value, the run
        // goes back to the last log point's state and replays from there checking every step,
        // which stops at the step that produced it with the state from before that step.
        let mut checking = self.check_finite;
        let mut last_finite = self.finite_state(None);
        let mut last_loss: Option<(u64, f64)> = None;
        while s < end {
            if self
                .interrupt
                .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
            {
                return Ok(false);
            }
            let (loss, done) = match batch {
                None if self.compiled.model.optimizer.kind
                    == crate::optim::OptimizerKind::Newton =>
                {
                    (self.newton_step(&full, rows)?, 1)
                }
                None if checking => (
                    self.checked_step(&full, rows)
                        .map_err(|e| e.after(last_loss))?,
                    1,
                ),
                None => {
                    // Full batch: run up to the next log point in one native call, or, when a
                    // stop request must be seen in time, as many steps as fit in a chunk.
                    let mut k = (every - s % every)
                        .min(end - s)
                        .min(trace_every - s % trace_every);
                    if self.interrupt.is_some() {
                        k = k.min(chunk.steps);
                    }
                    let started = std::time::Instant::now();
                    let loss = self.train_steps(&full, rows, k)?;
                    chunk.measured(k, started.elapsed());
                    (loss, k)
                }
                Some(b) => {
                    // A failed checked step leaves the data where it was before the step too.
                    let data_before =
                        checking.then(|| (self.cursor.clone(), copy_rng(&self.data_rng)));
                    if self.cursor.pos >= epoch_rows {
                        shuffle(&mut self.cursor.order, &mut self.data_rng);
                        self.cursor.pos = 0;
                        self.cursor.epoch += 1;
                        (epoch_loss, epoch_loss_rows) = (0.0, 0);
                    }
                    epoch = self.cursor.epoch;
                    let pos = self.cursor.pos;
                    let n_batch = match windows.as_mut() {
                        // Every batch of windows is whole: an epoch is the steps that draw
                        // about as many windows as tile the text.
                        Some(w) => {
                            w.draw(b, &mut self.data_rng, &mut batch_bufs);
                            self.cursor.pos = (pos + b).min(rows);
                            b
                        }
                        None => {
                            // The last batch of an epoch holds the remaining rows; it runs with
                            // its own row count, so its mean is over the rows it has.
                            let stop = (pos + b).min(rows);
                            for (k, buf) in batch_bufs.iter_mut().enumerate() {
                                if !whole[k] {
                                    let order = &self.cursor.order[pos..stop];
                                    full[k].gather_rows(widths[k], order, buf);
                                }
                            }
                            self.cursor.pos = stop;
                            stop - pos
                        }
                    };
                    let loss = if let Some((cursor, data_rng)) = data_before {
                        match self.checked_step(&batch_bufs, n_batch) {
                            Ok(loss) => loss,
                            Err(e) => {
                                (self.cursor, self.data_rng) = (cursor, data_rng);
                                return Err(e.after(last_loss));
                            }
                        }
                    } else {
                        self.train_steps(&batch_bufs, n_batch, 1)?
                    };
                    epoch_loss += loss * n_batch as f64;
                    epoch_loss_rows += n_batch;
                    (loss, 1)
                }
            };
            s += done;
            if batch.is_none() {
                epoch = s;
            }
            let log_point = s.is_multiple_of(every) || s == end;
            let non_finite = if !loss.is_finite() {
                Some(format!("the loss became {loss}"))
            } else if log_point && !checking {
                self.non_finite_param()
                    .map(|p| format!("{p} after the update"))
            } else {
                None
            };
            if let Some(what) = non_finite {
                if checking {
                    // Only Newton's steps get here: they are not checked one by one.
                    return Err(TrainError::Diverged {
                        step: s,
                        what,
                        last_loss,
                        located: self.check_finite,
                    });
                }
                last_loss = last_finite.loss;
                self.restore(std::mem::replace(&mut last_finite, self.finite_state(None)));
                s = self.step;
                epoch = if batch.is_none() {
                    s
                } else {
                    self.cursor.epoch
                };
                (epoch_loss, epoch_loss_rows) = epoch_loss_at_log;
                trace.clear();
                checking = true;
                continue;
            }
            if s.is_multiple_of(trace_every) {
                trace.push((s, loss));
            }
            if checking {
                last_loss = Some((s, loss));
            }
            if log_point {
                let mean_loss = match batch {
                    Some(_) => epoch_loss / epoch_loss_rows.max(1) as f64,
                    None => loss,
                };
                let has_metrics = self.compiled.graphs.forward.outputs.len() > 1;
                let training = if self.training_metrics && has_metrics && has_inputs {
                    let mut all = self.evaluate(&full, rows)?;
                    all.remove(0);
                    all
                } else {
                    vec![]
                };
                let validation = match &self.validation {
                    Some(v) => {
                        let bufs: Vec<Buffer> = v
                            .inputs
                            .iter()
                            .map(|x| Buffer::from_f64(dtype, x))
                            .collect();
                        self.evaluate(&bufs, v.n_rows)?
                    }
                    None => vec![],
                };
                // Early stopping keeps the parameters of the best validation loss.
                let mut stop = false;
                if settings.patience > 0
                    && let Some((_, vloss)) = validation.first()
                {
                    if best
                        .as_ref()
                        .is_none_or(|(b, _)| *vloss < b.validation_loss)
                    {
                        let point = BestPoint {
                            step: s,
                            epoch,
                            validation_loss: *vloss,
                        };
                        best = Some((point, self.params.clone()));
                        since_best = 0;
                    } else {
                        since_best += 1;
                        stop = since_best >= settings.patience;
                    }
                }
                let restored = match best.take() {
                    Some((point, params)) if stop => {
                        self.params = params;
                        Some(point)
                    }
                    kept => {
                        best = kept;
                        None
                    }
                };
                log(&Progress {
                    step: s,
                    epoch,
                    loss: mean_loss,
                    training,
                    validation,
                    trace: std::mem::take(&mut trace),
                    restored,
                    end,
                });
                last_finite = self.finite_state(Some((s, loss)));
                epoch_loss_at_log = (epoch_loss, epoch_loss_rows);
                if stop {
                    break;
                }
            }
        }
        Ok(true)
    }
}

/// How many full-batch steps one native call may run while a stop request (Ctrl-C) is waited
/// for: sized from the measured step time so that a call takes about `TARGET`, so the request
/// is seen within that much work whatever the log interval. A call this long makes the checks
/// between calls cost nothing measurable.
struct InterruptibleChunk {
    steps: u64,
}

impl InterruptibleChunk {
    const TARGET: std::time::Duration = std::time::Duration::from_millis(40);

    /// The first call runs one step, to measure it.
    fn new() -> InterruptibleChunk {
        InterruptibleChunk { steps: 1 }
    }

    /// Sizes the next chunk from a call of `k` steps that took `took`; it grows at most
    /// fourfold per call, so a call too short to time well cannot make the next one overshoot
    /// the target by much.
    fn measured(&mut self, k: u64, took: std::time::Duration) {
        let per_step = took.as_secs_f64() / k.max(1) as f64;
        let fits = (Self::TARGET.as_secs_f64() / per_step.max(1e-12)) as u64;
        self.steps = fits.clamp(1, k.saturating_mul(4).max(4));
    }
}

/// Solves (A + λI)x = b for symmetric A by Cholesky; `None` when A + λI is not positive definite.
fn cholesky_solve(a: &[Vec<f64>], lambda: f64, b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            // The Hessian is symmetric up to rounding; use its symmetric part.
            let aij = 0.5 * (a[i][j] + a[j][i]) + if i == j { lambda } else { 0.0 };
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = aij - s;
                // Not positive definite, or NaN: no factor.
                if !(d.is_finite() && d > 0.0) {
                    return None;
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (aij - s) / l[j][j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    Some(x)
}

/// The workspace for one binding of the dimensions, allocated on first use (after checking it
/// fits in memory) and reused after.
fn workspace<'w>(
    map: &'w mut HashMap<Vec<u64>, Workspace>,
    exe: &crate::runtime::Executable,
    syms: &[u64],
) -> Result<&'w mut Workspace, RunError> {
    if !map.contains_key(syms) {
        let ws = Workspace::new(&exe.plan, exe.dtype, syms)?;
        map.insert(syms.to_vec(), ws);
    }
    Ok(map.get_mut(syms).expect("inserted above"))
}

/// A copy of the data stream at its current position (the generator itself is not `Clone`).
fn copy_rng(rng: &ChaCha8Rng) -> ChaCha8Rng {
    let mut copy = ChaCha8Rng::from_seed(rng.get_seed());
    copy.set_stream(rng.get_stream());
    copy.set_word_pos(rng.get_word_pos());
    copy
}

/// Fisher–Yates with the trainer's own stream, so runs with the same seed see the same batches.
fn shuffle(v: &mut [usize], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}
