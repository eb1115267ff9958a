//! Native code against the reference interpreter, in f64 and f32, on every example, every
//! fixture and generated programs.

use crate::support::*;
use adjoint::compile::CompiledModel;
use adjoint::ir::DType;
use adjoint::model::Model;

/// Compiles the model in `dtype` and compares loss and gradients with the interpreter running
/// the same simplified gradient graph in f64.
pub fn check_jit(name: &str, model: &Model, dtype: DType, rows: usize, seed: u64) {
    let tol = match dtype {
        DType::F64 => 1e-12,
        DType::F32 => 1e-5,
    };
    check_jit_within(name, model, dtype, rows, seed, tol);
}

fn check_jit_within(name: &str, model: &Model, dtype: DType, rows: usize, seed: u64, tol: f64) {
    let floor = match dtype {
        DType::F64 => 1e-6,
        DType::F32 => 1e-2,
    };
    let model = with_dtype(model.clone(), dtype);
    let compiled = CompiledModel::from_model(model).unwrap_or_else(|e| panic!("{name}: {e}"));
    let p = random_point(compiled.model.graph(), rows, seed).rounded_to(dtype);
    let expected = interp_outputs(&compiled.graphs.gradient, &p);
    let actual = jit_gradient_outputs(&compiled, &p);
    let mut compared = vec![("", &compiled.graphs.gradient, expected, actual)];
    // A model with dropout: its training step too, under one step's masks.
    if let Some(t) = &compiled.graphs.training {
        let key = adjoint::ir::dropout::step_key(seed ^ 0x5eed, 3);
        let expected = interp_outputs_keyed(&t.gradient, &p, key);
        let actual = jit_step_outputs(&compiled, &p, key);
        compared.push(("training step, ", &t.gradient, expected, actual));
    }
    for (what, f, expected, actual) in compared {
        for (k, (out_name, _)) in f.outputs.iter().enumerate() {
            let err = normwise_err(&actual[k], &expected[k].data, floor);
            assert!(
                err <= tol,
                "{name} ({what}{}): `{out_name}` differs from the interpreter by {err:e}\n  jit    {}\n  interp {}",
                dtype.name(),
                head(&actual[k]),
                head(&expected[k].data)
            );
        }
    }
}

fn all_models() -> Vec<(String, Model)> {
    let mut models: Vec<(String, Model)> = dsl_files("examples")
        .into_iter()
        .chain(dsl_files("tests/data/graph"))
        .map(|p| (p.display().to_string(), model_of(&p)))
        .collect();
    for seed in 0..40 {
        let src = crate::gradients::generated_program(seed);
        models.push((
            format!("generated program {seed}:\n{src}\n"),
            model_of_source("gen.dsl", &src),
        ));
    }
    for seed in 0..40 {
        let src = crate::gradients::generated_tensor_program(seed);
        models.push((
            format!("generated tensor program {seed}:\n{src}\n"),
            model_of_source("tensors.dsl", &src),
        ));
    }
    for seed in 0..40 {
        let src = crate::gradients::generated_gather_program(seed);
        models.push((
            format!("generated gather {seed}:\n{src}\n"),
            model_of_source("gather.dsl", &src),
        ));
    }
    for seed in 0..40 {
        let src = crate::gradients::generated_conv_program(seed);
        models.push((
            format!("generated convolution {seed}:\n{src}\n"),
            model_of_source("conv.dsl", &src),
        ));
    }
    for seed in 0..40 {
        let src = crate::gradients::generated_attention_program(seed);
        models.push((
            format!("generated attention program {seed}:\n{src}\n"),
            model_of_source("gen.dsl", &src),
        ));
    }
    models
}

#[test]
fn jit_matches_interpreter_in_f64() {
    for (name, model) in all_models() {
        for (rows, seed) in [(1, 0), (7, 1), (33, 2)] {
            check_jit(&name, &model, DType::F64, rows, seed);
        }
    }
}

