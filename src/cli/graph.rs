//! `adjoint graph`: the simplified forward or gradient graph, as text or Graphviz, or its
//! lowering plan.

use super::*;

/// Which graph `adjoint graph` prints, and how.
pub(super) struct GraphOptions {
    pub grad: bool,
    /// The evaluation graph rather than the training step's (they differ with `dropout`).
    pub eval: bool,
    pub explain: bool,
    pub dot: bool,
    pub plan: bool,
}

pub(super) fn graph(path: &Path, opts: GraphOptions) -> Result<(), CliError> {
    let GraphOptions {
        grad,
        eval,
        explain,
        dot,
        plan,
    } = opts;
    let (file, model, warnings) = load_model(path)?;
    eprint!("{}", render_all(&warnings, &file));
    let graphs = compile::graphs(&model);
    let f = match (&graphs.training, eval, grad) {
        (Some(t), false, true) => &t.gradient,
        (Some(t), false, false) => &t.forward,
        (_, _, true) => &graphs.gradient,
        (_, _, false) => &graphs.forward,
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
        out::write(format_args!(
            "{}",
            crate::compile::explain(&model, &graphs, &file)
        ));
    }
    Ok(())
}
