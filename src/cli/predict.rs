//! `adjoint predict`: the model's `output` values for data, as CSV.

use super::*;

pub(super) fn predict(
    path: &Path,
    ckpt: &Path,
    data: Option<&Path>,
    out: Option<&Path>,
) -> Result<(), CliError> {
    let (file, model, _) = load_model(path)?;
    let Some(p) = &model.predict else {
        return Err(CliError::BadInput(format!(
            "{} declares no `output` values to predict (add e.g. `output probs = softmax(logits, axis=1)`)",
            file.name
        )));
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
    refuse_unread_data(&model, data, &optional)?;
    let dataset = load_data(
        &model,
        data_path(&model, data, path).as_deref(),
        path,
        &optional,
    )?
    .ok_or_else(|| CliError::BadInput(format!("{} has no inputs to predict for", file.name)))?;
    let compiled = compile_model(model, &file)?;
    let rows = crate::memory::Rows::of(Some(&dataset), None);
    crate::memory::check(crate::memory::Run::Prediction, &compiled, rows).map_err(bad_input)?;
    let mut trainer = Trainer::new(&compiled, 0);
    crate::resume::load_params(&mut trainer, ckpt).map_err(bad_input)?;
    let dataset = in_trained_vocabulary(&trainer, Some(dataset), ckpt)?.expect("given");
    trainer.bound_dims = dataset.dims.clone();
    let dtype = compiled.model.graph().dtype;
    let inputs = crate::train::in_dtype(&dataset.inputs, dtype);
    let values = trainer.predict(&inputs, dataset.n_rows).map_err(failed)?;
    let mut csv = String::new();
    let header: Vec<String> = values
        .iter()
        .flat_map(|(name, t)| match t.shape.len() {
            0 | 1 => vec![name.clone()],
            // Axes after the rows are flattened in row-major order.
            _ => (0..row_width(t))
                .map(|j| format!("{name}{j}"))
                .collect::<Vec<_>>(),
        })
        .collect();
    csv.push_str(&header.join(","));
    csv.push('\n');
    for r in 0..dataset.n_rows {
        let row: Vec<String> = values
            .iter()
            .flat_map(|(_, t)| {
                let w = row_width(t);
                t.data[r * w..(r + 1) * w]
                    .iter()
                    .map(|v| decimal::shortest(*v, dtype))
                    .collect::<Vec<_>>()
            })
            .collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    match out.filter(|o| *o != Path::new("-")) {
        Some(o) => {
            std::fs::write(o, csv)
                .map_err(|e| CliError::BadInput(format!("cannot write {}: {e}", o.display())))?;
            say!("wrote {} rows to {}", dataset.n_rows, o.display());
        }
        None => out::write(format_args!("{csv}")),
    }
    Ok(())
}

/// The values per data row of an output: the product of its axes after the first.
fn row_width(t: &crate::ir::Tensor) -> usize {
    t.shape.iter().skip(1).product()
}
