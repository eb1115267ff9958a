//! Gradient checking with blame, second derivatives and Hessian spectra, Graphviz output.

use crate::support::*;
use adjoint::compile::{self, CompiledModel};
use adjoint::inspect::{self, Point};
use adjoint::ir::{DType, Tensor};

fn linreg_data() -> (Vec<Vec<f64>>, Vec<f64>) {
    let text = std::fs::read_to_string(repo().join("examples/data/linreg.csv")).unwrap();
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    (
        rows.iter().map(|r| r[..3].to_vec()).collect(),
        rows.iter().map(|r| r[3]).collect(),
    )
}

#[test]
fn least_squares_hessian_is_two_a_transpose_a_over_n() {
    let model = model_of(&repo().join("examples/linreg.dsl"));
    let (a, z) = linreg_data();
    let n = a.len();
    let point = Point {
        inputs: vec![
            Tensor::new(vec![n, 3], a.iter().flatten().copied().collect()),
            Tensor::new(vec![n], z),
        ],
        params: vec![Tensor::new(vec![3], vec![0.3, -0.2, 0.1])],
        states: vec![],
        syms: vec![n as u64],
    };
    let expected: Vec<Vec<f64>> = (0..3)
        .map(|i| {
            (0..3)
                .map(|j| 2.0 * a.iter().map(|r| r[i] * r[j]).sum::<f64>() / n as f64)
                .collect()
        })
        .collect();
    let forward = compile::graphs(&model).forward;
    let h = inspect::hvp_graph(&forward);
    let dense = inspect::hessian(&h, &point);
    for i in 0..3 {
        assert!(
            max_rel_err(&dense[i], &expected[i], 1e-12) < 1e-10,
            "{dense:?} vs {expected:?}"
        );
    }
    // Every reported eigenvalue is a root of det(2AᵀA/n − λI).
    let det = |l: f64| {
        let m: Vec<Vec<f64>> = (0..3)
            .map(|i| {
                (0..3)
                    .map(|j| expected[i][j] - if i == j { l } else { 0.0 })
                    .collect()
            })
            .collect();
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let ev = inspect::symmetric_eigenvalues(&dense);
    let scale = ev[2].powi(3);
    for l in &ev {
        assert!(det(*l).abs() < 1e-10 * scale, "λ = {l}: det = {}", det(*l));
    }
    let (lo, hi) = inspect::lanczos_extremes(&h, &point, 10, &mut adjoint::init::rng(1));
    assert!(
        rel_err(lo, ev[0], 1e-12) < 1e-9 && rel_err(hi, ev[2], 1e-12) < 1e-9,
        "Lanczos ({lo}, {hi}) vs {ev:?}"
    );
}

#[test]
fn second_derivatives_of_every_fixture_are_symmetric() {
    // A Hessian computed by differentiating the gradient graph is symmetric up to rounding,
    // which checks the derivative rules of the derivative rules.
    for path in dsl_files("tests/data/graph") {
        let model = with_dtype(model_of(&path), DType::F64);
        let n: usize = model
            .graph()
            .params
            .iter()
            .map(|p| p.shape.fixed_elements().unwrap())
            .sum();
        if n > 40 {
            continue;
        }
        let p = random_point(model.graph(), 4, 9);
        let point = Point {
            inputs: p.inputs.clone(),
            params: p.params.clone(),
            states: vec![],
            syms: p.syms(model.graph()),
        };
        let forward = compile::graphs(&model).forward;
        let h = inspect::hessian(&inspect::hvp_graph(&forward), &point);
        let scale = h.iter().flatten().fold(1e-3, |m: f64, x| m.max(x.abs()));
        for i in 0..n {
            for j in 0..i {
                assert!(
                    (h[i][j] - h[j][i]).abs() <= 1e-9 * scale,
                    "{}: H[{i}][{j}] = {} but H[{j}][{i}] = {}",
                    path.display(),
                    h[i][j],
                    h[j][i]
                );
            }
        }
    }
}

#[test]
fn gradcheck_catches_and_locates_a_planted_wrong_rule() {
    let src = "dtype f64\nparam w[3] ~ normal(0, 1)\nparam b ~ normal(0, 1)\nlet h = tanh(w * 2 + b)\nloss sum(h * h) + b^2\n";
    let check = |planted: Option<&'static str>| {
        adjoint::autodiff::plant_wrong_rule(planted);
        let model = model_of_source("planted.dsl", src);
        let compiled = CompiledModel::from_model(model.clone()).unwrap();
        adjoint::autodiff::plant_wrong_rule(None);
        let mut t = adjoint::train::Trainer::new(&compiled, 0);
        t.value_and_grad(&[], 0).unwrap();
        let grads: Vec<Vec<f64>> = (0..2).map(|i| t.gradient(i, 0).unwrap().to_f64()).collect();
        let point = Point {
            inputs: vec![],
            params: t
                .params
                .iter()
                .zip(&model.graph().params)
                .map(|(b, p)| Tensor::new(p.shape.as_fixed().unwrap(), b.to_f64()))
                .collect(),
            states: vec![],
            syms: vec![],
        };
        let mut rng = adjoint::init::rng(0);
        let worst = inspect::gradcheck(&compiled.graphs.forward, &grads, &point, &mut rng, 16)
            .iter()
            .map(|c| c.worst)
            .fold(0.0, f64::max);
        adjoint::autodiff::plant_wrong_rule(planted);
        let blame = inspect::blame(&compiled.graphs.forward, &point, &mut rng, 1e-6);
        adjoint::autodiff::plant_wrong_rule(None);
        (worst, blame)
    };
    let (worst, blame) = check(None);
    assert!(worst < 1e-7 && blame.is_none(), "{worst} {blame:?}");
    let (worst, blame) = check(Some("tanh"));
    assert!(worst > 1e-2, "a doubled tanh rule went unnoticed: {worst}");
    let blame = blame.expect("the wrong rule is located");
    assert_eq!(blame.op, "tanh");
    let file = adjoint::SourceFile::new("planted.dsl", src);
    let text = inspect::describe_blame(&blame, &file);
    assert!(
        text.contains("planted.dsl:4:9") && text.contains("tanh(w * 2 + b)"),
        "{text}"
    );
}

/// `blame` checks a node's rule as a function of the operands that vary: a constant exponent
/// stays a constant, so `(w - 3)^2` at negative bases is not blamed for the exponent's
/// derivative x^y·log(x), which is not meant to hold there (it reported an infinite error).
#[test]
fn blame_keeps_a_constant_exponent_constant() {
    let src = "dtype f64\nparam w[3] ~ normal(0, 1)\nloss sum((w - 3)^2) + sum(tanh(w))\n";
    let model = model_of_source("power.dsl", src);
    let compiled = CompiledModel::from_model(model.clone()).unwrap();
    let point = Point {
        inputs: vec![],
        params: vec![Tensor::new(vec![3], vec![-0.5, 0.25, 1.5])],
        states: vec![],
        syms: vec![],
    };
    let mut rng = adjoint::init::rng(0);
    let blame = inspect::blame(&compiled.graphs.forward, &point, &mut rng, 1e-6);
    assert!(blame.is_none(), "{blame:?}");
}

#[test]
fn graphs_render_for_graphviz() {
    let model = model_of(&repo().join("examples/linreg.dsl"));
    let g = compile::graphs(&model);
    let dot = inspect::dot(&g.gradient);
    assert!(dot.starts_with("digraph adjoint {") && dot.trim_end().ends_with('}'));
    assert!(dot.contains("matmul") && dot.contains("-> n") && dot.contains("\"dloss/dw\""));
}
