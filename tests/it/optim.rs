//! Compiled optimizer updates against trajectories computed by hand, formula by formula, for
//! every optimizer and every `defaults` dialect.

use crate::support::*;
use adjoint::compile::CompiledModel;
use adjoint::ir::DType;
use adjoint::optim::StepState;
use adjoint::runtime::Buffer;

/// The textbook formulas, written independently of `adjoint::optim`: one step on one element.
/// `h` looks up a hyperparameter, `t` is the 1-based step.
fn by_hand(
    opt: &str,
    dialect: &str,
    h: &dyn Fn(&str) -> f64,
    t: u64,
    p: &mut f64,
    g: f64,
    s: &mut [f64],
) {
    let lr = h("lr");
    match (opt, dialect) {
        ("sgd", _) => *p -= lr * g,
        ("momentum", "lecture" | "keras") => {
            s[0] = h("momentum") * s[0] - lr * g;
            *p += s[0];
        }
        ("momentum", _) => {
            s[0] = h("momentum") * s[0] + g;
            *p -= lr * s[0];
        }
        ("nesterov", "lecture" | "keras") => {
            s[0] = h("momentum") * s[0] - lr * g;
            *p = *p + h("momentum") * s[0] - lr * g;
        }
        ("nesterov", _) => {
            s[0] = h("momentum") * s[0] + g;
            *p -= lr * (g + h("momentum") * s[0]);
        }
        ("adagrad", "lecture" | "pytorch") => {
            s[0] += g * g;
            *p -= lr * g / (h("eps") + s[0].sqrt());
        }
        ("adagrad", _) => {
            s[0] += g * g;
            *p -= lr * g / (s[0] + h("eps")).sqrt();
        }
        ("rmsprop", d) => {
            let rho = h("rho");
            s[0] = rho * s[0] + (1.0 - rho) * g * g;
            let denom = match d {
                "lecture" => (h("eps") + s[0]).sqrt(),
                "pytorch" => s[0].sqrt() + h("eps"),
                _ => (s[0] + h("eps")).sqrt(),
            };
            *p -= lr * g / denom;
        }
        ("adam" | "adamw", d) => {
            let (b1, b2) = (h("beta1"), h("beta2"));
            let decay = if opt == "adamw" { h("decay") } else { 0.0 };
            if opt == "adamw" && d != "optax" {
                *p -= lr * decay * *p;
            }
            s[0] = b1 * s[0] + (1.0 - b1) * g;
            s[1] = b2 * s[1] + (1.0 - b2) * g * g;
            let (c1, c2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
            if d == "keras" {
                let lr_t = lr * c2.sqrt() / c1;
                *p -= lr_t * s[0] / (s[1].sqrt() + h("eps"));
            } else {
                let step = (s[0] / c1) / ((s[1] / c2).sqrt() + h("eps"));
                if opt == "adamw" && d == "optax" {
                    *p -= lr * (step + decay * *p);
                } else {
                    *p -= lr * step;
                }
            }
        }
        other => panic!("no hand formula for {other:?}"),
    }
}

fn check_dialect(opt: &str, dialect: &str, extra: &str) {
    check_dialect_sized(opt, dialect, extra, 6);
}

/// As `check_dialect`, with a first parameter of `len` elements.
fn check_dialect_sized(opt: &str, dialect: &str, extra: &str, len: usize) {
    let src = format!(
        "dtype f64\nparam a[{len}] ~ zeros\nparam b ~ zeros\nloss sum(a^2) + b^2\noptimizer {opt}(defaults = {dialect}{extra})\n"
    );
    let compiled = CompiledModel::from_model(model_of_source("opt.dsl", &src)).unwrap();
    let spec = compiled.model.optimizer.clone();
    let h = |n: &str| spec.get(n);
    let n_state = spec.kind.state_arrays();
    let init = spec.initial_state();
    let sizes = [len, 1];
    let mut params: Vec<Buffer> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| Buffer::F64((0..n).map(|j| 0.3 * j as f64 - 0.5 + i as f64).collect()))
        .collect();
    let mut state: Vec<Buffer> = sizes
        .iter()
        .flat_map(|&n| (0..n_state).map(move |_| Buffer::F64(vec![init; n])))
        .collect();
    let mut hand_p: Vec<Vec<f64>> = params.iter().map(|p| p.to_f64()).collect();
    let mut hand_s: Vec<Vec<Vec<f64>>> = sizes
        .iter()
        .map(|&n| vec![vec![init; n_state]; n])
        .collect();
    let mut step = StepState::default();
    for t in 1..=6u64 {
        // Gradients that change sign and scale from step to step.
        let grads: Vec<Vec<f64>> = sizes
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|j| ((t * 7 + j as u64) as f64).sin() * 10f64.powi(t as i32 % 3 - 1))
                    .collect()
            })
            .collect();
        let gbufs: Vec<Buffer> = grads.iter().map(|g| Buffer::F64(g.clone())).collect();
        let grefs: Vec<&Buffer> = gbufs.iter().collect();
        step = spec.advance(&step);
        compiled
            .update
            .run(
                &mut params,
                &grefs,
                &mut state,
                &spec.scalars(h("lr"), &step),
            )
            .unwrap();
        for i in 0..sizes.len() {
            for j in 0..sizes[i] {
                by_hand(
                    opt,
                    dialect,
                    &h,
                    t,
                    &mut hand_p[i][j],
                    grads[i][j],
                    &mut hand_s[i][j],
                );
            }
            let err = max_rel_err(&params[i].to_f64(), &hand_p[i], 1e-300);
            assert!(
                err <= 1e-12,
                "{opt} (defaults = {dialect}) step {t}: param {i} is {:?}, by hand {:?}",
                params[i].to_f64(),
                hand_p[i]
            );
        }
    }
}

