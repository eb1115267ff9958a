//! The command line: `check`, `graph`, `train`.
//!
//! Invariant: the only module that prints, reads the environment or chooses exit codes.
//! Exit codes: 0 success, 2 bad input (source, data, flags), 1 anything else.

use crate::compile::{self, CompileError, CompiledModel};
use crate::data;
use crate::diagnostics::{SourceFile, render_all};
use crate::ir::print::fmt_number;
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
    Check { file: PathBuf },
    /// Print the simplified forward graph, or with --grad the gradient graph.
    Graph {
        file: PathBuf,
        /// Print the gradient graph (loss and the gradient of every parameter).
        #[arg(long)]
        grad: bool,
        /// List the numerical-stability rewrites that fired, with where they apply in the source.
        #[arg(long)]
        explain: bool,
        /// Write the graph in Graphviz's dot language instead of text.
        #[arg(long)]
        dot: bool,
    },
    /// Check the compiled gradient against finite differences; blame a wrong derivative rule.
    Gradcheck {
        file: PathBuf,
        /// CSV data (overrides the model's `data`).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Random points to check besides the initial one.
        #[arg(long, default_value_t = 2)]
        points: usize,
        /// Largest relative error accepted.
        #[arg(long, default_value_t = 1e-6)]
        tolerance: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Second-order information: the Hessian's extreme eigenvalues, its condition number and the
    /// largest stable gradient-descent step.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        data: Option<PathBuf>,
        /// Train as the model file says first, and inspect the trained point.
        #[arg(long, conflicts_with = "checkpoint")]
        trained: bool,
        /// Inspect the parameters saved in a checkpoint.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Print the simplified symbolic derivative of the loss with respect to each parameter.
    Grad {
        file: PathBuf,
        /// Only this parameter.
        #[arg(long)]
        wrt: Option<String>,
        /// LaTeX instead of the model language.
        #[arg(long)]
        latex: bool,
    },
    /// Race optimizers across a two-parameter loss and draw their paths over its contours.
    Race {
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
        #[arg(long, value_delimiter = ',')]
        lr: Vec<f64>,
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
    Train(TrainArgs),
    /// Write the model's `output` values for data, one CSV row per data row.
    Predict {
        file: PathBuf,
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        data: Option<PathBuf>,
        /// Where to write the CSV (standard output when absent).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Loss and metrics of a checkpoint's parameters on data.
    Eval {
        file: PathBuf,
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Run the benchmark workloads W1–W6, optionally beside the peers (JAX, numpy, C).
    Bench {
        /// Workloads to run (W1 … W6); all when none are given.
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

#[derive(clap::Args)]
struct TrainArgs {
    file: PathBuf,
    /// CSV file with a header row (overrides the model's `data`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Number of optimizer steps.
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<u64>,
    /// Number of passes over the data.
    #[arg(long)]
    epochs: Option<u64>,
    /// Seed for initialization and shuffling.
    #[arg(long)]
    seed: Option<u64>,
    /// Minibatch size (rows per step).
    #[arg(long)]
    batch: Option<u64>,
    /// Learning rate (overrides the model's optimizer setting).
    #[arg(long)]
    lr: Option<f64>,
    /// Print the time spent in each compiler stage.
    #[arg(long)]
    timings: bool,
    /// Check every step for NaN or infinity and name the operation (and derivative rule) that
    /// produced the first one.
    #[arg(long)]
    check_finite: bool,
    /// Keep subnormal numbers (IEEE gradual underflow) in training steps, instead of flushing
    /// them to zero: slower once values decay into that range, which long runs do.
    #[arg(long)]
    keep_subnormals: bool,
    /// Optimizer (overrides the model's; its hyperparameters take their defaults unless given).
    #[arg(long)]
    optimizer: Option<String>,
    /// Fraction of the rows held out for validation.
    #[arg(long)]
    validation: Option<f64>,
    /// Stop when the validation loss has not improved for this many log points.
    #[arg(long)]
    patience: Option<u64>,
    /// Write the loss (and validation loss and metrics) at every log point to this CSV file.
    #[arg(long)]
    history: Option<PathBuf>,
    /// Draw the loss (and validation) curves to this file (.png or .svg).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Save a checkpoint (safetensors) here at the end, and on Ctrl-C.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Continue from a checkpoint: parameters, optimizer state, step count and data order.
    #[arg(long)]
    resume: Option<PathBuf>,
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    if let Some(t) = cli.threads {
        if t == 0 {
            eprintln!("error: --threads must be at least 1");
            return 2;
        }
        crate::jit::parallel::set_threads(t);
    }
    match cli.command {
        Command::Check { file } => check(&file),
        Command::Graph {
            file,
            grad,
            explain,
            dot,
        } => graph(&file, grad, explain, dot),
        Command::Gradcheck {
            file,
            data,
            points,
            tolerance,
            seed,
        } => gradcheck(&file, data.as_deref(), points, tolerance, seed),
        Command::Inspect {
            file,
            data,
            trained,
            checkpoint,
            seed,
        } => inspect(&file, data.as_deref(), trained, checkpoint.as_deref(), seed),
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
        Command::Train(args) => train(&args),
        Command::Eval {
            file,
            checkpoint,
            data,
        } => eval(&file, &checkpoint, data.as_deref()),
        Command::Predict {
            file,
            checkpoint,
            data,
            out,
        } => predict(&file, &checkpoint, data.as_deref(), out.as_deref()),
        Command::Bench {
            workloads,
            repeats,
            peers,
            anchors,
        } => {
            let cfg = crate::bench::BenchConfig {
                workloads,
                repeats,
                root: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
                peers: peers.zip(anchors),
                threads: cli.threads,
            };
            match crate::bench::run(&cfg, |w| eprintln!("running {w}")) {
                Ok(report) => {
                    print!("{report}");
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            }
        }
    }
}

fn read_source(path: &Path) -> Result<SourceFile, i32> {
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Ok(SourceFile::new(path.display().to_string(), text)),
            Err(e) => {
                eprintln!(
                    "error: {}: not UTF-8 text (invalid byte at offset {})",
                    path.display(),
                    e.utf8_error().valid_up_to()
                );
                Err(2)
            }
        },
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            Err(2)
        }
    }
}

/// Reads and checks a model file. Errors are printed (and give the exit code); warnings are
/// returned for the caller to print or not.
fn load_model(
    path: &Path,
) -> Result<
    (
        SourceFile,
        crate::model::Model,
        Vec<crate::diagnostics::Diagnostic>,
    ),
    i32,
> {
    let file = read_source(path)?;
    match compile::check_source(&file) {
        Ok((model, warnings)) => Ok((file, model, warnings)),
        Err(diags) => {
            eprint!("{}", render_all(&diags, &file));
            Err(2)
        }
    }
}

/// Compiles a checked model to native code; an error is printed and gives the exit code.
fn compile_model(model: crate::model::Model, file: &SourceFile) -> Result<CompiledModel, i32> {
    CompiledModel::from_model(model).map_err(|e| match e {
        CompileError::Diagnostics(d) => {
            eprint!("{}", render_all(&d, file));
            2
        }
        e => {
            eprintln!("error: {e}");
            1
        }
    })
}

/// The data file: the one given on the command line, else the model's own `data`, which is
/// relative to the model file.
fn data_path(
    model: &crate::model::Model,
    given: Option<&Path>,
    model_file: &Path,
) -> Option<PathBuf> {
    given.map(Path::to_path_buf).or_else(|| {
        model
            .data
            .as_ref()
            .map(|d| model_file.parent().unwrap_or(Path::new(".")).join(d))
    })
}

fn check(path: &Path) -> i32 {
    let (file, model, warnings) = match load_model(path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    eprint!("{}", render_all(&warnings, &file));
    let g = model.graph();
    println!(
        "{}: ok ({} input(s), {} parameter(s), {} value(s), loss `{}`)",
        file.name,
        g.inputs.len(),
        g.params.len(),
        g.params
            .iter()
            .map(|p| p.shape.fixed_elements().unwrap())
            .sum::<usize>(),
        model.loss_name
    );
    0
}

fn graph(path: &Path, grad: bool, explain: bool, dot: bool) -> i32 {
    let (file, model, warnings) = match load_model(path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    eprint!("{}", render_all(&warnings, &file));
    let graphs = compile::graphs(&model);
    let f = if grad {
        &graphs.gradient
    } else {
        &graphs.forward
    };
    if dot {
        print!("{}", crate::inspect::dot(f));
        return 0;
    }
    print!("{}", f.text());
    if explain {
        print!("{}", crate::compile::explain(&graphs, &file));
    }
    0
}

/// The model (in f64) and its data, for the checking commands.
fn model_and_data(
    path: &Path,
    data: Option<&Path>,
) -> Result<
    (
        SourceFile,
        crate::model::Model,
        Option<crate::data::Dataset>,
    ),
    i32,
> {
    let (file, mut model, warnings) = load_model(path)?;
    eprint!("{}", render_all(&warnings, &file));
    model.forward.graph.dtype = crate::ir::DType::F64;
    let dataset = load_data(&model, data_path(&model, data, path).as_deref(), path, &[])?;
    Ok((file, model, dataset))
}

fn point_of(
    trainer: &Trainer,
    model: &crate::model::Model,
    data: Option<&crate::data::Dataset>,
) -> crate::inspect::Point {
    use crate::ir::Tensor;
    let g = model.graph();
    let inputs = match data {
        Some(d) => d
            .inputs
            .iter()
            .zip(&g.inputs)
            .map(|(v, info)| Tensor::new(info.shape.concrete(&[d.n_rows as u64]), v.clone()))
            .collect(),
        None => vec![],
    };
    let params = trainer
        .params
        .iter()
        .zip(&g.params)
        .map(|(b, p)| Tensor::new(p.shape.as_fixed().unwrap(), b.to_f64()))
        .collect();
    crate::inspect::Point {
        inputs,
        params,
        syms: vec![data.map_or(0, |d| d.n_rows as u64); g.syms.len()],
    }
}

fn gradcheck(path: &Path, data: Option<&Path>, points: usize, tolerance: f64, seed: u64) -> i32 {
    let (file, model, dataset) = match model_and_data(path, data) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let compiled = match compile_model(model.clone(), &file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut rng = crate::init::rng(seed);
    let mut trainer = Trainer::new(&compiled, seed);
    let rows = dataset.as_ref().map_or(0, |d| d.n_rows);
    let inputs: Vec<crate::runtime::Buffer> = dataset.as_ref().map_or(vec![], |d| {
        d.inputs
            .iter()
            .map(|v| crate::runtime::Buffer::F64(v.clone()))
            .collect()
    });
    println!(
        "gradcheck {}: the compiled gradient (f64) against central differences of the loss",
        file.name
    );
    let mut worst: f64 = 0.0;
    let mut failed_point = None;
    for k in 0..=points {
        if k > 0 {
            // A random point near the initial one, on the scale of each parameter.
            for p in trainer.params.iter_mut() {
                for i in 0..p.len() {
                    let x = p.get(i);
                    p.set(
                        i,
                        x + 0.5 * crate::init::std_normal(&mut rng) * x.abs().max(0.1),
                    );
                }
            }
        }
        let point = point_of(&trainer, &model, dataset.as_ref());
        if let Err(e) = trainer.value_and_grad(&inputs, rows) {
            eprintln!("error: {e}");
            return 1;
        }
        let grads: Vec<Vec<f64>> = (0..model.graph().params.len())
            .map(|i| trainer.gradient(i, rows).unwrap().to_f64())
            .collect();
        let checks =
            crate::inspect::gradcheck(&compiled.graphs.forward, &grads, &point, &mut rng, 32);
        let label = if k == 0 {
            "initial point".to_string()
        } else {
            format!("random point {k}")
        };
        for c in &checks {
            println!(
                "  {label:<16} {:<16} worst relative error {:.2e}",
                c.name, c.worst
            );
            worst = worst.max(c.worst);
        }
        if checks.iter().any(|c| c.worst > tolerance) && failed_point.is_none() {
            failed_point = Some(point);
        }
    }
    match failed_point {
        None => {
            println!("ok: worst relative error {worst:.2e} (tolerance {tolerance:.0e})");
            0
        }
        Some(point) => {
            println!("FAILED: worst relative error {worst:.2e} exceeds {tolerance:.0e}");
            match crate::inspect::blame(&compiled.graphs.forward, &point, &mut rng, tolerance) {
                Some(b) => println!("{}", crate::inspect::describe_blame(&b, &file)),
                None => println!(
                    "no single derivative rule disagrees on its own; the error comes from their combination"
                ),
            }
            1
        }
    }
}

fn inspect(
    path: &Path,
    data: Option<&Path>,
    trained: bool,
    checkpoint: Option<&Path>,
    seed: u64,
) -> i32 {
    let (file, model, dataset) = match model_and_data(path, data) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let compiled = match compile_model(model.clone(), &file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut trainer = Trainer::new(&compiled, seed);
    if let Some(c) = checkpoint {
        if let Err(e) = crate::resume::load_params(&mut trainer, c) {
            eprintln!("error: {e}");
            return 2;
        }
    }
    if trained {
        if let Err(e) = trainer.fit(dataset.as_ref(), &model.train, |_| {}) {
            eprintln!("error: {e}");
            return 2;
        }
    }
    let point = point_of(&trainer, &model, dataset.as_ref());
    let h = crate::inspect::hvp_graph(&compiled.graphs.forward);
    let n: usize = point.params.iter().map(|p| p.len()).sum();
    let (lo, hi, how) = if n <= 64 {
        let ev = crate::inspect::symmetric_eigenvalues(&crate::inspect::hessian(&h, &point));
        (ev[0], ev[ev.len() - 1], "full Hessian".to_string())
    } else {
        let mut rng = crate::init::rng(seed);
        let (lo, hi) = crate::inspect::lanczos_extremes(&h, &point, 40, &mut rng);
        (lo, hi, "Lanczos, 40 Hessian-vector products".to_string())
    };
    let at = match (trained, checkpoint) {
        (true, _) => "the trained point".to_string(),
        (_, Some(c)) => format!("the point in {}", c.display()),
        _ => "the initial point".to_string(),
    };
    println!("inspect {} at {at} ({n} parameters; {how})", file.name);
    println!("  largest eigenvalue   λmax = {hi:.6e}");
    println!("  smallest eigenvalue  λmin = {lo:.6e}");
    if lo > 0.0 {
        println!("  condition number     κ = λmax/λmin = {:.6e}", hi / lo);
    } else {
        println!(
            "  condition number     κ = ∞ (λmin ≤ 0: the Hessian is not positive definite here; a saddle or a flat direction)"
        );
    }
    if hi > 0.0 {
        println!(
            "  largest stable gradient-descent step 2/λmax = {:.6e}",
            2.0 / hi
        );
    }
    0
}

fn eval(path: &Path, ckpt: &Path, data: Option<&Path>) -> i32 {
    let (file, model, _) = match load_model(path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let data_path = data_path(&model, data, path);
    let compiled = match compile_model(model, &file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let dataset = match load_data(&compiled.model, data_path.as_deref(), path, &[]) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let mut trainer = Trainer::new(&compiled, 0);
    if let Err(e) = crate::resume::load_params(&mut trainer, ckpt) {
        eprintln!("error: {e}");
        return 2;
    }
    print_evaluation(&mut trainer, dataset.as_ref(), "")
}

fn predict(path: &Path, ckpt: &Path, data: Option<&Path>, out: Option<&Path>) -> i32 {
    let (file, model, _) = match load_model(path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(p) = &model.predict else {
        eprintln!(
            "error: {} declares no `output` values to predict (add e.g. `output probs = softmax(logits, axis=1)`)",
            file.name
        );
        return 2;
    };
    // Inputs the outputs do not read (the labels, typically) may be absent from the data.
    let roots: Vec<_> = p.outputs.iter().map(|o| o.1).collect();
    let live = p.graph.reachable(&roots);
    let optional: Vec<bool> = (0..model.graph().inputs.len())
        .map(|i| {
            !p.graph
                .ids()
                .any(|id| live[id.index()] && *p.graph.op(id) == crate::ir::Op::Input(i as u32))
        })
        .collect();
    let dataset = match load_data(
        &model,
        data_path(&model, data, path).as_deref(),
        path,
        &optional,
    ) {
        Ok(Some(d)) => d,
        Ok(None) => {
            eprintln!("error: {} has no inputs to predict for", file.name);
            return 2;
        }
        Err(code) => return code,
    };
    let compiled = match compile_model(model, &file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut trainer = Trainer::new(&compiled, 0);
    if let Err(e) = crate::resume::load_params(&mut trainer, ckpt) {
        eprintln!("error: {e}");
        return 2;
    }
    trainer.bound_dims = dataset.dims.clone();
    let inputs: Vec<_> = dataset
        .inputs
        .iter()
        .map(|v| crate::runtime::Buffer::from_f64(compiled.model.graph().dtype, v))
        .collect();
    let values = match trainer.predict(&inputs, dataset.n_rows) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let mut csv = String::new();
    let header: Vec<String> = values
        .iter()
        .flat_map(|(name, t)| match t.shape.get(1) {
            Some(&k) => (0..k).map(|j| format!("{name}{j}")).collect::<Vec<_>>(),
            None => vec![name.clone()],
        })
        .collect();
    csv.push_str(&header.join(","));
    csv.push('\n');
    for r in 0..dataset.n_rows {
        let row: Vec<String> = values
            .iter()
            .flat_map(|(_, t)| {
                let w = t.shape.get(1).copied().unwrap_or(1);
                t.data[r * w..(r + 1) * w]
                    .iter()
                    .map(|v| format!("{v}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    match out {
        Some(o) => {
            if let Err(e) = std::fs::write(o, csv) {
                eprintln!("error: cannot write {}: {e}", o.display());
                return 2;
            }
            println!("wrote {} rows to {}", dataset.n_rows, o.display());
        }
        None => print!("{csv}"),
    }
    0
}

/// The model's data: CSV columns from `data_path`, `.npy` inputs from their files beside the
/// model. `None` for a model without inputs.
fn load_data(
    model: &crate::model::Model,
    data_path: Option<&Path>,
    model_file: &Path,
    optional: &[bool],
) -> Result<Option<data::Dataset>, i32> {
    if model.graph().inputs.is_empty() {
        return Ok(None);
    }
    let base = model_file.parent().unwrap_or(Path::new("."));
    match data::load(model, data_path, base, optional) {
        Ok(d) => Ok(Some(d)),
        Err(e) => {
            eprintln!("error: {e}");
            if data_path.is_none() {
                eprintln!(
                    "  (name the data with `data \"file.csv\"` in the model or `--data FILE`)"
                );
            }
            Err(2)
        }
    }
}

/// Prints the loss and each metric on the data; returns the exit code.
fn print_evaluation(
    trainer: &mut Trainer,
    data: Option<&crate::data::Dataset>,
    prefix: &str,
) -> i32 {
    let dtype = trainer.compiled.model.graph().dtype;
    let (inputs, rows) = match data {
        Some(d) => (
            d.inputs
                .iter()
                .map(|v| crate::runtime::Buffer::from_f64(dtype, v))
                .collect(),
            d.n_rows,
        ),
        None => (vec![], 0),
    };
    match trainer.evaluate(&inputs, rows) {
        Ok(values) => {
            for (name, v) in values {
                println!("{prefix}{name} = {}", fmt_number(v));
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// Ctrl-C sets a flag; training stops after its current native call and saves a checkpoint.
mod interrupt {
    use std::sync::atomic::{AtomicBool, Ordering};

    pub static FLAG: AtomicBool = AtomicBool::new(false);

    #[cfg(unix)]
    extern "C" fn on_sigint(_: i32) {
        // Storing to an atomic is async-signal-safe.
        FLAG.store(true, Ordering::Relaxed);
    }

    #[cfg(unix)]
    unsafe extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }

    pub fn install() {
        #[cfg(unix)]
        // SAFETY: `signal` is the C library's; the handler only stores to a static atomic.
        unsafe {
            signal(2, on_sigint as *const () as usize);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn race(
    path: &Path,
    optimizers: &[String],
    lrs: &[f64],
    steps: u64,
    out: &Path,
    animate: Option<&Path>,
    xr: &[f64],
    yr: &[f64],
    minimum: &[f64],
) -> i32 {
    let (file, model, _) = match load_model(path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let g = model.graph();
    if g.params.len() != 2 || g.params.iter().any(|p| !p.shape.is_scalar()) || !g.inputs.is_empty()
    {
        eprintln!(
            "error: `race` needs a loss of exactly two scalar parameters and no data; {} has {} parameter(s)",
            file.name,
            g.params.len()
        );
        return 2;
    }
    if !lrs.is_empty() && lrs.len() != 1 && lrs.len() != optimizers.len() {
        eprintln!(
            "error: give one learning rate, or one per optimizer ({})",
            optimizers.len()
        );
        return 2;
    }
    let mut trajectories = Vec::new();
    let mut surface: Option<CompiledModel> = None;
    for (i, name) in optimizers.iter().enumerate() {
        let Some(kind) = crate::optim::OptimizerKind::from_name(name) else {
            eprintln!("error: unknown optimizer `{name}`");
            return 2;
        };
        let mut m = model.clone();
        m.optimizer = crate::optim::OptimizerSpec::with_dialect(kind, model.optimizer.dialect);
        if let Some(lr) = lrs.get(i).or(lrs.first()) {
            m.optimizer.set("lr", *lr).expect("every optimizer has lr");
        }
        let label = format!("{name} (lr {})", fmt_number(m.optimizer.get("lr")));
        let compiled = match compile_model(m, &file) {
            Ok(c) => c,
            Err(code) => return code,
        };
        let mut t = Trainer::new(&compiled, 0);
        t.total_steps = steps;
        let mut points = vec![(t.params[0].get(0), t.params[1].get(0))];
        for _ in 0..steps {
            if t.train_step(&[], 0).is_err() {
                break;
            }
            points.push((t.params[0].get(0), t.params[1].get(0)));
        }
        let last = points[points.len() - 1];
        println!("{label:<24} ends at ({:.6}, {:.6})", last.0, last.1);
        trajectories.push(crate::plot::Trajectory {
            name: label,
            points,
        });
        surface.get_or_insert(compiled);
    }
    let Some(surface) = surface else {
        eprintln!("error: no optimizers given");
        return 2;
    };
    // The loss surface, evaluated by the compiled forward function.
    let trainer = std::cell::RefCell::new(Trainer::new(&surface, 0));
    let f = |x: f64, y: f64| {
        let mut t = trainer.borrow_mut();
        t.params[0].set(0, x);
        t.params[1].set(0, y);
        t.evaluate(&[], 0).map(|v| v[0].1).unwrap_or(f64::NAN)
    };
    let range = |given: &[f64], k: usize| -> (f64, f64) {
        if let [lo, hi] = given {
            return (*lo, *hi);
        }
        let vals: Vec<f64> = trajectories
            .iter()
            .flat_map(|t| t.points.iter().map(move |p| if k == 0 { p.0 } else { p.1 }))
            .filter(|v| v.is_finite())
            .collect();
        let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.15).max(0.5);
        (lo - pad, hi + pad)
    };
    let (x, y) = (range(xr, 0), range(yr, 1));
    let min = match minimum {
        [a, b] => Some((*a, *b)),
        _ => None,
    };
    let title = format!(
        "{}: {} steps",
        file.name.rsplit('/').next().unwrap_or(&file.name),
        steps
    );
    if let Err(e) = crate::plot::race_still(out, &title, &f, x, y, &trajectories, min) {
        eprintln!("error: {e}");
        return 2;
    }
    println!("plot: {}", out.display());
    if let Some(a) = animate {
        if let Err(e) = crate::plot::race_animation(a, &title, &f, x, y, &trajectories, min) {
            eprintln!("error: {e}");
            return 2;
        }
        println!("animation: {}", a.display());
    }
    0
}

fn grad(path: &Path, wrt: Option<&str>, latex: bool) -> i32 {
    let (file, model, warnings) = match load_model(path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    eprint!("{}", render_all(&warnings, &file));
    let graphs = compile::graphs(&model);
    let style = if latex {
        crate::ir::pretty::Style::Latex
    } else {
        crate::ir::pretty::Style::Dsl
    };
    match compile::with_big_stack(|| compile::derivatives(&graphs, &model.loss_name, wrt, style)) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn train(args: &TrainArgs) -> i32 {
    let check_start = std::time::Instant::now();
    let (file, mut model, warnings) = match load_model(&args.file) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let check_time = check_start.elapsed();
    eprint!("{}", render_all(&warnings, &file));
    if let Some(name) = &args.optimizer {
        match crate::optim::OptimizerKind::from_name(name) {
            Some(kind) => {
                model.optimizer =
                    crate::optim::OptimizerSpec::with_dialect(kind, model.optimizer.dialect)
            }
            None => {
                let known: Vec<_> = crate::optim::OptimizerKind::ALL
                    .iter()
                    .map(|k| k.name())
                    .collect();
                eprintln!(
                    "error: unknown optimizer `{name}` for --optimizer; known: {}",
                    known.join(", ")
                );
                return 2;
            }
        }
    }
    if let Some(lr) = args.lr {
        if !(lr.is_finite() && lr > 0.0) {
            eprintln!("error: --lr must be a positive number, found {lr}");
            return 2;
        }
        model
            .optimizer
            .set("lr", lr)
            .expect("every optimizer has a learning rate");
    }
    let settings = {
        let mut s = model.train.clone();
        if args.steps.is_some() || args.epochs.is_some() {
            s.steps = args.steps;
            s.epochs = args.epochs;
        }
        if let Some(seed) = args.seed {
            s.seed = seed;
        }
        if let Some(b) = args.batch {
            if b == 0 {
                eprintln!("error: --batch must be at least 1");
                return 2;
            }
            s.batch = Some(b);
        }
        if let Some(v) = args.validation {
            if !(0.0..1.0).contains(&v) {
                eprintln!(
                    "error: --validation is the fraction of rows held out, in [0, 1); found {v}"
                );
                return 2;
            }
            s.validation = v;
        }
        if let Some(p) = args.patience {
            s.patience = p;
        }
        s
    };
    let data_path = data_path(&model, args.data.as_deref(), &args.file);
    let start = std::time::Instant::now();
    let compiled = match compile_model(model, &file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let compile_time = check_time + start.elapsed();
    let dataset = match load_data(&compiled.model, data_path.as_deref(), &args.file, &[]) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let opt = &compiled.model.optimizer;
    println!(
        "compiled {} in {:.1} ms: {} parameter(s), {} {opt}",
        file.name,
        compile_time.as_secs_f64() * 1e3,
        compiled.model.graph().params.len(),
        compiled.model.graph().dtype.name(),
    );
    if let Some(d) = &dataset {
        println!(
            "data: {} ({} rows)",
            d.source.as_deref().unwrap_or("?"),
            d.n_rows
        );
    }
    if args.timings {
        println!(
            "  {:<14} {:>9.3} ms",
            "parse + check",
            check_time.as_secs_f64() * 1e3
        );
        for (stage, d) in &compiled.timings.stages {
            println!("  {stage:<14} {:>9.3} ms", d.as_secs_f64() * 1e3);
        }
    }
    let mut trainer = Trainer::new(&compiled, settings.seed);
    trainer.check_finite = args.check_finite;
    trainer.flush_subnormals = !args.keep_subnormals;
    if let Some(r) = &args.resume {
        if let Err(e) = crate::resume::resume(&mut trainer, r) {
            eprintln!("error: {e}");
            return 2;
        }
        println!("resumed from {} at step {}", r.display(), trainer.step);
    }
    interrupt::install();
    trainer.interrupt = Some(&interrupt::FLAG);
    let (train_data, dataset) = match dataset {
        Some(d) if settings.validation > 0.0 => {
            let (t, v) = d.split(settings.validation, settings.seed);
            println!(
                "validation: {} rows held out, {} for training",
                v.n_rows, t.n_rows
            );
            trainer.validation = Some(v);
            (Some(t.clone()), Some(t))
        }
        other => (other.clone(), other),
    };
    if settings.patience > 0 && trainer.validation.is_none() {
        eprintln!(
            "error: early stopping (patience) needs a validation split (`validation = 0.2` or --validation 0.2)"
        );
        return 2;
    }
    let mut history = match &args.history {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Some((p.clone(), std::io::BufWriter::new(f), false)),
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", p.display());
                return 2;
            }
        },
        None => None,
    };
    let loss_name = compiled.model.loss_name.clone();
    let mut curves: Vec<(String, Vec<(f64, f64)>)> = vec![(loss_name.clone(), vec![])];
    let t0 = std::time::Instant::now();
    let bar = progress_bar();
    let result = trainer.fit(train_data.as_ref(), &settings, |p: &Progress| {
        let val: String = p
            .validation
            .iter()
            .map(|(n, v)| format!("  val_{n} {v:.6e}"))
            .collect();
        let line = format!(
            "step {:>8}  epoch {:>5}  {loss_name} {:.6e}{val}{}",
            p.step,
            p.epoch,
            p.loss,
            if p.stopped_early {
                "  (early stop: best validation loss restored)"
            } else {
                ""
            }
        );
        match &bar {
            Some(b) => {
                b.set_length(p.end);
                b.set_position(p.step);
                b.set_message(format!("{loss_name} {:.4e}{val}", p.loss));
                if p.stopped_early {
                    b.println(line);
                }
            }
            None => println!("{line}"),
        }
        curves[0].1.push((p.step as f64, p.loss));
        for (k, (n, v)) in p.validation.iter().enumerate() {
            if curves.len() <= k + 1 {
                curves.push((format!("validation {n}"), vec![]));
            }
            curves[k + 1].1.push((p.step as f64, *v));
        }
        if let Some((_, w, header)) = &mut history {
            use std::io::Write as _;
            if !*header {
                let names: String = p
                    .validation
                    .iter()
                    .map(|(n, _)| format!(",val_{n}"))
                    .collect();
                let _ = writeln!(w, "step,epoch,{loss_name}{names}");
                *header = true;
            }
            let vals: String = p.validation.iter().map(|(_, v)| format!(",{v}")).collect();
            let _ = writeln!(w, "{},{},{}{vals}", p.step, p.epoch, p.loss);
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if let Some((path, mut w, _)) = history {
        use std::io::Write as _;
        if let Err(e) = w.flush() {
            eprintln!("error: cannot write {}: {e}", path.display());
            return 2;
        }
    }
    let elapsed = t0.elapsed();
    let interrupted = matches!(result, Ok(false));
    if result.is_ok() {
        // Interrupted runs are saved too, to --save or beside the working directory.
        let target = args.save.clone().or_else(|| {
            interrupted.then(|| {
                PathBuf::from(format!(
                    "{}.interrupted.safetensors",
                    args.file.file_stem().unwrap_or_default().to_string_lossy()
                ))
            })
        });
        if let Some(path) = target {
            if let Err(e) = crate::resume::save(&trainer, &path) {
                eprintln!("error: {e}");
                return 1;
            }
            println!("checkpoint: {} (step {})", path.display(), trainer.step);
        }
        if interrupted {
            eprintln!("interrupted at step {}", trainer.step);
            return 130;
        }
    }
    if let (Some(path), Ok(_)) = (&args.plot, &result) {
        let title = format!("{} — {}", file.name, compiled.model.optimizer);
        if let Err(e) = crate::plot::curves(path, &title, "step", &curves) {
            eprintln!("error: {e}");
            return 2;
        }
        println!("plot: {}", path.display());
    }
    if let Err(e) = result {
        eprintln!("error: {e}");
        if let crate::train::TrainError::NonFiniteAt { origin, .. } = &e {
            if let Some(span) = origin.span {
                let what = match origin.rule {
                    Some(r) => format!("the derivative of this `{r}`"),
                    None => format!("this `{}`", origin.op),
                };
                let d = crate::diagnostics::Diagnostic::error("non-finite value")
                    .with_label(span, what);
                eprint!(
                    "{}",
                    d.render(&file)
                        .lines()
                        .skip(1)
                        .map(|l| format!("{l}\n"))
                        .collect::<String>()
                );
            }
        }
        return 2;
    }
    println!(
        "trained {} steps in {:.3} s ({:.2} µs/step)",
        trainer.step,
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / trainer.step.max(1) as f64
    );
    let code = print_evaluation(&mut trainer, dataset.as_ref(), "final ");
    if code != 0 {
        return code;
    }
    for (p, buf) in compiled.model.graph().params.iter().zip(&trainer.params) {
        println!(
            "{}",
            describe_param(&p.name, &p.shape.as_fixed().unwrap(), &buf.to_f64())
        );
    }
    0
}

/// A progress bar with steps/s and the loss when stdout is a terminal; plain lines otherwise.
fn progress_bar() -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    let style =
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {per_sec}  {msg}")
            .ok()?;
    bar.set_style(style);
    Some(bar)
}

fn describe_param(name: &str, shape: &[usize], values: &[f64]) -> String {
    let fmt = |v: &f64| format!("{v:.6}");
    match shape {
        [] => format!("{name} = {}", fmt(&values[0])),
        _ if values.len() <= 8 => format!(
            "{name} = [{}]",
            values.iter().map(fmt).collect::<Vec<_>>().join(", ")
        ),
        _ => {
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64)
                .sqrt();
            format!(
                "{name} {:?}: mean {mean:.4}, std {sd:.4}, first [{}, …]",
                shape,
                values[..4].iter().map(fmt).collect::<Vec<_>>().join(", ")
            )
        }
    }
}
