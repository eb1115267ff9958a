//! `adjoint inits`: one model trained from several initializations of its weights, the runs'
//! curves drawn together. Every parameter of rank two or more (a dense layer's matrix, a
//! convolution's kernel) takes the initializer under test; vectors (biases, gains) keep the
//! model's own. Each variant is the model's source with those initializers rewritten, so it is
//! checked like any model file: a constant start draws the symmetry warning, pointing at the
//! rewritten line.

use super::*;
use crate::diagnostics::Span;

pub(super) struct InitsArgs<'a> {
    pub file: &'a Path,
    /// Initializers as the model language writes them (`he_normal`, `constant(0.1)`), separated
    /// by commas outside parentheses.
    pub with: &'a str,
    pub steps: Option<u64>,
    pub epochs: Option<u64>,
    pub seed: Option<u64>,
    pub validation: Option<f64>,
    pub out: &'a Path,
}

/// One training run: the initializer, its training loss over steps, and its validation
/// figures at each log point.
struct Run {
    init: String,
    loss: Vec<(f64, f64)>,
    validation: Vec<(u64, Vec<(String, f64)>)>,
    final_loss: f64,
}

pub(super) fn inits(args: &InitsArgs) -> Result<(), CliError> {
    outputs::picture("--out", args.out)?;
    let specs = initializer_list(args.with)?;
    let original = read_source(args.file)?;
    let weights = weight_initializers(&original)?;
    if weights.is_empty() {
        return Err(CliError::BadInput(format!(
            "{} has no weights to initialize: `inits` varies the parameters of rank two or more (matrices and kernels)",
            original.name
        )));
    }
    say!(
        "weights: {} (vectors keep the model's own initializers)",
        weights
            .iter()
            .map(|(name, _)| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // Every variant is checked and compiled before the first step of any run.
    let mut compiled = Vec::new();
    for spec in &specs {
        let file = with_weights(&original, &weights, spec);
        let (model, warnings) = compile::check_source(&file, &crate::limits::Limits::of_host())
            .map_err(|d| {
                eprint!("{}", render_all(&d, &file));
                CliError::Diagnosed
            })?;
        eprint!("{}", render_all(&warnings, &file));
        compiled.push(compile_model(model, &file)?);
    }
    let first = &compiled[0].model;
    let settings = settings(first.train.clone(), args)?;
    refuse_unread_data(first, None, &[])?;
    let data_path = data_path(first, None, args.file);
    let dataset = load_data(first, data_path.as_deref(), args.file, &[])?;
    let (train_data, validation) = match dataset {
        Some(d) if settings.validation > 0.0 => {
            let (t, v) = d.split(settings.validation, settings.seed);
            (Some(t), Some(v))
        }
        other => (other, None),
    };
    let mut runs = Vec::new();
    for (spec, c) in specs.iter().zip(&compiled) {
        crate::train::check_memory(c, train_data.as_ref(), settings.batch).map_err(bad_input)?;
        runs.push(train_one(
            spec,
            c,
            train_data.as_ref(),
            validation.clone(),
            &settings,
        )?);
    }
    print_table(&runs);
    let title = format!("{}: weights from each initializer", original.name);
    crate::plot::figure(args.out, &title, "step", &panels(&runs), None).map_err(bad_input)?;
    say!("plot: {}", args.out.display());
    Ok(())
}

/// The model's training settings with the flags applied.
fn settings(
    mut s: crate::model::TrainSettings,
    args: &InitsArgs,
) -> Result<crate::model::TrainSettings, CliError> {
    if args.steps.is_some() || args.epochs.is_some() {
        s.steps = args.steps;
        s.epochs = args.epochs;
    }
    if let Some(seed) = args.seed {
        s.seed = seed;
    }
    if let Some(v) = args.validation {
        if !(0.0..1.0).contains(&v) {
            return Err(CliError::BadInput(format!(
                "--validation is the fraction of rows held out, in [0, 1); found {v}"
            )));
        }
        s.validation = v;
    }
    // Every run to its end: early stopping would compare runs of different lengths.
    s.patience = 0;
    // Log points chosen from the run's length, so that every curve has several.
    (s.log_every, s.log_every_epochs) = (0, 0);
    Ok(s)
}

fn train_one(
    spec: &str,
    compiled: &CompiledModel,
    data: Option<&data::Dataset>,
    validation: Option<data::Dataset>,
    settings: &crate::model::TrainSettings,
) -> Result<Run, CliError> {
    let mut trainer = Trainer::new(compiled, settings.seed);
    trainer.validation = validation;
    // Enough points for a curve across the plot's width.
    trainer.trace_points = 200;
    let mut run = Run {
        init: spec.to_string(),
        loss: Vec::new(),
        validation: Vec::new(),
        final_loss: f64::NAN,
    };
    let result = trainer.fit(data, settings, |p: &Progress| {
        run.loss
            .extend(p.trace.iter().map(|&(step, loss)| (step as f64, loss)));
        if p.trace.is_empty() {
            run.loss.push((p.step as f64, p.loss));
        }
        if !p.validation.is_empty() {
            run.validation.push((p.step, p.validation.clone()));
        }
        run.final_loss = p.loss;
        let shown: Vec<String> = p
            .validation
            .iter()
            .map(|(name, v)| format!("validation {name} {}", figure(*v)))
            .collect();
        say!(
            "{spec:<20} step {:>7}  training loss {}{}{}",
            p.step,
            figure(p.loss),
            if shown.is_empty() { "" } else { "  " },
            shown.join("  ")
        );
    });
    match result {
        Ok(_) => Ok(run),
        // A run that diverges is a result of the comparison, not a failure of the command.
        Err(
            e @ (crate::train::TrainError::Diverged { .. }
            | crate::train::TrainError::NonFiniteAt { .. }),
        ) => {
            say!("{spec:<20} stopped: {e}");
            Ok(run)
        }
        Err(e) => Err(bad_input(e)),
    }
}

/// The final figures of each run, one row per initializer.
fn print_table(runs: &[Run]) {
    let names = validation_names(runs);
    let mut header = format!("{:<20} {:>14}", "initializer", "training loss");
    for n in &names {
        header.push_str(&format!(" {:>14}", format!("val. {n}")));
    }
    say!("{header}");
    for r in runs {
        let mut line = format!("{:<20} {:>14}", r.init, figure(r.final_loss));
        let last = r
            .validation
            .last()
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[]);
        for n in &names {
            let v = last.iter().find(|(m, _)| m == n).map(|(_, v)| *v);
            line.push_str(&format!(" {:>14}", v.map_or("-".into(), figure)));
        }
        say!("{line}");
    }
}

/// A loss or metric as the comparison prints it: four decimals tell the runs apart.
fn figure(v: f64) -> String {
    format!("{v:.4}")
}

/// The validation figures the runs report (the loss, then each metric), each once, in the
/// order they first appear.
fn validation_names(runs: &[Run]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (_, figures) in runs.iter().flat_map(|r| &r.validation) {
        for (name, _) in figures {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

/// The training losses in one panel, and each validation figure (the loss, then each metric)
/// in a panel of its own.
fn panels(runs: &[Run]) -> Vec<crate::plot::Panel> {
    let mut panels = vec![crate::plot::Panel {
        y_label: "training loss".into(),
        series: runs
            .iter()
            .map(|r| (r.init.clone(), r.loss.clone()))
            .collect(),
    }];
    for name in validation_names(runs) {
        panels.push(crate::plot::Panel {
            y_label: format!("validation {name}"),
            series: runs
                .iter()
                .map(|r| {
                    let points = r
                        .validation
                        .iter()
                        .filter_map(|(step, v)| {
                            v.iter()
                                .find(|(n, _)| *n == name)
                                .map(|(_, v)| (*step as f64, *v))
                        })
                        .collect();
                    (r.init.clone(), points)
                })
                .collect(),
        });
    }
    panels
}

/// `--with`'s initializers: split at the commas outside parentheses, each one checked to read
/// as a single initializer of the model language.
fn initializer_list(with: &str) -> Result<Vec<String>, CliError> {
    let mut specs = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in with.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                specs.push(with[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    specs.push(with[start..].trim().to_string());
    for spec in &specs {
        if !reads_as_one_initializer(spec) {
            return Err(CliError::BadInput(format!(
                "--with: `{spec}` is not an initializer (give names such as `he_normal` or `constant(0.1)`, separated by commas)"
            )));
        }
    }
    Ok(specs)
}

/// Whether `spec` parses as exactly the initializer of one parameter: nothing more (a second
/// item, a comment) can ride along into the rewritten source.
fn reads_as_one_initializer(spec: &str) -> bool {
    if spec.is_empty() || spec.contains(['\n', '\r', '#']) {
        return false;
    }
    let (module, errors) = crate::syntax::parse(&format!("param w[2, 2] ~ {spec}\n"));
    errors.is_empty()
        && matches!(
            module.items.as_slice(),
            [crate::syntax::ast::Item::Param {
                init: crate::syntax::ast::Init::Named { .. },
                ..
            }]
        )
}

/// The parameters of rank two or more, each with the source range of its initializer (after
/// `~`: the name and its arguments), in source order.
fn weight_initializers(file: &SourceFile) -> Result<Vec<(String, Span)>, CliError> {
    let (module, errors) = crate::syntax::parse(&file.text);
    if !errors.is_empty() {
        eprint!("{}", render_all(&errors, file));
        return Err(CliError::Diagnosed);
    }
    let mut spans = Vec::new();
    for item in &module.items {
        if let crate::syntax::ast::Item::Param {
            name,
            shape,
            init,
            span,
        } = item
            && shape.len() >= 2
        {
            let at = match init {
                crate::syntax::ast::Init::Named { name, .. } => {
                    Span::new(name.span.start, span.end)
                }
                // A matrix cannot be given one value (`= v` is for scalars); the checker says so.
                crate::syntax::ast::Init::Value(_, at) => *at,
            };
            spans.push((name.name.clone(), at));
        }
    }
    Ok(spans)
}

/// The source with each weight's initializer replaced by `spec`, named so that its diagnostics
/// say which variant they are about.
fn with_weights(file: &SourceFile, weights: &[(String, Span)], spec: &str) -> SourceFile {
    let mut text = String::with_capacity(file.text.len());
    let mut at = 0;
    for (_, s) in weights {
        text.push_str(&file.text[at..s.start]);
        text.push_str(spec);
        at = s.end;
    }
    text.push_str(&file.text[at..]);
    SourceFile::new(format!("{} (weights ~ {spec})", file.name), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_inside_arguments_do_not_split_initializers() {
        let specs = initializer_list("normal(0, 0.1), he_normal,constant(0.5)").unwrap();
        assert_eq!(specs, ["normal(0, 0.1)", "he_normal", "constant(0.5)"]);
    }

    #[test]
    fn an_initializer_cannot_smuggle_items_into_the_source() {
        for bad in [
            "",
            "he_normal\nloss 0",
            "he_normal # x",
            "(",
            "he_normal loss 1",
            "1.5",
        ] {
            assert!(initializer_list(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn only_matrices_and_kernels_are_rewritten() {
        let file = SourceFile::new(
            "m.dsl",
            "param W[2, 3] ~ xavier_uniform\nparam b[3] ~ zeros\nparam K[4, 1, 3, 3] ~ he_normal(gain = 2)\n",
        );
        let spans = weight_initializers(&file).unwrap();
        let names: Vec<&str> = spans.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["W", "K"]);
        let rewritten = with_weights(&file, &spans, "constant(0.1)");
        assert_eq!(
            rewritten.text,
            "param W[2, 3] ~ constant(0.1)\nparam b[3] ~ zeros\nparam K[4, 1, 3, 3] ~ constant(0.1)\n"
        );
        assert_eq!(rewritten.name, "m.dsl (weights ~ constant(0.1))");
    }
}
