//! Training and evaluation modes: dropout's masks against the reference generator (their keep
//! rate, thread counts, the fused loop against single steps, resumption), the training graph's
//! gradient against central differences, and the identity in evaluation and prediction.

use crate::support::*;
use adjoint::compile::CompiledModel;
use adjoint::ir::{DType, dropout};
use adjoint::runtime::{Buffer, Workspace};
use adjoint::train::Trainer;

/// The native mask of one training step of `dropout(W, p)` on a 2²⁰-element parameter: the
/// gradient of the sum of the dropped parameter.
fn native_mask(dtype: DType, p: f64, step_key: u64) -> Vec<f64> {
    let src = format!(
        "dtype {}\nparam W[1024, 1024] ~ zeros\nloss sum(dropout(W, {p}))\n",
        dtype.name()
    );
    let compiled = CompiledModel::from_model(model_of_source("mask.dsl", &src)).unwrap();
    let params = [Buffer::from_f64(dtype, &vec![0.0; 1 << 20])];
    let exe = &compiled.step;
    let mut ws = Workspace::new(&exe.plan, dtype, &[]).unwrap();
    exe.run_step(&mut ws, &[], &params, step_key).unwrap();
    ws.output(&exe.plan, 1).to_f64()
}

#[test]
fn native_masks_are_the_reference_masks_and_keep_one_minus_p() {
    let key = dropout::step_key(dropout::run_key(&[3; 32]), 7);
    for dtype in [DType::F64, DType::F32] {
        for p in [0.1, 0.5, 0.85] {
            let mask = native_mask(dtype, p, key);
            let round = |v: f64| match dtype {
                DType::F32 => v as f32 as f64,
                DType::F64 => v,
            };
            let expected: Vec<f64> = dropout::mask(key, 0, p, 1 << 20)
                .into_iter()
                .map(round)
                .collect();
            assert!(
                mask == expected,
                "{} p = {p}: native mask differs",
                dtype.name()
            );
            let n = mask.len() as f64;
            let kept = mask.iter().filter(|&&m| m != 0.0).count() as f64;
            let sigma = (n * p * (1.0 - p)).sqrt();
            assert!(
                (kept - n * (1.0 - p)).abs() < 3.0 * sigma,
                "{} p = {p}: {kept} of {n} kept",
                dtype.name()
            );
            assert!(
                mask.iter()
                    .all(|&m| m == 0.0 || m == round(1.0 / (1.0 - p))),
                "kept elements are scaled by 1/(1 - p)"
            );
        }
    }
}

const NET: &str = "input X[n, 64]
input y[n]: int
param W1[64, 64] ~ xavier_uniform
param W2[64, 10] ~ xavier_uniform
let h = dropout(tanh(dropout(X, 0.1) @ W1), 0.5)
loss cross_entropy(h @ W2, y)
";

fn net_inputs(rows: usize) -> Vec<Buffer> {
    let x: Vec<f64> = (0..rows * 64)
        .map(|i| ((i * 37 % 101) as f64) / 50.0 - 1.0)
        .collect();
    let y: Vec<f64> = (0..rows).map(|i| (i * 7 % 10) as f64).collect();
    vec![
        Buffer::from_f64(DType::F32, &x),
        Buffer::from_f64(DType::F32, &y),
    ]
}

/// Steps of a network whose loops are split into parts (4096 rows of 64): the fused native
/// loop on one thread and on four, and the same steps taken one native call at a time, give
/// the same parameters bit for bit; so the masks do not depend on how a loop is split, and
/// the fused loop derives each step's key as a single step does.
#[test]
fn dropout_steps_are_the_same_on_any_thread_count_fused_or_not() {
    let compiled = CompiledModel::from_model(model_of_source("net.dsl", NET)).unwrap();
    let rows = 4096;
    let inputs = net_inputs(rows);
    let mut runs = Vec::new();
    for threads in [1, 4] {
        adjoint::jit::parallel::set_threads(threads);
        let mut fused = Trainer::new(&compiled, 11);
        fused.train_steps(&inputs, rows, 6).unwrap();
        let mut single = Trainer::new(&compiled, 11);
        for _ in 0..6 {
            single.train_step(&inputs, rows).unwrap();
        }
        runs.push((format!("fused, {threads} thread(s)"), fused.params));
        runs.push((format!("single steps, {threads} thread(s)"), single.params));
    }
    let untrained = Trainer::new(&compiled, 11).params;
    assert_ne!(runs[0].1, untrained, "the steps changed the parameters");
    for (label, params) in &runs[1..] {
        assert!(params == &runs[0].1, "{label} differs from {}", runs[0].0);
    }
    // Another seed draws other masks, so other parameters.
    let mut other = Trainer::new(&compiled, 12);
    other.params = Trainer::new(&compiled, 11).params;
    other.train_steps(&inputs, rows, 6).unwrap();
    assert_ne!(
        other.params, runs[0].1,
        "the masks depend on the run's seed"
    );
}