#[test]
fn jit_matches_interpreter_in_f32() {
    for (name, model) in all_models() {
        if name.ends_with("charlm.dsl") {
            // Two transformer blocks at a random point amplify f32 rounding in the order of
            // their sums (measured: 4.7e-5 in `dnll/dwte`, 1.2e-4 in `dnll/dln1g0`); the f64
            // comparison above holds this model to 1e-12, so the native code computes the same
            // function.
            check_jit_within(&name, &model, DType::F32, 9, 3, 1e-3);
            continue;
        }
        check_jit(&name, &model, DType::F32, 9, 3);
    }
}

/// Loop groups run block by block between matrix–vector products (row blocks of 256): row
/// counts below one block, at a block boundary, and with a partial last block, with a
/// residual used twice and a sum over the rows.
#[test]
fn row_blocked_groups_match_interpreter_across_block_boundaries() {
    let src = "input A[n, 5]\ninput z[n]\nparam w[5] ~ normal(0, 1)\nparam b ~ zeros\nlet r = A @ w + b - z\nloss mean(r^2) + 0.1 * mean(abs(r))\n";
    let model = model_of_source("blocked.dsl", src);
    let plan = adjoint::lower::plan(&adjoint::compile::graphs(&model).gradient);
    assert!(
        plan.steps.iter().any(|s| matches!(
            s,
            adjoint::lower::Step::Group {
                blocked: Some(_),
                ..
            }
        )),
        "the gradient runs in row blocks: {:?}",
        plan.steps
    );
    for dtype in [DType::F64, DType::F32] {
        for (rows, seed) in [(3, 0), (256, 1), (257, 2), (1000, 3)] {
            check_jit("blocked.dsl", &model, dtype, rows, seed);
        }
    }
}

/// Loop groups with enough work are split into parts that run on several cores, each summing
/// into its own area of a frame: a rank-1 group with sums of scalar gradients, a row-blocked
/// group, and [n, k] groups with column sums, with row counts that make several parts and
/// uneven ones. A sum of 10⁵ f32 values in a four-lane accumulator per part carries up to
/// about n/4 roundings of 6·10⁻⁸, so f32 is held to 5·10⁻⁴ here.
#[test]
fn loop_groups_split_between_cores_match_interpreter() {
    adjoint::jit::parallel::set_threads(2);
    let cases = [
        (
            "mixture.dsl",
            "input x[n]\nparam m ~ zeros\nparam s ~ zeros\nloss mean(log1p(exp(-(x - m)^2 * exp(-s))) + s)\n",
            100_003,
        ),
        (
            "blocked.dsl",
            "input A[n, 5]\ninput z[n]\nparam w[5] ~ normal(0, 1)\nparam b ~ zeros\nlet r = A @ w + b - z\nloss mean(r^2) + 0.1 * mean(abs(r))\n",
            70_001,
        ),
        (
            "column_sum.dsl",
            "input X[n, 4]\ninput y[n]: int\nparam W[4, 6] ~ normal(0, 1)\nparam b[6] ~ normal(0, 1)\nparam V[6, 3] ~ normal(0, 1)\nparam c[3] ~ normal(0, 1)\nloss cross_entropy(tanh(X @ W + b) @ V + c, y)\n",
            20_001,
        ),
        (
            // Row sums: each part stores its own rows' totals.
            "row_sum.dsl",
            "input X[n, 4]\nparam W[4, 20] ~ normal(0, 1)\nparam g[20] ~ normal(1, 0.1)\nparam b[20] ~ normal(0, 1)\nloss mean(layer_norm(X @ W, g, b)^2)\n",
            20_001,
        ),
    ];
    for (name, src, rows) in cases {
        let model = model_of_source(name, src);
        for dtype in [DType::F64, DType::F32] {
            let before = adjoint::jit::parallel::split_loops();
            let tol = match dtype {
                DType::F64 => 1e-11,
                DType::F32 => 5e-4,
            };
            check_jit_within(name, &model, dtype, rows, 4, tol);
            assert!(
                adjoint::jit::parallel::split_loops() > before,
                "{name}: no loop was split"
            );
        }
    }
}

