//! Checkpoints: exact resumption, refusal of a mismatched model, damaged files, Ctrl-C.

use crate::support::*;
use adjoint::compile::CompiledModel;
use adjoint::data::{Table, bind};
use adjoint::train::Trainer;
use std::sync::atomic::{AtomicBool, Ordering};

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("adjoint-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A model of an example with its text edited, and its data.
fn example_with(
    example: &str,
    edit: impl Fn(String) -> String,
) -> (CompiledModel, Option<adjoint::data::Dataset>) {
    let path = repo().join("examples").join(example);
    let text = edit(std::fs::read_to_string(&path).unwrap());
    let model = model_of_source(&path.display().to_string(), &text);
    let data = model.data.as_ref().map(|d| {
        bind(
            &model,
            &Table::load(&path.parent().unwrap().join(d)).unwrap(),
        )
        .unwrap()
    });
    (CompiledModel::from_model(model).unwrap(), data)
}

/// A run of 2N steps stopped at step `stop` (as Ctrl-C stops it), saved, resumed into a fresh
/// trainer and run to its end as the command line does, equals the run that was not stopped:
/// parameters, optimizer state and step, bit for bit.
fn check_resume(
    label: &str,
    compiled: &CompiledModel,
    data: Option<&adjoint::data::Dataset>,
    n: u64,
    stop: u64,
) {
    // A flag of its own: tests run in parallel.
    let stop_flag: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let mut settings = compiled.model.train.clone();
    settings.epochs = None;
    settings.steps = Some(2 * n);
    let mut straight = Trainer::new(compiled, 5);
    straight.fit(data, &settings, |_| {}).unwrap();

    // Stops at `stop` exactly: a log point every step, and the request made at the stop.
    let mut first = Trainer::new(compiled, 5);
    first.interrupt = Some(stop_flag);
    let mut stopping = settings.clone();
    stopping.log_every = 1;
    let finished = first
        .fit(data, &stopping, |p| {
            if p.step == stop {
                stop_flag.store(true, Ordering::Relaxed);
            }
        })
        .unwrap();
    assert!(
        !finished && first.step == stop,
        "{label}: stopped at {}",
        first.step
    );
    let file = tmp(&format!("{label}.safetensors"));
    adjoint::resume::save(&first, &file).unwrap();

    let mut second = Trainer::new(compiled, 99);
    adjoint::resume::resume(&mut second, &file).unwrap();
    assert_eq!((second.step, second.run_end), (stop, 2 * n), "{label}");
    settings.steps = Some(second.run_end - second.step);
    second.fit(data, &settings, |_| {}).unwrap();
    assert_eq!(
        straight.params, second.params,
        "{label}: parameters after resuming at step {stop}"
    );
    assert_eq!(
        straight.state, second.state,
        "{label}: optimizer state after resuming at step {stop}"
    );
    assert_eq!(
        straight.model_state, second.model_state,
        "{label}: the model's state (running statistics) after resuming at step {stop}"
    );
    assert_eq!(straight.step, second.step);
}

#[test]
fn resuming_continues_bit_for_bit() {
    for (example, n) in [
        ("rosenbrock.dsl", 500),
        ("linreg.dsl", 40),
        ("digits.dsl", 70),
    ] {
        let (compiled, data) = example_with(example, |t| t);
        // Minibatches (digits): the data order and the position in the epoch carry over too.
        check_resume(example, &compiled, data.as_ref(), n, n);
    }
}

/// A model with dropout resumes bit for bit on minibatches and on full batches (the fused
/// loop): the masks come from the checkpointed data stream's seed and the step, not from the
/// resuming trainer's seed.
#[test]
fn dropout_runs_resume_bit_for_bit() {
    let drop = |t: String| {
        t.replace(
            "let h = tanh(x @ W1 + b1)",
            "let h = dropout(tanh(dropout(x, 0.1) @ W1 + b1), 0.4)",
        )
    };
    let (compiled, data) = example_with("digits.dsl", drop);
    assert!(compiled.graphs.training.is_some());
    check_resume("digits with dropout", &compiled, data.as_ref(), 70, 33);
    let full_batch = |t: String| drop(t).replace("batch = 32, ", "");
    let (compiled, data) = example_with("digits.dsl", full_batch);
    check_resume(
        "digits with dropout, full batch",
        &compiled,
        data.as_ref(),
        6,
        5,
    );
}

/// A model with batch normalization and dropout resumes bit for bit on minibatches and on full
/// batches (the fused loop): its running statistics are saved and restored with the run.
#[test]
fn batch_norm_runs_resume_bit_for_bit() {
    let norm = |t: String| {
        t.replace(
            "param b1[128] ~ zeros",
            "param b1[128] ~ zeros\nparam g1[128] ~ ones",
        )
        .replace(
            "let h = tanh(x @ W1 + b1)",
            "let h = dropout(tanh(batch_norm(x @ W1, g1, b1)), 0.2)",
        )
    };
    let (compiled, data) = example_with("digits.dsl", norm);
    assert_eq!(compiled.model.graph().states.len(), 2);
    check_resume("digits with batch_norm", &compiled, data.as_ref(), 70, 33);
    let full_batch = |t: String| norm(t).replace("batch = 32, ", "");
    let (compiled, data) = example_with("digits.dsl", full_batch);
    check_resume(
        "digits with batch_norm, full batch",
        &compiled,
        data.as_ref(),
        6,
        5,
    );
}

/// Every schedule, with and without warm-up, on full batches and on minibatches, stopped at a
/// random step (from a fixed seed, printed) and resumed.
#[test]
fn every_schedule_resumes_bit_for_bit_from_a_random_step() {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(2026);
    let schedules = [
        "",
        "schedule step(every = 7, gamma = 0.5)",
        "schedule exponential(gamma = 0.98)",
        "schedule cosine(min = 0.001)",
        "schedule cosine(min = 0.001, warmup = 15)",
        "schedule constant(warmup = 15)",
    ];
    for schedule in schedules {
        // Adam: β powers, moments and the schedule all carry over.
        for (example, n) in [("linreg.dsl", 40), ("digits.dsl", 30)] {
            let (compiled, data) = example_with(example, |t| {
                t.replace("optimizer sgd(lr = 0.1)", "optimizer adam(lr = 0.05)")
                    + "\n"
                    + schedule
                    + "\n"
            });
            let stop = rng.random_range(1..2 * n);
            let label = format!("{example} {schedule:?} stopped at {stop}");
            eprintln!("{label}");
            check_resume(
                &label.replace([' ', '"', '(', ')', '=', ','], "_"),
                &compiled,
                data.as_ref(),
                n,
                stop,
            );
        }
    }
}

#[test]
fn a_checkpoint_of_another_model_is_refused_naming_the_tensor() {
    let a = CompiledModel::from_model(model_of_source(
        "a.dsl",
        "param w[3] ~ zeros\nparam b ~ zeros\nloss sum(w^2) + b^2\n",
    ))
    .unwrap();
    let b = CompiledModel::from_model(model_of_source(
        "b.dsl",
        "param w[4] ~ zeros\nparam b ~ zeros\nloss sum(w^2) + b^2\n",
    ))
    .unwrap();
    let file = tmp("a.safetensors");
    adjoint::resume::save(&Trainer::new(&a, 0), &file).unwrap();
    let err = adjoint::resume::resume(&mut Trainer::new(&b, 0), &file)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`param/w`") && err.contains("[4]") && err.contains("[3]"),
        "{err}"
    );
    let err = adjoint::resume::load_params(&mut Trainer::new(&b, 0), &file)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`param/w`"), "{err}");
}

