//! Group normalization against a hand computation of PyTorch's `GroupNorm`: statistics per
//! sample and group of channels over the group's channels and spatial positions.

use crate::support::*;
use adjoint::compile::CompiledModel;
use adjoint::ir::DType;
use adjoint::runtime::Buffer;
use adjoint::train::Trainer;

/// `[n, 4, 3]` (4 channels of 3 positions) in 2 groups, with a random gain and bias.
const MODEL: &str = "dtype f64
input X[n, 12]
param g[4] ~ normal(1, 0.5)
param b[4] ~ normal(0, 0.5)
let z = group_norm(reshape(X, (n, 4, 3)), 2, g, b, eps=0.01)
loss mean(z^2)
output normed = z
";

#[test]
fn group_norm_follows_the_hand_computation() {
    let compiled = CompiledModel::from_model(model_of_source("gn.dsl", MODEL)).unwrap();
    let rows = 3;
    let x: Vec<f64> = (0..rows * 12)
        .map(|i| ((i * 37 % 29) as f64) / 7.0 - 1.5 + (i % 5) as f64 * 0.1)
        .collect();
    let mut t = Trainer::new(&compiled, 1);
    let (g, b) = (t.params[0].to_f64(), t.params[1].to_f64());
    assert!(
        g.iter().any(|v| (v - 1.0).abs() > 0.1),
        "a gain that matters: {g:?}"
    );
    let z = t
        .predict(&[Buffer::from_f64(DType::F64, &x)], rows)
        .unwrap();
    assert_eq!(z[0].0, "normed");
    let mut expected = Vec::new();
    for r in 0..rows {
        for group in 0..2 {
            // Channels 2·group and 2·group + 1, 3 positions each: 6 consecutive values.
            let values = &x[r * 12 + group * 6..r * 12 + group * 6 + 6];
            let mean = values.iter().sum::<f64>() / 6.0;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 6.0;
            for (i, v) in values.iter().enumerate() {
                let c = group * 2 + i / 3;
                expected.push((v - mean) / (var + 0.01).sqrt() * g[c] + b[c]);
            }
        }
    }
    let err = max_rel_err(&z[0].1.data, &expected, 1e-9);
    assert!(err <= 1e-12, "z = {:?}, by hand {expected:?}", z[0].1.data);
}
