//! What a run holds in memory at once, added up before its first step and checked against the
//! budget (`limits::memory_budget`): an allocation above it aborts the process, losing
//! whatever the run had, so every command that allocates by the model's sizes asks first.
//!
//! Every figure is in the model's own element size (the data too: it is read straight into it),
//! except what is f64 whatever the model's dtype: the initializers' samples and the reference
//! interpreter's values.

use crate::compile::CompiledModel;
use crate::data::Dataset;
use crate::ir::{Graph, NodeId, Shape};
use crate::lower::Plan;
use crate::model::GraphFn;
use crate::runtime::{Workspace, human_bytes};

/// What a command runs, which decides the workspaces it holds at once.
#[derive(Clone, Copy, Debug)]
pub enum Run<'a> {
    /// Gradient steps on batches, the forward pass on all rows (in chunks) at each log point.
    Training,
    /// The forward pass (in chunks) and the outputs (for a confusion matrix) on all rows.
    Evaluation,
    /// The model's `output` values on all rows.
    Prediction,
    /// The compiled gradient and the reference interpreter's forward pass, on all rows.
    GradientCheck,
    /// Hessian-vector products of `hvp` in the reference interpreter, after training as the
    /// model says when `trained`.
    Inspection { hvp: &'a GraphFn, trained: bool },
    /// Optimizers stepped on a loss of two scalars, its surface drawn by the forward pass.
    Race,
    /// An embedding session: training, evaluation and prediction on the bound rows.
    Session,
}

impl Run<'_> {
    fn name(&self) -> &'static str {
        match self {
            Run::Training => "training",
            Run::Evaluation => "evaluation",
            Run::Prediction => "prediction",
            Run::GradientCheck => "the gradient check",
            Run::Inspection { .. } => "the inspection",
            Run::Race => "the race",
            Run::Session => "the session",
        }
    }
}

/// The rows a run works on, and the sizes of the data's symbolic column dimensions.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    pub rows: u64,
    /// Rows per gradient step (all rows when `None`).
    pub batch: Option<u64>,
    pub dims: &'a [(u32, u64)],
    /// Values of the inputs, held in the model's dtype (as read: no other copy).
    pub values: u128,
}

impl<'a> Rows<'a> {
    /// The rows of `data` (none: a model without inputs).
    pub fn of(data: Option<&'a Dataset>, batch: Option<u64>) -> Rows<'a> {
        Rows {
            rows: data.map_or(0, |d| d.n_rows as u64),
            batch,
            dims: data.map_or(&[][..], |d| &d.dims),
            values: data.map_or(0, |d| d.inputs.iter().map(|v| v.len() as u128).sum()),
        }
    }

    /// The binding of the symbolic dimensions with `rows` rows.
    fn syms(&self, g: &Graph, rows: u64) -> Vec<u64> {
        let mut syms = vec![rows.max(1); g.syms.len()];
        for &(s, v) in self.dims {
            syms[s as usize] = v;
        }
        syms
    }
}

/// The bytes a run holds at once, by kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Footprint {
    /// Parameters, and the f64 values their initializers draw.
    pub params: u64,
    /// The optimizer's state arrays.
    pub state: u64,
    /// The native functions' workspaces, with temporaries sharing buffers as the plans say.
    pub workspace: u64,
    /// The same if no two temporaries shared a buffer.
    pub workspace_without_reuse: u64,
    /// Every node's value of the graphs the reference interpreter evaluates (f64).
    pub reference: u64,
    /// The data, in the model's dtype (read straight into it and trained on in place).
    pub data: u64,
}

impl Footprint {
    /// All of it, in bytes.
    pub fn total(&self) -> u64 {
        [self.state, self.workspace, self.reference, self.data]
            .iter()
            .fold(self.params, |a, &b| a.saturating_add(b))
    }

    fn parts(&self) -> String {
        let mut parts = vec![format!("parameters {}", human_bytes(self.params))];
        if self.state > 0 {
            parts.push(format!("optimizer state {}", human_bytes(self.state)));
        }
        parts.push(format!("workspace {}", human_bytes(self.workspace)));
        if self.reference > 0 {
            parts.push(format!("reference values {}", human_bytes(self.reference)));
        }
        if self.data > 0 {
            parts.push(format!("data {}", human_bytes(self.data)));
        }
        parts.join(", ")
    }
}

/// A run refused before its first step: what it would take and what the process may use.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{what} would take {} ({}), more than the {} this process may use",
    human_bytes(self.need.total()),
    self.need.parts(),
    human_bytes(self.limit)
)]
pub struct MemoryError {
    /// The run refused (`training`, `the gradient check`, ...).
    pub what: &'static str,
    /// What it would take.
    pub need: Footprint,
    /// What this process may use: the machine's memory, its cgroup's and its rlimits.
    pub limit: u64,
}

