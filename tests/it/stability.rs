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

#[test]
fn softplus_forms_and_log_sum_exp() {
    for src in [
        "dtype f64\nparam z[3] ~ zeros\nloss sum(log(1 + exp(z)))\n",
        "dtype f64\nparam z[3] ~ zeros\nloss log(sum(exp(z)))\n",
        "dtype f64\nparam z[3] ~ zeros\nloss -sum(log(softmax(z)))\n",
        "dtype f64\nparam z[3] ~ zeros\nloss sum(softmax(z) * z)\n",
        "dtype f64\nparam z[3] ~ zeros\nloss bce_with_logits(z, z * 0 + 1)\n",
        "dtype f64\nparam z[3] ~ zeros\nloss sum(log(exp(z) + exp(-z)))\n",
        "dtype f64\nparam z[3] ~ zeros\nloss sum(sigmoid(z) + tanh(z) + softplus(z) + elu(z) + leaky_relu(z))\n",
    ] {
        assert_finite(src, &[vec![-1000.0, 0.5, 1000.0]]);
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
