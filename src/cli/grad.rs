//! `adjoint grad`: the symbolic derivative of the loss in the model's own terms.

use super::*;

pub(super) fn grad(path: &Path, wrt: Option<&str>, latex: bool) -> Result<(), CliError> {
    let (file, model, warnings) = load_model(path)?;
    eprint!("{}", render_all(&warnings, &file));
    let graphs = compile::graphs(&model);
    let style = if latex {
        crate::ir::pretty::Style::Latex
    } else {
        crate::ir::pretty::Style::Dsl
    };
    let text =
        compile::with_big_stack(|| compile::derivatives(&graphs, &model.loss_name, wrt, style))
            .map_err(bad_input)?;
    out::write(format_args!("{text}"));
    Ok(())
}
