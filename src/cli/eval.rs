//! `adjoint eval`: loss and metrics of a checkpoint on data.

use super::*;

pub(super) struct EvalOptions<'a> {
    pub data: Option<&'a Path>,
    /// Score the rows a training run with this validation fraction held out.
    pub validation: Option<f64>,
    /// The seed of that split (default: the model's).
    pub seed: Option<u64>,
    /// Print the confusion matrix of the model's `argmax` output against its labels.
    pub confusion: bool,
}

pub(super) fn eval(path: &Path, ckpt: &Path, opts: &EvalOptions) -> Result<(), CliError> {
    let (file, model, _) = load_model(path)?;
    refuse_unread_data(&model, opts.data, &[])?;
    if let Some(v) = opts.validation.filter(|v| !(*v > 0.0 && *v < 1.0)) {
        return Err(CliError::BadInput(format!(
            "--validation is the fraction of rows held out, in (0, 1); found {v}"
        )));
    }
    let data_path = data_path(&model, opts.data, path);
    let seed = opts.seed.unwrap_or(model.train.seed);
    let compiled = compile_model(model, &file)?;
    let classes = if opts.confusion {
        Some(classifier(&compiled, &file)?)
    } else {
        None
    };
    let mut dataset = load_data(&compiled.model, data_path.as_deref(), path, &[])?;
    if let (Some(v), Some(d)) = (opts.validation, &dataset) {
        // The same split `train` makes with the same fraction and seed.
        let (t, held) = d.split(v, seed);
        match &held.corpus {
            Some(c) => say!(
                "validation: the last {} characters held out ({} windows of {})",
                c.tokens.len(),
                held.n_rows,
                c.window
            ),
            None => say!(
                "validation: the {} rows held out with seed {seed} (of {}; {} for training)",
                held.n_rows,
                d.n_rows,
                t.n_rows
            ),
        }
        dataset = Some(held);
    }
    let rows = crate::memory::Rows::of(dataset.as_ref(), None);
    crate::memory::check(crate::memory::Run::Evaluation, &compiled, rows).map_err(bad_input)?;
    let mut trainer = Trainer::new(&compiled, 0);
    crate::resume::load_params(&mut trainer, ckpt).map_err(bad_input)?;
    let dataset = in_trained_vocabulary(&trainer, dataset, ckpt)?;
    print_model_state(&trainer);
    print_evaluation(&mut trainer, dataset.as_ref(), "")?;
    if let (Some(c), Some(d)) = (classes, &dataset) {
        print_confusion(&mut trainer, d, &c)?;
    }
    Ok(())
}

/// What a confusion matrix compares: an `output` that is an `argmax`, and the labels.
struct Classifier {
    output: usize,
    output_name: String,
    labels: usize,
    label_name: String,
    /// The class count, where the argmax's axis has a fixed size.
    classes: Option<usize>,
}

fn classifier(compiled: &CompiledModel, file: &SourceFile) -> Result<Classifier, CliError> {
    let not_one = |what: &str| {
        CliError::BadInput(format!(
            "--confusion needs a classifier: {} has {what}",
            file.name
        ))
    };
    let g = compiled.model.graph();
    let labels: Vec<usize> = (0..g.inputs.len())
        .filter(|&i| g.inputs[i].is_int)
        .collect();
    let [labels] = labels[..] else {
        return Err(not_one(&format!(
            "{} integer inputs (labels), not one",
            labels.len()
        )));
    };
    let predict = compiled.graphs.predict.as_ref();
    let argmaxes: Vec<(usize, String, Option<usize>)> = predict
        .map(|p| {
            p.outputs
                .iter()
                .enumerate()
                .filter_map(|(k, (name, id))| {
                    let crate::ir::Op::ArgMax { axis } = p.graph.op(*id) else {
                        return None;
                    };
                    let operand = p.graph.node(*id).inputs[0];
                    let dims = &p.graph.shape(operand).0;
                    let classes = dims.get(*axis as usize).and_then(|d| match d {
                        crate::ir::Dim::Fixed(c) => Some(*c as usize),
                        crate::ir::Dim::Sym(_) => None,
                    });
                    Some((k, name.clone(), classes))
                })
                .collect()
        })
        .unwrap_or_default();
    let [(output, output_name, classes)] = &argmaxes[..] else {
        return Err(not_one(&format!(
            "{} `output` values that are an `argmax`, not one (add e.g. `output predicted = argmax(logits, axis=1)`)",
            argmaxes.len()
        )));
    };
    Ok(Classifier {
        output: *output,
        output_name: output_name.clone(),
        labels,
        label_name: g.inputs[labels].name.clone(),
        classes: *classes,
    })
}

