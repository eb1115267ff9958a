//! `adjoint eval`: loss and metrics of a checkpoint on data.

use super::*;

pub(super) fn eval(path: &Path, ckpt: &Path, data: Option<&Path>) -> Result<(), CliError> {
    let (file, model, _) = load_model(path)?;
    let data_path = data_path(&model, data, path);
    let compiled = compile_model(model, &file)?;
    let dataset = load_data(&compiled.model, data_path.as_deref(), path, &[])?;
    crate::train::check_memory(&compiled, dataset.as_ref(), None).map_err(bad_input)?;
    let mut trainer = Trainer::new(&compiled, 0);
    crate::resume::load_params(&mut trainer, ckpt).map_err(bad_input)?;
    print_evaluation(&mut trainer, dataset.as_ref(), "")
}

/// Prints the loss and each metric on the data.
pub(super) fn print_evaluation(
    trainer: &mut Trainer,
    data: Option<&crate::data::Dataset>,
    prefix: &str,
) -> Result<(), CliError> {
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
    for (name, v) in trainer.evaluate(&inputs, rows).map_err(failed)? {
        println!("{prefix}{name} = {}", fmt_number(v));
    }
    Ok(())
}
