//! `adjoint train`: compile, train, report and save.

use super::*;
use progress::Report;

#[derive(clap::Args)]
pub(super) struct TrainArgs {
    /// The model file (.dsl).
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
    #[arg(long, allow_negative_numbers = true)]
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
    #[arg(long, allow_negative_numbers = true)]
    validation: Option<f64>,
    /// Stop when the validation loss has not improved for this many log points.
    #[arg(long)]
    patience: Option<u64>,
    /// Log (print a line, add a history row) every N steps, or with `Ne` every N epochs
    /// (`--log-every 500`, `--log-every 1e`); overrides the model's `log_every`.
    #[arg(long, value_name = "N|Ne")]
    log_every: Option<LogEvery>,
    /// Write the loss (and validation loss and metrics) at every log point to this CSV file.
    #[arg(long)]
    history: Option<PathBuf>,
    /// Draw the loss (and validation) curves to this file (.png or .svg).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Save a checkpoint (safetensors) here at the end, and on Ctrl-C.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Continue from a checkpoint: parameters, optimizer state, step count, data order and the
    /// schedule; without --steps or --epochs, an interrupted run runs to its planned end.
    #[arg(long, conflicts_with = "init_from")]
    resume: Option<PathBuf>,
    /// Start from the parameters of a checkpoint or any safetensors file (tensors `param/NAME`
    /// or `NAME`), with fresh optimizer state: any optimizer, dialect or dtype.
    #[arg(long, value_name = "FILE")]
    init_from: Option<PathBuf>,
}

/// Every output path of the run, checked before anything is compiled or trained.
fn check_outputs(args: &TrainArgs) -> Result<(), CliError> {
    if let Some(p) = &args.plot {
        super::outputs::picture("--plot", p)?;
    }
    if let Some(p) = &args.history {
        super::outputs::csv("--history", p)?;
    }
    if let Some(p) = &args.save {
        super::outputs::checkpoint("--save", p)?;
    }
    Ok(())
}

