//! Initializers: variances match their formulas, orthogonality, exact sparsity, data-driven
//! biases, reproducibility, and the symmetry-breaking lint.

use crate::support::*;
use adjoint::compile::CompiledModel;
use adjoint::init::{DataStat, Init, rng};

fn stats(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (mean, v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n)
}

#[test]
fn sample_variances_match_the_formulas() {
    let (fan_in, fan_out) = (400usize, 300usize);
    let shape = [fan_in, fan_out];
    let n = (fan_in * fan_out) as f64;
    let cases: Vec<(Init, f64)> = vec![
        (
            Init::XavierUniform { gain: 1.0 },
            2.0 / (fan_in + fan_out) as f64,
        ),
        (
            Init::XavierNormal { gain: 1.0 },
            2.0 / (fan_in + fan_out) as f64,
        ),
        (Init::HeUniform { gain: 2f64.sqrt() }, 2.0 / fan_in as f64),
        (Init::HeNormal { gain: 2f64.sqrt() }, 2.0 / fan_in as f64),
        (Init::LecunUniform, 1.0 / fan_in as f64),
        (Init::LecunNormal, 1.0 / fan_in as f64),
        (
            Init::Normal {
                mean: 0.0,
                std: 0.3,
            },
            0.09,
        ),
        (
            Init::Uniform {
                low: -0.5,
                high: 0.5,
            },
            1.0 / 12.0,
        ),
        // N(0, 1) truncated at ±2σ has variance 1 − 2·2φ(2)/(2Φ(2) − 1) ≈ 0.7737.
        (
            Init::TruncatedNormal {
                mean: 0.0,
                std: 1.0,
            },
            0.773_741,
        ),
    ];
    for (init, var) in cases {
        let v = init.sample(&shape, &mut rng(7));
        let (mean, sample_var) = stats(&v);
        // The sample variance of n draws has relative standard error about √(2/n) (< 0.3 %).
        assert!(
            (sample_var / var - 1.0).abs() < 0.02,
            "{init:?}: variance {sample_var} vs {var}"
        );
        assert!(mean.abs() < 4.0 * (var / n).sqrt(), "{init:?}: mean {mean}");
    }
    let v = Init::TruncatedNormal {
        mean: 1.0,
        std: 0.1,
    }
    .sample(&shape, &mut rng(1));
    assert!(v.iter().all(|x| (x - 1.0).abs() <= 0.2));
}

#[test]
fn orthogonal_has_orthonormal_rows_or_columns() {
    for (r, c) in [(6, 6), (4, 9), (9, 4)] {
        let v = Init::Orthogonal { gain: 1.0 }.sample(&[r, c], &mut rng(3));
        let (short, long) = (r.min(c), r.max(c));
        let vec_of = |i: usize| -> Vec<f64> {
            if r <= c {
                v[i * c..(i + 1) * c].to_vec()
            } else {
                (0..r).map(|k| v[k * c + i]).collect()
            }
        };
        for i in 0..short {
            for j in 0..short {
                let d: f64 = vec_of(i).iter().zip(vec_of(j)).map(|(a, b)| a * b).sum();
                assert!(
                    (d - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12,
                    "{r}×{c}: QᵀQ[{i}][{j}] = {d}"
                );
            }
        }
        assert_eq!(vec_of(0).len(), long);
    }
    let g = Init::Orthogonal { gain: 2.0 }.sample(&[3, 3], &mut rng(3));
    let norm: f64 = g[..3].iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 2.0).abs() < 1e-12);
}

#[test]
fn sparse_gives_exactly_k_incoming_weights_per_unit() {
    let (fan_in, units, k) = (50, 40, 15);
    let v = Init::Sparse { k: k as u64 }.sample(&[fan_in, units], &mut rng(11));
    for u in 0..units {
        let nonzero = (0..fan_in).filter(|&i| v[i * units + u] != 0.0).count();
        assert_eq!(nonzero, k, "unit {u}");
    }
    let (_, var) = stats(&v.iter().copied().filter(|x| *x != 0.0).collect::<Vec<_>>());
    assert!(
        (var - 1.0).abs() < 0.15,
        "non-zero weights are N(0, 1): variance {var}"
    );
}

