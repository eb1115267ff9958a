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