pub(super) fn train(args: &TrainArgs) -> Result<(), CliError> {
    check_outputs(args)?;
    let check_start = std::time::Instant::now();
    let (file, mut model, warnings) = load_model(&args.file)?;
    let check_time = check_start.elapsed();
    eprint!("{}", render_all(&warnings, &file));
    if let Some(name) = &args.optimizer {
        match crate::optim::OptimizerKind::from_name(name) {
            Some(kind) => model.optimizer = model.optimizer.with_kind(kind),
            None => {
                let known: Vec<_> = crate::optim::OptimizerKind::ALL
                    .iter()
                    .map(|k| k.name())
                    .collect();
                return Err(CliError::BadInput(format!(
                    "unknown optimizer `{name}` for --optimizer; known: {}",
                    known.join(", ")
                )));
            }
        }
    }
    if let Some(lr) = args.lr {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(CliError::BadInput(format!(
                "--lr must be a positive number, found {lr}"
            )));
        }
        model
            .optimizer
            .set("lr", lr)
            .expect("every optimizer has a learning rate");
    }
    let mut settings = {
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
                return Err(CliError::BadInput("--batch must be at least 1".into()));
            }
            s.batch = Some(b);
        }
        if let Some(v) = args.validation {
            if !(0.0..1.0).contains(&v) {
                return Err(CliError::BadInput(format!(
                    "--validation is the fraction of rows held out, in [0, 1); found {v}"
                )));
            }
            s.validation = v;
        }
        if let Some(p) = args.patience {
            s.patience = p;
        }
        match args.log_every {
            Some(LogEvery::Steps(n)) => (s.log_every, s.log_every_epochs) = (n, 0),
            Some(LogEvery::Epochs(n)) => s.log_every_epochs = n,
            None => {}
        }
        s
    };
    refuse_unread_data(&model, args.data.as_deref(), &[])?;
    let data_path = data_path(&model, args.data.as_deref(), &args.file);
    let start = std::time::Instant::now();
    let compiled = compile_model(model, &file)?;
    let compile_time = check_time + start.elapsed();
    let dataset = load_data(&compiled.model, data_path.as_deref(), &args.file, &[])?;
    // Installed before the first line is printed: a Ctrl-C from then on stops the run at its
    // first step boundary, and saves, instead of killing the process.
    let interrupt = interrupt::install()?;
    // A closed standard output (`| head`) stops the run as Ctrl-C does.
    out::stop_on_failure(interrupt);
    let opt = &compiled.model.optimizer;
    say!(
        "compiled {} in {:.1} ms: {} parameter(s), {} {opt}",
        file.name,
        compile_time.as_secs_f64() * 1e3,
        compiled.model.graph().params.len(),
        compiled.model.graph().dtype.name(),
    );
    if let Some(flags) = optimizer_flags(args) {
        say!(
            "optimizer ({flags}): {opt}, schedule {}",
            compiled.model.schedule
        );
    }
    if let Some(d) = &dataset {
        match &d.corpus {
            Some(c) => say!(
                "data: {} ({} characters, {} distinct; windows of {})",
                c.file,
                c.tokens.len(),
                c.vocabulary.len(),
                c.window
            ),
            None if d.n_rows == 0 => say!("data: every input read whole (no rows)"),
            None => say!(
                "data: {} ({} rows)",
                d.source.as_deref().unwrap_or("?"),
                d.n_rows
            ),
        }
        if d.corpus.is_some() && settings.batch.is_none() {
            return Err(bad_input(crate::train::TrainError::TextNeedsBatch));
        }
    }
    if args.timings {
        say!(
            "  {:<14} {:>9.3} ms",
            "parse + check",
            check_time.as_secs_f64() * 1e3
        );
        for (stage, d) in &compiled.timings.stages {
            say!("  {stage:<14} {:>9.3} ms", d.as_secs_f64() * 1e3);
        }
    }
    let footprint = crate::train::check_memory(&compiled, dataset.as_ref(), settings.batch)
        .map_err(bad_input)?;
    if args.timings {
        say!(
            "  {:<14} {} peak ({} without buffer reuse)",
            "workspace",
            crate::runtime::human_bytes(footprint.workspace),
            crate::runtime::human_bytes(footprint.workspace_without_reuse)
        );
    }
    let mut trainer = Trainer::new(&compiled, settings.seed);
    trainer.check_finite = args.check_finite;
    trainer.flush_subnormals = !args.keep_subnormals;
    if let Some(r) = &args.resume {
        crate::resume::resume(&mut trainer, r).map_err(bad_input)?;
        // An unfinished run continues to its planned end unless told otherwise.
        let unfinished = trainer.step < trainer.run_end;
        if unfinished && args.steps.is_none() && args.epochs.is_none() {
            settings.steps = Some(trainer.run_end - trainer.step);
            settings.epochs = None;
            say!(
                "resumed from {} at step {} of {}",
                r.display(),
                trainer.step,
                trainer.run_end
            );
        } else {
            say!("resumed from {} at step {}", r.display(), trainer.step);
        }
    }
    if let Some(r) = &args.init_from {
        crate::resume::init_from(&mut trainer, r).map_err(bad_input)?;
        say!("parameters from {}", r.display());
    }
    let start_step = trainer.step;
    trainer.interrupt = Some(interrupt);
    // One copy of the rows: they can be as large as the memory allows.
    let train_data = match dataset {
        Some(d) if settings.validation > 0.0 => {
            let (t, v) = split(&d, settings.validation, settings.seed)?;
            trainer.validation = Some(v);
            Some(t)
        }
        other => other,
    };
    if let Some(c) = train_data.as_ref().and_then(|d| d.corpus.as_deref())
        && let Some(r) = &args.resume
    {
        same_text(&trainer, c, r)?;
    }
    let rows = train_data.as_ref().map_or(0, |d| d.n_rows);
    let reads_text = train_data.as_ref().is_some_and(|d| d.corpus.is_some());
    if let Some(r) = &args.resume
        && trainer.cursor.windows
        && !reads_text
    {
        return Err(CliError::BadInput(format!(
            "cannot resume from {}: it was trained on windows of a text, and this run reads rows of data (to start from its parameters, use --init-from {})",
            r.display(),
            r.display()
        )));
    }
    if args.resume.is_some() && !trainer.cursor.windows && trainer.cursor.order.len() != rows {
        return Err(CliError::BadInput(format!(
            "the checkpoint was trained on {} rows, this run has {rows}: resuming needs the same \
             data and validation split (to start from its parameters on other data, use \
             --init-from)",
            trainer.cursor.order.len()
        )));
    }
    if settings.patience > 0 && trainer.validation.is_none() {
        return Err(CliError::BadInput("early stopping (patience) needs a validation split (`validation = 0.2` or --validation 0.2)".into()));
    }
    let loss_name = compiled.model.loss_name.clone();
    let mut report = Report::new(&compiled, settings.patience, args.history.as_deref())?;
    trainer.training_metrics = true;
    if args.plot.is_some() {
        // Enough points for a curve across the plot's width, however few log points there are.
        trainer.trace_points = 500;
    }
    let t0 = std::time::Instant::now();
    let result = trainer.fit(train_data.as_ref(), &settings, |p: &Progress| report.log(p));
    let curves = report.finish()?;
    let elapsed = t0.elapsed();
    let interrupted = matches!(result, Ok(false));
    if result.is_ok() {
        // Interrupted runs are saved too, to --save or beside the working directory.
        let target = args.save.clone().or_else(|| {
            // Not when the reader of the output went away: nobody would learn of the file.
            (interrupted && !out::failed()).then(|| {
                PathBuf::from(format!(
                    "{}.interrupted.safetensors",
                    args.file.file_stem().unwrap_or_default().to_string_lossy()
                ))
            })
        });
        if let Some(path) = target {
            save_or_rescue(&trainer, &path, &args.file, "")?;
        }
        if interrupted {
            return Err(CliError::Interrupted(format!(
                "interrupted at step {}",
                trainer.step
            )));
        }
    }
    if let (Some(path), Ok(_)) = (&args.plot, &result) {
        let title = format!("{} — {}", file.name, compiled.model.optimizer);
        let minibatches = settings.batch.is_some();
        let (panels, marker) = curves.figure(&loss_name, minibatches);
        crate::plot::figure(path, &title, "step", &panels, marker.as_ref()).map_err(bad_input)?;
        say!("plot: {}", path.display());
    }
    if let Err(e) = result {
        // The error, then the source line it points at: printed here, in that order.
        eprintln!("error: {e}");
        if let crate::train::TrainError::NonFiniteAt { origin, .. } = &e
            && let Some(span) = origin.span
        {
            let what = match origin.rule {
                Some(r) => format!("the derivative of this `{r}`"),
                None => format!("this `{}`", origin.op),
            };
            let d =
                crate::diagnostics::Diagnostic::error("non-finite value").with_label(span, what);
            eprint!(
                "{}",
                d.render(&file)
                    .lines()
                    .skip(1)
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
            );
        }
        let diverged = matches!(
            e,
            crate::train::TrainError::Diverged { .. }
                | crate::train::TrainError::NonFiniteAt { .. }
        );
        if !diverged {
            return Err(CliError::Diagnosed);
        }
        // The trainer holds the state from before the step that went non-finite.
        if let Some(path) = &args.save {
            save_or_rescue(&trainer, path, &args.file, ", the last finite state")?;
        }
        return Err(CliError::CheckFailed);
    }
    // A resumed run's speed is that of the steps it ran, not of the checkpoint's total.
    let steps_run = trainer.step - start_step;
    say!(
        "trained {steps_run} steps in {:.3} s ({:.2} µs/step)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / steps_run.max(1) as f64
    );
    print_summary(&mut trainer, train_data.as_ref(), "training")?;
    if let Some(v) = trainer.validation.clone() {
        print_summary(&mut trainer, Some(&v), "validation")?;
    }
    for (p, buf) in compiled.model.graph().params.iter().zip(&trainer.params) {
        say!(
            "{}",
            describe_param(
                &p.name,
                &p.shape.as_fixed().unwrap(),
                &buf.to_f64(),
                buf.dtype()
            )
        );
    }
    Ok(())
}

