//! Every derivative rule against central finite differences, on fixtures, examples and
//! generated programs, through the reference interpreter in f64.

use crate::support::*;
use adjoint::autodiff;
use adjoint::ir::DType;
use adjoint::model::Model;
use adjoint::simplify;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// Checks the symbolic gradient (raw and simplified) against finite differences at `seeds`.
pub fn check_gradients(name: &str, model: &Model, rows: usize, seeds: std::ops::Range<u64>) {
    let model = with_dtype(model.clone(), DType::F64);
    let raw = autodiff::grad(&model.forward);
    adjoint::ir::verify::verify(&raw.graph)
        .unwrap_or_else(|e| panic!("{name}: raw gradient graph: {e:?}"));
    let (simplified, _) = simplify::run(&raw);
    for seed in seeds {
        let p = random_point(model.graph(), rows, seed);
        let fd = finite_difference_grads(&model.forward, &p);
        let raw_out = interp_outputs(&raw, &p);
        let simp_out = interp_outputs(&simplified, &p);
        assert!(
            rel_err(raw_out[0].item(), simp_out[0].item(), 1e-12) <= 1e-12,
            "{name}: simplified loss differs from the original"
        );
        for (i, param) in model.graph().params.iter().enumerate() {
            let err = max_rel_err(&raw_out[i + 1].data, &fd[i], 1e-2);
            assert!(
                err <= 1e-6,
                "{name} seed {seed}: d/d{} differs from finite differences by {err:e}\n  symbolic {}\n  numeric  {}",
                param.name,
                head(&raw_out[i + 1].data),
                head(&fd[i])
            );
            let err = max_rel_err(&simp_out[i + 1].data, &raw_out[i + 1].data, 1e-9);
            assert!(
                err <= 1e-12,
                "{name} seed {seed}: simplification changed d/d{} by {err:e}",
                param.name
            );
        }
    }
}

#[test]
fn fixture_gradients_match_finite_differences() {
    for path in dsl_files("tests/data/graph") {
        check_gradients(&path.display().to_string(), &model_of(&path), 5, 0..3);
    }
}

#[test]
fn example_gradients_match_finite_differences() {
    for path in dsl_files("examples") {
        let model = model_of(&path);
        let n_params: usize = model
            .graph()
            .params
            .iter()
            .map(|p| p.shape.fixed_elements().unwrap())
            .sum();
        // Finite differences cost two loss evaluations per coordinate; large models are
        // covered by the fixtures of their layers.
        if n_params <= 500 {
            check_gradients(&path.display().to_string(), &model, 6, 0..2);
        }
    }
}

