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

/// The loss and every gradient element, natively, at `params`, against values computed to 25
/// digits (mpmath); each must be within `rel` of its exact value.
fn assert_exact(src: &str, params: &[f64], exact: &[f64], rel: f64) {
    let scalars: Vec<Vec<f64>> = params.iter().map(|p| vec![*p]).collect();
    assert_exact_tensors(src, &scalars, exact, rel);
}

fn assert_exact_tensors(src: &str, params: &[Vec<f64>], exact: &[f64], rel: f64) {
    let got: Vec<f64> = assert_finite(src, params).concat();
    assert_eq!(got.len(), exact.len(), "{src}");
    for (k, (g, e)) in got.iter().zip(exact).enumerate() {
        assert!(
            (g - e).abs() <= rel * e.abs(),
            "{src}\noutput {k}: {g:e}, exact {e:e}"
        );
    }
}

/// Relative tolerances. A gradient is an exponential of a difference of inputs near 1000 (f64)
/// or 100 (f32), and that difference's rounding (up to half an ulp of 1000, 5.7e-14; of 100 in
/// f32, 3.8e-6) becomes the exponential's relative error: the largest errors measured are
/// 4.4e-14 and 4.5e-7.
const F64: f64 = 1e-13;
const F32: f64 = 2e-6;

#[test]
fn a_sum_of_three_exponentials_under_a_log_never_overflows() {
    let body = "param a = 0\nparam b = 0\nparam c = 0\nloss log(exp(a) + exp(b) + exp(c))\n";
    let f64_src = format!("dtype f64\n{body}");
    // Overflow (exp(1000) is inf in f64) and underflow (exp(-1000) is 0): loss, then d/da..d/dc.
    let dominant = [
        1.0,
        0.9999546000703311,
        4.539786860886666e-05,
        2.061060046209062e-09,
    ];
    let mut exact = dominant;
    exact[0] = 1000.0000454009603;
    assert_exact(&f64_src, &[1000.0, 990.0, 980.0], &exact, F64);
    // A three-way tie: the derivative is shared equally.
    let third = 1.0 / 3.0;
    let tie = [-998.9013877113318, third, third, third];
    assert_exact(&f64_src, &[-1000.0, -1000.0, -1000.0], &tie, F64);
    // f32 overflows above 88.7 and underflows below -103.
    exact[0] = 100.00004540096027;
    assert_exact(body, &[100.0, 90.0, 80.0], &exact, F32);
    exact[0] = -99.99995459903973;
    assert_exact(body, &[-100.0, -110.0, -120.0], &exact, F32);
}

#[test]
fn a_two_component_mixture_with_sigmoid_weights_never_overflows() {
    let body = "param z = 0\nparam a = 0\nparam b = 0\n\
                loss log(sigmoid(z) * exp(a) + (1 - sigmoid(z)) * exp(b))\n";
    let f64_src = format!("dtype f64\n{body}");
    // loss, d/dz, d/da, d/db
    assert_exact(
        &f64_src,
        &[0.0, 1000.0, 1000.0],
        &[1000.0, 0.0, 0.5, 0.5],
        F64,
    );
    let far = [200.0, 1.0, 1.0, 1.3838965267367376e-87];
    assert_exact(&f64_src, &[-800.0, 1000.0, 0.0], &far, F64);
    let under = [
        -1000.046111666436,
        0.044953250020932006,
        0.9975273768433652,
        0.0024726231566347743,
    ];
    assert_exact(&f64_src, &[3.0, -1000.0, -1003.0], &under, F64);
    assert_exact(body, &[0.0, 100.0, 100.0], &[100.0, 0.0, 0.5, 0.5], F32);
    // σ(−90) is below f32's smallest normal number: its log comes from −softplus(90).
    let tiny_weight = [
        10.000045398899218,
        0.9999546021312976,
        0.9999546021312976,
        4.5397868702434395e-05,
    ];
    assert_exact(body, &[-90.0, 100.0, 0.0], &tiny_weight, F32);
    let under = [
        -100.12021266255385,
        0.1125100710978327,
        0.9933071490757152,
        0.0066928509242848554,
    ];
    assert_exact(body, &[2.0, -100.0, -103.0], &under, F32);
}

