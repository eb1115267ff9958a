//! Batch normalization's running statistics: after training steps (single and fused) against a
//! hand computation from the data, untouched by evaluation and prediction, and read by them.

use crate::support::*;
use adjoint::compile::CompiledModel;
use adjoint::ir::DType;
use adjoint::runtime::Buffer;
use adjoint::train::Trainer;

/// Two normalizations of the data itself, so that their statistics do not depend on the
/// parameters: the channels of `[n, 2, 2, 3]` images, and three columns.
const MODEL: &str = "dtype f64
input X[n, 12]
param g1[2] ~ ones
param b1[2] ~ zeros
param g2[3] ~ ones
param b2[3] ~ zeros
let img = batch_norm(reshape(X, (n, 2, 2, 3)), g1, b1)
let z = batch_norm(X[:, :3], g2, b2, momentum=0.25)
loss mean(img^2 * 0.5) + mean((z - 1)^2)
output normed = z
optimizer sgd(lr = 0.1)
";

const EPS: f64 = 1e-5;

fn data(rows: usize) -> Vec<f64> {
    (0..rows * 12)
        .map(|i| ((i * 37 % 29) as f64) / 7.0 - 1.5 + (i % 5) as f64 * 0.1)
        .collect()
}

/// The values of channel `c` in rows `rows` of `x`: the image channel (`image`) or a column.
fn channel(x: &[f64], rows: std::ops::Range<usize>, image: bool, c: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for r in rows {
        let row = &x[r * 12..(r + 1) * 12];
        if image {
            out.extend_from_slice(&row[c * 6..(c + 1) * 6]);
        } else {
            out.push(row[c]);
        }
    }
    out
}

/// The batch mean and unbiased variance of some values.
fn stats(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let squares: f64 = v.iter().map(|x| (x - mean).powi(2)).sum();
    (mean, squares / (n - 1.0))
}

/// The running statistics, in the model's state order, after steps on `batches` (row ranges
/// of `x`), computed as PyTorch defines them.
fn expected_running(x: &[f64], batches: &[std::ops::Range<usize>]) -> Vec<Vec<f64>> {
    let calls = [(true, 2, 0.1), (false, 3, 0.25)];
    let mut running: Vec<Vec<f64>> = calls
        .iter()
        .flat_map(|&(_, c, _)| [vec![0.0; c], vec![1.0; c]])
        .collect();
    for batch in batches {
        for (k, &(image, c, momentum)) in calls.iter().enumerate() {
            for ch in 0..c {
                let (mean, var) = stats(&channel(x, batch.clone(), image, ch));
                let m = &mut running[2 * k][ch];
                *m = (1.0 - momentum) * *m + momentum * mean;
                let v = &mut running[2 * k + 1][ch];
                *v = (1.0 - momentum) * *v + momentum * var;
            }
        }
    }
    running
}

fn assert_close(label: &str, actual: &[Buffer], expected: &[Vec<f64>]) {
    assert_eq!(actual.len(), expected.len(), "{label}: state tensors");
    for (k, (a, e)) in actual.iter().zip(expected).enumerate() {
        let err = max_rel_err(&a.to_f64(), e, 1e-9);
        assert!(
            err <= 1e-12,
            "{label}: state #{k} is {:?}, by hand {e:?}",
            a.to_f64()
        );
    }
}

fn rows_of(x: &[f64], rows: std::ops::Range<usize>) -> Vec<Buffer> {
    vec![Buffer::from_f64(
        DType::F64,
        &x[rows.start * 12..rows.end * 12],
    )]
}

#[test]
fn running_statistics_follow_the_hand_computation() {
    let compiled = CompiledModel::from_model(model_of_source("bn.dsl", MODEL)).unwrap();
    let names: Vec<&str> = compiled
        .model
        .graph()
        .states
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "batch_norm0.running_mean",
            "batch_norm0.running_var",
            "batch_norm1.running_mean",
            "batch_norm1.running_var"
        ]
    );
    let x = data(7);
    // Single steps on minibatches of different sizes.
    let mut single = Trainer::new(&compiled, 1);
    assert_close(
        "before any step",
        &single.model_state,
        &expected_running(&x, &[]),
    );
    let batches = [0..3, 3..7, 1..5];
    for b in &batches {
        single.train_step(&rows_of(&x, b.clone()), b.len()).unwrap();
    }
    assert_close(
        "single steps",
        &single.model_state,
        &expected_running(&x, &batches),
    );
    // The fused loop, three steps on one batch, equals three single steps bit for bit.
    let mut fused = Trainer::new(&compiled, 1);
    fused.train_steps(&rows_of(&x, 0..7), 7, 3).unwrap();
    let same = [0..7, 0..7, 0..7];
    assert_close(
        "fused steps",
        &fused.model_state,
        &expected_running(&x, &same),
    );
    let mut stepped = Trainer::new(&compiled, 1);
    for _ in 0..3 {
        stepped.train_step(&rows_of(&x, 0..7), 7).unwrap();
    }
    assert_eq!(fused.model_state, stepped.model_state);
    assert_eq!(fused.params, stepped.params);
}

#[test]
fn evaluation_reads_the_running_statistics_and_leaves_them() {
    let compiled = CompiledModel::from_model(model_of_source("bn.dsl", MODEL)).unwrap();
    let x = data(7);
    let mut t = Trainer::new(&compiled, 1);
    t.train_steps(&rows_of(&x, 0..7), 7, 4).unwrap();
    let running = t.model_state.clone();
    t.evaluate(&rows_of(&x, 0..7), 7).unwrap();
    let z = t.predict(&rows_of(&x, 2..6), 4).unwrap();
    assert_eq!(
        t.model_state, running,
        "evaluation and prediction update nothing"
    );
    // z = (x − running mean) / √(running variance + eps) · g2 + b2, by hand.
    let (mean, var) = (running[2].to_f64(), running[3].to_f64());
    let (g2, b2) = (t.params[2].to_f64(), t.params[3].to_f64());
    let mut expected = Vec::new();
    for r in 2..6 {
        for c in 0..3 {
            let v = x[r * 12 + c];
            expected.push((v - mean[c]) / (var[c] + EPS).sqrt() * g2[c] + b2[c]);
        }
    }
    assert_eq!(z[0].0, "normed");
    let err = max_rel_err(&z[0].1.data, &expected, 1e-9);
    assert!(err <= 1e-12, "z = {:?}, by hand {expected:?}", z[0].1.data);
}

/// A batch of one row makes a running variance's unbiased estimate 0/0: training stops with a
/// clear error naming the state tensor, rather than evaluating with NaN later.
#[test]
fn a_batch_of_one_row_stops_training_at_the_nan_running_variance() {
    let src = "dtype f64
input X[n, 3]
param g[3] ~ ones
param b[3] ~ zeros
loss mean(batch_norm(X, g, b)^2)
optimizer sgd(lr = 0.1)
";
    let compiled = CompiledModel::from_model(model_of_source("one.dsl", src)).unwrap();
    let x = [0.5, -1.0, 2.0];
    let data = adjoint::data::Dataset {
        n_rows: 1,
        inputs: vec![Buffer::F64(x.to_vec())],
        widths: vec![3],
        whole: vec![false],
        ..Default::default()
    };
    let mut t = Trainer::new(&compiled, 0);
    let mut settings = compiled.model.train.clone();
    settings.steps = Some(3);
    let err = t
        .fit(Some(&data), &settings, |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("state tensor `batch_norm0.running_var` NaN"),
        "{err}"
    );
}