#[test]
fn initialization_is_reproducible_from_the_seed() {
    let a = Init::XavierUniform { gain: 1.0 }.sample(&[5, 5], &mut rng(42));
    let b = Init::XavierUniform { gain: 1.0 }.sample(&[5, 5], &mut rng(42));
    let c = Init::XavierUniform { gain: 1.0 }.sample(&[5, 5], &mut rng(43));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn bias_from_log_priors_makes_the_initial_loss_the_label_entropy() {
    let src = "dtype f64\ninput X[n, 4] from sepal_length, sepal_width, petal_length, petal_width\ninput species[n]: int\nparam W[4, 3] ~ zeros\nparam b[3] ~ log_prior(species)\nloss cross_entropy(X @ W + b, species)\noptimizer sgd(lr = 0.01)\n";
    // An unbalanced subset of iris: 50, 30 and 10 flowers.
    let full = adjoint::data::Table::load(&repo().join("examples/data/iris.csv")).unwrap();
    let keep: Vec<usize> = (0..150)
        .filter(|&r| r < 50 || (50..80).contains(&r) || (100..110).contains(&r))
        .collect();
    let w = full.columns.len();
    let table = adjoint::data::Table {
        file: full.file.clone(),
        columns: full.columns.clone(),
        lines: keep.iter().map(|&r| full.lines[r]).collect(),
        values: keep
            .iter()
            .flat_map(|&r| full.values[r * w..(r + 1) * w].to_vec())
            .collect(),
    };
    let compiled = CompiledModel::from_model(model_of_source("prior.dsl", src)).unwrap();
    let data = adjoint::data::bind(&compiled.model, &table).unwrap();
    let mut t = adjoint::train::Trainer::new(&compiled, 0);
    t.init_from_data(&data);
    let priors = [50.0 / 90.0, 30.0 / 90.0, 10.0 / 90.0];
    let b = t.params[1].to_f64();
    for k in 0..3 {
        assert!((b[k] - f64::ln(priors[k])).abs() < 1e-12, "{b:?}");
    }
    let inputs: Vec<_> = data
        .inputs
        .iter()
        .map(|v| v.in_dtype(adjoint::ir::DType::F64).into_owned())
        .collect();
    let loss = t.evaluate(&inputs, data.n_rows).unwrap()[0].1;
    let entropy: f64 = -priors.iter().map(|p| p * p.ln()).sum::<f64>();
    assert!(
        (loss - entropy).abs() < 1e-12,
        "initial loss {loss}, label entropy {entropy}"
    );
}

#[test]
fn mean_and_log_odds_biases() {
    assert_eq!(DataStat::Mean.compute(&[1.0, 2.0, 6.0], 2), vec![3.0, 3.0]);
    let lo = DataStat::LogOdds.compute(&[1.0, 0.0, 0.0, 0.0], 1)[0];
    assert!((lo - (0.25f64 / 0.75).ln()).abs() < 1e-15);
}

#[test]
fn constant_hidden_layers_stay_symmetric_and_random_ones_do_not() {
    let path = repo().join("examples/symmetry.dsl");
    let text = std::fs::read_to_string(&path).unwrap();
    let file = adjoint::SourceFile::new("symmetry.dsl", text.clone());
    let (_, warnings) = adjoint::check_source(&file, &adjoint::Limits::of_host()).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.message.contains("start identical")),
        "{warnings:?}"
    );
    let (u0, u1) = first_two_hidden_units(&text);
    assert_eq!(u0, u1, "under constant init the two units stay identical");
    assert!(
        u0.iter().any(|w| (w - 0.1).abs() > 1e-3),
        "and they did train"
    );
    let fixed = text
        .replace("constant(0.1)", "xavier_uniform")
        .replace("W2[8, 3] ~ zeros", "W2[8, 3] ~ xavier_uniform");
    let (_, warnings) = adjoint::check_source(
        &adjoint::SourceFile::new("f.dsl", fixed.clone()),
        &adjoint::Limits::of_host(),
    )
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let (v0, v1) = first_two_hidden_units(&fixed);
    assert!(
        v0.iter().zip(&v1).any(|(a, b)| (a - b).abs() > 1e-2),
        "random init separates them: {v0:?} {v1:?}"
    );
}

