//! The examples reach their targets when trained as their files say.

use crate::support::*;
use adjoint::compile::CompiledModel;
use adjoint::data::{Table, bind};
use adjoint::runtime::Buffer;
use adjoint::train::Trainer;

fn train_example(name: &str) -> (CompiledModel, Vec<Vec<f64>>, Vec<(String, f64)>) {
    let path = repo().join("examples").join(name);
    let model = model_of(&path);
    let data = model.data.as_ref().map(|d| {
        bind(
            &model,
            &Table::load(&path.parent().unwrap().join(d)).unwrap(),
        )
        .unwrap()
    });
    let compiled = CompiledModel::from_model(model).unwrap();
    let settings = compiled.model.train.clone();
    let (params, metrics) = {
        let mut trainer = Trainer::new(&compiled, settings.seed);
        trainer.fit(data.as_ref(), &settings, |_| {}).unwrap();
        let dtype = compiled.model.graph().dtype;
        let (inputs, rows) = match &data {
            Some(d) => (
                d.inputs
                    .iter()
                    .map(|v| v.in_dtype(dtype).into_owned())
                    .collect(),
                d.n_rows,
            ),
            None => (vec![], 0),
        };
        let metrics = trainer.evaluate(&inputs, rows).unwrap();
        (trainer.params.iter().map(|p| p.to_f64()).collect(), metrics)
    };
    (compiled, params, metrics)
}

/// The generator of the shipped synthetic data sets, compiled here to check the files.
#[path = "../../examples/gen_data.rs"]
#[allow(dead_code)]
mod gen_data;

#[test]
fn rosenbrock_reaches_the_minimum_with_adam() {
    let (_, params, _) = train_example("rosenbrock.dsl");
    let (x, y) = (params[0][0], params[1][0]);
    assert!(
        (x - 1.0).abs() < 1e-3 && (y - 1.0).abs() < 1e-3,
        "ended at ({x}, {y})"
    );
}

/// Solves the normal equations AᵀA w = Aᵀz by Gaussian elimination with partial pivoting.
fn normal_equations(a: &[Vec<f64>], z: &[f64]) -> Vec<f64> {
    let k = a[0].len();
    let mut m = vec![vec![0.0; k + 1]; k];
    for (row, &zi) in a.iter().zip(z) {
        for i in 0..k {
            for j in 0..k {
                m[i][j] += row[i] * row[j];
            }
            m[i][k] += row[i] * zi;
        }
    }
    for col in 0..k {
        let pivot = (col..k)
            .max_by(|&x, &y| m[x][col].abs().total_cmp(&m[y][col].abs()))
            .unwrap();
        m.swap(col, pivot);
        for r in 0..k {
            if r != col {
                let f = m[r][col] / m[col][col];
                for c in col..=k {
                    m[r][c] -= f * m[col][c];
                }
            }
        }
    }
    (0..k).map(|i| m[i][k] / m[i][i]).collect()
}

#[test]
fn linear_regression_reaches_the_normal_equations_solution() {
    let (_, params, _) = train_example("linreg.dsl");
    let text = std::fs::read_to_string(repo().join("examples/data/linreg.csv")).unwrap();
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let a: Vec<Vec<f64>> = rows.iter().map(|r| r[..3].to_vec()).collect();
    let z: Vec<f64> = rows.iter().map(|r| r[3]).collect();
    let exact = normal_equations(&a, &z);
    let err = max_rel_err(&params[0], &exact, 0.0);
    assert!(
        err <= 1e-4,
        "w = {:?}, normal equations give {exact:?} (relative error {err:e})",
        params[0]
    );
}

#[test]
fn iris_softmax_regression_reaches_95_percent() {
    let (_, _, metrics) = train_example("iris.dsl");
    let accuracy = metrics.iter().find(|m| m.0 == "accuracy").unwrap().1;
    assert!(accuracy >= 0.95, "training accuracy {accuracy}");
}

#[test]
fn shipped_linreg_data_matches_its_generator() {
    let shipped = std::fs::read_to_string(repo().join("examples/data/linreg.csv")).unwrap();
    assert!(
        shipped == gen_data::linreg_csv(),
        "examples/data/linreg.csv differs from `cargo run --example gen_data`"
    );
}