#[test]
fn every_optimizer_and_dialect_matches_the_hand_computed_trajectory() {
    for opt in [
        "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw",
    ] {
        for dialect in ["lecture", "pytorch", "keras", "optax"] {
            check_dialect(opt, dialect, "");
            check_dialect(opt, dialect, ", lr = 0.05");
        }
    }
    check_dialect("adam", "lecture", ", beta1 = 0.8, beta2 = 0.99, eps = 1e-6");
    check_dialect("rmsprop", "pytorch", ", rho = 0.5");
}

/// A parameter of 70,001 elements is updated in parts (chunks of 256 elements, on several
/// cores), ending in a partial chunk and a scalar tail: every element still follows the hand
/// formulas.
#[test]
fn large_parameters_are_updated_in_parts_like_small_ones() {
    adjoint::jit::parallel::set_threads(2);
    let before = adjoint::jit::parallel::split_loops();
    for opt in ["sgd", "momentum", "rmsprop", "adam", "adamw"] {
        check_dialect_sized(opt, "pytorch", "", 70_001);
    }
    assert!(adjoint::jit::parallel::split_loops() > before);

    // Weight decay and the clipping scale reach every part.
    let n = 70_001;
    let src = format!(
        "dtype f64\nparam a[{n}] ~ zeros\nloss sum(a^2)\noptimizer sgd(lr = 0.1, weight_decay = 0.5, clip_norm = 1)\n"
    );
    let compiled = CompiledModel::from_model(model_of_source("c.dsl", &src)).unwrap();
    let spec = &compiled.model.optimizer;
    let p0: Vec<f64> = (0..n).map(|j| (j as f64 * 0.37).sin()).collect();
    let g: Vec<f64> = (0..n).map(|j| (j as f64 * 0.11).cos()).collect();
    let mut params = vec![Buffer::F64(p0.clone())];
    let step = spec.advance(&StepState::default());
    compiled
        .update
        .run(
            &mut params,
            &[&Buffer::F64(g.clone())],
            &mut [],
            &spec.scalars(0.1, &step),
        )
        .unwrap();
    let d: Vec<f64> = (0..n).map(|j| g[j] + 0.5 * p0[j]).collect();
    let norm = d.iter().map(|x| x * x).sum::<f64>().sqrt();
    let expect: Vec<f64> = (0..n).map(|j| p0[j] - 0.1 * d[j] / norm).collect();
    let err = max_rel_err(&params[0].to_f64(), &expect, 1e-300);
    assert!(err <= 1e-12, "clipped update off by {err:e}");
}

#[test]
fn dialect_defaults_follow_the_frameworks() {
    let get = |src: &str, name: &str| {
        let m = model_of_source(
            "d.dsl",
            &format!("param x = 1\nloss x^2\noptimizer {src}\n"),
        );
        m.optimizer.get(name)
    };
    assert_eq!(get("adam", "eps"), 1e-8);
    assert_eq!(get("adam(defaults = keras)", "eps"), 1e-7);
    assert_eq!(get("rmsprop", "rho"), 0.9);
    assert_eq!(get("rmsprop(defaults = pytorch)", "rho"), 0.99);
    assert_eq!(get("adagrad", "eps"), 1e-7);
    assert_eq!(get("adagrad(defaults = pytorch)", "eps"), 1e-10);
    assert_eq!(get("adagrad(defaults = keras)", "initial_accumulator"), 0.1);
    assert_eq!(get("momentum", "momentum"), 0.9);
    assert_eq!(get("adamw(defaults = optax)", "decay"), 1e-4);
}

