//! Gathers by integer indices: scatter-add sums repeated indices, the embedding API refuses
//! indices off the axis, native code never reads outside a table whatever its indices hold,
//! and an embedding trained through a gather gets the gradient of the `one_hot(tok, V) @ E`
//! form it replaces.

use crate::support::*;
use adjoint::ir::{DType, Tensor};
use adjoint::{Error, compile};

/// `loss = Σ E[tok] * w`: its gradient in `E` adds the rows of `w` whose tokens repeat.
fn weighted_lookup(dtype: &str) -> String {
    format!(
        "dtype {dtype}\ninput tok[n]: int\ninput w[n, 2]\nparam E[3, 2] ~ zeros\nloss sum(E[tok] * w)\n"
    )
}

const TOK: [f64; 4] = [1.0, 1.0, 0.0, 1.0];
const W: [f64; 8] = [1.0, 2.0, 10.0, 20.0, 100.0, 200.0, 1000.0, 2000.0];
/// Row 0 gets place 2's weights; row 1 places 0, 1 and 3; row 2 none.
const BY_HAND: [f64; 6] = [100.0, 200.0, 1011.0, 2022.0, 0.0, 0.0];

#[test]
fn scatter_add_sums_repeated_indices_in_native_code_and_the_interpreter() {
    for dtype in ["f64", "f32"] {
        let model = compile(&weighted_lookup(dtype)).unwrap();
        let mut s = model.session(0).unwrap();
        s.set_input("tok", &TOK, &[4]).unwrap();
        s.set_input("w", &W, &[4, 2]).unwrap();
        let (_, grads) = s.value_and_grad().unwrap();
        assert_eq!(grads[0].data, BY_HAND, "{dtype}");
    }
    let model = model_of_source("lookup.dsl", &weighted_lookup("f64"));
    let point = Point {
        rows: 4,
        inputs: vec![
            Tensor::new(vec![4], TOK.to_vec()),
            Tensor::new(vec![4, 2], W.to_vec()),
        ],
        params: vec![Tensor::zeros(vec![3, 2])],
    };
    let grad = adjoint::autodiff::grad(&model.forward);
    assert_eq!(interp_outputs(&grad, &point)[1].data, BY_HAND);
}

