//! The command line: one module per command, and `load` for what they share.
//!
//! Invariant: the only module that prints, reads the environment or chooses exit codes.
//! Exit codes: 0 success, 2 bad input (source, data, flags), 1 anything else.

use crate::compile::{self, CompileError, CompiledModel};
use crate::data;
use crate::diagnostics::{SourceFile, render_all};
use crate::ir::print::fmt_number;
use crate::ir::shape::DType;
use crate::train::{Progress, Trainer};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "adjoint",
    version,
    about = "Symbolic-plus-numeric autodiff compiler: models in a small language, symbolic gradients, native code"
)]
struct Cli {
    /// Threads for large matrix products, loops and updates (default: the machine's cores, up
    /// to 8; work too small to share stays on one; 1 keeps everything on one thread). Results
    /// do not depend on it.
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and check a model; print its diagnostics.
    Check {
        /// The model file (.dsl).
        file: PathBuf,
    },
    /// Print the simplified forward graph, or with --grad the gradient graph.
    Graph {
        /// The model file (.dsl).
        file: PathBuf,
        /// Print the gradient graph (loss and the gradient of every parameter).
        #[arg(long)]
        grad: bool,
        /// Print the evaluation graph (dropout is the identity) instead of the training
        /// step's; the two differ only where the model has `dropout`.
        #[arg(long)]
        eval: bool,
        /// List the numerical-stability rewrites that fired, with where they apply in the source.
        #[arg(long)]
        explain: bool,
        /// Write the graph in Graphviz's dot language instead of text.
        #[arg(long)]
        dot: bool,
        /// Print the lowering plan instead: buffer slots, and the steps that fill them (loops,
        /// fusion, row blocks, vectors, parts on several cores), as the code generator receives
        /// them.
        #[arg(long, conflicts_with_all = ["dot", "explain"])]
        plan: bool,
    },
    /// Check the compiled gradient against finite differences; blame a wrong derivative rule.
    Gradcheck {
        /// The model file (.dsl).
        file: PathBuf,
        /// CSV data (overrides the model's `data`).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Check at the parameters saved in this checkpoint instead of the initial ones.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Random points to check besides the initial one (or the checkpoint's).
        #[arg(long, default_value_t = 2)]
        points: usize,
        /// Largest relative error accepted, beyond the rounding error of the finite
        /// differences (which grows with the loss's magnitude and the size of its sums).
        #[arg(long, default_value_t = 1e-6, allow_negative_numbers = true)]
        tolerance: f64,
        /// Seed for the initial parameters and the random points.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Check on the first N rows of the data only (a text's first N windows): the
        /// reference interpreter keeps every intermediate value of every row.
        #[arg(long, value_name = "N")]
        rows: Option<usize>,
    },
    /// Second-order information: the Hessian's extreme eigenvalues, its condition number and the
    /// largest stable gradient-descent step.
    Inspect {
        /// The model file (.dsl).
        file: PathBuf,
        /// CSV data (overrides the model's `data`).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Train as the model file says first, and inspect the trained point.
        #[arg(long, conflicts_with = "checkpoint")]
        trained: bool,
        /// Inspect the parameters saved in a checkpoint.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Seed for the initial parameters (and, with --trained, the training run).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write the dense Hessian (parameters flattened in declaration order) to this .npy
        /// file; up to 4096 parameters.
        #[arg(long)]
        hessian: Option<PathBuf>,
        /// Print the eigenvectors of the k largest eigenvalues; up to 1000 parameters.
        #[arg(long, value_name = "K")]
        eigenvectors: Option<usize>,
        /// The Hessian of the loss over the first N rows of the data only (a text's first N
        /// windows): the reference interpreter keeps every intermediate value of every row.
        /// With --trained, training still uses all of them.
        #[arg(long, value_name = "N")]
        rows: Option<usize>,
    },
    /// Print the simplified symbolic derivative of the loss with respect to each parameter.
    Grad {
        /// The model file (.dsl).
        file: PathBuf,
        /// Only this parameter.
        #[arg(long)]
        wrt: Option<String>,
        /// LaTeX instead of the model language.
        #[arg(long)]
        latex: bool,
    },
    /// Train the model once per initializer of its weights (every parameter of rank two or
    /// more; vectors keep their own) and draw the runs' curves together.
    Inits {
        /// The model file (.dsl).
        file: PathBuf,
        /// Initializers as the model language writes them, separated by commas.
        #[arg(
            long = "with",
            default_value = "constant(0.1),xavier_uniform,he_normal,orthogonal"
        )]
        with: String,
        /// Number of optimizer steps of each run.
        #[arg(long)]
        steps: Option<u64>,
        /// Number of passes over the data of each run.
        #[arg(long, conflicts_with = "steps")]
        epochs: Option<u64>,
        /// Seed for initialization and shuffling (the same for every run).
        #[arg(long)]
        seed: Option<u64>,
        /// Fraction of the rows held out for validation.
        #[arg(long, allow_negative_numbers = true)]
        validation: Option<f64>,
        /// The picture (.png or .svg).
        #[arg(long, default_value = "inits.png")]
        out: PathBuf,
    },
    /// Race optimizers across a two-parameter loss and draw their paths over its contours.
    Race {
        /// The model file (.dsl).
        file: PathBuf,
        /// Optimizers to race, each with its own compiled update.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "sgd,momentum,adagrad,rmsprop,adam"
        )]
        optimizers: Vec<String>,
        /// Learning rates, one for all or one per optimizer in the same order (default: each
        /// optimizer's own default).
        #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
        lr: Vec<f64>,
        /// Steps each optimizer takes.
        #[arg(long, default_value_t = 500)]
        steps: u64,
        /// The still picture (.png or .svg).
        #[arg(long, default_value = "race.png")]
        out: PathBuf,
        /// The animation (.gif or an animated .svg).
        #[arg(long)]
        animate: Option<PathBuf>,
        /// Plotted range of the first parameter, `lo,hi` (default: around the paths).
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
        x: Vec<f64>,
        /// Plotted range of the second parameter.
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
        y: Vec<f64>,
        /// Mark a known minimum, `x,y`.
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
        minimum: Vec<f64>,
    },
    /// Compile a model to native code and train it.
    Train(train::TrainArgs),
    /// Write the model's `output` values for data, one CSV row per data row.
    Predict {
        /// The model file (.dsl).
        file: PathBuf,
        /// The trained parameters (a checkpoint written by `train --save`).
        #[arg(long)]
        checkpoint: PathBuf,
        /// CSV data to predict for (overrides the model's `data`); label columns may be absent.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Where to write the CSV (`-` or absent: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Text drawn from a model of a text (`from text "…"`): the prompt, then characters drawn
    /// one at a time from the first output's logits at the last position of the context.
    Sample(sample::SampleArgs),
    /// Loss and metrics of a checkpoint's parameters on data.
    Eval {
        /// The model file (.dsl).
        file: PathBuf,
        /// The parameters to evaluate (a checkpoint written by `train --save`).
        #[arg(long)]
        checkpoint: PathBuf,
        /// CSV data to evaluate on (overrides the model's `data`).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Score only the rows `train` held out with the same --validation and --seed (or the
        /// model's `validation` and `seed`).
        #[arg(long, allow_negative_numbers = true)]
        validation: Option<f64>,
        /// The seed of the validation split (default: the model's `seed`).
        #[arg(long, requires = "validation")]
        seed: Option<u64>,
        /// Print the confusion matrix of a classifier: its `argmax` output against its integer
        /// labels.
        #[arg(long)]
        confusion: bool,
    },
    /// Write the model for another engine: a JAX module (loss, metrics, outputs, optimizer,
    /// training step) or an ONNX model of its outputs and metrics.
    Export(export::ExportArgs),
    /// Run the benchmark workloads W1–W9 and MM, optionally beside the peers (JAX, numpy, C,
    /// PyTorch).
    Bench {
        /// Workloads to run; all when none are given. W1: Rosenbrock with Adam, 100k steps (f64).
        /// W2: least squares 100,000×16, gradient descent (f32). W3: Gaussian-mixture likelihood
        /// on 10^6 points, value and gradient, and 200 Adam steps (f64). W4: digits MLP
        /// 64-128-10, minibatches of 32, Adam. W5: MLP 784-512-512-10, minibatches of 128, Adam
        /// (f32). W6: compile latency of W4's training step (source to first step). W7: LeNet-5 on
        /// 28×28 images, minibatches of 64, Adam (f32). W8: a character transformer (2 blocks,
        /// d 128, 4 heads, context 64), 16 windows a step, Adam (f32), in ms/step, tokens/s and
        /// GFLOP/s. W9: compile latency of W7's and W8's training steps. MM: a batched
        /// product of 16×4 heads of 64×32 @ 32×64 (f32) beside a 2048³ GEMM, in GFLOP/s.
        workloads: Vec<String>,
        /// Timed repeats per workload (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Python interpreter with the peers installed (e.g. a virtualenv's bin/python).
        #[arg(long, requires = "anchors")]
        peers: Option<PathBuf>,
        /// A writable copy of the peers' benchmark scripts (the benchmark definition's anchors).
        #[arg(long)]
        anchors: Option<PathBuf>,
    },
}

