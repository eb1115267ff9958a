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

mod step;
pub use step::StepValues;
use step::*;
mod non_finite;
pub use non_finite::*;
mod batches;
mod evaluate;
mod newton;
pub use batches::*;

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

/// Parameters and optimizer state of one training run of a compiled model.
pub struct Trainer {
    pub compiled: CompiledModel,
    pub params: Vec<Buffer>,
    /// Optimizer state arrays, `state_arrays()` per parameter.
    pub state: Vec<Buffer>,
    /// The model's state tensors (`Graph::states`: batch normalization's running statistics),
    /// which training steps update and evaluation reads; empty for most models.
    pub model_state: Vec<Buffer>,
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
            .flat_map(|p| (0..n_state).map(|_| Buffer::filled(dtype, p.len(), init)))
            .collect();
        let model_state = crate::ir::interp::initial_states(model.graph())
            .iter()
            .map(|t| Buffer::from_f64(dtype, &t.data))
            .collect();
        Trainer {
            compiled: compiled.clone(),
            params,
            state,
            model_state,
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
                let values = data.inputs[k].to_f64();
                self.params[i] = Buffer::from_f64(g.dtype, &stat.compute(&values, len));
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
        // The data's own buffers when they are in the model's dtype (as loading reads them): a
        // run holds one copy of its rows.
        let (full, rows) = match data {
            Some(d) if has_inputs => (in_dtype(&d.inputs, dtype), d.n_rows),
            None if has_inputs => return Err(TrainError::NoData),
            _ => (std::borrow::Cow::Owned(vec![]), 0),
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
        if self.compiled.graphs.training.is_some()
            && self.compiled.model.optimizer.kind == crate::optim::OptimizerKind::Newton
        {
            // Its Hessian-vector products are of the evaluation graph: the steps would follow
            // a loss other than the one the model trains.
            return Err(TrainError::Newton(
                "a loss that training computes as evaluation does: this model's training step differs (dropout, batch_norm); remove it or choose another optimizer".into(),
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
                // The rows are evaluated in place, lent out of the trainer for the call.
                let validation = match self.validation.take() {
                    Some(v) => {
                        let values = self.evaluate(&in_dtype(&v.inputs, dtype), v.n_rows);
                        self.validation = Some(v);
                        values?
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

/// Buffers in `dtype`: `inputs` themselves when every one is in it already, else a copy.
pub fn in_dtype(inputs: &[Buffer], dtype: crate::ir::DType) -> std::borrow::Cow<'_, [Buffer]> {
    match inputs.iter().all(|b| b.dtype() == dtype) {
        true => std::borrow::Cow::Borrowed(inputs),
        false => std::borrow::Cow::Owned(
            inputs
                .iter()
                .map(|b| b.in_dtype(dtype).into_owned())
                .collect(),
        ),
    }
}
