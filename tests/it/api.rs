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
    let mut s = model.session(0);
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
    let mut s = model.session(0);
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
        let mut s = model.session(seed);
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
    let mut a = model.session(0);
    a.set_input("x", &[0.0, 1.0, 2.0], &[3]).unwrap();
    a.set_input("y", &[1.0, 3.0, 5.0], &[3]).unwrap();
    a.steps(10).unwrap();
    a.save(&path).unwrap();
    let mut b = model.session(7);
    b.load(&path).unwrap();
    assert_eq!(b.step_count(), 10);
    assert_eq!(a.param("w").unwrap(), b.param("w").unwrap());
    let other = compile("param q[2] ~ zeros\nloss sum(q^2)\n").unwrap();
    assert!(matches!(
        other.session(0).load(&path),
        Err(Error::Checkpoint(_))
    ));
}
