//! `adjoint grad`: the symbolic derivative of the loss in the model's own terms.

use super::*;

pub(super) fn grad(path: &Path, wrt: Option<&str>, latex: bool) -> i32 {
    let (file, model, warnings) = match load_model(path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    eprint!("{}", render_all(&warnings, &file));
    let graphs = compile::graphs(&model);
    let style = if latex {
        crate::ir::pretty::Style::Latex
    } else {
        crate::ir::pretty::Style::Dsl
    };
    match compile::with_big_stack(|| compile::derivatives(&graphs, &model.loss_name, wrt, style)) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