/// Checks that a training run of `compiled` on `data` in batches of `batch` rows (all rows
/// when `None`) fits in memory.
pub fn check_memory(
    compiled: &CompiledModel,
    data: Option<&Dataset>,
    batch: Option<u64>,
) -> Result<Footprint, MemoryError> {
    check(Run::Training, compiled, Rows::of(data, batch))
}

/// Checks that `run` of `compiled` on `rows` fits in memory; what it would take.
pub fn check(run: Run, compiled: &CompiledModel, rows: Rows) -> Result<Footprint, MemoryError> {
    let need = footprint(run, compiled, rows);
    let limit = crate::limits::memory_budget();
    if need.total() > limit {
        return Err(MemoryError {
            what: run.name(),
            need,
            limit,
        });
    }
    Ok(need)
}

fn clip(b: u128) -> u64 {
    b.min(u64::MAX as u128) as u64
}

/// Adds up what `run` holds at once.
pub fn footprint(run: Run, compiled: &CompiledModel, rows: Rows) -> Footprint {
    let model = &compiled.model;
    let g = model.graph();
    let size = g.dtype.size() as u128;
    let lens: Vec<u128> = g.params.iter().map(|p| fixed_elements(&p.shape)).collect();
    let elements: u128 = lens.iter().sum();
    // The largest initializer's sample lives as f64 while it is converted.
    let sample = lens.iter().max().copied().unwrap_or(0) * 8;
    let params = elements * size + sample;
    let state = elements * size * model.optimizer.kind.state_arrays() as u128;
    let all = rows.rows;
    let batch = rows.batch.map_or(all, |b| b.min(all));
    // A last batch shorter than the others binds a workspace of its own.
    let short = match batch {
        0 => 0,
        b => all % b,
    };
    // Evaluations on all rows run in chunks where the model's outputs combine over them.
    let evaluated =
        crate::chunks::rows_per_pass(compiled, all as usize, |n| rows.syms(g, n as u64)) as u64;
    let plans: Vec<(&Plan, u64)> = {
        let gradient = &compiled.gradient.plan;
        // Training steps bind the training graph's plan (the gradient's, unless the model has
        // `dropout`).
        let step = &compiled.step.plan;
        let forward = &compiled.forward.plan;
        let predict = compiled.predict.as_ref().map(|p| &p.plan);
        let mut plans = Vec::new();
        match run {
            Run::Training => {
                plans.extend([(step, batch), (forward, evaluated)]);
                if short > 0 {
                    plans.push((step, short));
                }
            }
            Run::Evaluation => {
                plans.push((forward, evaluated));
                plans.extend(predict.map(|p| (p, all)));
            }
            Run::Prediction => plans.extend(predict.map(|p| (p, all))),
            Run::GradientCheck => plans.push((gradient, all)),
            Run::Inspection { trained, .. } => {
                if trained {
                    plans.extend([(step, batch), (forward, evaluated)]);
                }
            }
            Run::Race | Run::Session => {
                plans.extend([(gradient, all), (forward, evaluated)]);
                if compiled.graphs.training.is_some() {
                    plans.push((step, all));
                }
                plans.extend(predict.map(|p| (p, all)));
            }
        }
        plans
    };
    let (mut workspace, mut without) = (0u128, 0u128);
    for (plan, n) in plans {
        let syms = rows.syms(g, n);
        workspace += Workspace::bytes(plan, g.dtype, &syms);
        without += Workspace::bytes_without_reuse(plan, g.dtype, &syms);
    }
    let syms = rows.syms(g, all);
    let reference = match run {
        // The loss alone, at each point and direction of the check.
        Run::GradientCheck => {
            let f = &compiled.graphs.forward;
            reference_bytes(f, &f.outputs[..1], &syms)
        }
        // The products H·v (the first output is g·v, which they do not need).
        Run::Inspection { hvp, .. } => reference_bytes(hvp, &hvp.outputs[1..], &syms),
        Run::Training | Run::Evaluation | Run::Prediction | Run::Race | Run::Session => 0,
    };
    Footprint {
        params: clip(params),
        state: clip(state),
        workspace: clip(workspace),
        workspace_without_reuse: clip(without),
        reference: clip(reference),
        data: clip(rows.values * size),
    }
}

fn fixed_elements(shape: &Shape) -> u128 {
    let dims = shape.as_fixed().expect("parameters have fixed shapes");
    dims.iter().map(|&d| d as u128).product()
}

/// The reference interpreter keeps the value of every node of `f` that `outputs` need, as f64.
fn reference_bytes(f: &GraphFn, outputs: &[(String, NodeId)], syms: &[u64]) -> u128 {
    let roots: Vec<_> = outputs.iter().map(|o| o.1).collect();
    let live = f.graph.reachable(&roots);
    f.graph
        .ids()
        .filter(|id| live[id.index()])
        .map(|id| {
            let dims = f.graph.shape(id).concrete(syms);
            dims.iter().map(|&d| d as u128).product::<u128>() * 8
        })
        .sum()
}