#[test]
fn weight_decay_and_gradient_clipping() {
    // sgd with L2 weight decay and clipping to global norm 1: g ← (g + λp)·min(1, 1/‖g + λp‖).
    let src = "dtype f64\nparam a[2] ~ zeros\nparam b ~ zeros\nloss sum(a^2) + b^2\noptimizer sgd(lr = 0.1, weight_decay = 0.5, clip_norm = 1)\n";
    let compiled = CompiledModel::from_model(model_of_source("c.dsl", src)).unwrap();
    let spec = &compiled.model.optimizer;
    let mut params = vec![Buffer::F64(vec![1.0, -2.0]), Buffer::F64(vec![3.0])];
    let g = [Buffer::F64(vec![3.0, 4.0]), Buffer::F64(vec![-1.0])];
    let step = spec.advance(&StepState::default());
    compiled
        .update
        .run(
            &mut params,
            &[&g[0], &g[1]],
            &mut [],
            &spec.scalars(0.1, &step),
        )
        .unwrap();
    let d = [3.0 + 0.5, 4.0 - 1.0, -1.0 + 1.5];
    let norm = d.iter().map(|x| x * x).sum::<f64>().sqrt();
    let expect = [
        1.0 - 0.1 * d[0] / norm,
        -2.0 - 0.1 * d[1] / norm,
        3.0 - 0.1 * d[2] / norm,
    ];
    let got = [params[0].get(0), params[0].get(1), params[1].get(0)];
    assert!(
        max_rel_err(&got, &expect, 1e-300) <= 1e-15,
        "{got:?} vs {expect:?}"
    );
}

#[test]
fn schedules_give_the_documented_rates() {
    use adjoint::optim::{LrSchedule, Schedule};
    let s = LrSchedule {
        schedule: Schedule::Step {
            every: 10,
            gamma: 0.5,
        },
        warmup: 0,
    };
    assert_eq!(
        (
            s.lr(1.0, 1, 100),
            s.lr(1.0, 10, 100),
            s.lr(1.0, 11, 100),
            s.lr(1.0, 25, 100)
        ),
        (1.0, 1.0, 0.5, 0.25)
    );
    let e = LrSchedule {
        schedule: Schedule::Exponential { gamma: 0.9 },
        warmup: 0,
    };
    assert!((e.lr(2.0, 3, 100) - 2.0 * 0.81).abs() < 1e-15);
    let c = LrSchedule {
        schedule: Schedule::Cosine { min: 0.1 },
        warmup: 0,
    };
    assert_eq!(c.lr(1.0, 1, 100), 1.0);
    assert!((c.lr(1.0, 51, 100) - 0.55).abs() < 1e-12);
    let w = LrSchedule {
        schedule: Schedule::Constant,
        warmup: 4,
    };
    assert_eq!(
        (w.lr(1.0, 1, 10), w.lr(1.0, 4, 10), w.lr(1.0, 5, 10)),
        (0.25, 1.0, 1.0)
    );
}

/// The inputs of a random point with `rows` rows, in the model's dtype.
fn random_inputs(compiled: &CompiledModel, rows: usize, seed: u64) -> Vec<Buffer> {
    let d = compiled.model.graph().dtype;
    random_point(compiled.model.graph(), rows, seed)
        .inputs
        .iter()
        .map(|t| Buffer::from_f64(d, &t.data))
        .collect()
}

