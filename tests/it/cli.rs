//! The command line as a user runs it: exit codes, located errors, no panics.

use crate::support::repo;
use std::process::Command;

/// Standard output with its wall-clock figures masked, for a snapshot.
fn without_timings(stdout: &str) -> String {
    stdout
        .lines()
        .map(|l| {
            let timed = l.starts_with("compiled ") || l.starts_with("trained ");
            match (timed, l.find(" in ")) {
                (true, Some(at)) => {
                    let after = &l[at + 4..];
                    let rest = after.find(':').map_or("", |c| &after[c..]);
                    format!("{} in [time]{rest}\n", &l[..at])
                }
                _ => format!("{l}\n"),
            }
        })
        .collect()
}

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

#[test]
fn source_errors_point_at_file_line_column_with_a_caret_and_exit_2() {
    for (file, location) in [
        (
            "tests/data/errors/syntax_error.dsl",
            "tests/data/errors/syntax_error.dsl:3:14",
        ),
        (
            "tests/data/errors/unknown_name.dsl",
            "tests/data/errors/unknown_name.dsl:4:10",
        ),
        (
            "tests/data/errors/shape_mismatch.dsl",
            "tests/data/errors/shape_mismatch.dsl:4:10",
        ),
        (
            "tests/data/errors/slices.dsl",
            "tests/data/errors/slices.dsl:5:13",
        ),
        (
            "tests/data/errors/reshapes.dsl",
            "tests/data/errors/reshapes.dsl:4:20",
        ),
        (
            "tests/data/errors/split.dsl",
            "tests/data/errors/split.dsl:3:21",
        ),
    ] {
        for cmd in ["check", "graph", "train"] {
            let (code, _, stderr) = adjoint(&[cmd, file]);
            assert_eq!(code, 2, "{cmd} {file}: {stderr}");
            assert!(
                stderr.contains(location),
                "{cmd} {file}: no `{location}` in\n{stderr}"
            );
            assert!(stderr.contains('^'), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}

#[test]
fn check_and_graph_succeed_on_examples() {
    let (code, stdout, _) = adjoint(&["check", "examples/linreg.dsl"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("ok"));
    let (code, stdout, _) = adjoint(&["graph", "--grad", "examples/linreg.dsl"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("dloss/dw = %"), "{stdout}");
}

#[test]
fn train_prints_progress_and_final_parameters() {
    let (code, stdout, stderr) = adjoint(&[
        "train",
        "examples/rosenbrock.dsl",
        "--steps",
        "300",
        "--seed",
        "3",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("step      300"), "{stdout}");
    assert!(
        stdout.contains("x = ") && stdout.contains("y = "),
        "{stdout}"
    );
}

#[test]
fn bad_files_and_flags_are_clear_errors() {
    let (code, _, stderr) = adjoint(&["train", "examples/nope.dsl"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot read examples/nope.dsl"), "{stderr}");
    let (code, _, stderr) = adjoint(&["train", "examples/linreg.dsl", "--data", "missing.csv"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("missing.csv"), "{stderr}");
    let (code, _, stderr) = adjoint(&[
        "train",
        "examples/linreg.dsl",
        "--data",
        "examples/data/iris.csv",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no column `a0`"), "{stderr}");
    let (code, _, _) = adjoint(&["train", "examples/linreg.dsl", "--steps", "many"]);
    assert_eq!(code, 2);
}

#[test]
fn bench_refuses_bad_workloads_repeats_and_peer_paths_before_running_any() {
    for (name, args) in [
        ("bench_unknown_workload", &["bench", "W1", "W10"][..]),
        ("bench_zero_repeats", &["bench", "W1", "--repeats", "0"][..]),
        (
            "bench_no_interpreter",
            &[
                "bench",
                "W1",
                "--peers",
                "nope/python",
                "--anchors",
                "tests",
            ][..],
        ),
        (
            "bench_no_anchors",
            &["bench", "W1", "--peers", "Cargo.toml", "--anchors", "nope"][..],
        ),
        (
            "bench_no_peer_script",
            &["bench", "w8", "--peers", "Cargo.toml", "--anchors", "tests"][..],
        ),
    ] {
        let (code, stdout, stderr) = adjoint(args);
        assert_eq!(code, 2, "{name}: {stdout}{stderr}");
        assert!(
            !stderr.contains("running"),
            "{name} ran a workload: {stderr}"
        );
        insta::assert_snapshot!(name, stderr);
    }
}

#[test]
fn numeric_flags_read_negative_numbers_and_refuse_bad_ones_before_any_work() {
    for (name, args) in [
        (
            "train_negative_lr",
            &["train", "examples/rosenbrock.dsl", "--lr", "-0.1"][..],
        ),
        (
            "train_negative_validation",
            &["train", "examples/iris.dsl", "--validation", "-0.2"][..],
        ),
        (
            "race_negative_second_lr",
            &[
                "race",
                "examples/rosenbrock.dsl",
                "--lr",
                "0.1,-0.2,0.1,0.1,0.1",
            ][..],
        ),
        (
            "gradcheck_negative_tolerance",
            &["gradcheck", "examples/rosenbrock.dsl", "--tolerance", "-1"][..],
        ),
        (
            "gradcheck_infinite_tolerance",
            &["gradcheck", "examples/rosenbrock.dsl", "--tolerance", "inf"][..],
        ),
    ] {
        let (code, stdout, stderr) = adjoint(args);
        assert_eq!(code, 2, "{name}: {stdout}{stderr}");
        assert_eq!(stdout, "", "{name} started: {stdout}");
        insta::assert_snapshot!(name, stderr);
    }
    // A flag whose value is missing still says so, rather than taking the next flag.
    let (code, _, stderr) = adjoint(&["train", "examples/rosenbrock.dsl", "--lr", "--steps", "3"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("a value is required for '--lr"), "{stderr}");
    // Race's ranges are lists that may start negative, written with or without `=`.
    let dir = std::env::temp_dir().join(format!("adjoint-ranges-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("race.png");
    let (code, _, stderr) = adjoint(&[
        "race",
        "examples/beale.dsl",
        "--steps",
        "2",
        "--x",
        "-0.5,4",
        "--y",
        "-1.5,2",
        "--minimum",
        "3,0.5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gradcheck_passes_on_examples_and_inspect_reports_conditioning() {
    for ex in [
        "examples/rosenbrock.dsl",
        "examples/linreg.dsl",
        "examples/logistic.dsl",
    ] {
        let (code, stdout, stderr) = adjoint(&["gradcheck", ex, "--points", "1"]);
        assert_eq!(code, 0, "{ex}: {stdout}{stderr}");
        assert!(stdout.contains("ok: worst relative error"), "{stdout}");
    }
    let (code, stdout, _) = adjoint(&["inspect", "examples/rosenbrock.dsl"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("condition number") && stdout.contains("2/λmax"),
        "{stdout}"
    );
    let (code, stdout, _) = adjoint(&["graph", "--dot", "--grad", "examples/linreg.dsl"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("digraph"));
}

/// Every graph fixture that reads no data passes `gradcheck`: its central differences are
/// Richardson-extrapolated, so the h²·f‴ error of a plain difference no longer fails a small
/// component of a curved loss (einsum.dsl's `K` at a random point failed at 3.6e-6 before).
#[test]
fn gradcheck_passes_on_every_fixture_without_data() {
    let dir = repo().join("tests/data/graph");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if path.extension().is_none_or(|e| e != "dsl")
            || text.lines().any(|l| l.trim_start().starts_with("input "))
        {
            continue;
        }
        let file = path.to_str().unwrap();
        let (code, stdout, stderr) = adjoint(&["gradcheck", file]);
        assert_eq!(code, 0, "{file}: {stdout}{stderr}");
        assert!(
            stdout.contains("ok: worst relative error"),
            "{file}: {stdout}"
        );
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} fixtures without data");
}

#[test]
fn check_finite_names_the_operation_and_the_rule() {
    let (code, _, stderr) = adjoint(&[
        "train",
        "tests/data/train/nan_forward.dsl",
        "--check-finite",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("step 6: `sqrt` in the forward pass produced NaN"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tests/data/train/nan_forward.dsl:5:9"),
        "{stderr}"
    );
    let (code, _, stderr) = adjoint(&[
        "train",
        "tests/data/train/inf_backward.dsl",
        "--check-finite",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("step 1: the derivative rule of `sqrt`")
            && stderr.contains("backward pass"),
        "{stderr}"
    );
    assert!(stderr.contains("inf_backward.dsl:4:6"), "{stderr}");
    let (code, _, stderr) = adjoint(&["train", "tests/data/train/nan_forward.dsl"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("step 6: the loss became NaN (the last finite loss"),
        "{stderr}"
    );
}

#[test]
fn validation_split_early_stopping_history_and_overrides() {
    let dir = std::env::temp_dir().join(format!("adjoint-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let history = dir.join("history.csv");
    let (code, stdout, stderr) = adjoint(&[
        "train",
        "examples/iris.dsl",
        "--validation",
        "0.3",
        "--patience",
        "2",
        "--steps",
        "20000",
        "--optimizer",
        "adam",
        "--lr",
        "0.5",
        "--history",
        history.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("validation: 45 rows held out, 105 for training"),
        "{stdout}"
    );
    // Every log line stays, labelled; early stopping names the point it restored.
    insta::assert_snapshot!(without_timings(&stdout));
    let csv = std::fs::read_to_string(&history).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("step,epoch,loss,accuracy,val_loss,val_accuracy")
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(rows.iter().all(|r| r.len() == 6), "{csv}");
    assert_eq!(rows.last().unwrap()[0], 1500.0, "{csv}");
    let (code, _, stderr) = adjoint(&["train", "examples/iris.dsl", "--optimizer", "adamm"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown optimizer `adamm`"), "{stderr}");
    let (code, _, stderr) = adjoint(&["train", "examples/iris.dsl", "--patience", "3"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("needs a validation split"), "{stderr}");
}

#[test]
fn race_draws_every_optimizer_and_train_plots_its_curves() {
    let dir = std::env::temp_dir().join(format!("adjoint-plots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (png, gif, svg) = (
        dir.join("race.png"),
        dir.join("race.gif"),
        dir.join("curves.svg"),
    );
    let (code, stdout, stderr) = adjoint(&[
        "race",
        "examples/rosenbrock.dsl",
        "--optimizers",
        "sgd,momentum,adagrad,rmsprop,adam",
        "--lr",
        "0.001,0.0005,0.2,0.01,0.02",
        "--steps",
        "300",
        "--x=-2,2",
        "--y=-1,3",
        "--minimum",
        "1,1",
        "--out",
        png.to_str().unwrap(),
        "--animate",
        gif.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    for name in ["sgd", "momentum", "adagrad", "rmsprop", "adam"] {
        assert!(stdout.contains(&format!("{name} (lr")), "{stdout}");
    }
    let (png_bytes, gif_bytes) = (std::fs::read(&png).unwrap(), std::fs::read(&gif).unwrap());
    assert!(png_bytes.starts_with(b"\x89PNG"));
    assert!(gif_bytes.starts_with(b"GIF89a"));
    // The animation has the still's size: PNG's IHDR (big-endian u32s), GIF's screen (u16 LE).
    let be = |at: usize| u32::from_be_bytes(png_bytes[at..at + 4].try_into().unwrap());
    let le = |at: usize| u16::from_le_bytes([gif_bytes[at], gif_bytes[at + 1]]) as u32;
    assert_eq!((le(6), le(8)), (be(16), be(20)));
    let (code, _, stderr) = adjoint(&[
        "train",
        "examples/iris.dsl",
        "--steps",
        "200",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let (code, _, stderr) = adjoint(&["race", "examples/linreg.dsl"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("two scalar parameters"), "{stderr}");
}

#[test]
fn train_logs_per_epoch_with_labelled_training_and_validation_metrics() {
    let (code, stdout, stderr) = adjoint(&[
        "train",
        "examples/iris.dsl",
        "--validation",
        "0.3",
        "--batch",
        "16",
        "--epochs",
        "6",
        "--log-every",
        "2e",
    ]);
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!(without_timings(&stdout));
    for bad in ["0", "x", "2epochs", "1.5e"] {
        let (code, _, stderr) = adjoint(&["train", "examples/iris.dsl", "--log-every", bad]);
        assert_eq!(code, 2, "{bad}: {stderr}");
        assert!(stderr.contains("not a positive count of steps"), "{stderr}");
    }
}

#[test]
fn parameters_print_the_shortest_decimal_that_reads_back() {
    let dir = std::env::temp_dir().join(format!("adjoint-decimal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("tiny.dsl");
    std::fs::write(
        &model,
        // At its minimum from the start, so each parameter keeps the value written here.
        "dtype f64\nparam x = 0.00000095\nparam y = 0.1\nparam z = 123456789012\nloss (x - 0.00000095)^2 + (y - 0.1)^2 + (z - 123456789012)^2\ntrain steps = 3\n",
    )
    .unwrap();
    let (code, stdout, stderr) = adjoint(&["train", model.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\nx = 9.5e-7\n"), "{stdout}");
    assert!(stdout.contains("\ny = 0.1\n"), "{stdout}");
    assert!(stdout.contains("\nz = 123456789012\n"), "{stdout}");
}

#[test]
fn a_closed_standard_output_ends_a_run_quietly_and_keeps_what_it_trained() {
    use std::io::{BufRead, BufReader};
    let dir = std::env::temp_dir().join(format!("adjoint-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let save = dir.join("iris.safetensors");
    let mut child = Command::new(env!("CARGO_BIN_EXE_adjoint"))
        .args(["train", "examples/iris.dsl", "--steps", "100000000"])
        .arg("--save")
        .arg(&save)
        .current_dir(repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -2`: read two lines, then close the pipe.
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    for _ in 0..2 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
    }
    drop(reader);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert_eq!(stderr, "", "not quiet");
    assert!(std::fs::metadata(&save).unwrap().len() > 0);
}

#[test]
fn predict_writes_to_standard_output_for_out_dash() {
    let dir = std::env::temp_dir().join(format!("adjoint-predict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("iris.safetensors");
    let (code, _, stderr) = adjoint(&[
        "train",
        "examples/iris.dsl",
        "--steps",
        "50",
        "--save",
        ckpt.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = adjoint(&[
        "predict",
        "examples/iris.dsl",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--out",
        "-",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("probability0,probability1,probability2,predicted")
    );
    assert_eq!(lines.count(), 150);
    assert!(!dir.join("-").exists() && !repo().join("-").exists());
    // f32 probabilities print as f32 decimals that read back, not their f64 widening.
    let first: Vec<&str> = stdout.lines().nth(1).unwrap().split(',').collect();
    for v in &first[..3] {
        let mantissa = v.split('e').next().unwrap();
        let digits = mantissa
            .trim_start_matches(['-', '0', '.'])
            .replace('.', "");
        assert!(digits.len() <= 9, "{v} has more digits than an f32 carries");
        assert!(v.parse::<f32>().is_ok(), "{v}");
    }
}

#[test]
fn race_names_a_diverging_optimizer_and_bad_extensions_fail_before_the_work() {
    let dir = std::env::temp_dir().join(format!("adjoint-diverge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("race.png");
    let (code, stdout, stderr) = adjoint(&[
        "race",
        "examples/rosenbrock.dsl",
        "--optimizers",
        "sgd,adam",
        "--lr",
        "0.05,0.02",
        "--steps",
        "300",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("plot: "), "{stdout}");
    assert_eq!(
        stderr,
        "warning: sgd (lr 0.05) diverged (a parameter became non-finite at step 6); its path is cut at the edge of the plot\n"
    );
    for (flag, file, expected) in [
        ("--out", "race.jpg", ".svg or .png"),
        ("--animate", "race.mp4", ".gif or .svg"),
    ] {
        let path = dir.join(file);
        let (code, stdout, stderr) = adjoint(&[
            "race",
            "examples/rosenbrock.dsl",
            flag,
            path.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(stdout, "", "raced before the error");
        assert!(
            stderr.contains(&format!(
                "{file}: unsupported file extension; expected {expected}"
            )),
            "{stderr}"
        );
    }
    let (code, stdout, stderr) = adjoint(&["train", "examples/iris.dsl", "--plot", "curves.jpg"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stdout, "", "trained before the error");
    assert!(
        stderr.contains("curves.jpg: unsupported file extension"),
        "{stderr}"
    );
}

#[test]
fn train_plot_has_a_panel_per_kind_labelled_axes_and_the_early_stopping_marker() {
    let dir = std::env::temp_dir().join(format!("adjoint-figure-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("curves.svg");
    let (code, _, stderr) = adjoint(&[
        "train",
        "examples/iris.dsl",
        "--validation",
        "0.3",
        "--patience",
        "2",
        "--steps",
        "20000",
        "--optimizer",
        "adam",
        "--lr",
        "0.5",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&svg).unwrap();
    // SVG text elements hold their text on a line of its own.
    for label in [
        "loss",
        "accuracy",
        "training loss",
        "validation loss",
        "training accuracy",
        "validation accuracy",
        "early stopping restored step 500",
    ] {
        assert!(text.lines().any(|l| l == label), "no {label} in the plot");
    }
    // A 30-step run is a line of 30 points, not one dot per log point.
    let (code, _, stderr) = adjoint(&[
        "train",
        "examples/rosenbrock.dsl",
        "--steps",
        "30",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&svg).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("<polyline") && l.contains("stroke-width=\"2\""))
        .expect("the loss is a line");
    let points = line
        .split("points=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(points.split_whitespace().count(), 30, "{line}");
}

#[test]
fn model_files_that_are_not_text_or_too_large_are_located_errors() {
    let dir = std::env::temp_dir().join(format!("adjoint-cli-bytes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("latin1.dsl"),
        b"input x[n]\nparam w = 0\nloss mean((w * x - 1)^2) # caf\xe9\n",
    )
    .unwrap();
    let mut transcript = String::new();
    for file in ["latin1.dsl", "/dev/zero"] {
        let out = Command::new(env!("CARGO_BIN_EXE_adjoint"))
            .args(["check", file])
            .current_dir(&dir)
            .output()
            .unwrap();
        transcript += &format!(
            "$ adjoint check {file}\nexit {}\n{}\n",
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(dir.join("s.dsl"), "param w = 0\nloss w^2\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_adjoint"))
        .args(["eval", "s.dsl", "--checkpoint", "/dev/zero"])
        .current_dir(&dir)
        .output()
        .unwrap();
    transcript += &format!(
        "$ adjoint eval s.dsl --checkpoint /dev/zero\nexit {}\n{}\n",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr)
    );
    // A pipe that never ends is read up to the limit, not until memory runs out.
    let mut child = Command::new(env!("CARGO_BIN_EXE_adjoint"))
        .args(["check", "/dev/stdin"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let block = vec![b' '; 1 << 20];
        // The reader stops and the pipe breaks; that ends the loop.
        while stdin.write_all(&block).is_ok() {}
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    transcript += &format!(
        "$ yes ' ' | adjoint check /dev/stdin\nexit {}\n{}\n",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
    insta::assert_snapshot!(transcript);
}

#[test]
fn a_run_larger_than_memory_is_refused_before_anything_is_allocated() {
    // 20 parameters of 10 GB (f32): each passes alone on most machines, together they are
    // 200 GB before optimizer state; allocating them used to abort the process.
    let dir = std::env::temp_dir().join(format!("adjoint-cli-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut src = String::new();
    for i in 0..20 {
        src += &format!("param W{i}[50000, 50000] ~ normal(0, 1)\n");
    }
    let terms: Vec<String> = (0..20).map(|i| format!("sum(W{i})")).collect();
    src += &format!(
        "loss {}\noptimizer adam(lr = 0.1)\ntrain steps = 1\n",
        terms.join(" + ")
    );
    std::fs::write(dir.join("big.dsl"), src).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_adjoint"))
        .args(["train", "big.dsl"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // On a machine with less than 12 GB, `check` already refuses one parameter.
    let per_parameter = stderr.contains("more than this machine's memory allows");
    assert!(
        per_parameter
            || (stderr.starts_with("error: training would take ")
                && stderr.contains("parameters ")
                && stderr.contains("optimizer state ")
                && stderr.contains("this process may use")),
        "{stderr}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn the_memory_budget_respects_the_process_limits() {
    // 9 GB, which fits this machine, but not a process limited to 2.9 GiB of address space.
    let dir = std::env::temp_dir().join(format!("adjoint-cli-rlimit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("mid.dsl"),
        "param A[20000, 20000] ~ zeros\nloss sum(A)\noptimizer adam(lr = 0.1)\ntrain steps = 1\n",
    )
    .unwrap();
    let out = Command::new("sh")
        .args([
            "-c",
            &format!(
                "ulimit -v 3000000; {} train mid.dsl",
                env!("CARGO_BIN_EXE_adjoint")
            ),
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr,
        "error: training would take 8.9 GiB (parameters 4.5 GiB, optimizer state 3.0 GiB, workspace 1.5 GiB), more than the 2.9 GiB this process may use\n"
    );
}

/// `train --timings` prints, after the stages' times, the peak workspace of the run (the
/// gradient step's on a batch and the forward pass's on every row) with buffers shared by
/// temporaries whose lifetimes do not overlap, and what it would be without.
#[test]
fn train_timings_report_the_peak_workspace_with_and_without_reuse() {
    let (code, stdout, stderr) =
        adjoint(&["train", "examples/iris.dsl", "--timings", "--steps", "1"]);
    assert_eq!(code, 0, "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("workspace"));
    assert_eq!(
        line,
        Some("  workspace      14.1 KiB peak (15.9 KiB without buffer reuse)"),
        "{stdout}"
    );
}

/// Every command that allocates by the model's sizes adds up what its run holds at once and
/// refuses, before its first step, a run that does not fit: exit 2 with what it would take,
/// never an abort. The one-hot over ten million classes trains, evaluates and predicts with
/// 5.6 GiB values; the race steps a loss with a 3.4 GiB constant row.
#[cfg(target_os = "linux")]
#[test]
fn every_command_refuses_a_run_that_does_not_fit_in_memory() {
    let wide = "tests/data/cli/wide_one_hot.dsl";
    let picture = std::env::temp_dir().join(format!("adjoint-race-{}.png", std::process::id()));
    let picture = picture.to_str().unwrap();
    let cases: [(&str, Vec<&str>); 6] = [
        ("train", vec!["train", wide]),
        ("eval", vec!["eval", wide, "--checkpoint", "missing.st"]),
        (
            "predict",
            vec!["predict", wide, "--checkpoint", "missing.st"],
        ),
        ("gradcheck", vec!["gradcheck", wide]),
        ("inspect", vec!["inspect", wide, "--trained"]),
        (
            "race",
            vec!["race", "tests/data/cli/wide_race.dsl", "--out", picture],
        ),
    ];
    for (name, args) in cases {
        let out = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "ulimit -v 3000000; {} {}",
                    env!("CARGO_BIN_EXE_adjoint"),
                    args.join(" ")
                ),
            ])
            .current_dir(repo())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        insta::assert_snapshot!(format!("memory_refused_{name}"), stderr);
    }
    assert!(!std::path::Path::new(picture).exists());
}

/// `graph` prints the training step's graph, `graph --eval` the evaluation graph; for a model
/// without dropout they are one graph.
#[test]
fn graph_eval_prints_the_evaluation_graph() {
    let fixture = "tests/data/graph/dropout.dsl";
    let (code, training, stderr) = adjoint(&["graph", fixture]);
    assert_eq!(code, 0, "{stderr}");
    assert!(training.contains("dropout_mask p=0.5 site=1"), "{training}");
    let (code, eval, stderr) = adjoint(&["graph", "--eval", fixture]);
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!(eval);
    let (_, eval_grad, _) = adjoint(&["graph", "--eval", "--grad", fixture]);
    assert!(!eval_grad.contains("dropout_mask") && eval_grad.contains("dloss/dW1"));
    let plain = "tests/data/graph/mlp.dsl";
    assert_eq!(
        adjoint(&["graph", plain]).1,
        adjoint(&["graph", "--eval", plain]).1
    );
}

#[test]
fn graph_explain_names_the_mixture_rewrites_and_where_they_fired() {
    let (code, stdout, stderr) = adjoint(&["graph", "--explain", "tests/data/graph/mixtures.dsl"]);
    assert_eq!(code, 0, "{stderr}");
    let rewrites = stdout
        .split("\n# stability rewrites\n")
        .nth(1)
        .and_then(|s| s.split("\n\n").next())
        .unwrap_or_default();
    insta::assert_snapshot!(rewrites);
}

/// `--explain` lists each run of like terms checked as one sum over an array, with its size
/// and place, and says so when there is none.
#[test]
fn graph_explain_lists_the_long_sums_checked_as_sums_over_arrays() {
    let section = |file: &str| {
        let (code, stdout, stderr) = adjoint(&["graph", "--explain", file]);
        assert_eq!(code, 0, "{stderr}");
        stdout
            .split("\n# long sums checked as sums over arrays (terms added in sum's order)\n")
            .nth(1)
            .and_then(|s| s.split("\n\n").next())
            .unwrap_or_default()
            .to_string()
    };
    insta::assert_snapshot!(section("tests/data/graph/rerolled_sum.dsl"));
    assert_eq!(section("tests/data/graph/mixtures.dsl"), "(none)");
}

/// An optimizer without an exact JAX counterpart is a located error, exit 2, and nothing is
/// written; a wrong extension is refused before the model is read; a model exports.
#[test]
fn export_to_jax_writes_a_module_or_refuses_what_has_no_exact_export() {
    let dir = std::env::temp_dir().join(format!("adjoint-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let module = dir.join("model.py");
    let out = module.to_str().unwrap();

    let (code, _, stderr) = adjoint(&[
        "export",
        "tests/export/newton.dsl",
        "--to",
        "jax",
        "-o",
        out,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(!module.exists(), "a refused export writes nothing");
    let (code, _, wrong) = adjoint(&["export", "examples/iris.dsl", "--to", "jax", "-o", "m.txt"]);
    assert_eq!(code, 2, "{wrong}");
    insta::assert_snapshot!(format!("{stderr}\n{wrong}"));

    let (code, stdout, stderr) =
        adjoint(&["export", "examples/iris.dsl", "--to", "jax", "-o", out]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("wrote "), "{stdout}");
    let code = std::fs::read_to_string(&module).unwrap();
    assert!(
        code.contains("def train_step(params, opt_state, batch):"),
        "{code}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A model with dropout trains with masks and is evaluated without: `eval` at its checkpoint
/// prints what the same model without dropout prints there, bit for bit, and `gradcheck`
/// checks the evaluation graph's gradient.
#[test]
fn dropout_trains_with_masks_and_evaluates_without() {
    let dir = std::env::temp_dir().join(format!("adjoint-dropout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let digits = std::fs::read_to_string(repo().join("examples/digits.dsl")).unwrap();
    let data = repo().join("examples/data/digits.csv");
    let plain = digits.replace(
        "\"data/digits.csv\"",
        &format!("{:?}", data.display().to_string()),
    );
    let dropped = plain.replace(
        "let h = tanh(x @ W1 + b1)",
        "let h = dropout(tanh(x @ W1 + b1), 0.5)",
    );
    assert_ne!(plain, dropped);
    let (a, b) = (dir.join("dropped.dsl"), dir.join("plain.dsl"));
    std::fs::write(&a, dropped).unwrap();
    std::fs::write(&b, plain).unwrap();
    let ckpt = dir.join("dropped.safetensors");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (code, _, stderr) = adjoint(&["train", &path(&a), "--steps", "30", "--save", &path(&ckpt)]);
    assert_eq!(code, 0, "{stderr}");
    let (code, with, stderr) = adjoint(&["eval", &path(&a), "--checkpoint", &path(&ckpt)]);
    assert_eq!(code, 0, "{stderr}");
    let (_, without, _) = adjoint(&["eval", &path(&b), "--checkpoint", &path(&ckpt)]);
    assert!(with.contains("accuracy = "), "{with}");
    assert_eq!(with, without);
    let (code, stdout, stderr) = adjoint(&["gradcheck", &path(&a), "--checkpoint", &path(&ckpt)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("ok: worst relative error"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `export --to jax` writes a model with `dropout`: its `loss` draws adjoint's masks from the
/// model state that `load` returns (scripts/verify_export.py runs it against adjoint).
#[test]
fn export_to_jax_writes_dropout_with_adjoints_masks() {
    let dir = std::env::temp_dir().join(format!("adjoint-export-dropout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let module = dir.join("model.py");
    let fixture = "tests/data/graph/dropout.dsl";
    let (code, _, stderr) = adjoint(&[
        "export",
        fixture,
        "--to",
        "jax",
        "-o",
        module.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&module).unwrap();
    for wanted in [
        "def loss(params, batch, state):",
        "step_key = _step_key(state[\"run_key\"], state[\"step\"] + 1)",
        "_dropout_mask(step_key, 0xFF51AFD7ED558CCD,",
        "def train_step(params, opt_state, state, batch):",
    ] {
        assert!(text.contains(wanted), "no {wanted:?} in\n{text}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `export --values` of a model whose training step differs also writes that step's values at
/// the checkpoint (`train/...`): the loss with the masks of the step after the checkpoint's
/// (not the evaluation loss) and the running statistics after it, which are those of the run
/// resumed from the checkpoint for one step.
#[test]
fn export_values_include_the_next_training_step() {
    let dir = std::env::temp_dir().join(format!("adjoint-values-step-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let mut rows = String::from("X0,X1,X2,X3,X4,X5,X6,X7,y\n");
    for r in 0..6 {
        let xs: Vec<String> = (0..8).map(|c| ((r * 7 + c * 3) % 5).to_string()).collect();
        rows += &format!("{},{}\n", xs.join(","), r % 3);
    }
    std::fs::write(path("rows.csv"), rows).unwrap();
    let fixture = "tests/data/graph/batch_norm.dsl";
    let data = ["--data", &path("rows.csv")];
    let (code, _, stderr) = adjoint(
        &[
            &[
                "train",
                fixture,
                "--steps",
                "2",
                "--save",
                &path("a.safetensors"),
            ],
            &data[..],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = adjoint(
        &[
            &[
                "train",
                fixture,
                "--resume",
                &path("a.safetensors"),
                "--steps",
                "1",
            ],
            &["--save", &path("b.safetensors")][..],
            &data[..],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{stderr}");
    let values = path("values.safetensors");
    let (code, _, stderr) = adjoint(
        &[
            &[
                "export",
                fixture,
                "--values",
                "--checkpoint",
                &path("a.safetensors"),
            ],
            &["-o", &values][..],
            &data[..],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{stderr}");
    let values = adjoint::checkpoint::load(std::path::Path::new(&values)).unwrap();
    let resumed = adjoint::checkpoint::load(&dir.join("b.safetensors")).unwrap();
    let get = |c: &adjoint::checkpoint::Checkpoint, name: &str| match &c
        .tensor(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .data
    {
        adjoint::checkpoint::TensorData::F64(v) => v.clone(),
        adjoint::checkpoint::TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
    };
    let (train_loss, eval_loss) = (get(&values, "train/loss")[0], get(&values, "loss")[0]);
    assert!(
        train_loss.is_finite() && train_loss != eval_loss,
        "{train_loss} {eval_loss}"
    );
    for p in ["K", "g1", "b1", "W", "g2", "b2"] {
        assert!(
            get(&values, &format!("train/grad/{p}"))
                .iter()
                .all(|g| g.is_finite())
        );
    }
    for s in ["batch_norm0.running_mean", "batch_norm1.running_var"] {
        let (next, want) = (
            get(&values, &format!("train/state.{s}")),
            get(&resumed, &format!("state.{s}")),
        );
        assert_eq!(next.len(), want.len());
        for (a, b) in next.iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "{s}: {next:?} {want:?}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Slices, new axes, reshapes, joins and splits print their derivatives in the language:
/// slices as slices, their adjoints as `unslice`, reshapes with their shapes.
#[test]
fn grad_prints_slices_and_their_embeddings_in_the_language() {
    let (code, stdout, stderr) = adjoint(&["grad", "tests/data/graph/split.dsl"]);
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!(stdout);
}

/// A token beyond the embedding table is refused when the data is bound, naming the file, row
/// and column, from a CSV table and from a `.npy` array alike; nothing is trained.
#[test]
fn tokens_off_the_embedding_table_are_located_errors_before_training() {
    let (code, stdout, stderr) = adjoint(&[
        "train",
        "tests/data/gather/bag.dsl",
        "--data",
        "tests/data/gather/bad_token.csv",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(!stdout.contains("step"), "{stdout}");
    insta::assert_snapshot!("token_off_the_table_csv", stderr);

    let dir = std::env::temp_dir().join(format!("adjoint-cli-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = std::fs::read_to_string(repo().join("tests/data/gather/bag.dsl"))
        .unwrap()
        .replace(
            "input tok[n, 4]: int",
            "input tok[n, 4] from \"tok.npy\": int",
        )
        .replace("input y[n]: int", "input y[n] from \"y.npy\": int")
        .replace("data \"bag.csv\"\n", "");
    std::fs::write(dir.join("bag.dsl"), model).unwrap();
    let tokens = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 11.0, 40.0];
    let npy = adjoint::data::npy_bytes(&[3, 4], &tokens);
    std::fs::write(dir.join("tok.npy"), npy).unwrap();
    std::fs::write(
        dir.join("y.npy"),
        adjoint::data::npy_bytes(&[3], &[0.0, 1.0, 2.0]),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_adjoint"))
        .args(["train", "bag.dsl"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    insta::assert_snapshot!("token_off_the_table_npy", stderr);
}

/// An ONNX export needs the parameters (--checkpoint) and refuses an op without an exact ONNX
/// operator, naming it where the model uses it; nothing is written.
#[test]
fn export_to_onnx_refuses_ops_without_an_exact_operator() {
    let dir = std::env::temp_dir().join(format!("adjoint-export-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("c.safetensors");
    let model = dir.join("m.onnx");
    let (ckpt, out) = (ckpt.to_str().unwrap(), model.to_str().unwrap());
    let fixture = "tests/export/log1p_output.dsl";
    let data = "tests/export/log1p_output.csv";
    let (code, _, stderr) = adjoint(&[
        "train", fixture, "--data", data, "--steps", "1", "--save", ckpt,
    ]);
    assert_eq!(code, 0, "{stderr}");

    let (code, _, no_ckpt) = adjoint(&["export", fixture, "--to", "onnx", "-o", out]);
    assert_eq!(code, 2, "{no_ckpt}");
    let (code, _, refused) = adjoint(&[
        "export",
        fixture,
        "--to",
        "onnx",
        "--checkpoint",
        ckpt,
        "-o",
        out,
    ]);
    assert_eq!(code, 2, "{refused}");
    assert!(!model.exists(), "a refused export writes nothing");
    insta::assert_snapshot!(format!("{no_ckpt}\n{refused}"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The attention vocabulary as a user meets it: `grad` prints the causal mask and the
/// layer norm in forms the language reads back, and a bad literal is a located error.
#[test]
fn grad_prints_the_causal_mask_and_layer_norm_and_literals_are_checked() {
    let (code, stdout, stderr) = adjoint(&["grad", "tests/data/graph/causal_softmax.dsl"]);
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!("grad_causal_softmax", stdout);
    let (code, stdout, stderr) = adjoint(&["grad", "tests/data/graph/layer_norm_gelu.dsl"]);
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!("grad_layer_norm_gelu", stdout);
    let (code, _, stderr) = adjoint(&["check", "tests/data/errors/constants.dsl"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("tests/data/errors/constants.dsl:4:23"),
        "{stderr}"
    );
}

/// A model with batch normalization: `graph` and `graph --eval` print its two graphs, `eval`
/// prints its running statistics from the checkpoint (and changes nothing: twice the same),
/// `gradcheck` checks the evaluation graph at the checkpoint's statistics, a
/// checkpoint of the model without `batch_norm` is refused naming the missing statistic, exit
/// 2, and the JAX export carries the running statistics as model state.
#[test]
fn batch_norm_state_is_evaluated_from_checkpoints_and_refused_when_missing() {
    let fixture = "tests/data/graph/batch_norm.dsl";
    let (code, training, stderr) = adjoint(&["graph", fixture]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        training.contains("state.batch_norm1.running_var = "),
        "{training}"
    );
    let (code, eval_graph, stderr) = adjoint(&["graph", "--eval", fixture]);
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!("batch_norm_eval_graph", eval_graph);

    let dir = std::env::temp_dir().join(format!("adjoint-batch-norm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let digits = std::fs::read_to_string(repo().join("examples/digits.dsl")).unwrap();
    let data = repo().join("examples/data/digits.csv");
    let plain = digits
        .replace(
            "\"data/digits.csv\"",
            &format!("{:?}", data.display().to_string()),
        )
        .replace(
            "param b1[128] ~ zeros",
            "param b1[128] ~ zeros\nparam g1[128] ~ ones",
        )
        .replace(
            "let h = tanh(x @ W1 + b1)",
            "let h = tanh(x @ W1 * g1 + b1)",
        );
    let normed = plain.replace(
        "let h = tanh(x @ W1 * g1 + b1)",
        "let h = tanh(batch_norm(x @ W1, g1, b1))",
    );
    assert_ne!(plain, normed);
    let (a, b) = (dir.join("normed.dsl"), dir.join("plain.dsl"));
    std::fs::write(&a, normed).unwrap();
    std::fs::write(&b, plain).unwrap();
    let (ca, cb) = (
        dir.join("normed.safetensors"),
        dir.join("plain.safetensors"),
    );
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    for (model, ckpt) in [(&a, &ca), (&b, &cb)] {
        let (code, _, stderr) =
            adjoint(&["train", &path(model), "--steps", "5", "--save", &path(ckpt)]);
        assert_eq!(code, 0, "{stderr}");
    }
    let (code, first, stderr) = adjoint(&["eval", &path(&a), "--checkpoint", &path(&ca)]);
    assert_eq!(code, 0, "{stderr}");
    let (_, second, _) = adjoint(&["eval", &path(&a), "--checkpoint", &path(&ca)]);
    assert_eq!(first, second);
    let states: Vec<&str> = first.lines().filter(|l| l.starts_with("state ")).collect();
    assert_eq!(states.len(), 2, "{first}");
    assert!(
        states[0].starts_with("state batch_norm0.running_mean[128]: min ")
            && states[1].starts_with("state batch_norm0.running_var[128]: min "),
        "{first}"
    );
    let (code, stdout, missing) = adjoint(&["eval", &path(&a), "--checkpoint", &path(&cb)]);
    assert_eq!(code, 2, "{stdout}{missing}");
    insta::assert_snapshot!(
        "batch_norm_state_missing",
        missing.replace(&path(&cb), "plain.safetensors")
    );
    let (code, _, stderr) = adjoint(&["eval", &path(&b), "--checkpoint", &path(&cb)]);
    assert_eq!(
        code, 0,
        "a model without batch_norm needs no state: {stderr}"
    );
    // gradcheck at the checkpoint: the interpreter reads the checkpoint's running statistics, as
    // the compiled gradient does.
    let (code, stdout, stderr) = adjoint(&["gradcheck", &path(&a), "--checkpoint", &path(&ca)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("ok: worst relative error"), "{stdout}");

    let module = dir.join("model.py");
    let (code, _, stderr) = adjoint(&["export", fixture, "--to", "jax", "-o", &path(&module)]);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&module).unwrap();
    assert!(
        text.contains("\"batch_norm0.running_mean\": (("),
        "the running statistics are model state:\n{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