/// Holds out a validation split: a random `fraction` of the rows, or the last `fraction` of a
/// text's characters; says which.
fn split(
    d: &crate::data::Dataset,
    fraction: f64,
    seed: u64,
) -> Result<(crate::data::Dataset, crate::data::Dataset), CliError> {
    if d.n_rows == 0 {
        return Err(CliError::BadInput(
            "a validation split holds out rows, and the model's inputs have none (they are read whole)".into(),
        ));
    }
    let (t, v) = d.split(fraction, seed);
    let (Some(tc), Some(vc)) = (&t.corpus, &v.corpus) else {
        say!(
            "validation: {} rows held out, {} for training",
            v.n_rows,
            t.n_rows
        );
        return Ok((t, v));
    };
    for (part, c) in [("held-out tail", vc), ("training part", tc)] {
        if c.starts() == 0 {
            return Err(CliError::BadInput(format!(
                "{}: validation {fraction} leaves the {part} {} character(s), fewer than the {} a window needs",
                c.file,
                c.tokens.len(),
                c.span()
            )));
        }
    }
    say!(
        "validation: the last {} characters held out ({} windows of {}), {} for training",
        vc.tokens.len(),
        v.n_rows,
        vc.window,
        tc.tokens.len()
    );
    Ok((t, v))
}