#[test]
fn fused_loop_equals_separate_calls_bit_for_bit() {
    for opt in [
        "adam",
        "adam(defaults = keras)",
        "rmsprop(defaults = pytorch)",
        "nesterov(defaults = keras, clip_norm = 0.5)",
        "adamw(weight_decay = 0.1)",
    ] {
        for dtype in ["f64", "f32"] {
            for schedule in ["schedule cosine(min = 0.001, warmup = 3)", ""] {
                let src = format!(
                    "dtype {dtype}\ninput X[n, 3]\ninput y[n]\nparam w[3] ~ normal(0, 1)\nparam b ~ zeros\nloss mean((tanh(X @ w + b) - y)^2)\noptimizer {opt}\n{schedule}\n"
                );
                let compiled = CompiledModel::from_model(model_of_source("f.dsl", &src)).unwrap();
                let inputs = random_inputs(&compiled, 11, 5);
                let mut a = adjoint::train::Trainer::new(&compiled, 3);
                let mut b = adjoint::train::Trainer::new(&compiled, 3);
                a.total_steps = 40;
                b.total_steps = 40;
                for _ in 0..40 {
                    a.train_step(&inputs, 11).unwrap();
                }
                b.train_steps(&inputs, 11, 25).unwrap();
                b.train_steps(&inputs, 11, 15).unwrap();
                assert_eq!(a.params, b.params, "{opt} {dtype}");
                assert_eq!(a.state, b.state, "{opt} {dtype}");
                assert_eq!(a.opt_step, b.opt_step);
            }
        }
    }
    let _ = DType::F64;
}

/// A thousand scalar parameters make a bounded function, whose update is one loop over the
/// parameters (a run of evenly spaced slots) instead of code per parameter: it gives the bits
/// the vectorized update of one parameter of a thousand elements gives, in the fused loop and in
/// separate calls (the standalone update), for optimizers with state and weight decay.
#[test]
fn a_loop_over_scalar_parameters_updates_them_as_one_vector_parameter() {
    let n = 1000;
    let start: Vec<f64> = (0..n).map(|i| 0.25 + (i % 13) as f64 / 7.0).collect();
    let scalars: String = (0..n).map(|i| format!("param p{i} = 0\n")).collect();
    let squares: Vec<String> = (0..n).map(|i| format!("p{i}^2")).collect();
    for opt in [
        "adam",
        "adamw(weight_decay = 0.1)",
        "nesterov(defaults = keras)",
    ] {
        let many = format!(
            "dtype f64\n{scalars}loss l = {}\noptimizer {opt}\n",
            squares.join(" + ")
        );
        let one = format!("dtype f64\nparam a[{n}] ~ zeros\nloss l = sum(a^2)\noptimizer {opt}\n");
        let many = CompiledModel::from_model(model_of_source("many.dsl", &many)).unwrap();
        let one = CompiledModel::from_model(model_of_source("one.dsl", &one)).unwrap();
        for fused in [true, false] {
            let mut a = adjoint::train::Trainer::new(&many, 0);
            let mut b = adjoint::train::Trainer::new(&one, 0);
            a.params = start.iter().map(|&v| Buffer::F64(vec![v])).collect();
            b.params = vec![Buffer::F64(start.clone())];
            (a.total_steps, b.total_steps) = (7, 7);
            if fused {
                a.train_steps(&[], 0, 7).unwrap();
                b.train_steps(&[], 0, 7).unwrap();
            } else {
                for _ in 0..7 {
                    a.train_step(&[], 0).unwrap();
                    b.train_step(&[], 0).unwrap();
                }
            }
            let flat = |bufs: &[Buffer]| bufs.iter().flat_map(|b| b.to_f64()).collect::<Vec<_>>();
            assert_eq!(flat(&a.params), flat(&b.params), "{opt}, fused {fused}");
            assert_ne!(flat(&a.params), start, "{opt}: the parameters moved");
            // State arrays: per parameter for the scalars, per array for the vector.
            let k = many.model.optimizer.kind.state_arrays();
            for s in 0..k {
                let scalar: Vec<f64> = (0..n).map(|i| a.state[i * k + s].get(0)).collect();
                assert_eq!(scalar, b.state[s].to_f64(), "{opt}, state {s}");
            }
        }
    }
}

/// A loop split between cores reads the scalar parameters that the fused loop keeps in
/// registers through its frame, and returns their gradients as partial sums: the fused loop
/// still equals separate calls bit for bit, and so does a run on one thread.
#[test]
fn fused_loop_equals_separate_calls_when_loops_are_split() {
    for dtype in ["f64", "f32"] {
        let src = format!(
            "dtype {dtype}\ninput x[n]\nparam m ~ zeros\nparam s ~ zeros\nloss mean(log1p(exp(-(x - m)^2 * exp(-s))) + s)\noptimizer adam(lr = 0.05)\n"
        );
        let compiled = CompiledModel::from_model(model_of_source("m.dsl", &src)).unwrap();
        let rows = 100_003;
        let inputs = random_inputs(&compiled, rows, 5);
        let run = |threads: usize, fused: bool| {
            adjoint::jit::parallel::set_threads(threads);
            let mut t = adjoint::train::Trainer::new(&compiled, 3);
            t.total_steps = 6;
            if fused {
                t.train_steps(&inputs, rows, 6).unwrap();
            } else {
                for _ in 0..6 {
                    t.train_step(&inputs, rows).unwrap();
                }
            }
            (t.params, t.state)
        };
        let before = adjoint::jit::parallel::split_loops();
        let separate = run(2, false);
        assert_eq!(run(2, true), separate, "{dtype}");
        assert_eq!(run(1, true), separate, "{dtype}: one thread");
        assert!(adjoint::jit::parallel::split_loops() > before);
    }
}

