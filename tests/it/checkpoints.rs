//! Checkpoints: exact resumption, refusal of a mismatched model, damaged files, Ctrl-C.

use crate::support::*;
use adjoint::compile::CompiledModel;
use adjoint::data::{Table, bind};
use adjoint::train::Trainer;

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("adjoint-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Training 2N steps equals training N, saving, loading into a fresh trainer and training N.
fn check_resume(example: &str, n: u64) {
    let path = repo().join("examples").join(example);
    let model = model_of(&path);
    let data = model.data.as_ref().map(|d| {
        bind(
            &model,
            &Table::load(&path.parent().unwrap().join(d)).unwrap(),
        )
        .unwrap()
    });
    let compiled = CompiledModel::from_model(model).unwrap();
    let mut settings = compiled.model.train.clone();
    settings.epochs = None;
    settings.steps = Some(2 * n);
    let mut straight = Trainer::new(&compiled, 5);
    straight.fit(data.as_ref(), &settings, |_| {}).unwrap();

    settings.steps = Some(n);
    let mut first = Trainer::new(&compiled, 5);
    first.fit(data.as_ref(), &settings, |_| {}).unwrap();
    let file = tmp(&format!("{example}.safetensors"));
    adjoint::resume::save(&first, &file).unwrap();
    let mut second = Trainer::new(&compiled, 99);
    adjoint::resume::resume(&mut second, &file).unwrap();
    second.total_steps = first.total_steps;
    second.fit(data.as_ref(), &settings, |_| {}).unwrap();
    assert_eq!(
        straight.params, second.params,
        "{example}: parameters after resuming"
    );
    assert_eq!(
        straight.state, second.state,
        "{example}: optimizer state after resuming"
    );
    assert_eq!(straight.step, second.step);
}

#[test]
fn resuming_continues_bit_for_bit() {
    check_resume("rosenbrock.dsl", 500);
    check_resume("linreg.dsl", 40);
    // Minibatches: the data order and the position in the epoch carry over too.
    check_resume("digits.dsl", 70);
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
