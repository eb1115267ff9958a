//! `adjoint graph`: the simplified forward or gradient graph, as text or Graphviz, or its
//! lowering plan.

use super::*;

pub(super) fn graph(
    path: &Path,
    grad: bool,
    explain: bool,
    dot: bool,
    plan: bool,
) -> Result<(), CliError> {
    let (file, model, warnings) = load_model(path)?;
    eprint!("{}", render_all(&warnings, &file));
    let graphs = compile::graphs(&model);
    let f = if grad {
        &graphs.gradient
    } else {
        &graphs.forward
    };
    if plan {
        out::write(format_args!(
            "{}",
            crate::lower::plan_text(f, &crate::lower::plan(f))
        ));
        return Ok(());
    }
    if dot {
        out::write(format_args!("{}", crate::inspect::dot(f)));
        return Ok(());
    }
    out::write(format_args!("{}", f.text()));
    if explain {
        out::write(format_args!("{}", crate::compile::explain(&graphs, &file)));
    }
    Ok(())
}