/// Past the steps where β1ᵗ leaves the normal range (about 6,700 for β1 = 0.9) the fused
/// loop, which derives the bias corrections natively, still agrees with separate calls, and
/// the β powers are flushed to zero instead of sticking at the smallest subnormal.
#[test]
fn fused_loop_agrees_past_the_underflow_of_beta_powers() {
    let src = "dtype f64\nparam x = -1.2\nparam y = 1.0\nloss (1 - x)^2 + 100 * (y - x^2)^2\noptimizer adam(lr = 0.01)\n";
    let compiled = CompiledModel::from_model(model_of_source("r.dsl", src)).unwrap();
    let mut a = adjoint::train::Trainer::new(&compiled, 0);
    let mut b = adjoint::train::Trainer::new(&compiled, 0);
    for _ in 0..7500 {
        a.train_step(&[], 0).unwrap();
    }
    b.train_steps(&[], 0, 7500).unwrap();
    assert_eq!(a.params, b.params);
    assert_eq!(a.state, b.state);
    assert_eq!(a.opt_step, b.opt_step);
    assert_eq!(b.opt_step.pow1, 0.0, "β1ᵗ flushed to zero");
    assert!(b.opt_step.pow2 >= f64::MIN_POSITIVE);
}

#[test]
fn newton_solves_least_squares_in_one_step_and_rosenbrock_in_a_dozen() {
    use adjoint::data::{Table, bind};
    use adjoint::train::Trainer;
    let mut model = model_of(&repo().join("examples/linreg.dsl"));
    model.optimizer = adjoint::optim::OptimizerSpec::new(adjoint::optim::OptimizerKind::Newton);
    let data = bind(
        &model,
        &Table::load(&repo().join("examples/data/linreg.csv")).unwrap(),
    )
    .unwrap();
    let compiled = CompiledModel::from_model(model).unwrap();
    let mut settings = compiled.model.train.clone();
    settings.steps = Some(1);
    let mut t = Trainer::new(&compiled, 0);
    t.fit(Some(&data), &settings, |_| {}).unwrap();
    // After one exact Newton step the gradient of the quadratic vanishes.
    t.value_and_grad(
        &data
            .inputs
            .iter()
            .map(|v| v.in_dtype(adjoint::ir::DType::F64).into_owned())
            .collect::<Vec<_>>(),
        data.n_rows,
    )
    .unwrap();
    let g = t.gradient(0, data.n_rows).unwrap().to_f64();
    assert!(
        g.iter().all(|x| x.abs() < 1e-12),
        "gradient after one Newton step: {g:?}"
    );

    let mut model = model_of(&repo().join("examples/rosenbrock.dsl"));
    model.optimizer = adjoint::optim::OptimizerSpec::new(adjoint::optim::OptimizerKind::Newton);
    let compiled = CompiledModel::from_model(model).unwrap();
    let mut settings = compiled.model.train.clone();
    settings.steps = Some(12);
    let mut t = Trainer::new(&compiled, 0);
    t.fit(None, &settings, |_| {}).unwrap();
    let (x, y) = (t.params[0].get(0), t.params[1].get(0));
    assert!(
        (x - 1.0).abs() < 1e-10 && (y - 1.0).abs() < 1e-10,
        "Newton ended at ({x}, {y})"
    );
}

#[test]
fn newton_refuses_minibatches() {
    let src = "dtype f64\ninput x[n]\nparam w = 0\nloss mean((w * x - 1)^2)\noptimizer newton\ntrain steps = 3, batch = 2\n";
    let compiled = CompiledModel::from_model(model_of_source("n.dsl", src)).unwrap();
    let data = adjoint::data::bind(
        &compiled.model,
        &adjoint::data::Table::parse("d.csv", "x\n1\n2\n3\n").unwrap(),
    )
    .unwrap();
    let mut t = adjoint::train::Trainer::new(&compiled, 0);
    let err = t
        .fit(Some(&data), &compiled.model.train.clone(), |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("full batches"), "{err}");
}
