//! Every example in docs/language.md compiles, differentiates and runs, and computes the
//! values the reference interpreter and finite differences give.

use crate::support::*;
use adjoint::compile::CompiledModel;

#[test]
fn every_language_reference_example_compiles_and_runs() {
    let text = std::fs::read_to_string(repo().join("docs/language.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim()) {
            (None, "```dsl") => current = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(blocks.len() >= 6, "found {} examples", blocks.len());
    for (i, src) in blocks.iter().enumerate() {
        let name = format!("docs/language.md example {}", i + 1);
        // In f64, so that native code, the interpreter and finite differences agree closely.
        let model = with_dtype(model_of_source(&name, src), adjoint::ir::DType::F64);
        let compiled = CompiledModel::from_model(model).unwrap();
        let p = random_point(compiled.model.graph(), 5, i as u64);
        let native = jit_gradient_outputs(&compiled, &p);
        let reference = interp_outputs(&compiled.graphs.gradient, &p);
        assert!(native[0][0].is_finite(), "{name}:\n{src}");
        // Native code against the reference interpreter: the same operations, summed in another
        // order, so equal to a few thousand units in the last place.
        for (k, (out, want)) in native.iter().zip(&reference).enumerate() {
            let err = max_rel_err(out, &want.data, 1e-12);
            assert!(
                err <= 1e-12,
                "{name}: output {k} {} vs {}",
                head(out),
                head(&want.data)
            );
        }
        // The loss is the forward function's; the gradient its central differences, whose
        // truncation error at h = 1e-5 stays below 1e-6 for these smooth losses. Their rounding
        // error, about ε·|loss|/h ≈ 1e-10, is not: below 1e-4 a derivative is compared
        // absolutely, to 1e-9 (a derivative of 3e-6 differed by 1.2e-10, relatively 4e-5).
        let loss = interp_loss(&compiled.graphs.forward, &p);
        assert!(rel_err(native[0][0], loss, 1e-12) <= 1e-12, "{name}: loss");
        let fd = finite_difference_grads(&compiled.graphs.forward, &p);
        for (k, g) in fd.iter().enumerate() {
            let err = max_rel_err(&native[k + 1], g, 1e-4);
            assert!(err <= 1e-5, "{name}: gradient {k} off by {err:.2e}\n{src}");
        }
    }
}