#[test]
fn damaged_checkpoints_give_clear_errors() {
    let c = CompiledModel::from_model(model_of_source(
        "c.dsl",
        "param w[50] ~ normal(0, 1)\nloss sum(w^2)\n",
    ))
    .unwrap();
    let file = tmp("c.safetensors");
    adjoint::resume::save(&Trainer::new(&c, 0), &file).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let truncated = tmp("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 17]).unwrap();
    let err = adjoint::resume::resume(&mut Trainer::new(&c, 0), &truncated)
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated.safetensors"), "{err}");
    let mut tampered = bytes.clone();
    let last = tampered.len() - 3;
    tampered[last] ^= 0x40;
    let bad = tmp("tampered.safetensors");
    std::fs::write(&bad, &tampered).unwrap();
    let err = adjoint::resume::resume(&mut Trainer::new(&c, 0), &bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tampered.safetensors")
            && err.contains("corrupted")
            && err.contains("`state/w/1`"),
        "{err}"
    );
    let err = adjoint::resume::resume(&mut Trainer::new(&c, 0), &tmp("missing.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.safetensors"), "{err}");
}

#[test]
fn the_command_line_saves_resumes_and_evaluates() {
    let ckpt = tmp("cli.safetensors");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_adjoint"))
            .args(args)
            .current_dir(repo())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let c = ckpt.to_str().unwrap();
    let (code, stdout, stderr) =
        run(&["train", "examples/iris.dsl", "--steps", "300", "--save", c]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("checkpoint:") && stdout.contains("(step 300)"),
        "{stdout}"
    );
    let (code, stdout, stderr) = run(&[
        "train",
        "examples/iris.dsl",
        "--steps",
        "100",
        "--resume",
        c,
        "--save",
        c,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("resumed from") && stdout.contains("(step 400)"),
        "{stdout}"
    );
    let (code, stdout, stderr) = run(&["eval", "examples/iris.dsl", "--checkpoint", c]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("loss = ") && stdout.contains("accuracy = "),
        "{stdout}"
    );
    let (code, _, stderr) = run(&["eval", "examples/digits.dsl", "--checkpoint", c]);
    assert_eq!(code, 2);
    assert!(stderr.contains("param/"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_checkpoint_before_exit() {
    let ckpt = tmp("interrupted.safetensors");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_adjoint"))
        .args([
            "train",
            "examples/rosenbrock.dsl",
            "--steps",
            "2000000000",
            "--save",
            ckpt.to_str().unwrap(),
        ])
        .current_dir(repo())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("checkpoint:"));
    let c = CompiledModel::from_model(model_of(&repo().join("examples/rosenbrock.dsl"))).unwrap();
    let mut t = Trainer::new(&c, 0);
    adjoint::resume::resume(&mut t, &ckpt).unwrap();
    assert!(t.step > 0);
}

#[test]
fn predict_writes_outputs_for_new_data_without_labels() {
    let dir = std::env::temp_dir().join(format!("adjoint-predict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ckpt, data, out) = (
        dir.join("iris.safetensors"),
        dir.join("unlabelled.csv"),
        dir.join("predictions.csv"),
    );
    let text = std::fs::read_to_string(repo().join("examples/data/iris.csv")).unwrap();
    let unlabelled: String = text
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n")
        .collect();
    std::fs::write(&data, unlabelled).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_adjoint"))
            .args(args)
            .current_dir(repo())
            .output()
            .unwrap()
    };
    assert!(
        run(&[
            "train",
            "examples/iris.dsl",
            "--steps",
            "500",
            "--save",
            ckpt.to_str().unwrap()
        ])
        .status
        .success()
    );
    let o = run(&[
        "predict",
        "examples/iris.dsl",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(&out).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("probability0,probability1,probability2,predicted")
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 150);
    let labels: Vec<f64> = text
        .lines()
        .skip(1)
        .map(|l| l.rsplit_once(',').unwrap().1.parse().unwrap())
        .collect();
    let correct = rows
        .iter()
        .zip(&labels)
        .filter(|(r, y)| r[3] == **y)
        .count();
    for r in &rows {
        assert!((r[0] + r[1] + r[2] - 1.0).abs() < 1e-5, "{r:?}");
        let best = (0..3).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap();
        assert_eq!(best as f64, r[3]);
    }
    assert!(correct >= 140, "{correct} of 150 right");
    let o = run(&[
        "predict",
        "examples/linreg.dsl",
        "--checkpoint",
        ckpt.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("declares no `output`"));
}

// --- the command line: output paths, signals, resuming and starting from parameters ---------

/// A fresh directory for one test.
fn scratch(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("adjoint-ckpt-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn adjoint_in(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_adjoint"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Each command's exit code and standard error, for a snapshot.
fn transcript(dir: &std::path::Path, runs: &[&[&str]]) -> String {
    let mut out = String::new();
    for args in runs {
        let (code, _, stderr) = adjoint_in(dir, args);
        out += &format!("$ adjoint {}\nexit {code}\n{stderr}\n", args.join(" "));
    }
    out.replace(&dir.display().to_string(), "<dir>")
}

const QUADRATIC: &str = "param w[3] ~ normal(0, 1)\nparam b ~ zeros\nloss sum((w - 1)^2) + (b - 2)^2\noptimizer adam(lr = 0.01)\ntrain steps = 50\n";

#[test]
fn output_paths_are_checked_before_anything_runs() {
    let dir = scratch("outputs");
    std::fs::write(dir.join("q.dsl"), QUADRATIC).unwrap();
    std::fs::create_dir(dir.join("a-directory")).unwrap();
    std::fs::create_dir(dir.join("h.csv")).unwrap();
    #[cfg(unix)]
    let _socket = std::os::unix::net::UnixListener::bind(dir.join("socket")).unwrap();
    let runs: &[&[&str]] = &[
        &["train", "q.dsl", "--save", "missing/q.safetensors"],
        &["train", "q.dsl", "--save", "a-directory"],
        #[cfg(unix)]
        &["train", "q.dsl", "--save", "socket"],
        &["train", "q.dsl", "--plot", "curves.jpg"],
        &["train", "q.dsl", "--plot", "missing/curves.png"],
        &["train", "q.dsl", "--history", "history.txt"],
        &["train", "q.dsl", "--history", "h.csv"],
        &["race", "q.dsl", "--out", "race.bmp"],
        &["race", "q.dsl", "--animate", "race.mp4"],
    ];
    let text = transcript(&dir, runs);
    // Refused before compiling: nothing was trained, nothing was written.
    assert!(!text.contains("compiled"), "{text}");
    assert_eq!(text.matches("exit 2\n").count(), runs.len(), "{text}");
    let mut left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left.join(" "),
        if cfg!(unix) {
            "a-directory h.csv q.dsl socket"
        } else {
            "a-directory h.csv q.dsl"
        }
    );
    #[cfg(unix)]
    insta::assert_snapshot!(text);
}

#[cfg(unix)]
#[test]
fn save_follows_a_link_and_cleans_up_after_a_killed_save() {
    let dir = scratch("link");
    std::fs::write(dir.join("q.dsl"), QUADRATIC).unwrap();
    std::fs::create_dir(dir.join("store")).unwrap();
    std::os::unix::fs::symlink("store/real.safetensors", dir.join("link.safetensors")).unwrap();
    // What a save killed by SIGKILL leaves: a partial file named for a process that is gone.
    let stale = dir.join("store/.real.safetensors.tmp-4294967295-abcdefgh");
    std::fs::write(&stale, vec![0u8; 1 << 16]).unwrap();
    let (code, stdout, stderr) =
        adjoint_in(&dir, &["train", "q.dsl", "--save", "link.safetensors"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("checkpoint: "), "{stdout}");
    let link = std::fs::symlink_metadata(dir.join("link.safetensors")).unwrap();
    assert!(link.file_type().is_symlink());
    let c = CompiledModel::from_model(model_of_source("q.dsl", QUADRATIC)).unwrap();
    let mut t = Trainer::new(&c, 0);
    adjoint::resume::resume(&mut t, &dir.join("store/real.safetensors")).unwrap();
    assert_eq!(t.step, 50);
    assert!(!stale.exists());
}

#[test]
fn identical_runs_write_identical_checkpoints() {
    let dir = scratch("identical");
    std::fs::write(dir.join("q.dsl"), QUADRATIC).unwrap();
    for name in ["a.safetensors", "b.safetensors"] {
        let (code, _, stderr) = adjoint_in(&dir, &["train", "q.dsl", "--save", name]);
        assert_eq!(code, 0, "{stderr}");
    }
    let a = std::fs::read(dir.join("a.safetensors")).unwrap();
    assert!(a == std::fs::read(dir.join("b.safetensors")).unwrap());
}

/// Ctrl-C stops a full-batch run within about a native call (40 ms of steps) even when the
/// next log point is a billion steps away, saves, and exits with 130; the checkpoint resumes.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_full_batch_training_promptly_whatever_the_log_interval() {
    use std::io::BufRead;
    let dir = scratch("ctrl-c");
    let src = "param w[2000] ~ normal(0, 1)\nloss sum((w - 1)^2)\noptimizer adam(lr = 0.001)\ntrain steps = 1000000000, log_every = 1000000000\n";
    std::fs::write(dir.join("big.dsl"), src).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_adjoint"))
        .args(["train", "big.dsl", "--save", "big.safetensors"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("compiled") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "no `compiled` line"
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let signalled = std::time::Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > std::time::Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("still training 20 s after Ctrl-C");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let took = signalled.elapsed();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("checkpoint: big.safetensors"), "{rest}");
    // 40 ms of steps, the save and the exit; generous for a loaded machine.
    assert!(
        took < std::time::Duration::from_secs(3),
        "exited {took:?} after Ctrl-C"
    );
    let c = CompiledModel::from_model(model_of_source("big.dsl", src)).unwrap();
    let mut t = Trainer::new(&c, 0);
    adjoint::resume::resume(&mut t, &dir.join("big.safetensors")).unwrap();
    assert!(
        t.step > 0 && t.run_end == 1_000_000_000,
        "{} {}",
        t.step,
        t.run_end
    );
}

/// When the final save fails (here its directory was removed during training), the trained
/// state is saved beside the model file, the message says where, and the run fails.
#[cfg(unix)]
#[test]
fn a_failed_final_save_is_rescued_beside_the_model_file() {
    use std::io::BufRead;
    let dir = scratch("rescue");
    let src = "param w[100] ~ normal(0, 1)\nloss sum((w - 1)^2)\noptimizer sgd(lr = 0.001)\ntrain steps = 1000000000\n";
    std::fs::write(dir.join("m.dsl"), src).unwrap();
    std::fs::create_dir(dir.join("out")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_adjoint"))
        .args(["train", "m.dsl", "--save", "out/m.safetensors"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("compiled") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "no `compiled` line"
        );
    }
    std::fs::remove_dir(dir.join("out")).unwrap();
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let name = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("m.rescued-"))
        .unwrap_or_else(|| panic!("nothing rescued: {stderr}"));
    assert!(
        stderr.contains(&format!("was saved to {name} instead")),
        "{stderr}"
    );
    let c = CompiledModel::from_model(model_of_source("m.dsl", src)).unwrap();
    adjoint::resume::resume(&mut Trainer::new(&c, 0), &dir.join(&name)).unwrap();
}

/// A safetensors file with only parameters, as numpy or PyTorch write one.
fn params_only_file(path: &std::path::Path, tensors: &[(&str, &str, &[usize], Vec<u8>)]) {
    let mut header = String::from("{");
    let mut data: Vec<u8> = Vec::new();
    for (i, (name, dtype, shape, bytes)) in tensors.iter().enumerate() {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        header += &format!(
            "{}\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            if i > 0 { "," } else { "" },
            dims.join(","),
            data.len(),
            data.len() + bytes.len()
        );
        data.extend(bytes);
    }
    header.push('}');
    let mut header = header.into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    std::fs::write(path, out).unwrap();
}

#[test]
fn resume_says_what_differs_and_init_from_starts_from_parameters() {
    let dir = scratch("init-from");
    std::fs::write(dir.join("q.dsl"), QUADRATIC).unwrap();
    let (code, _, stderr) = adjoint_in(&dir, &["train", "q.dsl", "--save", "q.safetensors"]);
    assert_eq!(code, 0, "{stderr}");
    let w: Vec<u8> = [0.5f64, -1.5, 2.5]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    params_only_file(
        &dir.join("numpy.safetensors"),
        &[
            ("w", "F64", &[3], w),
            ("b", "F32", &[], 4.0f32.to_le_bytes().to_vec()),
        ],
    );
    params_only_file(
        &dir.join("wrong.safetensors"),
        &[("v", "F32", &[], 1.0f32.to_le_bytes().to_vec())],
    );
    let runs: &[&[&str]] = &[
        &["train", "q.dsl", "--resume", "q.safetensors", "--lr", "0.1"],
        &[
            "train",
            "q.dsl",
            "--resume",
            "q.safetensors",
            "--optimizer",
            "sgd",
        ],
        &["train", "q.dsl", "--resume", "numpy.safetensors"],
        &["train", "q.dsl", "--init-from", "wrong.safetensors"],
    ];
    let text = transcript(&dir, runs);
    assert_eq!(text.matches("exit 2\n").count(), runs.len(), "{text}");
    insta::assert_snapshot!(text);

    // Parameters only, from another optimizer's checkpoint or from numpy's file; f32 to f64.
    let (code, stdout, stderr) = adjoint_in(
        &dir,
        &[
            "train",
            "q.dsl",
            "--init-from",
            "numpy.safetensors",
            "--steps",
            "0",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("w = [0.5, -1.5, 2.5]") && stdout.contains("\nb = 4\n"),
        "{stdout}"
    );
    let (code, stdout, stderr) = adjoint_in(
        &dir,
        &[
            "train",
            "q.dsl",
            "--init-from",
            "q.safetensors",
            "--optimizer",
            "sgd",
            "--steps",
            "5",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("trained 5 steps"), "{stdout}");

    // A parameter initialized from the data (`~ log_prior(species)`) keeps the file's values.
    let f32s = |n: usize, v: f32| -> Vec<u8> { (0..n).flat_map(|_| v.to_le_bytes()).collect() };
    let b2: Vec<u8> = [1.0f32, 2.0, 3.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let file = dir.join("symmetry.safetensors");
    params_only_file(
        &file,
        &[
            ("W1", "F32", &[4, 8], f32s(32, 0.5)),
            ("b1", "F32", &[8], f32s(8, 0.0)),
            ("W2", "F32", &[8, 3], f32s(24, 0.25)),
            ("b2", "F32", &[3], b2),
        ],
    );
    let (code, stdout, stderr) = adjoint_in(
        &repo(),
        &[
            "train",
            "examples/symmetry.dsl",
            "--init-from",
            file.to_str().unwrap(),
            "--steps",
            "0",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("b2 = [1, 2, 3]"), "{stdout}");
}

#[test]
fn resume_finishes_an_interrupted_run_and_reports_the_speed_of_its_own_steps() {
    let dir = scratch("finish");
    std::fs::write(
        dir.join("q.dsl"),
        QUADRATIC.replace("steps = 50", "steps = 400"),
    )
    .unwrap();
    let c = CompiledModel::from_model(model_of_source(
        "q.dsl",
        &QUADRATIC.replace("steps = 50", "steps = 400"),
    ))
    .unwrap();
    // A run of 400 steps stopped at 150, as Ctrl-C stops it.
    static STOP: AtomicBool = AtomicBool::new(false);
    let mut t = Trainer::new(&c, 0);
    t.interrupt = Some(&STOP);
    let mut settings = c.model.train.clone();
    settings.log_every = 1;
    assert!(
        !t.fit(None, &settings, |p| STOP
            .store(p.step == 150, Ordering::Relaxed))
            .unwrap()
    );
    adjoint::resume::save(&t, &dir.join("stopped.safetensors")).unwrap();
    let (code, stdout, stderr) = adjoint_in(
        &dir,
        &[
            "train",
            "q.dsl",
            "--resume",
            "stopped.safetensors",
            "--save",
            "done.safetensors",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("at step 150 of 400"), "{stdout}");
    assert!(stdout.contains("trained 250 steps in"), "{stdout}");
    assert!(stdout.contains("(step 400)"), "{stdout}");
}

/// Values that the checksum covers but that are out of range (a file written consistently by
/// a buggy or hostile writer) are refused, each naming its entry.
#[test]
fn out_of_range_metadata_is_refused_naming_the_entry() {
    let (compiled, data) = example_with("digits.dsl", |t| t.replace("epochs = 50", "steps = 40"));
    let mut t = Trainer::new(&compiled, 0);
    t.fit(data.as_ref(), &compiled.model.train, |_| {}).unwrap();
    let good = adjoint::resume::to_checkpoint(&t);
    let rows = t.cursor.order.len();
    let order: Vec<String> = t.cursor.order.iter().map(|r| r.to_string()).collect();
    let mut dup = t.cursor.order.clone();
    dup[1] = dup[0];
    let dup: Vec<String> = dup.iter().map(|r| r.to_string()).collect();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "adjoint.step",
            u64::MAX.to_string(),
            "past the end of its run at step 40",
        ),
        ("adjoint.step", "-1".into(), "not a whole number"),
        ("adjoint.run", "40".into(), "not `<end> <horizon>`"),
        (
            "adjoint.cursor",
            format!("{} 1 {}", rows + 1, order.join(",")),
            "past the end",
        ),
        (
            "adjoint.cursor",
            format!("0 1 {}", dup.join(",")),
            "twice in its order",
        ),
        (
            "adjoint.cursor",
            format!("0 1 {},{rows}", order[..rows - 1].join(",")),
            "but the order has",
        ),
        (
            "adjoint.cursor",
            format!("0 41 {}", order.join(",")),
            "more than the 40 steps",
        ),
        (
            "adjoint.beta_powers",
            format!("{:016x} {:016x}", 0.5f64.to_bits(), 0.5f64.to_bits()),
            "after 40 steps gives",
        ),
        ("adjoint.beta_powers", "3ff0000000000000".into(), "not two"),
        (
            "adjoint.rng",
            "chacha8 00 0 0".into(),
            "not 64 hexadecimal digits",
        ),
        ("adjoint.rng", "pcg 1 2".into(), "not `chacha8"),
    ];
    let file = tmp("range.safetensors");
    for (key, value, expected) in cases {
        let mut ckpt = good.clone();
        ckpt.metadata.insert(key.into(), value.clone());
        adjoint::checkpoint::save(&file, &ckpt).unwrap();
        let err = adjoint::resume::resume(&mut Trainer::new(&compiled, 0), &file)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("`{key}`")) && err.contains(expected),
            "{key} = {value:.60}: {err}"
        );
    }
}

/// One changed byte in any metadata entry of a saved checkpoint is refused with exit 2, naming
/// the entry, before anything is trained.
#[test]
fn an_edited_checkpoint_is_refused_naming_what_changed() {
    let dir = scratch("edited");
    std::fs::write(dir.join("q.dsl"), QUADRATIC).unwrap();
    let (code, _, stderr) = adjoint_in(&dir, &["train", "q.dsl", "--save", "q.safetensors"]);
    assert_eq!(code, 0, "{stderr}");
    let good = std::fs::read(dir.join("q.safetensors")).unwrap();
    for (from, to, key) in [
        (
            "\"adjoint.step\":\"50\"",
            "\"adjoint.step\":\"90\"",
            "adjoint.step",
        ),
        (
            "\"adjoint.run\":\"50 50\"",
            "\"adjoint.run\":\"50 90\"",
            "adjoint.run",
        ),
    ] {
        let at = good
            .windows(from.len())
            .position(|w| w == from.as_bytes())
            .unwrap_or_else(|| panic!("{from} not in the header"));
        let mut bytes = good.clone();
        bytes[at..at + to.len()].copy_from_slice(to.as_bytes());
        std::fs::write(dir.join("edited.safetensors"), bytes).unwrap();
        let (code, stdout, stderr) =
            adjoint_in(&dir, &["train", "q.dsl", "--resume", "edited.safetensors"]);
        assert_eq!(code, 2, "{stderr}");
        assert!(!stdout.contains("trained"), "{stdout}");
        assert!(
            stderr.contains(&format!("metadata entry `{key}` was changed")),
            "{stderr}"
        );
    }
}

/// The checkpoint fuzz target's corpus (seeds and every input the fuzzer kept) and its
/// regressions, replayed through the target's entry point; the seeds, real checkpoints, must
/// still be accepted, and so must checkpoints made now.
#[test]
fn checkpoint_fuzz_corpus_replays_without_a_panic() {
    for seed in adjoint::fuzz::checkpoint_seeds() {
        assert!(adjoint::fuzz::resume_checkpoint(&seed));
        // Resealing, which lets the fuzzer past the checksums, keeps a valid file valid.
        let resealed = adjoint::fuzz::resealed(&seed).expect("a seed reseals");
        assert!(resealed == seed, "resealing changed a checkpoint");
    }
    let mut replayed = 0;
    for dir in ["fuzz/corpus/checkpoint", "fuzz/regressions/checkpoint"] {
        let Ok(entries) = std::fs::read_dir(repo().join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let accepted = adjoint::fuzz::resume_checkpoint(&bytes);
            let is_seed = path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-");
            assert!(accepted || !is_seed, "{} was refused", path.display());
            replayed += 1;
        }
    }
    assert!(replayed >= 5, "only {replayed} corpus files");
}

/// Writes the checkpoint fuzz target's seeds (run with ADJOINT_WRITE_FUZZ_SEEDS=1 after the
/// checkpoint format changes).
#[test]
fn write_checkpoint_fuzz_seeds() {
    if std::env::var_os("ADJOINT_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    let dir = repo().join("fuzz/corpus/checkpoint");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, seed) in adjoint::fuzz::checkpoint_seeds().iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
    }
}
