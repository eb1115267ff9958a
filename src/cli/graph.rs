//! `adjoint graph`: the simplified forward or gradient graph, as text or Graphviz.

use super::*;

pub(super) fn graph(path: &Path, grad: bool, explain: bool, dot: bool) -> i32 {
    let (file, model, warnings) = match load_model(path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    eprint!("{}", render_all(&warnings, &file));
    let graphs = compile::graphs(&model);
    let f = if grad {
        &graphs.gradient
    } else {
        &graphs.forward
    };
    if dot {
        print!("{}", crate::inspect::dot(f));
        return 0;
    }
    print!("{}", f.text());
    if explain {
        print!("{}", crate::compile::explain(&graphs, &file));
    }
    0
}