/// The training graph at a fixed step key is a function of the parameters like any other:
/// its symbolic gradient (in the interpreter, f64) against central differences of its loss.
#[test]
fn the_training_gradient_matches_central_differences() {
    for fixture in ["dropout.dsl", "batch_norm.dsl"] {
        training_gradient_matches_central_differences(fixture);
    }
}

/// The check above for one fixture: with batch normalization, the gradient flows through the
/// batch's mean and variance.
fn training_gradient_matches_central_differences(fixture: &str) {
    let model = model_of(&repo().join("tests/data/graph").join(fixture));
    let graphs = adjoint::compile::graphs(&model);
    let t = graphs
        .training
        .as_ref()
        .expect("a model with dropout or batch_norm trains on its own graph");
    for (rows, seed) in [(5, 0), (17, 1)] {
        let p = random_point(&t.forward.graph, rows, seed);
        let key = dropout::step_key(dropout::run_key(&[seed as u8; 32]), 2);
        let symbolic = interp_outputs_keyed(&t.gradient, &p, key);
        let loss = |q: &Point| interp_outputs_keyed(&t.forward, q, key)[0].item();
        let mut q = Point {
            rows: p.rows,
            inputs: p.inputs.clone(),
            params: p.params.clone(),
        };
        for i in 0..p.params.len() {
            for j in 0..p.params[i].len() {
                let x = p.params[i].data[j];
                let h = 1e-5 * x.abs().max(1.0);
                q.params[i].data[j] = x + h;
                let up = loss(&q);
                q.params[i].data[j] = x - h;
                let down = loss(&q);
                q.params[i].data[j] = x;
                let numeric = (up - down) / (2.0 * h);
                let exact = symbolic[i + 1].data[j];
                assert!(
                    (numeric - exact).abs() <= 1e-6 * exact.abs().max(1.0),
                    "{fixture}: {}[{j}] at {rows} rows: symbolic {exact}, central difference \
                     {numeric}",
                    t.gradient.outputs[i + 1].0
                );
            }
        }
    }
}

/// With dropout, evaluation and prediction compute what the same model without it does, bit
/// for bit; training does not.
#[test]
fn dropout_is_the_identity_in_evaluation_and_prediction() {
    let with = format!("{NET}metric first = mean(h @ W2)\noutput probs = softmax(h @ W2)\n");
    let without = with.replace("dropout(tanh(dropout(X, 0.1) @ W1), 0.5)", "tanh(X @ W1)");
    let a = CompiledModel::from_model(model_of_source("a.dsl", &with)).unwrap();
    let b = CompiledModel::from_model(model_of_source("b.dsl", &without)).unwrap();
    assert!(a.graphs.training.is_some() && b.graphs.training.is_none());
    assert_eq!(a.graphs.forward.text(), b.graphs.forward.text());
    let rows = 50;
    let inputs = net_inputs(rows);
    let (mut ta, mut tb) = (Trainer::new(&a, 4), Trainer::new(&b, 4));
    assert_eq!(
        ta.evaluate(&inputs, rows).unwrap(),
        tb.evaluate(&inputs, rows).unwrap()
    );
    let (pa, pb) = (
        ta.predict(&inputs, rows).unwrap(),
        tb.predict(&inputs, rows).unwrap(),
    );
    assert_eq!(pa[0].1.data, pb[0].1.data);
    assert_ne!(
        ta.train_step(&inputs, rows).unwrap(),
        tb.train_step(&inputs, rows).unwrap(),
        "a training step's loss is computed with the masks"
    );
    // The same evaluation graph, different runs: a checkpoint of one does not resume the other.
    assert_ne!(
        adjoint::resume::model_hash(&ta),
        adjoint::resume::model_hash(&tb)
    );
}

/// Newton's Hessian is of the evaluation graph: with dropout its steps would follow another
/// loss than the one trained, so the run is refused before its first step.
#[test]
fn newton_refuses_a_model_whose_training_step_differs() {
    let source = "dtype f64\ninput x[n]\ninput t[n]\nparam w ~ zeros\nloss mean((dropout(w * x, 0.5) - t)^2)\noptimizer newton\n";
    let compiled = CompiledModel::from_model(model_of_source("newton.dsl", source)).unwrap();
    let table = adjoint::data::Table::parse("d.csv", "x,t\n0,1\n1,3\n2,5\n3,7\n").unwrap();
    let data = adjoint::data::bind(&compiled.model, &table).unwrap();
    let mut t = Trainer::new(&compiled, 0);
    let err = t
        .fit(Some(&data), &compiled.model.train.clone(), |_| {})
        .expect_err("Newton with dropout");
    assert!(err.to_string().contains("dropout"), "{err}");
    assert_eq!((t.step, t.params[0].get(0)), (0, 0.0));
}