#[test]
fn minibatches_are_seeded_and_handle_the_last_partial_batch() {
    let src = "dtype f64\ninput x[n]\ninput t[n]\nparam w ~ zeros\nparam b ~ zeros\nloss mean((w * x + b - t)^2)\noptimizer sgd(lr = 0.1)\ntrain epochs = 30, batch = 4\n";
    let table = Table::parse(
        "d.csv",
        "x,t\n0,1\n1,3\n2,5\n3,7\n4,9\n5,11\n6,13\n7,15\n8,17\n9,19\n",
    )
    .unwrap();
    let compiled = CompiledModel::from_model(model_of_source("m.dsl", src)).unwrap();
    let data = bind(&compiled.model, &table).unwrap();
    let run = |seed| {
        let mut t = Trainer::new(&compiled, seed);
        let mut settings = compiled.model.train.clone();
        settings.seed = seed;
        t.fit(Some(&data), &settings, |_| {}).unwrap();
        // 10 rows in batches of 4: 3 steps per epoch, the last with 2 rows.
        assert_eq!(t.step, 90);
        t.params.iter().map(|p| p.get(0)).collect::<Vec<_>>()
    };
    let (a, b) = (run(1), run(1));
    assert_eq!(a, b, "same seed, same trajectory");
    assert_ne!(a, run(2), "another seed shuffles differently");
}

