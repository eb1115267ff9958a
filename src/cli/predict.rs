//! `adjoint predict`: the model's `output` values for data, as CSV.

use super::*;

pub(super) fn predict(path: &Path, ckpt: &Path, data: Option<&Path>, out: Option<&Path>) -> i32 {
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
    if let Err(e) = crate::train::check_memory(&compiled, Some(&dataset), None) {
        eprintln!("error: {e}");
        return 2;
    }
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
