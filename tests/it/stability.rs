//! Extreme inputs: no inf or NaN wherever the mathematics is finite, in values and gradients,
//! in the interpreter and in native code.

use crate::support::*;
use adjoint::compile::CompiledModel;
use adjoint::ir::DType;
use adjoint::ir::Tensor;

/// Loss and gradients at given parameter values, by interpreter and by JIT; all must be finite.
fn assert_finite(src: &str, params: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let compiled = CompiledModel::from_model(model_of_source("s.dsl", src)).unwrap();
    let g = compiled.model.graph();
    let p = Point {
        rows: 0,
        inputs: vec![],
        params: params
            .iter()
            .zip(&g.params)
            .map(|(v, info)| Tensor::new(info.shape.as_fixed().unwrap(), v.clone()))
            .collect(),
    };
    let interp = interp_outputs(&compiled.graphs.gradient, &p);
    let jit = jit_gradient_outputs(&compiled, &p);
    for (k, (name, _)) in compiled.graphs.gradient.outputs.iter().enumerate() {
        assert!(
            interp[k].data.iter().all(|v| v.is_finite()),
            "{src}\ninterpreter: `{name}` = {:?}",
            interp[k].data
        );
        assert!(
            jit[k].iter().all(|v| v.is_finite()),
            "{src}\nnative: `{name}` = {:?}",
            jit[k]
        );
    }
    jit
}

#[test]
fn cross_entropy_with_huge_logits() {
    let src = "dtype f64\nparam z[2, 3] ~ zeros\nloss mean(logsumexp(z, axis=1) - z[:, 0])\n";
    let out = assert_finite(src, &[vec![1000.0, -1000.0, 0.0, -1000.0, 1000.0, 999.0]]);
    // Row 1 puts its mass on class 0: loss 0; row 2 on class 1 (and a little on 2).
    assert!(
        (out[0][0] - (0.0 + (2000.0 + (1.0 + (-1.0f64).exp()).ln())) / 2.0).abs() < 1e-9,
        "{:?}",
        out[0]
    );
}

#[test]
fn log_sigmoid_of_large_negative_logits() {
    let src = "dtype f64\nparam z[3] ~ zeros\nloss -sum(log(sigmoid(z)) + log(1 - sigmoid(z)))\n";
    let out = assert_finite(src, &[vec![-1000.0, 100.0, -100.0]]);
    assert!((out[0][0] - 1200.0).abs() < 1e-6, "{:?}", out[0]);
}

/// `got` equals `want` to a few units in the last place (an absolute floor of 1e-300 covers
/// values that are zero in exact arithmetic and denormal-or-zero in f64).
fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 4.0 * f64::EPSILON * w.abs() + 1e-300,
            "{what}: got {got:?}, want {want:?}"
        );
    }
}

#[test]
fn softplus_forms_and_log_sum_exp() {
    // Every formula at z = (−1000, 0.5, 1000), with its loss and gradient written out. Terms
    // below 1e-300 (e^−1000, e^−999.5) are zero in f64, and so in the expected values.
    let z = [-1000.0, 0.5, 1000.0];
    let e = std::f64::consts::E;
    let sp = |x: f64| (1.0 + x.exp()).ln(); // for |x| ≤ 1 only
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let cases: [(&str, f64, [f64; 3]); 7] = [
        // softplus: 0 + softplus(0.5) + 1000; gradient σ(z).
        (
            "sum(log(1 + exp(z)))",
            sp(0.5) + 1000.0,
            [0.0, sig(0.5), 1.0],
        ),
        // log-sum-exp: 1000 + log(1 + e^−999.5 + e^−2000) = 1000; gradient softmax(z).
        ("log(sum(exp(z)))", 1000.0, [0.0, 0.0, 1.0]),
        // −Σ log softmax = 3·lse − Σz = 3000 − 0.5; gradient 3·softmax − 1.
        ("-sum(log(softmax(z)))", 2999.5, [-1.0, -1.0, 2.0]),
        // Σ pᵢzᵢ with all mass on z₃; gradient pᵢ(1 + zᵢ − Σ pⱼzⱼ).
        ("sum(softmax(z) * z)", 1000.0, [0.0, 0.0, 1.0]),
        // mean(softplus(−z)) for targets 1: (1000 + softplus(−0.5) + 0)/3; gradient (σ(z) − 1)/3.
        (
            "bce_with_logits(z, z * 0 + 1)",
            (1000.0 + sp(-0.5)) / 3.0,
            [-1.0 / 3.0, (sig(0.5) - 1.0) / 3.0, 0.0],
        ),
        // log(eᶻ + e⁻ᶻ) = |z| + log(1 + e^−2|z|); gradient tanh(z).
        (
            "sum(log(exp(z) + exp(-z)))",
            2000.0 + 0.5 + (1.0 + 1.0 / e).ln(),
            [-1.0, 0.5f64.tanh(), 1.0],
        ),
        // At −1000: σ 0, tanh −1, softplus 0, elu −1, leaky −10; at 1000: 1 + 1 + 1000 + 1000 +
        // 1000. Gradients: σ' + tanh' + σ + elu' + leaky' = 0 + 0 + 0 + 0 + 0.01 at −1000 (elu'
        // is e^−1000 = 0), 0 + 0 + 1 + 1 + 1 at 1000.
        (
            "sum(sigmoid(z) + tanh(z) + softplus(z) + elu(z) + leaky_relu(z))",
            (-1.0 - 1.0 - 10.0)
                + (sig(0.5) + 0.5f64.tanh() + sp(0.5) + 0.5 + 0.5)
                + (1.0 + 1.0 + 1000.0 + 1000.0 + 1000.0),
            [
                0.01,
                sig(0.5) * (1.0 - sig(0.5)) + (1.0 - 0.5f64.tanh().powi(2)) + sig(0.5) + 2.0,
                3.0,
            ],
        ),
    ];
    for (loss, value, gradient) in cases {
        let src = format!("dtype f64\nparam z[3] ~ zeros\nloss {loss}\n");
        let out = assert_finite(&src, &[z.to_vec()]);
        assert_close(&format!("{loss}: loss"), &out[0], &[value]);
        assert_close(&format!("{loss}: gradient"), &out[1], &gradient);
    }
}

#[test]
fn sigmoid_of_minus_100_in_f32_is_finite() {
    let src = "param z[2] ~ zeros\nloss -sum(log(sigmoid(z)))\n";
    let compiled = CompiledModel::from_model(model_of_source("s.dsl", src)).unwrap();
    assert_eq!(compiled.model.graph().dtype, DType::F32);
    let p = Point {
        rows: 0,
        inputs: vec![],
        params: vec![Tensor::new(vec![2], vec![-100.0, 100.0])],
    };
    let out = jit_gradient_outputs(&compiled, &p);
    assert!(out.iter().flatten().all(|v| v.is_finite()), "{out:?}");
    assert!((out[0][0] - 100.0).abs() < 1e-3);
}