fn metric(metrics: &[(String, f64)], name: &str) -> f64 {
    metrics
        .iter()
        .find(|m| m.0 == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
        .1
}

#[test]
fn logistic_regression_separates_virginica() {
    let (_, _, metrics) = train_example("logistic.dsl");
    assert!(metric(&metrics, "accuracy") >= 0.95, "{metrics:?}");
}

#[test]
fn gaussian_mixture_recovers_the_generating_parameters() {
    // 2000 draws from 0.3·N(−2, 0.5²) + 0.7·N(1.5, 1²). The maximum-likelihood estimates have
    // standard errors (the components are 3.5 apart, so barely inflated by their overlap):
    // μ₁: 0.5/√600 = 0.020, μ₂: 1/√1400 = 0.027, σ₁: 0.5/√1200 = 0.014, σ₂: 1/√2800 = 0.019,
    // w₁: √(0.3·0.7/2000) = 0.010. Each bound is five standard errors: a correct fit misses it
    // with probability below 1e-6, while a wrong gradient or a swapped component misses it by
    // far. (The shipped draws give μ₁ −1.971, μ₂ 1.454, σ₁ 0.475, σ₂ 0.993, w₁ 0.282.)
    let (_, params, metrics) = train_example("gmm.dsl");
    let (mu1, mu2) = (params[1][0], params[2][0]);
    let n = 2000.0f64;
    let within = |what: &str, got: f64, truth: f64, standard_error: f64| {
        assert!(
            (got - truth).abs() < 5.0 * standard_error,
            "{what} = {got}, truth {truth} ± {standard_error} (one standard error)"
        );
    };
    within("mu1", mu1, -2.0, 0.5 / (0.3 * n).sqrt());
    within("mu2", mu2, 1.5, 1.0 / (0.7 * n).sqrt());
    within(
        "sigma1",
        metric(&metrics, "sigma1"),
        0.5,
        0.5 / (2.0 * 0.3 * n).sqrt(),
    );
    within(
        "sigma2",
        metric(&metrics, "sigma2"),
        1.0,
        1.0 / (2.0 * 0.7 * n).sqrt(),
    );
    within(
        "weight1",
        metric(&metrics, "weight1"),
        0.3,
        (0.3 * 0.7 / n).sqrt(),
    );
}

#[test]
fn digits_network_reaches_97_percent_training_accuracy() {
    let (_, _, metrics) = train_example("digits.dsl");
    assert!(metric(&metrics, "accuracy") >= 0.97, "{metrics:?}");
}

#[test]
fn beale_reaches_its_minimum() {
    let (_, params, _) = train_example("beale.dsl");
    assert!(
        (params[0][0] - 3.0).abs() < 1e-3 && (params[1][0] - 0.5).abs() < 1e-3,
        "{params:?}"
    );
}

#[test]
fn gradient_descent_escapes_the_saddle() {
    let (_, params, _) = train_example("saddle.dsl");
    assert!(
        params[0][0].abs() < 1e-3 && (params[1][0] - 2f64.sqrt()).abs() < 1e-3,
        "{params:?}"
    );
}

#[test]
fn shipped_gmm_data_matches_its_generator() {
    let shipped = std::fs::read_to_string(repo().join("examples/data/gmm.csv")).unwrap();
    assert!(
        shipped == gen_data::gmm_csv(),
        "examples/data/gmm.csv differs from `cargo run --example gen_data`"
    );
}

/// Training steps flush subnormal numbers to zero, on every thread that runs a part of a split
/// loop, and give the calling thread its modes back; `flush_subnormals = false` keeps them.
/// In f32, (10⁻²⁰)² is subnormal: flushed, the loss is exactly zero on one thread and on two.
#[test]
fn training_steps_flush_subnormals_on_every_thread() {
    let src = "input x[n]\nparam w = 1\nloss sum((w * x)^2)\noptimizer sgd(lr = 1)\n";
    let compiled = CompiledModel::from_model(model_of_source("tiny.dsl", src)).unwrap();
    let rows = 100_003;
    let x: Vec<f64> = (0..rows).map(|i| 1e-20 * (1 + i % 7) as f64).collect();
    let inputs = [Buffer::from_f64(compiled.model.graph().dtype, &x)];
    let modes = adjoint::jit::fpenv::Modes::current();
    let loss_with = |threads: usize, flush: bool| {
        adjoint::jit::parallel::set_threads(threads);
        let mut t = Trainer::new(&compiled, 0);
        t.flush_subnormals = flush;
        let loss = t.train_step(&inputs, rows).unwrap();
        adjoint::jit::parallel::set_threads(2);
        loss
    };
    let splits = adjoint::jit::parallel::split_loops();
    for threads in [1, 2] {
        assert_eq!(loss_with(threads, true), 0.0, "{threads} threads");
        let kept = loss_with(threads, false);
        assert!(kept > 0.0 && kept < 1e-30, "{threads} threads: {kept}");
    }
    assert!(
        adjoint::jit::parallel::split_loops() > splits,
        "the loss's loop was split"
    );
    assert_eq!(loss_with(1, false), loss_with(2, false));
    assert_eq!(adjoint::jit::fpenv::Modes::current(), modes);
}

/// Iris's 150 rows in minibatches of 16: nine full batches and one of 6 make an epoch.
fn iris_minibatches() -> (CompiledModel, adjoint::data::Dataset) {
    let path = repo().join("examples/iris.dsl");
    let model = model_of(&path);
    let data = bind(
        &model,
        &Table::load(&repo().join("examples/data/iris.csv")).unwrap(),
    )
    .unwrap();
    (CompiledModel::from_model(model).unwrap(), data)
}

#[test]
fn a_log_point_reports_the_epochs_mean_loss_over_its_rows() {
    let (compiled, data) = iris_minibatches();
    let mut settings = compiled.model.train.clone();
    (settings.steps, settings.batch, settings.log_every) = (Some(30), Some(16), 0);
    settings.log_every_epochs = 1;
    let mut trainer = Trainer::new(&compiled, 0);
    trainer.trace_points = 30;
    let mut reports = vec![];
    trainer
        .fit(Some(&data), &settings, |p| reports.push(p.clone()))
        .unwrap();
    assert_eq!(reports.len(), 3, "one report per epoch");
    for (epoch, p) in reports.iter().enumerate() {
        assert_eq!(
            (p.step, p.epoch),
            (10 * (epoch as u64 + 1), epoch as u64 + 1)
        );
        // Every step traced: the epoch's minibatch losses, weighted by their rows.
        let losses: Vec<f64> = p.trace.iter().map(|t| t.1).collect();
        assert_eq!(losses.len(), 10);
        let rows = |k: usize| if k < 9 { 16.0 } else { 6.0 };
        let mean = losses
            .iter()
            .enumerate()
            .map(|(k, l)| l * rows(k))
            .sum::<f64>()
            / 150.0;
        assert!(
            (p.loss - mean).abs() <= 1e-12 * mean,
            "{} vs {mean}",
            p.loss
        );
        assert_ne!(p.loss, *losses.last().unwrap(), "not the last minibatch's");
    }
}

#[test]
fn a_traced_run_reports_a_loss_per_step_up_to_the_points_asked_for() {
    let path = repo().join("examples/rosenbrock.dsl");
    let compiled = CompiledModel::from_model(model_of(&path)).unwrap();
    for (steps, points, expected) in [(30, 500, 30), (20_000, 500, 500), (1000, 0, 0)] {
        let mut settings = compiled.model.train.clone();
        (settings.steps, settings.log_every) = (Some(steps), 0);
        let mut trainer = Trainer::new(&compiled, 0);
        trainer.trace_points = points;
        let mut trace = vec![];
        let mut reports = 0;
        trainer
            .fit(None, &settings, |p| {
                trace.extend(p.trace.iter().copied());
                reports += 1;
            })
            .unwrap();
        assert_eq!(reports, 10, "tracing adds no log points");
        assert_eq!(trace.len(), expected, "{steps} steps");
        let every = (steps / points.max(1)).max(1);
        assert!(
            trace
                .iter()
                .enumerate()
                .all(|(k, t)| t.0 == (k as u64 + 1) * every)
        );
        assert!(trace.iter().all(|t| t.1.is_finite()));
    }
}

/// Steps of `examples/charlm.dsl` that a debug build runs in about two minutes (144 s measured on
/// two shared cores).
const CHARLM_STEPS: u64 = 60;

/// The character transformer, cut from its 300 steps to `CHARLM_STEPS` (the same seed, batch
/// and learning rate), on the first 128 windows of its held-out tail. Untrained it is at
/// ln 65 = 4.17 nats/char; the training text's character frequencies alone give these windows
/// 3.34, the best a model that ignores context can do; a measured run reached 2.81. The bound
/// sits between the two, so a model that learns no context (a broken derivative of its
/// attention, MLP or embeddings) misses it.
#[test]
fn the_character_transformer_learns_context_from_shakespeare() {
    let path = repo().join("examples/charlm.dsl");
    let model = model_of(&path);
    let data = adjoint::data::load(&model, None, path.parent().unwrap(), &[]).unwrap();
    let fraction = model.train.validation;
    let (train, held_out) = data.split(fraction, 0);
    let compiled = CompiledModel::from_model(model).unwrap();
    let mut settings = compiled.model.train.clone();
    (settings.steps, settings.log_every) = (Some(CHARLM_STEPS), 0);
    let mut trainer = Trainer::new(&compiled, settings.seed);
    trainer.fit(Some(&train), &settings, |_| {}).unwrap();
    let windows: Vec<usize> = (0..128).collect();
    let validation = held_out.rows(&windows);
    let inputs: Vec<Buffer> = validation
        .inputs
        .iter()
        .map(|v| v.in_dtype(compiled.model.graph().dtype).into_owned())
        .collect();
    let metrics = trainer
        .evaluate_metrics(&inputs, validation.n_rows)
        .unwrap();
    let nll = metrics.iter().find(|m| m.name == "nll").unwrap().values[0];
    assert!(
        nll.is_finite() && nll < 3.0,
        "validation nll {nll} after {CHARLM_STEPS} steps"
    );
}

/// The convolutional network of `examples/cnn_digits.dsl` (with batch normalization and
/// dropout), trained as its file says on the rows a seeded validation split of a fifth keeps,
/// classifies the held-out fifth (359 images) with at least 98.5% accuracy, as the median over
/// seeds 0, 1 and 2 (each its own split and start): 98.33%, 99.44% and 98.89%, where
/// `examples/digits.dsl`'s MLP reaches 96.38%, 98.05% and 97.49% on the same splits. One seed
/// would test the draw as much as the model: seed 0 is one image short on its own.
#[test]
fn cnn_digits_reaches_its_held_out_accuracy() {
    let path = repo().join("examples/cnn_digits.dsl");
    let model = model_of(&path);
    let file = path.parent().unwrap().join(model.data.as_ref().unwrap());
    let data = bind(&model, &Table::load(&file).unwrap()).unwrap();
    let settings = model.train.clone();
    let compiled = CompiledModel::from_model(model).unwrap();
    let mut accuracies: Vec<f64> = (0..3u64)
        .map(|seed| {
            // The split `adjoint train examples/cnn_digits.dsl --validation 0.2 --seed S` holds
            // out.
            let (train, held_out) = data.split(0.2, seed);
            assert_eq!(held_out.n_rows, 359);
            let mut settings = settings.clone();
            settings.seed = seed;
            let mut trainer = Trainer::new(&compiled, seed);
            trainer.fit(Some(&train), &settings, |_| {}).unwrap();
            let inputs: Vec<Buffer> = held_out
                .inputs
                .iter()
                .map(|v| v.in_dtype(compiled.model.graph().dtype).into_owned())
                .collect();
            let metrics = trainer.evaluate(&inputs, held_out.n_rows).unwrap();
            metric(&metrics, "accuracy")
        })
        .collect();
    let seen = accuracies.clone();
    accuracies.sort_by(f64::total_cmp);
    assert!(
        accuracies[1] >= 0.985,
        "held-out accuracies {seen:?} over seeds 0, 1, 2: median under 98.5%"
    );
}