/// A resumed run on a text continues on the same text and vocabulary as the checkpoint's run.
fn same_text(
    trainer: &Trainer,
    corpus: &crate::data::text::Corpus,
    checkpoint: &Path,
) -> Result<(), CliError> {
    use crate::data::text::show_char;
    let now = corpus.identity();
    let refuse = |why: String| {
        Err(CliError::BadInput(format!(
            "cannot resume from {}: {why}; resuming continues a run on the same windows (to start from its parameters, use --init-from {})",
            checkpoint.display(),
            checkpoint.display()
        )))
    };
    let Some(saved) = &trainer.text else {
        return refuse(format!(
            "it was not trained on a text, and this model reads {}",
            corpus.file
        ));
    };
    if saved.vocabulary != now.vocabulary {
        let list = |cs: Vec<char>| match cs.is_empty() {
            true => "none".to_string(),
            false => cs
                .iter()
                .map(|&c| show_char(c))
                .collect::<Vec<_>>()
                .join(", "),
        };
        return refuse(format!(
            "the text's vocabulary changed ({} characters, {} before): new {}; gone {}",
            now.vocabulary.len(),
            saved.vocabulary.len(),
            list(saved.vocabulary.missing_from(&now.vocabulary)),
            list(now.vocabulary.missing_from(&saved.vocabulary))
        ));
    }
    if saved.text != now.text {
        let chars = |t: &str| t.split(' ').next().unwrap_or("?").to_string();
        return refuse(format!(
            "{} changed since (the training text was {} characters with checksum {}, now {} with {}; a changed validation split changes it too)",
            corpus.file,
            chars(&saved.text),
            saved.text.split(' ').nth(1).unwrap_or("?"),
            chars(&now.text),
            now.text.split(' ').nth(1).unwrap_or("?"),
        ));
    }
    Ok(())
}

/// The command-line flags that override the model's optimizer, as given; `None` when none do.
fn optimizer_flags(args: &TrainArgs) -> Option<String> {
    let mut flags = Vec::new();
    if let Some(name) = &args.optimizer {
        flags.push(format!("--optimizer {name}"));
    }
    if let Some(lr) = args.lr {
        flags.push(format!("--lr {}", fmt_number(lr)));
    }
    (!flags.is_empty()).then(|| flags.join(" "))
}

