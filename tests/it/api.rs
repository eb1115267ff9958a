//! The embedding API: typed errors, thread safety, the native-code cache.

use adjoint::{Error, compile};

const LINE: &str = "dtype f64\ninput x[n]\ninput y[n]\nparam w = 0\nparam b = 0\nloss mean((w * x + b - y)^2)\noptimizer sgd(lr = 0.1)\n";

#[test]
fn a_session_trains_and_reports() {
    let model = compile(LINE).unwrap();
    assert_eq!(
        model
            .params()
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["w", "b"]
    );
    assert_eq!(model.inputs()[0].shape, vec![None]);
    let mut s = model.session(0).unwrap();
    s.set_input("x", &[0.0, 1.0, 2.0, 3.0], &[4]).unwrap();
    s.set_input("y", &[1.0, 3.0, 5.0, 7.0], &[4]).unwrap();
    let (loss, grads) = s.value_and_grad().unwrap();
    assert_eq!(loss, 21.0);
    assert_eq!(
        grads[0].data,
        vec![-2.0 * (0.0 * 1.0 + 1.0 * 3.0 + 2.0 * 5.0 + 3.0 * 7.0) / 4.0]
    );
    s.steps(600).unwrap();
    assert!((s.param("w").unwrap().item() - 2.0).abs() < 1e-9);
    assert_eq!(s.step_count(), 600);
    assert!(model.gradient_text().contains("dloss/dw"));
}

#[test]
fn bad_input_is_a_typed_error_never_a_panic() {
    match compile("param x = 1\nloss y^2\n") {
        Err(Error::Compile {
            diagnostics,
            rendered,
        }) => {
            assert_eq!(diagnostics.len(), 1);
            assert!(rendered.contains("unknown name `y`"), "{rendered}");
        }
        other => panic!("{:?}", other.err()),
    }
    let model = compile(LINE).unwrap();
    let mut s = model.session(0).unwrap();
    assert!(matches!(s.step(), Err(Error::MissingInput(n)) if n == "x"));
    assert!(matches!(
        s.set_input("z", &[1.0], &[1]),
        Err(Error::UnknownName { .. })
    ));
    assert!(matches!(
        s.set_input("x", &[1.0, 2.0], &[2, 1]),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        s.set_input("x", &[1.0, 2.0], &[3]),
        Err(Error::Length { .. })
    ));
    s.set_input("x", &[1.0, 2.0], &[2]).unwrap();
    assert!(matches!(
        s.set_input("y", &[1.0, 2.0, 3.0], &[3]),
        Err(Error::Rows { .. })
    ));
    assert!(matches!(s.param("q"), Err(Error::UnknownName { .. })));
    assert!(matches!(
        s.set_param("w", &adjoint::Tensor::new(vec![2], vec![1.0, 2.0])),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        adjoint::compile_file("no/such/file.dsl"),
        Err(Error::Io { .. })
    ));
}

#[test]
fn one_compiled_model_serves_many_threads() {
    let model = compile(LINE).unwrap();
    let run = |seed: u64| {
        let mut s = model.session(seed).unwrap();
        let x: Vec<f64> = (0..64).map(|i| i as f64 / 64.0).collect();
        let y: Vec<f64> = x.iter().map(|v| 3.0 * v - 1.0 + seed as f64).collect();
        s.set_input("x", &x, &[64]).unwrap();
        s.set_input("y", &y, &[64]).unwrap();
        s.steps(2000).unwrap();
        (s.param("w").unwrap().item(), s.param("b").unwrap().item())
    };
    let alone: Vec<_> = (0..4).map(run).collect();
    let threaded: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4).map(|seed| scope.spawn(move || run(seed))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(alone, threaded);
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<adjoint::CompiledModel>();
    fn assert_send<T: Send>() {}
    assert_send::<adjoint::Session>();
}

#[test]
fn compiling_the_same_model_twice_reuses_the_native_code() {
    let src =
        "dtype f64\nparam q[3] ~ normal(0, 1)\nloss sum(q^4) + 7\noptimizer adam(lr = 0.125)\n";
    let a = compile(src).unwrap();
    let b = compile(src).unwrap();
    assert!(!a.cached && b.cached);
    assert_eq!(a.gradient.plan.slots, b.gradient.plan.slots);
    // Another optimizer is other code.
    let c = compile(&src.replace("0.125", "0.25")).unwrap();
    assert!(!c.cached);
}

