//! What the command line reports is true: a check fails on a value it cannot check, a flag does
//! what it says and says what it did, and every command reads the files it is given.

use crate::support::repo;
use std::path::PathBuf;
use std::process::Command;

fn adjoint(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_adjoint"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("adjoint-reports-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn gradcheck_fails_on_a_non_finite_loss_or_derivative_naming_point_and_parameter() {
    for fixture in ["overflowing_loss", "negative_sqrt", "sqrt_at_zero"] {
        let file = format!("tests/data/cli/{fixture}.dsl");
        let (code, stdout, stderr) = adjoint(&["gradcheck", &file, "--points", "1"]);
        assert_eq!(code, 1, "{fixture}: {stdout}{stderr}");
        insta::assert_snapshot!(format!("gradcheck_non_finite_{fixture}"), stdout);
    }
}

/// The per-parameter values a train run prints (`x = 1.5`), and a race's end points.
fn trained_values(stdout: &str, names: &[&str]) -> Vec<f64> {
    names
        .iter()
        .map(|n| {
            let line = stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{n} = ")))
                .unwrap_or_else(|| panic!("no `{n} = ` in\n{stdout}"));
            line.trim().parse().unwrap()
        })
        .collect()
}

#[test]
fn race_runs_each_optimizer_with_the_update_train_uses() {
    // A rate every optimizer is stable at on Rosenbrock's valley, so the paths are finite.
    let (steps, lr) = ("20", "0.001");
    let optimizers = adjoint::optim::OptimizerKind::ALL;
    let names: Vec<&str> = optimizers.iter().map(|k| k.name()).collect();
    let out = scratch("race.png");
    let (code, race, stderr) = adjoint(&[
        "race",
        "examples/rosenbrock.dsl",
        "--optimizers",
        &names.join(","),
        "--steps",
        steps,
        "--lr",
        lr,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{race}{stderr}");
    for name in names {
        let (code, train, stderr) = adjoint(&[
            "train",
            "examples/rosenbrock.dsl",
            "--optimizer",
            name,
            "--steps",
            steps,
            "--lr",
            lr,
        ]);
        assert_eq!(code, 0, "{name}: {train}{stderr}");
        let line = race
            .lines()
            .find(|l| l.starts_with(&format!("{name} (")))
            .unwrap_or_else(|| panic!("no {name} in\n{race}"));
        let end = line
            .split_once("ends at (")
            .unwrap()
            .1
            .trim_end_matches(')');
        let raced: Vec<f64> = end.split(", ").map(|v| v.parse().unwrap()).collect();
        let trained = trained_values(&train, &["x", "y"]);
        for (r, t) in raced.iter().zip(&trained) {
            // The race prints six decimals.
            assert!(
                (r - t).abs() <= 1e-6 * (1.0 + t.abs()),
                "{name}: race ends at {raced:?}, train at {trained:?}"
            );
        }
    }
}

#[test]
fn inspect_and_gradcheck_read_an_f32_models_checkpoint() {
    let ckpt = scratch("iris.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    let (code, stdout, stderr) = adjoint(&[
        "train",
        "examples/iris.dsl",
        "--steps",
        "20",
        "--save",
        ckpt,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = adjoint(&["inspect", "examples/iris.dsl", "--checkpoint", ckpt]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("at the point in"), "{stdout}");
    let (code, stdout, stderr) = adjoint(&[
        "gradcheck",
        "examples/iris.dsl",
        "--checkpoint",
        ckpt,
        "--points",
        "0",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("  checkpoint       W "), "{stdout}");
    assert!(stdout.contains("ok: worst relative error"), "{stdout}");
}

/// The banner line that states the optimizer a run uses when a flag changed it.
fn optimizer_line(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|l| l.starts_with("optimizer ("))
        .unwrap_or_else(|| panic!("no optimizer line in\n{stdout}"))
}

#[test]
fn an_optimizer_flag_keeps_the_models_own_hyperparameters_and_the_banner_says_so() {
    let (code, stdout, stderr) =
        adjoint(&["train", "tests/data/cli/own_sgd.dsl", "--optimizer", "sgd"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        optimizer_line(&stdout),
        "optimizer (--optimizer sgd): sgd(lr=0.004), schedule step(every = 2, gamma = 0.5)"
    );
    // x ← x − lr·2x with the model's lr 0.004, halved from the third step.
    let expected = 3.0 * (1.0 - 0.008) * (1.0 - 0.008) * (1.0 - 0.004);
    let x = trained_values(&stdout, &["x"])[0];
    assert!((x - expected).abs() < 1e-6, "x = {x}, expected {expected}");
    let (code, stdout, stderr) = adjoint(&[
        "train",
        "tests/data/cli/own_sgd.dsl",
        "--optimizer",
        "momentum",
        "--lr",
        "0.002",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        optimizer_line(&stdout),
        "optimizer (--optimizer momentum --lr 0.002): momentum(lr=0.002, momentum=0.9), schedule step(every = 2, gamma = 0.5)"
    );
    let (code, stdout, stderr) = adjoint(&["train", "tests/data/cli/own_sgd.dsl"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stdout.contains("optimizer ("),
        "no flag, no override line:\n{stdout}"
    );
}

/// A loss of a million carries a rounding error near 1e-10 in f64, which a central difference
/// divides by its step: the tolerance allows for it instead of failing a correct gradient.
#[test]
fn gradcheck_allows_for_the_rounding_error_of_a_large_loss() {
    let (code, stdout, stderr) = adjoint(&["gradcheck", "tests/data/cli/offset_loss.dsl"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    insta::assert_snapshot!("gradcheck_large_loss", stdout);
}

#[test]
fn a_run_that_turns_non_finite_stops_with_exit_1_and_saves_its_last_finite_state() {
    let ckpt = scratch("diverged.safetensors");
    let (code, stdout, stderr) = adjoint(&[
        "train",
        "tests/data/train/nan_forward.dsl",
        "--save",
        ckpt.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    insta::assert_snapshot!("diverged_run", stderr);
    assert!(
        stdout.contains("(step 5, the last finite state)"),
        "{stdout}"
    );
    let saved = adjoint::checkpoint::load(&ckpt).unwrap();
    assert_eq!(saved.metadata[adjoint::checkpoint::STEP_KEY], "5");
    for t in &saved.tensors {
        let finite = match &t.data {
            adjoint::checkpoint::TensorData::F32(v) => v.iter().all(|x| x.is_finite()),
            adjoint::checkpoint::TensorData::F64(v) => v.iter().all(|x| x.is_finite()),
        };
        assert!(finite, "{} is not finite: {:?}", t.name, t.data);
    }
    // A parameter that the last update made infinite, with every loss before it finite: found
    // at the log point, then replayed step by step to the step that did it.
    let (code, _, stderr) = adjoint(&["train", "tests/data/train/f32_overflow.dsl"]);
    assert_eq!(code, 1, "{stderr}");
    insta::assert_snapshot!("diverged_update", stderr);
}

#[test]
fn check_finite_finds_an_f32_overflow_that_f64_would_not_have() {
    let (code, _, stderr) = adjoint(&[
        "train",
        "tests/data/train/f32_overflow.dsl",
        "--check-finite",
    ]);
    assert_eq!(code, 1, "{stderr}");
    insta::assert_snapshot!("check_finite_f32", stderr);
}

#[test]
fn data_a_model_would_not_read_is_refused_not_ignored() {
    let dir = scratch("npy-model");
    std::fs::create_dir_all(&dir).unwrap();
    let x: Vec<u8> = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    crate::npy::write_npy(&dir.join("x.npy"), "<f8", &[3, 2], &x);
    let model = dir.join("m.dsl");
    std::fs::write(
        &model,
        "dtype f64\ninput X[n, 2] from \"x.npy\"\nparam w[2] ~ ones\nloss mean((X @ w)^2)\noutput y = X @ w\ntrain steps = 1\n",
    )
    .unwrap();
    let csv = dir.join("new.csv");
    std::fs::write(&csv, "a,b\n7,8\n").unwrap();
    let ckpt = dir.join("m.safetensors");
    let (model, csv, ckpt) = (
        model.to_str().unwrap(),
        csv.to_str().unwrap(),
        ckpt.to_str().unwrap(),
    );
    let (code, _, stderr) = adjoint(&["train", model, "--save", ckpt]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = adjoint(&["predict", model, "--checkpoint", ckpt]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout.lines().count(),
        4,
        "a header and the 3 rows of x.npy:\n{stdout}"
    );
    for args in [
        vec!["predict", model, "--checkpoint", ckpt, "--data", csv],
        vec!["eval", model, "--checkpoint", ckpt, "--data", csv],
        vec!["train", model, "--data", csv],
        vec!["gradcheck", model, "--data", csv],
    ] {
        let (code, stdout, stderr) = adjoint(&args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!("error: --data {csv} would not be read"))
                && stderr.contains("(X from \"x.npy\")"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn eval_scores_the_rows_train_held_out_and_prints_a_confusion_matrix() {
    let (ckpt, history) = (scratch("split.safetensors"), scratch("split.csv"));
    let (ckpt, history) = (ckpt.to_str().unwrap(), history.to_str().unwrap());
    let (code, _, stderr) = adjoint(&[
        "train",
        "examples/iris.dsl",
        "--steps",
        "50",
        "--validation",
        "0.3",
        "--seed",
        "7",
        "--save",
        ckpt,
        "--history",
        history,
    ]);
    assert_eq!(code, 0, "{stderr}");
    // The last log point's validation loss and accuracy, at the saved parameters.
    let text = std::fs::read_to_string(history).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let last: Vec<&str> = text.lines().last().unwrap().split(',').collect();
    let column = |name: &str| -> f64 {
        let i = header.iter().position(|h| *h == name).unwrap();
        last[i].parse().unwrap()
    };
    let (code, stdout, stderr) = adjoint(&[
        "eval",
        "examples/iris.dsl",
        "--checkpoint",
        ckpt,
        "--validation",
        "0.3",
        "--seed",
        "7",
        "--confusion",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let value = |name: &str| -> f64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} = ")))
            .unwrap_or_else(|| panic!("no {name} in\n{stdout}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("loss"), column("val_loss"), "{stdout}");
    assert_eq!(value("accuracy"), column("val_accuracy"), "{stdout}");
    insta::assert_snapshot!("eval_validation_confusion", stdout);
    let (code, _, stderr) = adjoint(&[
        "eval",
        "examples/linreg.dsl",
        "--checkpoint",
        ckpt,
        "--confusion",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--confusion needs a classifier: examples/linreg.dsl has 0 integer inputs"),
        "{stderr}"
    );
}

#[test]
fn inspect_writes_the_hessian_and_prints_the_leading_eigenvectors() {
    let out = scratch("rosenbrock-hessian.npy");
    let (code, stdout, stderr) = adjoint(&[
        "inspect",
        "examples/rosenbrock.dsl",
        "--hessian",
        out.to_str().unwrap(),
        "--eigenvectors",
        "2",
    ]);
    assert_eq!(code, 0, "{stderr}");
    // f = (1 − x)² + 100(y − x²)² at (−1.2, 1): ∂²f/∂x² = 2 − 400(y − x²) + 800x² = 1330,
    // ∂²f/∂x∂y = −400x = 480, ∂²f/∂y² = 200.
    let (shape, h) = adjoint::data::load_npy(&out).unwrap();
    assert_eq!(shape, [2, 2]);
    for (got, want) in h.iter().zip([1330.0, 480.0, 480.0, 200.0]) {
        assert!((got - want).abs() <= 1e-9 * want, "{h:?}");
    }
    insta::assert_snapshot!(
        "inspect_eigenvectors",
        stdout.replace(out.to_str().unwrap(), "H.npy")
    );
    for (args, message) in [
        (
            vec!["--hessian", "h.txt"],
            "--hessian h.txt: the Hessian is written as a NumPy array; name a .npy file",
        ),
        (
            vec!["--eigenvectors", "3"],
            "--eigenvectors takes a count from 1 to the number of parameters (2); found 3",
        ),
    ] {
        let mut all = vec!["inspect", "examples/rosenbrock.dsl"];
        all.extend(args);
        let (code, _, stderr) = adjoint(&all);
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(stderr.trim(), format!("error: {message}"));
    }
}

#[test]
fn a_vector_metric_prints_as_a_table_that_agrees_with_the_confusion_matrix() {
    let ckpt = scratch("recall.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    let model = "tests/data/cli/iris_recall.dsl";
    let (code, _, stderr) = adjoint(&["train", model, "--save", ckpt]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = adjoint(&["eval", model, "--checkpoint", ckpt, "--confusion"]);
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!("eval_vector_metric", stdout);
    // recall[i] is the confusion matrix's diagonal over its row's sum.
    let lines: Vec<&str> = stdout.lines().collect();
    let table = lines
        .iter()
        .position(|l| *l == "recall (per element):")
        .unwrap();
    let matrix = lines
        .iter()
        .position(|l| l.starts_with("confusion matrix"))
        .unwrap();
    for class in 0..3 {
        let recall: f64 = lines[table + 1 + class]
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let row: Vec<f64> = lines[matrix + 2 + class]
            .split('|')
            .nth(1)
            .unwrap()
            .split_whitespace()
            .map(|c| c.parse().unwrap())
            .collect();
        let expected = row[class] / row.iter().sum::<f64>();
        assert!(
            (recall - expected).abs() < 1e-6,
            "class {class}: {recall} vs {expected}"
        );
    }
}

/// Minibatch steps that diverge: the unchecked run, found out at a log point and replayed from
/// the one before, stops where a run checked at every step stops, with the same state saved
/// (parameters, step count, data order and shuffling stream).
#[test]
fn a_replayed_minibatch_run_stops_and_saves_where_a_checked_run_does() {
    let run = |name: &str, extra: &[&str]| {
        let ckpt = scratch(name);
        let mut args = vec![
            "train",
            "examples/linreg.dsl",
            "--optimizer",
            "sgd",
            "--lr",
            "3",
            "--batch",
            "4",
            "--steps",
            "400",
            "--save",
            ckpt.to_str().unwrap(),
        ];
        args.extend(extra);
        let (code, stdout, stderr) = adjoint(&args);
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert!(stderr.contains("error: step 216: "), "{stderr}");
        assert!(
            stdout.contains("(step 215, the last finite state)"),
            "{stdout}"
        );
        adjoint::checkpoint::load(&ckpt).unwrap()
    };
    let replayed = run("replayed.safetensors", &[]);
    let checked = run("checked.safetensors", &["--check-finite"]);
    assert_eq!(replayed.tensors, checked.tensors);
    assert_eq!(replayed.metadata, checked.metadata);
}

/// The figures of one initializer's row in `inits`' final table.
fn inits_row(stdout: &str, init: &str) -> Vec<f64> {
    let row = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with(init))
        .unwrap_or_else(|| panic!("no row for {init}:\n{stdout}"));
    row[init.len()..]
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn inits_trains_once_per_initializer_and_warns_about_the_constant_one() {
    let out = scratch("inits.svg");
    let (code, stdout, stderr) = adjoint(&[
        "inits",
        "examples/digits.dsl",
        "--with",
        "constant(0.1), normal(0, 0.05)",
        "--steps",
        "60",
        "--validation",
        "0.2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("weights: `W1`, `W2`"), "{stdout}");
    // The constant variant is checked as a model file: the warning points at its rewritten line.
    assert!(
        stderr.contains("the 128 hidden units fed by `W1` start identical")
            && stderr.contains("param W1[64, 128] ~ constant(0.1)")
            && !stderr.contains("~ normal(0, 0.05)"),
        "{stderr}"
    );
    // training loss, validation loss, validation accuracy
    let (tied, random) = (
        inits_row(&stdout, "constant(0.1)"),
        inits_row(&stdout, "normal(0, 0.05)"),
    );
    assert_eq!((tied.len(), random.len()), (3, 3), "{stdout}");
    assert!(tied.iter().chain(&random).all(|v| v.is_finite()));
    // 128 tied units are one unit: 60 steps leave it far behind the random start.
    assert!(random[2] > tied[2] + 0.2, "{stdout}");
    assert!(random[1] < tied[1], "{stdout}");
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.contains("constant(0.1)") && svg.contains("normal(0, 0.05)"));
    assert!(svg.contains("validation accuracy"));
}

#[test]
fn inits_refuses_what_is_not_one_initializer_before_training() {
    let out = scratch("refused.png");
    let out = out.to_str().unwrap();
    for (with, says) in [
        ("he_normal\nloss 0", "is not an initializer"),
        ("he_normal, ", "`` is not an initializer"),
        ("no_such_init", "no_such_init"),
        ("normal(0, -1)", "normal"),
    ] {
        let (code, stdout, stderr) = adjoint(&[
            "inits",
            "examples/digits.dsl",
            "--with",
            with,
            "--steps",
            "5",
            "--out",
            out,
        ]);
        assert_eq!(code, 2, "{with:?}: {stdout}{stderr}");
        assert!(stderr.contains(says), "{with:?}: {stderr}");
        assert!(!stdout.contains("step"), "{with:?} trained: {stdout}");
    }
    let (code, _, stderr) = adjoint(&["inits", "examples/rosenbrock.dsl", "--out", out]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("has no weights to initialize"), "{stderr}");
}

/// `command --rows N` refuses 0 and more rows than the data has, and a model without data,
/// each with exit 2 and a message saying which.
fn rows_out_of_range_and_without_data_are_refused(command: &str) {
    for bad in ["0", "151"] {
        let (code, _, stderr) = adjoint(&[command, "examples/iris.dsl", "--rows", bad]);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains(&format!(
                "--rows must be between 1 and the data's 150 rows; found {bad}"
            )),
            "{stderr}"
        );
    }
    let (code, _, stderr) = adjoint(&[command, "examples/rosenbrock.dsl", "--rows", "3"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("this model reads none"), "{stderr}");
}

#[test]
fn gradcheck_rows_checks_the_first_rows_and_says_so() {
    let (code, stdout, stderr) = adjoint(&[
        "gradcheck",
        "examples/iris.dsl",
        "--rows",
        "7",
        "--points",
        "0",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("rows: the first 7 of 150"), "{stdout}");
    rows_out_of_range_and_without_data_are_refused("gradcheck");
}

#[test]
fn inspect_rows_takes_the_hessian_over_the_first_rows_and_says_so() {
    let eigenvalues = |args: &[&str]| {
        let (code, stdout, stderr) = adjoint(args);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let line = |name: &str| {
            stdout
                .lines()
                .find(|l| l.contains(name))
                .unwrap_or_else(|| panic!("no {name} in {stdout}"))
                .to_string()
        };
        (stdout.clone(), line("λmax"))
    };
    let (stdout, few) = eigenvalues(&["inspect", "examples/iris.dsl", "--rows", "7"]);
    assert!(stdout.contains("rows: the first 7 of 150"), "{stdout}");
    let (_, all) = eigenvalues(&["inspect", "examples/iris.dsl"]);
    assert_ne!(few, all, "the first 7 rows have the Hessian of all 150");
    let (_, all_rows) = eigenvalues(&["inspect", "examples/iris.dsl", "--rows", "150"]);
    assert_eq!(all_rows, all);
    rows_out_of_range_and_without_data_are_refused("inspect");
    // The transformer's reference values over every window do not fit: the refusal names the
    // flag that makes them fit.
    let (code, _, stderr) = adjoint(&["inspect", "examples/charlm.dsl"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("inspect on fewer of its 17428 rows with --rows N"),
        "{stderr}"
    );
}