#[test]
fn the_api_refuses_indices_off_the_axis_and_values_that_are_not_indices() {
    let model = compile(&weighted_lookup("f64")).unwrap();
    let mut s = model.session(0).unwrap();
    let err = s.set_input("tok", &[1.0, 3.0, 0.0, 1.0], &[4]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Value {
                row: 2,
                column: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "input `tok`, row 2, column 1: index 3 is out of range: `tok` indexes an axis of length 3"
    );
    let err = s.set_input("tok", &[1.0, 0.5, 0.0, 1.0], &[4]).unwrap_err();
    assert!(err.to_string().contains("row 2, column 1"), "{err}");
    let err = s
        .set_input("tok", &[-1.0, 0.0, 0.0, 1.0], &[4])
        .unwrap_err();
    assert!(err.to_string().contains("row 1, column 1"), "{err}");
    // Nothing was bound: the session still has no tokens.
    s.set_input("w", &W, &[4, 2]).unwrap();
    assert!(matches!(s.step(), Err(Error::MissingInput(name)) if name == "tok"));
}

/// Called with indices nobody checked (the runtime's own entry), a gather fills the places of
/// bad indices with NaN and its adjoint drops them: no read or write outside a table.
#[test]
fn native_gathers_never_leave_the_table_whatever_the_indices() {
    for dtype in [DType::F64, DType::F32] {
        let model = with_dtype(
            model_of_source("lookup.dsl", &weighted_lookup("f64")),
            dtype,
        );
        let compiled = adjoint::compile::CompiledModel::from_model(model).unwrap();
        let bad = [1.0, 1e9, -1.0, f64::NAN];
        let point = Point {
            rows: 4,
            inputs: vec![
                Tensor::new(vec![4], bad.to_vec()),
                Tensor::new(vec![4, 2], W.to_vec()),
            ],
            params: vec![Tensor::new(vec![3, 2], vec![0.5; 6])],
        };
        let out = jit_gradient_outputs(&compiled, &point);
        assert!(out[0][0].is_nan(), "{dtype:?}: the loss reads NaN rows");
        assert_eq!(out[1], [0.0, 0.0, 1.0, 2.0, 0.0, 0.0], "{dtype:?}");
    }
}

/// The embedding-bag classifier of `tests/data/gather/bag.dsl` with the lookup written as a
/// product with one-hot rows, which costs V times the work.
const ONE_HOT_BAG: &str = "dtype f64
input tok[n, 4]: int
input y[n]: int
param E[12, 8] ~ normal(0, 0.5)
param W[8, 3] ~ normal(0, 0.5)
loss cross_entropy(mean(one_hot(tok, 12), axis=1) @ E @ W, y)
optimizer adam(lr = 0.05)
";

/// The columns of `bag.csv`: tokens (4 per row) and labels.
fn bag_data() -> (Vec<f64>, Vec<f64>, usize) {
    let text = std::fs::read_to_string(repo().join("tests/data/gather/bag.csv")).unwrap();
    let (mut tok, mut y) = (Vec::new(), Vec::new());
    for line in text.lines().skip(1) {
        let v: Vec<f64> = line.split(',').map(|c| c.parse().unwrap()).collect();
        tok.extend_from_slice(&v[..4]);
        y.push(v[4]);
    }
    let rows = y.len();
    (tok, y, rows)
}

#[test]
fn an_embedding_bag_trains_with_the_gradient_of_its_one_hot_form() {
    let gathered = adjoint::compile_file(repo().join("tests/data/gather/bag.dsl")).unwrap();
    let one_hot = compile(ONE_HOT_BAG).unwrap();
    assert!(
        gathered
            .gradient_text()
            .contains("scatter_add axis=0 size=12")
    );
    let (tok, y, rows) = bag_data();
    let mut sessions: Vec<_> = [gathered, one_hot]
        .iter()
        .map(|m| m.session(3).unwrap())
        .collect();
    for s in &mut sessions {
        s.set_input("tok", &tok, &[rows, 4]).unwrap();
        s.set_input("y", &y, &[rows]).unwrap();
    }
    for step in 0..8 {
        let (l0, g0) = sessions[0].value_and_grad().unwrap();
        let (l1, g1) = sessions[1].value_and_grad().unwrap();
        assert!(rel_err(l0, l1, 1e-12) <= 1e-12, "step {step}: {l0} vs {l1}");
        for (a, b) in g0.iter().zip(&g1) {
            let err = max_rel_err(&a.data, &b.data, 1e-9);
            assert!(err <= 1e-10, "step {step}: gradients differ by {err:e}");
        }
        for s in &mut sessions {
            s.step().unwrap();
        }
    }
    let losses: Vec<f64> = sessions
        .iter_mut()
        .map(|s| s.value_and_grad().unwrap().0)
        .collect();
    assert!(losses[0] < 1.0, "eight steps lower the loss: {losses:?}");
}

/// A one-element table may live in a register for all the steps of a native call, as
/// one-element parameters do, only if the gather kernel (which reads memory) does not read it:
/// K steps in one call must be the K steps taken one call at a time.
#[test]
fn a_one_element_table_trains_the_same_in_one_native_call_as_step_by_step() {
    let src = "dtype f64\ninput tok[n]: int\nparam E[1, 1] ~ zeros\nloss mean((E[tok] - 2)^2)\noptimizer sgd(lr = 0.1)\n";
    let model = compile(src).unwrap();
    let mut fused = model.session(0).unwrap();
    let mut stepped = model.session(0).unwrap();
    for s in [&mut fused, &mut stepped] {
        s.set_input("tok", &[0.0, 0.0, 0.0], &[3]).unwrap();
    }
    fused.steps(20).unwrap();
    for _ in 0..20 {
        stepped.step().unwrap();
    }
    let (a, b) = (fused.param("E").unwrap(), stepped.param("E").unwrap());
    assert_eq!(a.data, b.data);
    // e ← e − 0.1·2(e − 2): 2 − 2·0.8²⁰.
    assert!(
        (a.item() - (2.0 - 2.0 * 0.8f64.powi(20))).abs() < 1e-12,
        "{a:?}"
    );
}

/// A wrong derivative rule for a gather or a scatter-add is caught by central differences and
/// blamed on its op (the indices, perturbed as parameters there, have no derivative).
#[test]
fn wrong_gather_and_scatter_add_rules_are_located() {
    let src = "dtype f64\ninput tok[n]: int\nparam E[4, 2] ~ normal(0, 1)\nparam Q[3, 4] ~ normal(0, 1)\nparam P[3, 2] ~ normal(0, 1)\nlet s = scatter_add(tanh(P), argmax(Q, axis=1), 4)\nloss sum(sin(E[tok]) * E[tok]) + sum(s * E)\n";
    let model = model_of_source("planted.dsl", src);
    let g = model.graph();
    let point = adjoint::inspect::Point {
        inputs: vec![Tensor::new(vec![5], vec![3.0, 1.0, 3.0, 0.0, 3.0])],
        params: random_point(g, 5, 1).params,
        states: vec![],
        syms: vec![5],
    };
    for (planted, op) in [(None, None), (Some("gather"), Some("gather"))]
        .into_iter()
        .chain([(Some("scatter_add"), Some("scatter_add"))])
    {
        adjoint::autodiff::plant_wrong_rule(planted);
        let mut rng = adjoint::init::rng(0);
        let blame = adjoint::inspect::blame(&model.forward, &point, &mut rng, 1e-6);
        adjoint::autodiff::plant_wrong_rule(None);
        assert_eq!(blame.map(|b| b.op), op, "planted {planted:?}");
    }
}