/// A dropout between the tied layer and the next gives each unit its own mask, so the units
/// drift apart (the warning says so); one past the next layer leaves them equal to the bit.
#[test]
fn a_dropout_between_constant_layers_separates_their_units_and_one_past_them_does_not() {
    let text = std::fs::read_to_string(repo().join("examples/symmetry.dsl")).unwrap();
    let notes = |src: &str| -> Vec<String> {
        let file = adjoint::SourceFile::new("d.dsl", src.to_string());
        let (_, w) = adjoint::check_source(&file, &adjoint::Limits::of_host()).unwrap();
        w.into_iter().flat_map(|d| d.notes).collect()
    };
    let between = text.replace("h @ W2", "dropout(h, 0.5) @ W2");
    assert_ne!(between, text);
    assert!(
        notes(&between).iter().any(|n| n.contains("drift apart")),
        "{:?}",
        notes(&between)
    );
    let (u0, u1) = first_two_hidden_units(&between);
    assert!(
        u0.iter()
            .zip(&u1)
            .any(|(a, b)| a != b && a.is_finite() && b.is_finite()),
        "the masks separate the units: {u0:?} {u1:?}"
    );
    let past = text.replace("h @ W2 + b2", "dropout(h @ W2, 0.5) + b2");
    assert_ne!(past, text);
    assert!(
        notes(&past)
            .iter()
            .any(|n| n.contains("for the whole of training")),
        "{:?}",
        notes(&past)
    );
    let (v0, v1) = first_two_hidden_units(&past);
    assert_eq!(
        v0, v1,
        "a dropout past the next layer leaves the units tied"
    );
    assert!(v0.iter().all(|w| w.is_finite()) && v0.iter().any(|w| (w - 0.1).abs() > 1e-3));
}

#[test]
fn gains_follow_the_nonlinearity() {
    let model = model_of_source(
        "g.dsl",
        "param A[500, 400] ~ he_normal(nonlinearity = tanh)\nparam B[500, 400] ~ xavier_uniform(nonlinearity = relu)\nloss sum(A) + sum(B)\n",
    );
    assert_eq!(model.inits[0], Init::HeNormal { gain: 5.0 / 3.0 });
    assert_eq!(model.inits[1], Init::XavierUniform { gain: 2f64.sqrt() });
    let v = model.inits[0].sample(&[500, 400], &mut rng(1));
    let (_, var) = stats(&v);
    assert!((var / (25.0 / 9.0 / 500.0) - 1.0).abs() < 0.02, "{var}");
    let file = adjoint::SourceFile::new(
        "g.dsl",
        "param A[2, 2] ~ he_normal(nonlinearity = swish)\nloss sum(A)\n",
    );
    let errors = adjoint::check_source(&file, &adjoint::Limits::of_host()).unwrap_err();
    let messages: Vec<&str> = errors.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(messages, ["no recommended gain for `swish`"]);
}

/// A constant weight read through a view (a slice, a transpose) ties its units as much as one
/// read whole; the warning counts the units the layer has, not the parameter's columns.
#[test]
fn the_symmetry_lint_sees_weights_through_slices_and_transposes() {
    let warnings = |src: &str| -> Vec<String> {
        let file = adjoint::SourceFile::new("v.dsl", src.to_string());
        let (_, w) = adjoint::check_source(&file, &adjoint::Limits::of_host()).unwrap();
        w.into_iter().map(|d| d.message).collect()
    };
    let sliced = "input x[n, 4]\ninput y[n]: int\nparam W1[4, 8] ~ constant(0.1)\nparam W2[6, 3] ~ zeros\nloss cross_entropy(tanh(x @ W1[:, :6]) @ W2, y)\n";
    assert_eq!(
        warnings(sliced),
        ["the 6 hidden units fed by `W1` start identical"]
    );
    let transposed = "input x[n, 4]\ninput y[n]: int\nparam V[5, 4] ~ constant(0.1)\nparam W2[3, 5] ~ ones\nloss cross_entropy(tanh(x @ transpose(V)) @ transpose(W2), y)\n";
    assert_eq!(
        warnings(transposed),
        ["the 5 hidden units fed by `V` start identical"]
    );
    // A random next layer gives each unit its own gradient: no warning.
    assert!(warnings(&sliced.replace("W2[6, 3] ~ zeros", "W2[6, 3] ~ xavier_uniform")).is_empty());
}

/// The incoming weights of the first two hidden units (columns 0 and 1 of `W1[4, 8]`) after
/// training a model of `examples/symmetry.dsl`'s form on the iris data.
fn first_two_hidden_units(src: &str) -> (Vec<f64>, Vec<f64>) {
    let model = model_of_source("s.dsl", src);
    let table = adjoint::data::Table::load(&repo().join("examples/data/iris.csv")).unwrap();
    let data = adjoint::data::bind(&model, &table).unwrap();
    let compiled = CompiledModel::from_model(model).unwrap();
    let mut t = adjoint::train::Trainer::new(&compiled, 0);
    let settings = compiled.model.train.clone();
    t.fit(Some(&data), &settings, |_| {}).unwrap();
    let w1 = t.params[0].to_f64();
    (
        (0..4).map(|i| w1[i * 8]).collect(),
        (0..4).map(|i| w1[i * 8 + 1]).collect(),
    )
}