/// Saves the trained state to `path` and says so (`note` describes the state); when that fails
/// (the directory went away, the disk filled), saves it beside the model file or else in the
/// temporary directory, says where, and fails.
fn save_or_rescue(
    trainer: &Trainer,
    path: &Path,
    model_file: &Path,
    note: &str,
) -> Result<(), CliError> {
    let error = match crate::resume::save(trainer, path) {
        Ok(()) => {
            say!(
                "checkpoint: {} (step {}{note})",
                path.display(),
                trainer.step
            );
            return Ok(());
        }
        Err(e) => e,
    };
    let name = format!(
        "{}.rescued-{}.safetensors",
        model_file.file_stem().unwrap_or_default().to_string_lossy(),
        std::process::id()
    );
    let beside_model = model_file.with_file_name(&name);
    let mut also_failed = Vec::new();
    for rescue in [beside_model, std::env::temp_dir().join(&name)] {
        match crate::resume::save(trainer, &rescue) {
            Ok(()) => {
                return Err(CliError::Failed(format!(
                    "{error}\nthe trained state (step {}) was saved to {} instead",
                    trainer.step,
                    rescue.display()
                )));
            }
            Err(e) => also_failed.push(e.to_string()),
        }
    }
    Err(CliError::Failed(format!(
        "{error}\nsaving it elsewhere failed too:\n  {}",
        also_failed.join("\n  ")
    )))
}

/// Ctrl-C sets a flag; training sees it between native calls (full-batch runs make a call of
/// about 40 ms), stops with every step it took complete, and saves a checkpoint.
mod interrupt {
    use super::CliError;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, LazyLock};

    static FLAG: LazyLock<Arc<AtomicBool>> = LazyLock::new(Arc::default);

    /// Installs the handler; returns the flag it sets.
    pub fn install() -> Result<&'static AtomicBool, CliError> {
        let flag: &'static Arc<AtomicBool> = &FLAG;
        signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(flag))
            .map_err(|e| CliError::Failed(format!("cannot install the Ctrl-C handler: {e}")))?;
        Ok(flag)
    }
}

/// How often `--log-every` logs: `500` steps or `2e` epochs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum LogEvery {
    Steps(u64),
    Epochs(u64),
}

impl std::str::FromStr for LogEvery {
    type Err = String;

    fn from_str(text: &str) -> Result<LogEvery, String> {
        let (digits, epochs) = match text.strip_suffix('e') {
            Some(d) => (d, true),
            None => (text, false),
        };
        match digits.parse::<u64>() {
            Ok(n) if n > 0 && epochs => Ok(LogEvery::Epochs(n)),
            Ok(n) if n > 0 => Ok(LogEvery::Steps(n)),
            _ => Err(format!(
                "`{text}` is not a positive count of steps (`500`) or of epochs (`2e`)"
            )),
        }
    }
}

/// The final loss and metrics on one set of rows, saying which: `training rows (105): loss = …`.
fn print_summary(
    trainer: &mut Trainer,
    data: Option<&crate::data::Dataset>,
    rows_name: &str,
) -> Result<(), CliError> {
    let dtype = trainer.compiled.model.graph().dtype;
    let (inputs, rows) = match data {
        Some(d) => (crate::train::in_dtype(&d.inputs, dtype), d.n_rows),
        None => (std::borrow::Cow::Owned(vec![]), 0),
    };
    let values = trainer.evaluate(&inputs, rows).map_err(failed)?;
    let text: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(k, (name, v))| match k {
            0 => format!("{name} = {}", decimal::scientific(*v, dtype)),
            _ => format!("{name} = {}", decimal::shortest(*v, dtype)),
        })
        .collect();
    match data {
        // Inputs read whole have no rows to count.
        Some(d) if d.n_rows > 0 => say!("final, {rows_name} rows ({rows}): {}", text.join(", ")),
        _ => say!("final: {}", text.join(", ")),
    }
    Ok(())
}

pub(super) fn describe_param(name: &str, shape: &[usize], values: &[f64], dtype: DType) -> String {
    let fmt = |v: &f64| decimal::shortest(*v, dtype);
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