/// Rows are the true classes, columns the predicted ones.
fn print_confusion(
    trainer: &mut Trainer,
    data: &crate::data::Dataset,
    c: &Classifier,
) -> Result<(), CliError> {
    let dtype = trainer.compiled.model.graph().dtype;
    trainer.bound_dims = data.dims.clone();
    let inputs = crate::train::in_dtype(&data.inputs, dtype);
    let outputs = trainer.predict(&inputs, data.n_rows).map_err(failed)?;
    let predicted = &outputs[c.output].1.data;
    let truth = &data.inputs[c.labels];
    let seen = (predicted.iter().copied())
        .chain(truth.iter_f64())
        .fold(0.0f64, f64::max) as usize
        + 1;
    let k = c.classes.unwrap_or(0).max(seen);
    let mut counts = vec![vec![0u64; k]; k];
    for (t, &p) in truth.iter_f64().zip(predicted) {
        counts[t as usize][p as usize] += 1;
    }
    say!(
        "confusion matrix: rows `{}` (true class), columns `{}` (predicted)",
        c.label_name,
        c.output_name
    );
    let width = counts
        .iter()
        .flatten()
        .map(|n| n.to_string().len())
        .max()
        .unwrap_or(1)
        .max(k.to_string().len());
    let header: String = (0..k).map(|j| format!(" {j:>width$}")).collect();
    say!("  {:>width$} |{header}", "");
    for (i, row) in counts.iter().enumerate() {
        let cells: String = row.iter().map(|n| format!(" {n:>width$}")).collect();
        say!("  {i:>width$} |{cells}");
    }
    Ok(())
}

/// Prints a summary of each state tensor the evaluation reads (batch normalization's running
/// statistics), as the checkpoint holds it; nothing for a model without state.
fn print_model_state(trainer: &Trainer) {
    let g = trainer.compiled.model.graph();
    let number = |v: f64| decimal::shortest(v, g.dtype);
    for (info, b) in g.states.iter().zip(&trainer.model_state) {
        let values = b.to_f64();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        say!(
            "state {}{}: min {}, mean {}, max {}",
            info.name,
            g.shape_text(&info.shape),
            number(min),
            number(mean),
            number(max)
        );
    }
}

/// Prints the loss and each metric on the data.
fn print_evaluation(
    trainer: &mut Trainer,
    data: Option<&crate::data::Dataset>,
    prefix: &str,
) -> Result<(), CliError> {
    let dtype = trainer.compiled.model.graph().dtype;
    let (inputs, rows) = match data {
        Some(d) => (crate::train::in_dtype(&d.inputs, dtype), d.n_rows),
        None => (std::borrow::Cow::Owned(vec![]), 0),
    };
    for m in trainer.evaluate_metrics(&inputs, rows).map_err(failed)? {
        match m.values[..] {
            [v] if !m.is_vector => say!("{prefix}{} = {}", m.name, decimal::shortest(v, dtype)),
            _ => {
                // A vector metric: one row per element (per class, typically).
                say!("{prefix}{} (per element):", m.name);
                let width = m.values.len().saturating_sub(1).to_string().len();
                for (i, v) in m.values.iter().enumerate() {
                    say!("  {i:>width$}  {}", decimal::shortest(*v, dtype));
                }
            }
        }
    }
    Ok(())
}