/// Gradients that a step computes on its own (a matrix product, a loop-group member) are
/// written straight into their output slots: no copy runs after them, and the values still
/// match the interpreter.
#[test]
fn outputs_are_written_in_place_without_copies() {
    let src = "input X[n, 4]\ninput y[n]: int\nparam W[4, 3] ~ normal(0, 1)\nparam b[3] ~ zeros\nparam s ~ zeros\nloss cross_entropy(tanh(X @ W + b) * exp(s), y)\n";
    let model = model_of_source("in_place.dsl", src);
    let plan = adjoint::lower::plan(&adjoint::compile::graphs(&model).gradient);
    let copied: Vec<u32> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            adjoint::lower::Step::Copy { slot, .. } => Some(*slot),
            _ => None,
        })
        .collect();
    // Output 0 is the loss; 1.. are the gradients of W, b and s. The single-element ones
    // (loss and ∂/∂s) may stay in registers in the fused loop, so they keep their copy.
    for k in [1, 2] {
        assert!(
            !copied.contains(&plan.outputs[k]),
            "gradient {k} is copied: {:?}",
            plan.steps
        );
    }
    for dtype in [DType::F64, DType::F32] {
        check_jit("in_place.dsl", &model, dtype, 7, 5);
    }
}

/// Bias gradients (sums over the batch axis of [n, k] values) are accumulated in the loop that
/// forms their operand, row by row, in both layers of an MLP: also the first one, whose loop
/// waits behind the second layer's steps. Values match the interpreter for row counts below, at
/// and past a vector's width.
#[test]
fn column_sums_join_the_loop_of_their_operand() {
    let src = "input X[n, 4]\ninput y[n]: int\nparam W[4, 6] ~ normal(0, 1)\nparam b[6] ~ normal(0, 1)\nparam V[6, 3] ~ normal(0, 1)\nparam c[3] ~ normal(0, 1)\nloss cross_entropy(tanh(X @ W + b) @ V + c, y)\n";
    let model = model_of_source("column_sum.dsl", src);
    let graphs = adjoint::compile::graphs(&model);
    let plan = adjoint::lower::plan(&graphs.gradient);
    let g = &graphs.gradient.graph;
    let is_column_sum = |id: adjoint::ir::NodeId| {
        matches!(g.node(id).op, adjoint::ir::Op::SumTo(_)) && g.shape(id).rank() == 1
    };
    let mut grouped = 0;
    for step in &plan.steps {
        match step {
            adjoint::lower::Step::Group { members, .. } if members.len() > 1 => {
                grouped += members.iter().filter(|m| is_column_sum(m.node)).count();
            }
            adjoint::lower::Step::Compute { node, .. } => {
                assert!(
                    !is_column_sum(*node),
                    "a bias gradient has its own loop: {:?}",
                    plan.steps
                );
            }
            _ => {}
        }
    }
    assert_eq!(grouped, 2, "{:?}", plan.steps);
    for dtype in [DType::F64, DType::F32] {
        for (rows, seed) in [(1, 0), (4, 1), (7, 2)] {
            check_jit("column_sum.dsl", &model, dtype, rows, seed);
        }
    }
}

#[test]
fn forward_function_computes_loss_and_metrics() {
    let model = model_of(&repo().join("tests/data/graph/softmax_regression.dsl"));
    let compiled = CompiledModel::from_model(model).unwrap();
    let p = random_point(compiled.model.graph(), 10, 4);
    let expected = interp_outputs(&compiled.graphs.forward, &p);
    let inputs: Vec<_> = p
        .inputs
        .iter()
        .map(|t| adjoint::runtime::Buffer::from_f64(DType::F64, &t.data))
        .collect();
    let params: Vec<_> = p
        .params
        .iter()
        .map(|t| adjoint::runtime::Buffer::from_f64(DType::F64, &t.data))
        .collect();
    let exe = &compiled.forward;
    let mut ws = adjoint::runtime::Workspace::new(&exe.plan, DType::F64, &[10]).unwrap();
    exe.run(&mut ws, &inputs, &params).unwrap();
    for k in 0..2 {
        assert!(rel_err(ws.output(&exe.plan, k).get(0), expected[k].item(), 1e-9) <= 1e-12);
    }
}

