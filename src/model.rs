//! A checked model: the forward graph plus everything the file says about training it.

use crate::diagnostics::Span;
use crate::init::Init;
use crate::ir::indices::IndexLimit;
use crate::ir::{Graph, NodeId};
use crate::optim::{LrSchedule, OptimizerSpec};

/// A graph with named outputs: the unit the simplifier, the printer and the JIT work on.
#[derive(Clone, Debug)]
pub struct GraphFn {
    /// The nodes.
    pub graph: Graph,
    /// The named results, in order.
    pub outputs: Vec<(String, NodeId)>,
}

impl GraphFn {
    /// The node of a named output.
    pub fn output(&self, name: &str) -> Option<NodeId> {
        self.outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
    }

    /// The canonical text form.
    pub fn text(&self) -> String {
        crate::ir::print::print(&self.graph, &self.outputs)
    }
}

/// Where an input's values come from in a table of data.
#[derive(Clone, Debug, PartialEq)]
pub struct InputBinding {
    /// Names of the CSV columns, one per element of a row.
    pub columns: Vec<String>,
    /// For an input whose column count is a symbol: the prefix of its numbered columns.
    pub prefix: Option<String>,
    /// For an input read from a NumPy `.npy` file: its path, relative to the model file.
    pub file: Option<String>,
    /// For an input read as windows of a text's characters (`from text "corpus.txt"`).
    pub text: Option<TextWindows>,
    /// The declaration.
    pub span: Span,
}

/// An input whose rows are windows of a text's characters, as token indices into the text's
/// vocabulary: row r holds the characters `start_r + offset .. start_r + offset + T`.
#[derive(Clone, Debug, PartialEq)]
pub struct TextWindows {
    /// The text file, relative to the model file.
    pub file: String,
    /// How many characters further on than an unshifted window this one starts (1 for the
    /// next-character labels).
    pub offset: u64,
}

/// How training runs, as written in the file and possibly overridden on the command line.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSettings {
    /// Optimizer steps to run.
    pub steps: Option<u64>,
    /// Passes over the data to run (when `steps` is not given).
    pub epochs: Option<u64>,
    /// Minibatch size; `None` means full batch.
    pub batch: Option<u64>,
    /// Seed of initialization and shuffling.
    pub seed: u64,
    /// Print the loss every this many steps (0: choose from the run length).
    pub log_every: u64,
    /// Print the loss every this many epochs instead (0: `log_every` decides).
    pub log_every_epochs: u64,
    /// Skip the last, partial batch of each epoch.
    pub drop_last: bool,
    /// Fraction of the rows held out for validation (0: none).
    pub validation: f64,
    /// Stop when the validation loss has not improved for this many log points (0: never).
    pub patience: u64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            steps: None,
            epochs: None,
            batch: None,
            seed: 0,
            log_every: 0,
            log_every_epochs: 0,
            drop_last: false,
            validation: 0.0,
            patience: 0,
        }
    }
}

/// A run of like terms written out in a chain of `+`, checked as one sum over an array of
/// their numbers (`check::reroll`): where it is and how many terms it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RerolledSum {
    pub span: Span,
    pub terms: usize,
}

/// A checked model file.
#[derive(Clone, Debug)]
pub struct Model {
    /// The forward graph: outputs are `loss` then each metric.
    pub forward: GraphFn,
    /// The long sums of like terms checked as one sum over an array (`check::reroll`), in
    /// source order, each once.
    pub rerolled: Vec<RerolledSum>,
    /// Per-row values for `adjoint predict` (`output probs = ...`), on the forward graph.
    pub predict: Option<GraphFn>,
    /// The user's name for the loss (`loss f = ...`), or `loss`.
    pub loss_name: String,
    /// The metrics, in declaration order.
    pub metric_names: Vec<String>,
    /// One initializer per parameter, in declaration order.
    pub inits: Vec<Init>,
    /// Spans of the parameter declarations.
    pub param_spans: Vec<Span>,
    /// One binding per input, in declaration order.
    pub bindings: Vec<InputBinding>,
    /// For each input, the range its values must lie in because a `one_hot` or a gather
    /// reads them as indices (the smallest, if several do); checked when data is bound.
    pub index_limits: Vec<Option<IndexLimit>>,
    /// The symbol that counts rows of data, when the model has inputs.
    pub row_dim: Option<u32>,
    /// The optimizer and its hyperparameters.
    pub optimizer: OptimizerSpec,
    /// Where the file declares its optimizer (`None`: the default, Adam).
    pub optimizer_span: Option<Span>,
    /// The learning-rate schedule.
    pub schedule: LrSchedule,
    /// How to train.
    pub train: TrainSettings,
    /// Data file named in the model, relative to the model file.
    pub data: Option<String>,
    /// The training step's forward graph (loss, then metrics) where the model has `dropout`:
    /// `forward` is then the evaluation graph, which `eval`, `predict`, validation, the
    /// checking commands and exports read. `None`: one graph serves both.
    pub training: Option<GraphFn>,
}

impl Model {
    /// The loss node of the forward graph.
    pub fn loss(&self) -> NodeId {
        self.forward.outputs[0].1
    }

    /// The forward graph.
    pub fn graph(&self) -> &Graph {
        &self.forward.graph
    }

    /// The forward graph training steps differentiate: `training` where the model has one.
    pub fn training_forward(&self) -> &GraphFn {
        self.training.as_ref().unwrap_or(&self.forward)
    }

    /// Sets the dtype of every graph of the model.
    pub fn set_dtype(&mut self, dtype: crate::ir::DType) {
        self.forward.graph.dtype = dtype;
        if let Some(t) = &mut self.training {
            t.graph.dtype = dtype;
        }
    }

    /// Whether input `i` is batched by rows (its first axis is the row dimension); other
    /// inputs are read whole, and every step sees all of them.
    pub fn is_row_input(&self, i: usize) -> bool {
        let first = self.graph().inputs[i].shape.0.first();
        self.row_dim.is_some() && first == self.row_dim.map(crate::ir::Dim::Sym).as_ref()
    }
}
