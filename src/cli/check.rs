//! `adjoint check`: parse and check a model, print its diagnostics.

use super::*;

pub(super) fn check(path: &Path) -> Result<(), CliError> {
    let (file, model, warnings) = load_model(path)?;
    eprint!("{}", render_all(&warnings, &file));
    let g = model.graph();
    say!(
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
    Ok(())
}
