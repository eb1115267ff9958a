//! One model in, one snapshot out: the simplified forward and gradient graphs of every example
//! and every fixture in `tests/data/graph`. Adding a case is adding a file.

use crate::support::*;
use adjoint::compile;

fn graphs_text(path: &std::path::Path) -> String {
    let model = model_of(path);
    adjoint::ir::verify::verify(&model.forward.graph).expect("checked graph verifies");
    let g = compile::graphs(&model);
    adjoint::ir::verify::verify(&g.gradient.graph).expect("gradient graph verifies");
    let mut text = format!(
        "## forward\n{}\n## gradient\n{}",
        g.forward.text(),
        g.gradient.text()
    );
    // A model with dropout: the training step's graphs, after the evaluation graphs above.
    if let Some(t) = &g.training {
        adjoint::ir::verify::verify(&t.gradient.graph).expect("training gradient verifies");
        text.push_str(&format!(
            "\n## training forward\n{}\n## training gradient\n{}",
            t.forward.text(),
            t.gradient.text()
        ));
    }
    text
}

#[test]
fn example_graphs() {
    insta::glob!("../../examples", "*.dsl", |path| {
        insta::assert_snapshot!(graphs_text(path));
    });
}

#[test]
fn fixture_graphs() {
    insta::glob!("../data/graph", "*.dsl", |path| {
        insta::assert_snapshot!(graphs_text(path));
    });
}

/// The derivative of every example, as `adjoint grad` prints it, in both notations.
#[test]
fn example_derivatives() {
    use adjoint::ir::pretty::Style;
    insta::glob!("../../examples", "*.dsl", |path| {
        let model = model_of(path);
        let g = compile::graphs(&model);
        let dsl = compile::derivatives(&g, &model.loss_name, None, Style::Dsl).unwrap();
        let latex = compile::derivatives(&g, &model.loss_name, None, Style::Latex).unwrap();
        insta::assert_snapshot!(format!("{dsl}\n{latex}"));
    });
}

/// The lowering plans of a model's forward and gradient graphs, verified, as text.
fn plans_text(path: &std::path::Path) -> String {
    let model = model_of(path);
    let g = compile::graphs(&model);
    let mut out = String::new();
    let mut graphs = vec![("forward", &g.forward), ("gradient", &g.gradient)];
    if let Some(t) = &g.training {
        graphs.extend([
            ("training forward", &t.forward),
            ("training gradient", &t.gradient),
        ]);
    }
    for (name, f) in graphs {
        let plan = adjoint::lower::plan(f);
        if let Err(e) = adjoint::lower::verify(f, &plan) {
            panic!(
                "{}: the {name} plan breaks an invariant: {e}",
                path.display()
            );
        }
        out.push_str(&format!(
            "## {name}\n{}",
            adjoint::lower::plan_text(f, &plan)
        ));
    }
    out
}

/// The plan of every example: which buffers exist, what is fused into which loop, which loops
/// run in blocks of rows.
#[test]
fn example_plans() {
    insta::glob!("../../examples", "*.dsl", |path| {
        insta::assert_snapshot!(plans_text(path));
    });
}

#[test]
fn fixture_plans() {
    insta::glob!("../data/graph", "*.dsl", |path| {
        insta::assert_snapshot!(plans_text(path));
    });
}

/// erfc exports to JAX as `jax.scipy.special.erfc`, and to ONNX not at all: ONNX has `Erf`
/// only, and 1 − Erf(x) is 0 from x ≈ 6 where erfc is not, so the export is a located error.
#[test]
fn erfc_exports_exactly_to_jax_and_is_refused_by_onnx() {
    let text = "input x[n]\nparam p = 0\nloss p^2\noutput tail = erfc(x) * 2\n";
    let file = adjoint::diagnostics::SourceFile::new("tail.dsl", text);
    let (model, _) = compile::check_source(&file, &adjoint::Limits::of_host()).unwrap();
    let graphs = compile::graphs(&model);
    let source = adjoint::export::Source {
        model: &model,
        graphs: &graphs,
        file: &file,
    };
    let jax = adjoint::export::jax::module(&source).expect("erfc exports to JAX");
    assert!(jax.contains("jax.scipy.special.erfc("), "{jax}");
    #[cfg(feature = "onnx")]
    {
        let params = vec![vec![0.0]];
        let errors = adjoint::export::onnx::model(&source, &params, &[]).unwrap_err();
        insta::assert_snapshot!(adjoint::diagnostics::render_all(&errors, &file));
    }
}

/// The JAX module `adjoint export --to jax` writes for every example: a change in generated
/// code is reviewed like a change in the gradient graph. An example the export refuses has its
/// located refusal pinned instead.
#[test]
fn example_jax_exports() {
    insta::glob!("../../examples", "*.dsl", |path| {
        insta::assert_snapshot!(jax_module_or_refusal(path, |_| true).unwrap());
    });
}

/// The JAX module of every graph fixture that trains and evaluates differently (`dropout`,
/// `batch_norm`): its model state, masks and running statistics as generated code.
#[test]
fn fixture_jax_exports_with_model_state() {
    insta::glob!("../data/graph", "*.dsl", |path| {
        if let Some(exported) = jax_module_or_refusal(path, |g| g.training.is_some()) {
            insta::assert_snapshot!(exported);
        }
    });
}

/// The JAX module of the model file at `path`, or its rendered refusal; `None` when its graphs
/// are not `wanted`.
fn jax_module_or_refusal(
    path: &std::path::Path,
    wanted: impl Fn(&compile::Graphs) -> bool,
) -> Option<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy();
    let file = adjoint::diagnostics::SourceFile::new(name, text);
    let (model, _) = compile::check_source(&file, &adjoint::Limits::of_host())
        .unwrap_or_else(|d| panic!("{} does not check: {d:?}", path.display()));
    let graphs = compile::graphs(&model);
    if !wanted(&graphs) {
        return None;
    }
    let source = adjoint::export::Source {
        model: &model,
        graphs: &graphs,
        file: &file,
    };
    Some(
        adjoint::export::jax::module(&source)
            .unwrap_or_else(|errors| adjoint::diagnostics::render_all(&errors, &file)),
    )
}