#[test]
fn a_mixture_with_softmax_weights_is_a_log_sum_exp() {
    let body = "param v[3] ~ zeros\nparam l[3] ~ zeros\nloss log(sum(softmax(v) * exp(l)))\n";
    let f64_src = format!("dtype f64\n{body}");
    // loss, d/dv, d/dl; exp(l₃ − l₁) is 0 in both precisions.
    let exact = |loss: f64| {
        [
            loss,
            0.6666212687979642,
            -0.3332879354646309,
            -1.0 / 3.0,
            0.9999546021312976,
            4.5397868702434395e-05,
            0.0,
        ]
    };
    let v = vec![0.0; 3];
    let params = [v.clone(), vec![1000.0, 990.0, -1000.0]];
    assert_exact_tensors(&f64_src, &params, &exact(998.9014331102311), F64);
    let params = [v, vec![100.0, 90.0, -100.0]];
    assert_exact_tensors(body, &params, &exact(98.90143311023111), F32);
}

#[test]
fn a_mixture_weighted_by_softmax_elements_keeps_an_underflowed_weight_finite() {
    // softmax(v)[1] = e^-200 / (1 + e^-200) is 0 in f32: its log comes from v itself.
    let body = "param v[2] ~ zeros\nparam a = 0\nparam b = 0\n\
                loss log(softmax(v)[0] * exp(a) + softmax(v)[1] * exp(b))\n";
    // loss, d/dv, d/da, d/db at v = (0, −200), a = 100, b = 350: the second term dominates.
    let params = [vec![0.0, -200.0], vec![100.0], vec![350.0]];
    let exact = [150.0, -1.0, 1.0, 1.9287498479639178e-22, 1.0];
    assert_exact_tensors(body, &params, &exact, F32);
}

#[test]
fn a_log_mean_exp_is_a_log_sum_exp_less_log_n() {
    let body = "param z[3] ~ zeros\nloss log(mean(exp(z)))\n";
    let softmax = [
        0.9999546000703311,
        4.539786860886666e-05,
        2.061060046209062e-09,
    ];
    let exact = |loss: f64| [loss, softmax[0], softmax[1], softmax[2]];
    let f64_src = format!("dtype f64\n{body}");
    let params = [vec![1000.0, 990.0, 980.0]];
    assert_exact_tensors(&f64_src, &params, &exact(998.9014331122921), F64);
    let params = [vec![100.0, 90.0, 80.0]];
    assert_exact_tensors(body, &params, &exact(98.90143311229217), F32);
}

/// A causal mask writes −inf above the diagonal: the softmax of each row, its log where kept,
/// and their derivatives stay finite (no inf − inf in the max shift, no 0 · inf in the
/// derivative), and a masked score gets exactly zero derivative. Scores of ±1000 make any
/// unshifted exponential overflow.
#[test]
fn causal_softmax_with_minus_inf_stays_finite() {
    for dtype in ["f64", "f32"] {
        let src = format!(
            "dtype {dtype}\nparam s[2, 3, 3] ~ zeros\nlet masked = where(causal_mask(3), s, -inf)\nloss sum(softmax(masked) * arange(3)) - sum(where(causal_mask(3), log_softmax(masked), 0)) + sum(logsumexp(masked, axis=-1))\n"
        );
        let scores: Vec<f64> = (0..18)
            .map(|i| if i % 2 == 0 { 1000.0 } else { -1000.0 })
            .collect();
        let out = assert_finite(&src, &[scores]);
        let grad = &out[1];
        for b in 0..2 {
            for row in 0..3 {
                for col in row + 1..3 {
                    assert_eq!(
                        grad[b * 9 + row * 3 + col],
                        0.0,
                        "{dtype}: masked [{b}, {row}, {col}]"
                    );
                }
            }
        }
    }
}
