//! `adjoint eval`: loss and metrics of a checkpoint on data.

use super::*;

pub(super) fn eval(path: &Path, ckpt: &Path, data: Option<&Path>) -> i32 {
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
    if let Err(e) = crate::train::check_memory(&compiled, dataset.as_ref(), None) {
        eprintln!("error: {e}");
        return 2;
    }
    let mut trainer = Trainer::new(&compiled, 0);
    if let Err(e) = crate::resume::load_params(&mut trainer, ckpt) {
        eprintln!("error: {e}");
        return 2;
    }
    print_evaluation(&mut trainer, dataset.as_ref(), "")
}

/// Prints the loss and each metric on the data; returns the exit code.
pub(super) fn print_evaluation(
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