mod bench;
mod check;
mod decimal;
mod eval;
mod export;
mod grad;
mod gradcheck;
mod graph;
mod inits;
mod inspect;
mod load;
mod out;
mod outputs;
mod predict;
mod progress;
mod race;
mod sample;
mod train;

use check::check;
use eval::eval;
use grad::grad;
use gradcheck::gradcheck;
use graph::graph;
use inspect::inspect;
use load::*;
use out::say;
use predict::predict;
use race::race;
use sample::sample;
use train::train;

/// Why a command stopped early, and so the process's exit code. A message is printed as
/// `error: …` on standard error; the variants without one have printed their report already.
#[derive(Debug)]
pub enum CliError {
    /// Bad input (a model file, its data, a flag, a checkpoint): exit code 2.
    BadInput(String),
    /// Bad input whose diagnostics are already rendered on standard error: exit code 2.
    Diagnosed,
    /// Anything else that went wrong: exit code 1.
    Failed(String),
    /// A check ran and found a problem, which its report shows: exit code 1.
    CheckFailed,
    /// Stopped by Ctrl-C, after saving what there was to save: exit code 130.
    Interrupted(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::BadInput(_) | CliError::Diagnosed => 2,
            CliError::Failed(_) | CliError::CheckFailed => 1,
            CliError::Interrupted(_) => 130,
        }
    }

    fn message(&self) -> Option<String> {
        match self {
            CliError::BadInput(m) | CliError::Failed(m) => Some(format!("error: {m}")),
            CliError::Interrupted(m) => Some(m.clone()),
            CliError::Diagnosed | CliError::CheckFailed => None,
        }
    }
}

