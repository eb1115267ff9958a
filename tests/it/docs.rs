//! Every example in docs/language.md compiles, differentiates and runs.

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
        let model = model_of_source(&format!("docs/language.md example {}", i + 1), src);
        let compiled = CompiledModel::from_model(model).unwrap();
        let p = random_point(compiled.model.graph(), 5, i as u64);
        let out = jit_gradient_outputs(&compiled, &p);
        assert!(out[0][0].is_finite(), "example {}:\n{src}", i + 1);
    }
}