/// A random well-typed program exercising one rule family with random shapes.
pub fn generated_program(seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let r = rng.random_range(1..5u64);
    let c = rng.random_range(1..5u64);
    let k = rng.random_range(1..5u64);
    let shape = |dims: &[u64]| {
        if dims.is_empty() {
            String::new()
        } else {
            format!(
                "[{}]",
                dims.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    };
    let shapes = [vec![r, c], vec![c], vec![r, 1], vec![]];
    let pick = |rng: &mut ChaCha8Rng| shapes[rng.random_range(0..shapes.len())].clone();
    let header = format!("dtype f64\nparam w{} ~ normal(0, 1)\n", shape(&[r, c]));
    let body = match rng.random_range(0..6) {
        0 => {
            let f = ["exp", "tanh", "sigmoid", "relu", "-"][rng.random_range(0..5)];
            format!(
                "param x{} ~ normal(0, 1)\nloss sum({f}(x) * w)",
                shape(&[r, c])
            )
        }
        1 => {
            let f = ["log", "sqrt"][rng.random_range(0..2)];
            format!(
                "param x{} ~ normal(0, 1)\nloss sum({f}(x^2 + 0.5) * w)",
                shape(&pick(&mut rng))
            )
        }
        2 => {
            let (sa, sb) = (pick(&mut rng), pick(&mut rng));
            let expr = [
                "a + b",
                "a - b",
                "a * b",
                "a / (b^2 + 1)",
                "(a^2 + 1)^b",
                "a^3 - b",
            ][rng.random_range(0..6)];
            format!(
                "param a{} ~ normal(0, 1)\nparam b{} ~ normal(0, 1)\nloss sum(({expr}) * w)",
                shape(&sa),
                shape(&sb)
            )
        }
        3 => {
            let a = if rng.random_bool(0.7) {
                vec![r, k]
            } else {
                vec![k]
            };
            let b = if rng.random_bool(0.7) {
                vec![k, c]
            } else {
                vec![k]
            };
            format!(
                "param A{} ~ normal(0, 1)\nparam B{} ~ normal(0, 1)\nloss sum(tanh(A @ B) * sum(w))",
                shape(&a),
                shape(&b)
            )
        }
        4 => {
            let f = ["sum", "mean", "logsumexp"][rng.random_range(0..3)];
            let axis = ["", ", axis=0", ", axis=1", ", axis=-1"][rng.random_range(0..4)];
            format!(
                "param x{} ~ normal(0, 1)\nloss sum({f}(x * w{axis})^2)",
                shape(&[r, c])
            )
        }
        _ => format!(
            "param x{} ~ normal(0, 1)\nparam v{} ~ normal(0, 1)\nlet h = tanh(x @ transpose(w) + v)\nloss mean(sigmoid(h)^2) + sum(relu(x - 0.1) * w)",
            shape(&[r, c]),
            shape(&[r])
        ),
    };
    header + &body
}

/// A random program that gathers from a table of rank 1–5, along a random axis, by indices of
/// rank 0–3 (a constant, int inputs, an int input with a new axis, an argmax), and applies a
/// function to the result (broadcast against a row) or scatter-adds it back into the table's
/// shape; tokens repeat.
pub fn generated_gather_program(seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rank = rng.random_range(1..=5usize);
    let dims: Vec<u64> = (0..rank).map(|_| rng.random_range(1..4u64)).collect();
    let axis = rng.random_range(0..rank);
    let len = dims[axis];
    let shape = dims
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let (decl, idx) = match rng.random_range(0..5) {
        0 => (String::new(), rng.random_range(0..len).to_string()),
        1 => ("input tok[n]: int\n".to_string(), "tok".to_string()),
        2 => (
            format!("input tok[n, {}]: int\n", rng.random_range(1..4)),
            "tok".to_string(),
        ),
        3 => (
            "input tok[n, 2]: int\n".to_string(),
            format!("expand_dims(tok, axis={})", rng.random_range(0..3)),
        ),
        _ => (
            format!("param P[2, {len}] ~ normal(0, 1)\n"),
            "argmax(P, axis=1)".to_string(),
        ),
    };
    let gathered = if axis == 0 && idx.starts_with('t') && rng.random_bool(0.5) {
        format!("T[{idx}]")
    } else {
        format!("take(T, {idx}, axis={axis})")
    };
    let f = ["tanh", "sin", "exp", "sigmoid"][rng.random_range(0..4)];
    // A row broadcast against the result's last axis, when that is the table's.
    let (row, times_row) = if axis + 1 < rank {
        let row = format!("param u[{}] ~ normal(0, 1)\n", dims[rank - 1]);
        (row, " * u")
    } else {
        (String::new(), "")
    };
    let loss = if rng.random_bool(0.5) {
        format!("sum({f}(G) * G{times_row})")
    } else {
        format!("sum(scatter_add({f}(G){times_row}, {idx}, {len}, axis={axis}) * T)")
    };
    format!(
        "dtype f64\n{decl}param T[{shape}] ~ normal(0, 1)\n{row}let G = {gathered}\nloss {loss}\n"
    )
}

#[test]
fn generated_gathers_gradients_match_finite_differences() {
    for seed in 0..40 {
        let src = generated_gather_program(seed);
        let model = model_of_source(&format!("gather{seed}.dsl"), &src);
        check_gradients(
            &format!("generated gather {seed}:\n{src}\n"),
            &model,
            3,
            seed..seed + 1,
        );
    }
}

/// A random program of the attention vocabulary (gelu, silu, layer_norm, softmax and its
/// family over any axis, a causal mask with `-inf`, constants) on an array of rank 0–5, weighted
/// by a parameter that broadcasts against the result.
pub fn generated_attention_program(seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa77e);
    let family = rng.random_range(0..5);
    let min_rank = match family {
        0 | 4 => 0,
        3 => 2,
        _ => 1,
    };
    let rank = rng.random_range(min_rank..6usize);
    let mut dims: Vec<u64> = (0..rank).map(|_| rng.random_range(1..4u64)).collect();
    if family == 3 {
        dims[rank - 1] = dims[rank - 2];
    }
    let text = |d: &[u64]| {
        let inner: Vec<String> = d.iter().map(|v| v.to_string()).collect();
        format!("[{}]", inner.join(", "))
    };
    let last = dims.last().copied().unwrap_or(1);
    let axis = if rank > 0 {
        rng.random_range(-(rank as i64)..rank as i64)
    } else {
        0
    };
    let (expr, out): (String, Vec<u64>) = match family {
        0 => {
            let f = ["gelu(x)", "gelu(x, approximate=true)", "silu(x)"][rng.random_range(0..3)];
            (f.to_string(), dims.clone())
        }
        1 => {
            let eps = ["", ", eps=0.1"][rng.random_range(0..2)];
            (format!("layer_norm(x, g, b{eps})"), dims.clone())
        }
        2 => {
            let at = axis.rem_euclid(rank as i64) as usize;
            match rng.random_range(0..4) {
                0 => (format!("softmax(x, axis={axis})"), dims.clone()),
                1 => (format!("log_softmax(x, axis={axis})"), dims.clone()),
                2 => {
                    let mut kept = dims.clone();
                    kept[at] = 1;
                    (format!("logsumexp(x, axis={axis}, keepdims=true)"), kept)
                }
                _ => {
                    let mut fewer = dims.clone();
                    fewer.remove(at);
                    (format!("logsumexp(x, axis={axis})"), fewer)
                }
            }
        }
        3 => {
            let masked = format!("where(causal_mask({last}), x, -inf)");
            match rng.random_range(0..3) {
                0 => (format!("softmax({masked})"), dims.clone()),
                1 => (
                    format!("where(causal_mask({last}), log_softmax({masked}), 0)"),
                    dims.clone(),
                ),
                _ => {
                    let mut fewer = dims.clone();
                    fewer.pop();
                    (format!("logsumexp({masked}, axis=-1)"), fewer)
                }
            }
        }
        _ => {
            let literal: Vec<String> = (0..last).map(|i| format!("{}", i as f64 - 0.5)).collect();
            (
                format!(
                    "tanh(x) * (arange({last}) + [{}]) + ones({}) * x^2",
                    literal.join(", "),
                    if rank == 0 {
                        "1".to_string()
                    } else {
                        text(&dims)
                    }
                ),
                if rank == 0 { vec![1] } else { dims.clone() },
            )
        }
    };
    // The weight broadcasts: some axes of the result kept, others of length 1 or absent.
    let drop = rng.random_range(0..=out.len());
    let weight: Vec<u64> = out[drop..]
        .iter()
        .map(|&d| if rng.random_bool(0.3) { 1 } else { d })
        .collect();
    let decl = |name: &str, d: &[u64]| {
        if d.is_empty() {
            format!("param {name} ~ normal(0, 1)\n")
        } else {
            format!("param {name}{} ~ normal(0, 1)\n", text(d))
        }
    };
    let mut src = String::from("dtype f64\n");
    src += &decl("x", &dims);
    src += &decl("w", &weight);
    if family == 1 {
        src += &decl("g", &[last]);
        src += &decl("b", &[last]);
    }
    // tanh keeps the derivative from vanishing where the sum is constant (a softmax
    // summed over its axis).
    src + &format!("loss sum(tanh({expr}) * w)")
}

#[test]
fn generated_attention_programs_gradients_match_finite_differences() {
    for seed in 0..80 {
        let src = generated_attention_program(seed);
        let model = model_of_source(&format!("attention{seed}.dsl"), &src);
        check_gradients(
            &format!("generated program {seed}:\n{src}\n"),
            &model,
            1,
            seed..seed + 1,
        );
    }
}

#[test]
fn generated_programs_gradients_match_finite_differences() {
    for seed in 0..60 {
        let src = generated_program(seed);
        let model = model_of_source(&format!("generated{seed}.dsl"), &src);
        check_gradients(
            &format!("generated program {seed}:\n{src}\n"),
            &model,
            1,
            seed..seed + 1,
        );
    }
}

/// A random well-typed program over arrays of rank 0–5: an elementwise op of two broadcast
/// operands, then one view or reduction (a slice, a reshape, new axes, a join, a reduction over
/// a positive or negative axis, with or without keepdims), under a smooth loss.
pub fn generated_tensor_program(seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rank = rng.random_range(0..6usize);
    let dims: Vec<u64> = (0..rank).map(|_| rng.random_range(1..4u64)).collect();
    // The second operand: a suffix of the shape, with some axes broadcast from 1.
    let keep = rng.random_range(0..rank + 1);
    let other: Vec<u64> = dims[rank - keep..]
        .iter()
        .map(|&d| if rng.random_bool(0.3) { 1 } else { d })
        .collect();
    let shape = |d: &[u64]| {
        if d.is_empty() {
            String::new()
        } else {
            format!(
                "[{}]",
                d.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            )
        }
    };
    let f = ["tanh", "sin", "exp", "sigmoid"][rng.random_range(0..4)];
    let op = ["+", "-", "*"][rng.random_range(0..3)];
    let mut src = format!(
        "dtype f64\nparam a{} ~ normal(0, 1)\nparam b{} ~ normal(0, 1)\nlet h = {f}(a {op} b)\n",
        shape(&dims),
        shape(&other)
    );
    let axis = |rng: &mut ChaCha8Rng| {
        let k = rng.random_range(0..rank) as i64;
        if rng.random_bool(0.5) {
            k - rank as i64
        } else {
            k
        }
    };
    let view = match (rank, rng.random_range(0..8)) {
        (0, _) => "h * h".to_string(),
        (_, 0) => {
            // A range with a step on one axis, whole axes elsewhere.
            let k = rng.random_range(0..rank);
            let n = dims[k] as i64;
            let step = [1i64, 2, -1, -2][rng.random_range(0..4)];
            let start = rng.random_range(0..n);
            let range = format!("{start}::{step}");
            let idx: Vec<String> = (0..rank)
                .map(|i| if i == k { range.clone() } else { ":".into() })
                .collect();
            format!("h[{}]", idx.join(", "))
        }
        (_, 1) => {
            let flat = if rng.random_bool(0.5) { "-1" } else { "1, -1" };
            format!("reshape(h, ({flat},)) * reshape(a, ({flat},))[0, ...]")
        }
        (_, 2) => "h[None, ...][..., None] * 2".to_string(),
        (_, 3) => {
            let k = axis(&mut rng);
            format!("concat([h, h^2, a], axis={k})")
        }
        (_, 4) => {
            let k = rng.random_range(0..rank + 1);
            format!("stack([h, a], axis={k})")
        }
        (_, 5) => {
            let k = rng.random_range(0..rank);
            let idx: Vec<String> = (0..rank)
                .map(|i| if i == k { "0".into() } else { ":".into() })
                .collect();
            format!("h[{}] + 1", idx.join(", "))
        }
        (_, 7) => {
            // Two parts of one axis: halves where its length is even, else the first element
            // and the rest.
            let k = rng.random_range(0..rank);
            let parts = match dims[k] {
                d if d % 2 == 0 => "2".to_string(),
                d => format!("(1, {})", d - 1),
            };
            if dims[k] == 1 {
                "h * 2".to_string()
            } else {
                src += &format!("let p, q = split(h, {parts}, axis={k})\n");
                let mut last = vec![":"; rank];
                last[k] = "-1:";
                let last = last.join(", ");
                format!("p[{last}] * q[{last}] + concat([q, p], axis={k})")
            }
        }
        _ => {
            let f = ["sum", "mean", "max", "logsumexp"][rng.random_range(0..4)];
            let k = axis(&mut rng);
            let keep = rng.random_bool(0.5);
            format!("{f}(h, axis={k}, keepdims={keep}) * 3")
        }
    };
    src += &format!("let v = {view}\nloss sum(v * tanh(v)) + sum(a * h)\n");
    src
}

#[test]
fn generated_tensor_programs_gradients_match_finite_differences() {
    for seed in 0..60 {
        let src = generated_tensor_program(seed);
        let model = model_of_source(&format!("tensors{seed}.dsl"), &src);
        check_gradients(
            &format!("generated program {seed}:\n{src}\n"),
            &model,
            1,
            seed..seed + 1,
        );
    }
}

#[test]
fn generated_tensor_programs_cover_every_family() {
    let programs: Vec<String> = (0..60).map(generated_tensor_program).collect();
    for family in [
        "::", "reshape(", "None", "concat(", "stack(", "split(", "keepdims", "] + 1",
    ] {
        assert!(
            programs.iter().any(|p| p.contains(family)),
            "no generated program has `{family}`"
        );
    }
    let ranks: std::collections::HashSet<usize> = programs
        .iter()
        .map(|p| {
            let a = p.lines().find(|l| l.starts_with("param a")).unwrap();
            a.matches(',').count() + usize::from(a.contains('['))
        })
        .collect();
    assert_eq!(ranks.len(), 6, "ranks 0–5 all generated: {ranks:?}");
}

/// A random convolution or pooling that fits its input: `conv2d` or `conv1d` with random
/// channels, groups, kernel, stride, padding (numbers, "same" or "valid") and dilation, or a
/// max or average pooling with random kernel, stride and padding, under a smooth loss.
pub fn generated_conv_program(seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let axes = rng.random_range(1..3usize);
    let n = rng.random_range(1..3u64);
    let groups = rng.random_range(1..3u64);
    let c = groups * rng.random_range(1..3u64);
    let spatial: Vec<u64> = (0..axes).map(|_| rng.random_range(4..8u64)).collect();
    let tuple = |v: &[u64]| {
        let t: Vec<String> = v.iter().map(u64::to_string).collect();
        if t.len() == 1 {
            t[0].clone()
        } else {
            format!("({})", t.join(", "))
        }
    };
    let dims = |v: &[u64]| {
        let t: Vec<String> = v.iter().map(u64::to_string).collect();
        t.join(", ")
    };
    let mut xs = vec![n, c];
    xs.extend(&spatial);
    let mut src = format!("dtype f64\nparam x[{}] ~ normal(0, 1)\n", dims(&xs));
    let call = if rng.random_bool(0.6) {
        let o = groups * rng.random_range(1..3u64);
        let kernel: Vec<u64> = (0..axes).map(|_| rng.random_range(1..4u64)).collect();
        let dilation: Vec<u64> = kernel
            .iter()
            .map(|&k| if k > 1 { rng.random_range(1..3u64) } else { 1 })
            .collect();
        let extent: Vec<u64> = (0..axes)
            .map(|i| dilation[i] * (kernel[i] - 1) + 1)
            .collect();
        let padding = match rng.random_range(0..3) {
            0 => "\"same\"".to_string(),
            1 => "\"valid\"".to_string(),
            _ => tuple(
                &extent
                    .iter()
                    .map(|&e| rng.random_range(0..e))
                    .collect::<Vec<_>>(),
            ),
        };
        let stride: Vec<u64> = if padding == "\"same\"" {
            vec![1; axes]
        } else {
            (0..axes).map(|_| rng.random_range(1..3u64)).collect()
        };
        let mut ws = vec![o, c / groups];
        ws.extend(&kernel);
        src += &format!("param w[{}] ~ normal(0, 0.5)\n", dims(&ws));
        format!(
            "conv{axes}d(x, w, stride={}, padding={padding}, dilation={}, groups={groups})",
            tuple(&stride),
            tuple(&dilation)
        )
    } else {
        let kernel: Vec<u64> = (0..axes).map(|_| rng.random_range(1..4u64)).collect();
        let stride: Vec<u64> = (0..axes).map(|_| rng.random_range(1..3u64)).collect();
        let padding: Vec<u64> = kernel
            .iter()
            .map(|&k| rng.random_range(0..k / 2 + 1))
            .collect();
        let kind = ["max", "avg"][rng.random_range(0..2)];
        format!(
            "{kind}_pool{axes}d(x, {}, stride={}, padding={})",
            tuple(&kernel),
            tuple(&stride),
            tuple(&padding)
        )
    };
    src += &format!("let y = {call}\nloss sum(y * tanh(y)) + sum(sin(y))\n");
    src
}

#[test]
fn generated_conv_programs_gradients_match_finite_differences() {
    for seed in 0..40 {
        let src = generated_conv_program(seed);
        let model = model_of_source(&format!("conv{seed}.dsl"), &src);
        check_gradients(
            &format!("generated program {seed}:\n{src}\n"),
            &model,
            1,
            seed..seed + 1,
        );
    }
}

#[test]
fn generated_conv_programs_cover_every_family() {
    let programs: Vec<String> = (0..40).map(generated_conv_program).collect();
    for family in [
        "conv1d(",
        "conv2d(",
        "max_pool1d(",
        "max_pool2d(",
        "avg_pool1d(",
        "avg_pool2d(",
        "groups=2",
        "\"same\"",
        "\"valid\"",
        "dilation=(2",
        "stride=(2",
    ] {
        assert!(
            programs.iter().any(|p| p.contains(family)),
            "no generated program has `{family}`"
        );
    }
}