/// Bad input, for `map_err` on errors that describe themselves.
fn bad_input(e: impl std::fmt::Display) -> CliError {
    CliError::BadInput(e.to_string())
}

/// Any other failure, for `map_err`.
fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(e.to_string())
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let result = run(cli);
    if let Some(m) = out::error() {
        eprintln!("error: {m}");
    }
    match result {
        // Standard output failed under the command (which stopped as if interrupted): a
        // closed pipe ends as quietly as a SIGPIPE would, a write error as a failure.
        Ok(()) | Err(CliError::Interrupted(_)) if out::failed() => match out::error() {
            Some(_) => 1,
            None => out::CLOSED_EXIT_CODE,
        },
        Ok(()) => 0,
        Err(e) => {
            if let Some(m) = e.message() {
                eprintln!("{m}");
            }
            e.exit_code()
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let dump = |var| std::env::var_os(var).is_some();
    let (clif, asm) = (dump("ADJOINT_DUMP_CLIF"), dump("ADJOINT_DUMP_ASM"));
    if clif || asm {
        crate::jit::set_dump(Some(crate::jit::Dump {
            clif,
            asm,
            sink: |text| eprintln!("{text}"),
        }));
    }
    if let Some(t) = cli.threads {
        if t == 0 {
            return Err(CliError::BadInput("--threads must be at least 1".into()));
        }
        crate::jit::parallel::set_threads(t);
    }
    match cli.command {
        Command::Check { file } => check(&file),
        Command::Graph {
            file,
            grad,
            eval,
            explain,
            dot,
            plan,
        } => graph(
            &file,
            graph::GraphOptions {
                grad,
                eval,
                explain,
                dot,
                plan,
            },
        ),
        Command::Gradcheck {
            file,
            data,
            checkpoint,
            points,
            tolerance,
            seed,
            rows,
        } => gradcheck(
            &file,
            &gradcheck::GradcheckOptions {
                data: data.as_deref(),
                checkpoint: checkpoint.as_deref(),
                points,
                tolerance,
                seed,
                rows,
            },
        ),
        Command::Inspect {
            file,
            data,
            trained,
            checkpoint,
            seed,
            hessian,
            eigenvectors,
            rows,
        } => inspect(
            &file,
            &inspect::InspectOptions {
                data: data.as_deref(),
                trained,
                checkpoint: checkpoint.as_deref(),
                seed,
                hessian: hessian.as_deref(),
                eigenvectors,
                rows,
            },
        ),
        Command::Grad { file, wrt, latex } => grad(&file, wrt.as_deref(), latex),
        Command::Race {
            file,
            optimizers,
            lr,
            steps,
            out,
            animate,
            x,
            y,
            minimum,
        } => race(
            &file,
            &optimizers,
            &lr,
            steps,
            &out,
            animate.as_deref(),
            &x,
            &y,
            &minimum,
        ),
        Command::Inits {
            file,
            with,
            steps,
            epochs,
            seed,
            validation,
            out,
        } => inits::inits(&inits::InitsArgs {
            file: &file,
            with: &with,
            steps,
            epochs,
            seed,
            validation,
            out: &out,
        }),
        Command::Train(args) => train(&args),
        Command::Sample(args) => sample(&args),
        Command::Eval {
            file,
            checkpoint,
            data,
            validation,
            seed,
            confusion,
        } => eval(
            &file,
            &checkpoint,
            &eval::EvalOptions {
                data: data.as_deref(),
                validation,
                seed,
                confusion,
            },
        ),
        Command::Predict {
            file,
            checkpoint,
            data,
            out,
        } => predict(&file, &checkpoint, data.as_deref(), out.as_deref()),
        Command::Export(args) => export::export(&args),
        Command::Bench {
            workloads,
            repeats,
            peers,
            anchors,
        } => bench::bench(workloads, repeats, peers.zip(anchors), cli.threads),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_argument_of_every_command_has_a_help_line() {
        let cli = Cli::command();
        let mut missing = vec![];
        for cmd in cli.get_subcommands() {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() {
                    missing.push(format!("{} {}", cmd.get_name(), arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "no help line: {missing:?}");
    }

    #[test]
    fn bench_help_names_every_workload() {
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("bench")
            .unwrap()
            .render_long_help()
            .to_string();
        for w in ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9"] {
            assert!(help.contains(&format!("{w}:")), "{w} not in\n{help}");
        }
    }
}