#[test]
fn sessions_save_and_load_checkpoints() {
    let model = compile(LINE).unwrap();
    let path = std::env::temp_dir().join(format!("adjoint-api-{}.safetensors", std::process::id()));
    let mut a = model.session(0).unwrap();
    a.set_input("x", &[0.0, 1.0, 2.0], &[3]).unwrap();
    a.set_input("y", &[1.0, 3.0, 5.0], &[3]).unwrap();
    a.steps(10).unwrap();
    a.save(&path).unwrap();
    let mut b = model.session(7).unwrap();
    b.load(&path).unwrap();
    assert_eq!(b.step_count(), 10);
    assert_eq!(a.param("w").unwrap(), b.param("w").unwrap());
    let other = compile("param q[2] ~ zeros\nloss sum(q^2)\n").unwrap();
    assert!(matches!(
        other.session(0).unwrap().load(&path),
        Err(Error::Checkpoint(_))
    ));
}

/// A CSV file's header and its rows of numbers.
fn read_csv(text: &str) -> (Vec<String>, Vec<Vec<f64>>) {
    let mut lines = text.lines().filter(|l| !l.is_empty());
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .map(|l| l.split(',').map(|v| v.trim().parse().unwrap()).collect())
        .collect();
    (header, rows)
}

fn write_csv(path: &std::path::Path, header: &[String], rows: &[Vec<f64>]) {
    let mut text = header.join(",") + "\n";
    for r in rows {
        text += &(r
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",")
            + "\n");
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn predict_and_evaluate_on_new_rows_agree_with_the_cli() {
    let repo = crate::support::repo();
    let model = adjoint::compile_file(repo.join("examples/iris.dsl")).unwrap();
    let (header, rows) =
        read_csv(&std::fs::read_to_string(repo.join("examples/data/iris.csv")).unwrap());
    let features = |rows: &[Vec<f64>]| {
        rows.iter()
            .flat_map(|r| r[..4].to_vec())
            .collect::<Vec<_>>()
    };
    let labels = |rows: &[Vec<f64>]| rows.iter().map(|r| r[4]).collect::<Vec<_>>();
    let (train_idx, held_idx) = adjoint::validation_rows(rows.len(), 0.2, 5);
    assert_eq!(held_idx.len(), 30);
    let pick = |idx: &[usize]| idx.iter().map(|&i| rows[i].clone()).collect::<Vec<_>>();
    let (train, held) = (pick(&train_idx), pick(&held_idx));

    let mut s = model.session(0).unwrap();
    let (x, y) = (features(&train), labels(&train));
    s.set_inputs(&[
        ("X", &x, &[train.len(), 4]),
        ("species", &y, &[train.len()]),
    ])
    .unwrap();
    s.steps(100).unwrap();
    let on_training = s.evaluate().unwrap();

    let dir = std::env::temp_dir().join(format!("adjoint-api-predict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("iris.safetensors");
    s.save(&ckpt).unwrap();

    // New rows without labels: what `adjoint predict` writes.
    let new_csv = dir.join("new.csv");
    let unlabelled: Vec<Vec<f64>> = held.iter().map(|r| r[..4].to_vec()).collect();
    write_csv(&new_csv, &header[..4], &unlabelled);
    let x_held = features(&held);
    let predicted = s.predict_on(&[("X", &x_held, &[held.len(), 4])]).unwrap();
    let model_file = repo.join("examples/iris.dsl");
    let printed = crate::support::adjoint_succeeds(&[
        "predict".as_ref(),
        model_file.as_os_str(),
        "--checkpoint".as_ref(),
        ckpt.as_os_str(),
        "--data".as_ref(),
        new_csv.as_os_str(),
    ]);
    let (cli_header, cli_rows) = read_csv(&printed);
    assert_eq!(
        cli_header,
        ["probability0", "probability1", "probability2", "predicted"]
    );
    assert_eq!(predicted[0].0, "probability");
    assert_eq!(predicted[0].1.shape, [30, 3]);
    assert_eq!(predicted[1].0, "predicted");
    for (r, cli_row) in cli_rows.iter().enumerate() {
        let api_row: Vec<f32> = predicted[0].1.data[3 * r..3 * r + 3]
            .iter()
            .chain([&predicted[1].1.data[r]])
            .map(|v| *v as f32)
            .collect();
        let cli_row: Vec<f32> = cli_row.iter().map(|v| *v as f32).collect();
        assert_eq!(api_row, cli_row, "row {r}");
    }

    // The held-out rows, with labels: what `adjoint eval` prints for them.
    let held_csv = dir.join("held.csv");
    write_csv(&held_csv, &header, &held);
    let y_held = labels(&held);
    let scores = s
        .evaluate_on(&[("X", &x_held, &[30, 4]), ("species", &y_held, &[30])])
        .unwrap();
    let printed = crate::support::adjoint_succeeds(&[
        "eval".as_ref(),
        model_file.as_os_str(),
        "--checkpoint".as_ref(),
        ckpt.as_os_str(),
        "--data".as_ref(),
        held_csv.as_os_str(),
    ]);
    for (name, value) in &scores {
        let line = printed
            .lines()
            .find(|l| l.starts_with(&format!("{name} = ")))
            .unwrap_or_else(|| panic!("no `{name}` in\n{printed}"));
        let cli_value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(*value as f32, cli_value as f32, "{name}");
    }
    // The session's own rows stay bound.
    assert_eq!(s.evaluate().unwrap(), on_training);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn predict_refuses_a_model_without_outputs_and_unbound_inputs_it_reads() {
    let mut s = compile(LINE).unwrap().session(0).unwrap();
    assert!(matches!(s.predict(), Err(Error::NoOutputs)));
    let model = compile(&format!("{LINE}output fit = w * x + b\n")).unwrap();
    let mut s = model.session(0).unwrap();
    assert!(matches!(s.predict(), Err(Error::MissingInput(n)) if n == "x"));
    s.set_param("w", &adjoint::Tensor::scalar(2.0)).unwrap();
    // `y` is not read by the output, so it need not be bound.
    let out = s.predict_on(&[("x", &[1.0, 2.0], &[2])]).unwrap();
    assert_eq!(out[0].1.data, [2.0, 4.0]);
    // A refused binding leaves the session's inputs as they were.
    s.set_input("x", &[5.0], &[1]).unwrap();
    assert!(
        s.set_inputs(&[("x", &[1.0, 2.0], &[2]), ("z", &[1.0], &[1])])
            .is_err()
    );
    assert_eq!(s.predict().unwrap()[0].1.data, [10.0]);
}

#[test]
fn declared_shapes_print_as_the_model_writes_them() {
    let model = compile("input X[n, d]\ninput y[n]\nparam W[4, 3] ~ zeros\nparam b = 0\nloss sum(W) + b + mean(y) + sum(X)\n").unwrap();
    let text = |vars: Vec<adjoint::Var>| vars.iter().map(|v| v.to_string()).collect::<Vec<_>>();
    assert_eq!(text(model.inputs()), ["X[n, d]", "y[n]"]);
    assert_eq!(text(model.params()), ["W[4, 3]", "b"]);
}

/// Every type the API hands out, down to the fields of its errors, can be named from the
/// crate's root (none lives only in a hidden module). This test fails to compile otherwise.
/// A session that would not fit in memory is refused with a typed error, not an abort: its
/// parameters when it is made (200 GB here), its workspace when rows are bound (a one-hot row
/// of a million values for each of a million rows), and the binding stays as it was.
#[test]
fn a_session_too_large_for_memory_is_refused() {
    let mut huge = String::new();
    for i in 0..20 {
        huge += &format!("param W{i}[50000, 50000] ~ zeros\n");
    }
    huge += "loss sum(W0)\n";
    let model = compile(&huge).unwrap();
    match model.session(0) {
        Err(Error::Memory(e)) => {
            assert_eq!(e.what, "the session");
            assert!(e.need.params >= 200_000_000_000, "{e}");
            assert!(e.to_string().starts_with("the session would take "), "{e}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }

    let wide =
        compile("input y[n]: int\nparam w = 0\nloss mean(sum(one_hot(y, 1000000), axis=1) * w)\n")
            .unwrap();
    let mut s = wide.session(0).unwrap();
    s.set_input("y", &[1.0], &[1]).unwrap();
    let rows = vec![0.0; 1_000_000];
    assert!(matches!(
        s.set_input("y", &rows, &[1_000_000]),
        Err(Error::Memory(_))
    ));
    // The one row bound before is still bound.
    assert!(s.evaluate().is_ok());
}

#[test]
fn every_type_in_the_api_is_named_at_the_root() {
    fn source(e: &Error) -> Option<&dyn std::error::Error> {
        match e {
            Error::Run(r) => Some(r as &adjoint::RunError),
            Error::Data(d) => Some(d as &adjoint::DataError),
            Error::Train(t) => Some(t as &adjoint::TrainError),
            Error::Checkpoint(c) => Some(c as &adjoint::CheckpointError),
            Error::Memory(m) => Some(m as &adjoint::MemoryError),
            Error::Compile { .. }
            | Error::Codegen(_)
            | Error::Io { .. }
            | Error::UnknownName { .. }
            | Error::Shape { .. }
            | Error::Length { .. }
            | Error::Value { .. }
            | Error::Rows { .. }
            | Error::MissingInput(_)
            | Error::NoOutputs => None,
        }
    }
    fn _nested(_: adjoint::CodegenError, _: adjoint::NonFiniteOrigin, _: adjoint::MismatchKind) {}
    assert!(source(&Error::NoOutputs).is_none());
    let model = compile(LINE).unwrap();
    let _: Vec<adjoint::Var> = model.params();
    let _: adjoint::Session = model.session(0).unwrap();
    let _: Option<adjoint::Footprint> = None;
}

/// `Tensor` is the API's value type: each of its public methods says what it does.
#[test]
fn tensor_methods_have_docs() {
    let source = std::fs::read_to_string(crate::support::repo().join("src/ir/interp.rs")).unwrap();
    let body = source
        .split("impl Tensor {")
        .nth(1)
        .and_then(|s| s.split("\n}\n").next())
        .unwrap();
    let lines: Vec<&str> = body.lines().map(str::trim).collect();
    let mut methods = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("pub fn ") {
            methods += 1;
            let doc = lines[..i].iter().rev().find(|l| !l.starts_with("#["));
            assert!(
                doc.is_some_and(|l| l.starts_with("///")),
                "`{line}` has no doc comment"
            );
        }
    }
    assert!(methods >= 6);
}

/// A three-component mixture written as in the math, `x[:, None] - mu`, against its value
/// computed by hand: −mean over rows of log Σ_k (1/3)·exp(−(x − μ_k)²/2), and its gradient
/// in μ against the responsibilities: ∂/∂μ_k = −mean over rows of r_ik·(x_i − μ_k).
#[test]
fn a_mixture_written_with_a_new_axis_has_its_hand_computed_value_and_gradient() {
    let src = "dtype f64\ninput x[n]\nparam mu[3] = 0\nparam logit[3] = 0\nlet d = x[:, None] - mu\nloss -mean(logsumexp(log_softmax(logit) - 0.5 * d^2, axis=1))\n";
    let model = compile(src).unwrap();
    let mut s = model.session(0).unwrap();
    let x = [-1.0, 0.5, 2.0, 3.5];
    let mu = [0.0, 1.0, 2.5];
    s.set_input("x", &x, &[4]).unwrap();
    s.set_param("mu", &adjoint::Tensor::new(vec![3], mu.to_vec()))
        .unwrap();
    let (loss, grads) = s.value_and_grad().unwrap();
    let mut expected = 0.0;
    let mut dmu = [0.0; 3];
    for &xi in &x {
        let w: Vec<f64> = mu
            .iter()
            .map(|m: &f64| (-(xi - m) * (xi - m) / 2.0).exp() / 3.0)
            .collect();
        let total: f64 = w.iter().sum();
        expected -= total.ln() / x.len() as f64;
        for k in 0..3 {
            dmu[k] -= w[k] / total * (xi - mu[k]) / x.len() as f64;
        }
    }
    assert!(
        (loss - expected).abs() <= 1e-12 * expected.abs(),
        "{loss} vs {expected}"
    );
    for k in 0..3 {
        let got = grads[0].data[k];
        assert!(
            (got - dmu[k]).abs() <= 1e-12,
            "d/dmu{k}: {got} vs {}",
            dmu[k]
        );
    }
}

/// `compile_with` checks the model against the limits it is given, not the host's: the same
/// source compiles under one budget and is a located error under a smaller one.
#[test]
fn compile_with_checks_against_the_given_budget() {
    use adjoint::{Limits, compile_with};
    let source = "dtype f32\nparam W[1000, 1000] ~ zeros\nloss sum(W^2)\n";
    let budget = |memory_budget| Limits { memory_budget };
    assert!(compile_with("w.dsl", source, &budget(4_000_000)).is_ok());
    match compile_with("w.dsl", source, &budget(3_999_999)) {
        Err(Error::Compile { rendered, .. }) => assert!(
            rendered.contains("parameter `W` would take 3.8 MiB") && rendered.contains("w.dsl:2:7"),
            "{rendered}"
        ),
        Err(other) => panic!("expected the size error, got {other}"),
        Ok(_) => panic!("a parameter above the budget compiled"),
    }
}