#[test]
fn wrong_buffer_sizes_are_refused_before_native_code_runs() {
    let model = model_of(&repo().join("tests/data/graph/mlp.dsl"));
    let compiled = CompiledModel::from_model(model).unwrap();
    let exe = &compiled.gradient;
    let mut ws = adjoint::runtime::Workspace::new(&exe.plan, DType::F64, &[4]).unwrap();
    let short = vec![adjoint::runtime::Buffer::zeros(DType::F64, 3); 2];
    let params: Vec<_> = compiled
        .model
        .graph()
        .params
        .iter()
        .map(|p| adjoint::runtime::Buffer::zeros(DType::F64, p.shape.fixed_elements().unwrap()))
        .collect();
    let err = exe.run(&mut ws, &short, &params).unwrap_err();
    assert!(
        matches!(
            &err,
            adjoint::runtime::RunError::Length {
                expected: 12,
                found: 3,
                ..
            }
        ),
        "{err:?}"
    );
    let f32_params: Vec<_> = params
        .iter()
        .map(|p| adjoint::runtime::Buffer::zeros(DType::F32, p.len()))
        .collect();
    let inputs = vec![
        adjoint::runtime::Buffer::zeros(DType::F64, 12),
        adjoint::runtime::Buffer::zeros(DType::F64, 4),
    ];
    let err = exe.run(&mut ws, &inputs, &f32_params).unwrap_err();
    assert!(
        matches!(
            &err,
            adjoint::runtime::RunError::DType {
                expected: "f64",
                found: "f32",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(exe.run(&mut ws, &inputs, &params).is_ok());
}

/// A matrix's log-sum-exp over rows runs a vector of rows at a time, one row per lane; the last
/// vector's spare lanes repeat the last row (7 rows: one spare lane in f32, one in f64). Rows
/// with infinite or NaN entries, among finite ones in the same vector, must give what the
/// interpreter gives row by row: the gradient of `c` is the vector of row values.
#[test]
fn row_logsumexp_by_lanes_keeps_each_rows_special_values() {
    let inf = f64::INFINITY;
    let rows = [
        [1.0, 2.0, 3.0],
        [-inf, 0.0, 1.0],
        [-inf, -inf, -inf],
        [inf, 0.0, 1.0],
        [f64::NAN, 0.0, 1.0],
        [5.0, -5.0, 0.5],
        [-80.0, -90.0, -85.0],
    ];
    for dtype in [DType::F64, DType::F32] {
        let src = "param X[7, 3] ~ zeros\nparam c[7] ~ zeros\nloss sum(logsumexp(X, axis=1) * c)\n";
        let model = with_dtype(model_of_source("lse.dsl", src), dtype);
        let compiled = CompiledModel::from_model(model).unwrap();
        let p = Point {
            rows: 0,
            inputs: vec![],
            params: vec![
                adjoint::ir::Tensor::new(vec![7, 3], rows.concat()),
                adjoint::ir::Tensor::new(vec![7], vec![1.0; 7]),
            ],
        };
        let expected = interp_outputs(&compiled.graphs.gradient, &p);
        let actual = jit_gradient_outputs(&compiled, &p);
        let k = compiled
            .graphs
            .gradient
            .outputs
            .iter()
            .position(|(name, _)| name.ends_with('c'))
            .expect("the gradient of c is an output");
        for (row, (a, e)) in actual[k].iter().zip(&expected[k].data).enumerate() {
            let same = (a.is_nan() && e.is_nan())
                || a == e
                || (a.is_finite() && (a - e).abs() <= 1e-5 * e.abs().max(1.0));
            assert!(
                same,
                "{} row {row}: native {a}, interpreter {e}",
                dtype.name()
            );
        }
    }
}

/// The same over the last axis of a rank-3 array (attention's `[n, T, T]` scores): each
/// matrix of the last two axes is done a vector of rows at a time, its last vector repeating
/// its own last row, never the next matrix's first.
#[test]
fn row_logsumexp_of_rank_3_by_lanes_keeps_each_rows_special_values() {
    let inf = f64::INFINITY;
    let rows = [
        [1.0, 2.0, 3.0],
        [-inf, 0.0, 1.0],
        [-inf, -inf, -inf],
        [inf, 0.0, 1.0],
        [f64::NAN, 0.0, 1.0],
        [5.0, -5.0, 0.5],
        [-80.0, -90.0, -85.0],
    ];
    let mut data = rows.concat();
    data.extend(rows.iter().rev().flatten());
    for dtype in [DType::F64, DType::F32] {
        let src = "param X[2, 7, 3] ~ zeros\nparam c[2, 7] ~ zeros\nloss sum(logsumexp(X, axis=-1) * c)\n";
        let model = with_dtype(model_of_source("lse3.dsl", src), dtype);
        let compiled = CompiledModel::from_model(model).unwrap();
        let p = Point {
            rows: 0,
            inputs: vec![],
            params: vec![
                adjoint::ir::Tensor::new(vec![2, 7, 3], data.clone()),
                adjoint::ir::Tensor::new(vec![2, 7], vec![1.0; 14]),
            ],
        };
        let expected = interp_outputs(&compiled.graphs.gradient, &p);
        let actual = jit_gradient_outputs(&compiled, &p);
        let k = compiled
            .graphs
            .gradient
            .outputs
            .iter()
            .position(|(name, _)| name.ends_with('c'))
            .expect("the gradient of c is an output");
        for (row, (a, e)) in actual[k].iter().zip(&expected[k].data).enumerate() {
            let same = (a.is_nan() && e.is_nan())
                || a == e
                || (a.is_finite() && (a - e).abs() <= 1e-5 * e.abs().max(1.0));
            assert!(
                same,
                "{} row {row}: native {a}, interpreter {e}",
                dtype.name()
            );
        }
    }
}

/// A function with more scalar steps than fit in registers is generated with its scalars in
/// stack slots, read back far from where they were computed: here also by the parts of a loop
/// split between cores, which receive them in their frame.
#[test]
fn functions_with_thousands_of_scalars_match_interpreter() {
    adjoint::jit::parallel::set_threads(2);
    let n = 700;
    let mut src = String::from("input x[n]\n");
    for i in 0..n {
        src += &format!("param a{i} ~ normal(0, 1)\n");
    }
    let squares: Vec<String> = (0..n).map(|i| format!("a{i} * a{i}")).collect();
    src += &format!("let s = {}\n", squares.join(" + "));
    src += "loss mean((x - s)^2 * a0) + a1 * s\n";
    let model = model_of_source("scalars.dsl", &src);
    for dtype in [DType::F64, DType::F32] {
        let before = adjoint::jit::parallel::split_loops();
        let tol = match dtype {
            DType::F64 => 1e-11,
            DType::F32 => 5e-4,
        };
        check_jit_within("scalars.dsl", &model, dtype, 100_003, 5, tol);
        assert!(
            adjoint::jit::parallel::split_loops() > before,
            "no loop was split"
        );
    }
}

/// The largest array literal (4,096 numbers) is copied from a buffer kept with the code: the
/// gradient of `sum(K * w)` is `K`, element for element, in both float types.
#[test]
fn the_largest_literal_reaches_native_code_exactly() {
    let values: Vec<f64> = (0..4096).map(|i| (i as f64 - 2048.0) / 8.0).collect();
    let rows: Vec<String> = values
        .chunks(64)
        .map(|r| {
            let items: Vec<String> = r.iter().map(|v| v.to_string()).collect();
            format!("[{}]", items.join(", "))
        })
        .collect();
    for dtype in [DType::F64, DType::F32] {
        let src = format!(
            "param w[64, 64] ~ zeros\nlet K = [{}]\nloss sum(K * w)\n",
            rows.join(", ")
        );
        let model = with_dtype(model_of_source("literal.dsl", &src), dtype);
        let compiled = CompiledModel::from_model(model).unwrap();
        let p = random_point(compiled.model.graph(), 1, 0).rounded_to(dtype);
        let actual = jit_gradient_outputs(&compiled, &p);
        assert_eq!(actual[1], values, "{}", dtype.name());
    }
}

/// A cube (GELU's `x^3`, and its loop) runs inline and vectorized, as a square does: the
/// generated code calls no `pow` helper. Before, every element called libm's `pow`.
#[test]
fn small_whole_powers_run_inline_without_a_call() {
    let clif = clif_of_one_step(
        "cube.dsl",
        "dtype f64\nparam x[1000] ~ normal(0, 1)\nloss sum(x^3)\n",
    );
    assert!(clif.contains("f64x2"), "{clif}");
    let calls: Vec<&str> = clif.lines().filter(|l| l.contains(" call ")).collect();
    assert!(calls.is_empty(), "{calls:?}");
}
