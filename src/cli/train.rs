//! `adjoint train`: compile, train, report and save.

use super::*;

#[derive(clap::Args)]
pub(super) struct TrainArgs {
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

pub(super) fn train(args: &TrainArgs) -> i32 {
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
    if let Err(e) = crate::train::check_memory(&compiled, dataset.as_ref(), settings.batch) {
        eprintln!("error: {e}");
        return 2;
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

/// A progress bar with steps/s and the loss when stdout is a terminal; plain lines otherwise.
pub(super) fn progress_bar() -> Option<indicatif::ProgressBar> {
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

pub(super) fn describe_param(name: &str, shape: &[usize], values: &[f64]) -> String {
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
