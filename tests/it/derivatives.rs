//! `adjoint grad` prints each derivative in the model language: pasted back into a model, with
//! its `where` block as `let`s, it reads, checks and evaluates to the compiled gradient.

use crate::support::*;
use adjoint::compile;
use adjoint::ir::interp::Tensor;
use adjoint::ir::pretty::Style;
use adjoint::ir::{DType, Graph};

/// The model's dtype, inputs and parameters, declared again.
fn declarations(g: &Graph) -> String {
    let mut src = format!(
        "dtype {}\n",
        if g.dtype == DType::F64 { "f64" } else { "f32" }
    );
    for i in &g.inputs {
        let int = if i.is_int { ": int" } else { "" };
        src += &format!("input {}{}{int}\n", i.name, g.shape_text(&i.shape));
    }
    for p in &g.params {
        src += &param_declaration(g, &p.name, &p.shape);
    }
    // A state tensor (a running statistic) is printed as an identifier: declared as a
    // parameter, given its initial value below.
    for s in &g.states {
        src += &param_declaration(g, &s.name.replace('.', "_"), &s.shape);
    }
    src
}

fn param_declaration(g: &Graph, name: &str, shape: &adjoint::ir::Shape) -> String {
    if shape.is_scalar() {
        format!("param {name} = 0\n")
    } else {
        format!("param {name}{} ~ zeros\n", g.shape_text(shape))
    }
}

/// A model whose gradient with respect to `probe_P` is the printed derivative of each `P`:
/// its loss is the sum of `sum((dloss/dP) * probe_P)`.
fn round_trip_source(g: &Graph, printed: &str) -> String {
    let mut src = declarations(g);
    let mut terms = Vec::new();
    let mut in_where = false;
    for line in printed.lines() {
        if line == "where" {
            in_where = true;
        } else if in_where {
            src += &format!("let {}\n", line.trim());
        } else {
            let (lhs, expr) = line.split_once(" = ").unwrap();
            let param = lhs.rsplit_once("/d").unwrap().1;
            terms.push(format!("sum(({expr}) * probe_{param})"));
        }
    }
    for p in &g.params {
        src += &param_declaration(g, &format!("probe_{}", p.name), &p.shape);
    }
    src + &format!("loss {}\n", terms.join(" + "))
}

#[test]
fn every_examples_printed_derivative_reads_back_as_its_gradient() {
    for path in dsl_files("examples") {
        round_trip(&path.display().to_string(), &model_of(&path));
    }
}

/// The fixtures cover every derivative rule.
#[test]
fn every_fixtures_printed_derivative_reads_back_as_its_gradient() {
    for path in dsl_files("tests/data/graph") {
        round_trip(&path.display().to_string(), &model_of(&path));
    }
}

/// Random shapes and broadcasting, as the finite-difference tests generate them.
#[test]
fn generated_programs_printed_derivatives_read_back_as_their_gradients() {
    for seed in 0..60 {
        let src = crate::gradients::generated_program(seed);
        let name = format!("generated program {seed}:\n{src}\n");
        round_trip(
            &name,
            &model_of_source(&format!("generated{seed}.dsl"), &src),
        );
    }
}

#[test]
fn generated_tensor_programs_printed_derivatives_read_back_as_their_gradients() {
    for seed in 0..60 {
        let src = crate::gradients::generated_tensor_program(seed);
        let name = format!("generated tensor program {seed}:\n{src}\n");
        round_trip(&name, &model_of_source(&format!("tensors{seed}.dsl"), &src));
    }
}

#[test]
fn generated_gathers_printed_derivatives_read_back_as_their_gradients() {
    for seed in 0..40 {
        let src = crate::gradients::generated_gather_program(seed);
        let name = format!("generated gather {seed}:\n{src}\n");
        round_trip(&name, &model_of_source(&format!("gather{seed}.dsl"), &src));
    }
}

/// Convolutions and pooling: `windows`, `unwindows` and the products print and read back.
#[test]
fn generated_conv_programs_printed_derivatives_read_back_as_their_gradients() {
    for seed in 0..40 {
        let src = crate::gradients::generated_conv_program(seed);
        let name = format!("generated convolution {seed}:\n{src}\n");
        round_trip(&name, &model_of_source(&format!("conv{seed}.dsl"), &src));
    }
}

/// The attention vocabulary on random shapes of rank 0–5.
#[test]
fn generated_attention_programs_printed_derivatives_read_back_as_their_gradients() {
    for seed in 0..60 {
        let src = crate::gradients::generated_attention_program(seed);
        let name = format!("generated attention program {seed}:\n{src}\n");
        round_trip(
            &name,
            &model_of_source(&format!("attention{seed}.dsl"), &src),
        );
    }
}

/// Prints the derivatives of `model`, reads them back as a model and compares the two
/// gradients at a random point.
pub fn round_trip(name: &str, model: &adjoint::Model) {
    let graphs = compile::graphs(model);
    let printed = compile::derivatives(&graphs, &model.loss_name, None, Style::Dsl).unwrap();
    let g = model.graph();
    let src = round_trip_source(g, &printed);
    let back = model_of_source(&format!("{name} printed"), &src);
    let back_graphs = compile::graphs(&back);

    let point = random_point(g, 5, 11);
    let expected = interp_outputs(&graphs.gradient, &point);
    let mut probe_point = random_point(g, 5, 11);
    probe_point
        .params
        .extend(adjoint::ir::interp::initial_states(g));
    probe_point.params.extend(
        g.params
            .iter()
            .map(|p| Tensor::zeros(p.shape.as_fixed().unwrap())),
    );
    let got = interp_outputs(&back_graphs.gradient, &probe_point);
    let n = g.params.len() + g.states.len();
    for (i, p) in g.params.iter().enumerate() {
        let (want, have) = (&expected[1 + i].data, &got[1 + n + i].data);
        assert_eq!(want.len(), have.len(), "{}: d/d{}", name, p.name);
        assert!(
            have.iter().chain(want).all(|v| v.is_finite()),
            "{}: d/d{}: {have:?} vs {want:?}",
            name,
            p.name
        );
        let err = normwise_err(have, want, 1e-300);
        assert!(
            err < 1e-12,
            "{}: d/d{} differs by {err:e} when read back from\n{printed}\nas\n{src}",
            name,
            p.name
        );
    }
}
