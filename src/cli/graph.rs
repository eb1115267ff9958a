//! `adjoint graph`: the simplified forward or gradient graph, as text or Graphviz.

use super::*;

pub(super) fn graph(path: &Path, grad: bool, explain: bool, dot: bool) -> Result<(), CliError> {
    let (file, model, warnings) = load_model(path)?;
    eprint!("{}", render_all(&warnings, &file));
    let graphs = compile::graphs(&model);
    let f = if grad {
        &graphs.gradient
    } else {
        &graphs.forward
    };
    if dot {
        print!("{}", crate::inspect::dot(f));
        return Ok(());
    }
    print!("{}", f.text());
    if explain {
        print!("{}", crate::compile::explain(&graphs, &file));
    }
    Ok(())
}
