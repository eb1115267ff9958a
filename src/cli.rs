//! The command line: `check`, `graph`, `train`.
//!
//! Invariant: the only module that prints, reads the environment or chooses exit codes.
//! Exit codes: 0 success, 2 bad input (source, data, flags), 1 anything else.

use crate::compile::{self, CompileError, CompiledModel};
use crate::data::{self, Table};
use crate::diagnostics::{SourceFile, render_all};
use crate::ir::print::fmt_number;
use crate::train::{Progress, Trainer};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "adjoint", version, about = "Symbolic-plus-numeric autodiff compiler: models in a small language, symbolic gradients, native code")]
struct Cli {
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
    /// Compile a model to native code and train it.
    Train(TrainArgs),
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
        /// A writable copy of the peers' benchmark scripts (shared/bench/anchors).
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
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match cli.command {
        Command::Check { file } => check(&file),
        Command::Graph { file, grad, explain } => graph(&file, grad, explain),
        Command::Grad { file, wrt, latex } => grad(&file, wrt.as_deref(), latex),
        Command::Train(args) => train(&args),
        Command::Bench { workloads, repeats, peers, anchors } => {
            let cfg = crate::bench::BenchConfig {
                workloads,
                repeats,
                root: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
                peers: peers.zip(anchors),
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
                eprintln!("error: {}: not UTF-8 text (invalid byte at offset {})", path.display(), e.utf8_error().valid_up_to());
                Err(2)
            }
        },
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            Err(2)
        }
    }
}

fn check(path: &Path) -> i32 {
    let file = match read_source(path) {
        Ok(f) => f,
        Err(code) => return code,
    };
    match compile::check_source(&file) {
        Ok((model, warnings)) => {
            eprint!("{}", render_all(&warnings, &file));
            let g = model.graph();
            println!(
                "{}: ok ({} input(s), {} parameter(s), {} value(s), loss `{}`)",
                file.name,
                g.inputs.len(),
                g.params.len(),
                g.params.iter().map(|p| p.shape.as_fixed().unwrap().iter().product::<usize>()).sum::<usize>(),
                model.loss_name
            );
            0
        }
        Err(diags) => {
            eprint!("{}", render_all(&diags, &file));
            2
        }
    }
}

fn graph(path: &Path, grad: bool, explain: bool) -> i32 {
    let file = match read_source(path) {
        Ok(f) => f,
        Err(code) => return code,
    };
    match compile::check_source(&file) {
        Ok((model, warnings)) => {
            eprint!("{}", render_all(&warnings, &file));
            let graphs = compile::graphs(&model);
            let f = if grad { &graphs.gradient } else { &graphs.forward };
            print!("{}", f.text());
            if explain {
                print!("{}", crate::compile::explain(&graphs, &file));
            }
            0
        }
        Err(diags) => {
            eprint!("{}", render_all(&diags, &file));
            2
        }
    }
}

fn grad(path: &Path, wrt: Option<&str>, latex: bool) -> i32 {
    let file = match read_source(path) {
        Ok(f) => f,
        Err(code) => return code,
    };
    match compile::check_source(&file) {
        Ok((model, warnings)) => {
            eprint!("{}", render_all(&warnings, &file));
            let graphs = compile::graphs(&model);
            let style = if latex { crate::ir::pretty::Style::Latex } else { crate::ir::pretty::Style::Dsl };
            match compile::derivatives(&graphs, &model.loss_name, wrt, style) {
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
        Err(diags) => {
            eprint!("{}", render_all(&diags, &file));
            2
        }
    }
}

fn train(args: &TrainArgs) -> i32 {
    let file = match read_source(&args.file) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let (mut model, warnings) = match compile::check_source(&file) {
        Ok(x) => x,
        Err(diags) => {
            eprint!("{}", render_all(&diags, &file));
            return 2;
        }
    };
    eprint!("{}", render_all(&warnings, &file));
    if let Some(lr) = args.lr {
        if !(lr.is_finite() && lr > 0.0) {
            eprintln!("error: --lr must be a positive number, found {lr}");
            return 2;
        }
        model.optimizer.set("lr", lr).expect("every optimizer has a learning rate");
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
        s
    };
    let data_path = args.data.clone().or_else(|| {
        model.data.as_ref().map(|d| args.file.parent().unwrap_or(Path::new(".")).join(d))
    });
    let start = std::time::Instant::now();
    let source_timings = {
        let mut t = std::time::Instant::now();
        let _ = &mut t;
        crate::compile::Timings::default()
    };
    let _ = source_timings;
    let compiled = match CompiledModel::from_model(model) {
        Ok(c) => c,
        Err(CompileError::Diagnostics(d)) => {
            eprint!("{}", render_all(&d, &file));
            return 2;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let compile_time = start.elapsed();
    let dataset = match &data_path {
        Some(p) if !compiled.model.graph().inputs.is_empty() => {
            match Table::load(p).and_then(|t| data::bind(&compiled.model, &t)) {
                Ok(d) => Some(d),
                Err(e) => {
                    eprintln!("error: {e}");
                    return 2;
                }
            }
        }
        _ => None,
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
        println!("data: {} ({} rows)", data_path.as_ref().unwrap().display(), d.n_rows);
    }
    if args.timings {
        for (stage, d) in &compiled.timings.stages {
            println!("  {stage:<14} {:>9.3} ms", d.as_secs_f64() * 1e3);
        }
    }
    let mut trainer = Trainer::new(&compiled, settings.seed);
    let loss_name = compiled.model.loss_name.clone();
    let t0 = std::time::Instant::now();
    let result = trainer.fit(dataset.as_ref(), &settings, |p: &Progress| {
        println!("step {:>8}  epoch {:>5}  {loss_name} {:.6e}", p.step, p.epoch, p.loss);
    });
    let elapsed = t0.elapsed();
    if let Err(e) = result {
        eprintln!("error: {e}");
        return 2;
    }
    println!("trained {} steps in {:.3} s ({:.2} µs/step)", trainer.step, elapsed.as_secs_f64(), elapsed.as_secs_f64() * 1e6 / trainer.step.max(1) as f64);
    let (inputs, rows) = match &dataset {
        Some(d) => (d.inputs.iter().map(|v| crate::runtime::Buffer::from_f64(compiled.model.graph().dtype, v)).collect(), d.n_rows),
        None => (vec![], 0),
    };
    match trainer.evaluate(&inputs, rows) {
        Ok(values) => {
            for (name, v) in values {
                println!("final {name} = {}", fmt_number(v));
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    }
    for (p, buf) in compiled.model.graph().params.iter().zip(&trainer.params) {
        println!("{}", describe_param(&p.name, &p.shape.as_fixed().unwrap(), &buf.to_f64()));
    }
    0
}

fn describe_param(name: &str, shape: &[usize], values: &[f64]) -> String {
    let fmt = |v: &f64| format!("{v:.6}");
    match shape {
        [] => format!("{name} = {}", fmt(&values[0])),
        _ if values.len() <= 8 => format!("{name} = [{}]", values.iter().map(fmt).collect::<Vec<_>>().join(", ")),
        _ => {
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt();
            format!(
                "{name} {:?}: mean {mean:.4}, std {sd:.4}, first [{}, …]",
                shape,
                values[..4].iter().map(fmt).collect::<Vec<_>>().join(", ")
            )
        }
    }
}
