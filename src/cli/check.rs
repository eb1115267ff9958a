//! `adjoint check`: parse and check a model, print its diagnostics.

use super::*;

pub(super) fn check(path: &Path) -> i32 {
    let (file, model, warnings) = match load_model(path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    eprint!("{}", render_all(&warnings, &file));
    let g = model.graph();
    println!(
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
    0
}
