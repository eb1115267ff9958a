//! Compile work grows with the size of the source: shared calls, many parameters and long sums
//! compile to graphs (and code) of the source's size, and train to the right values.

use crate::support::clif_of_one_step;
use adjoint::ir::pretty::Style;
use adjoint::{SourceFile, check_source, compile_named};

/// `f_i(a) = f_{i-1}(a) + f_{i-1}(a)` for `depth` levels: f_depth(a) = 2^depth a.
fn doubling_source(depth: usize) -> String {
    let mut src = String::from("dtype f64\nparam a = 1\nfn f0(x) = x\n");
    for i in 1..=depth {
        src += &format!("fn f{i}(x) = f{}(x) + f{}(x)\n", i - 1, i - 1);
    }
    src + &format!("loss l = f{depth}(a)^2\n")
}

#[test]
fn forty_levels_of_doubling_calls_inline_to_one_node_per_level() {
    let src = doubling_source(40);
    let (model, _) = check_source(
        &SourceFile::new("deep.dsl", src.as_str()),
        &adjoint::Limits::of_host(),
    )
    .unwrap();
    // The parameter, one `add` per level, the constant 2 and the power.
    assert_eq!(model.forward.graph.len(), 43, "{}", model.forward.text());
    let mut session = compile_named("deep.dsl", &src).unwrap().session(0).unwrap();
    let (loss, grads) = session.value_and_grad().unwrap();
    // l = (2^40 a)^2 at a = 1, dl/da = 2 · 2^80; powers of two, exact in f64.
    assert_eq!(loss, 2f64.powi(80));
    assert_eq!(grads[0].item(), 2f64.powi(81));
}

/// `n` scalar parameters p_i = i/8 pulled towards c_i = i mod 7 by `sum((p_i - c_i)^2)`: with
/// lr 1/4 each SGD step halves p_i - c_i, so every value below is exact in f64.
fn pulled_parameters(n: usize) -> String {
    let mut src = String::from("dtype f64\n");
    for i in 0..n {
        src += &format!("param p{i} = {}\n", i as f64 / 8.0);
    }
    let terms: Vec<String> = (0..n).map(|i| format!("(p{i} - {})^2", i % 7)).collect();
    src + &format!("loss l = {}\noptimizer sgd(lr = 0.25)\n", terms.join(" + "))
}

#[test]
fn thousands_of_scalar_parameters_compile_and_train_to_exact_values() {
    let n = 3000;
    let model = compile_named("many.dsl", &pulled_parameters(n)).unwrap();
    let mut session = model.session(0).unwrap();
    let gap = |i: usize, steps: i32| (i as f64 / 8.0 - (i % 7) as f64) / 2f64.powi(steps);
    let loss = |steps: i32| (0..n).map(|i| gap(i, steps).powi(2)).sum::<f64>();

    // The standalone gradient function: dl/dp_i = 2 (p_i - c_i).
    let (l0, grads) = session.value_and_grad().unwrap();
    assert_eq!(l0, loss(0));
    for (i, g) in grads.iter().enumerate() {
        assert_eq!(g.item(), 2.0 * gap(i, 0), "dl/dp{i}");
    }
    // The fused training loop, three steps in one call: the loss before the last one.
    assert_eq!(session.steps(3).unwrap(), loss(2));
    for i in 0..n {
        let p = session.param(&format!("p{i}")).unwrap().item();
        assert_eq!(p, (i % 7) as f64 + gap(i, 3), "p{i}");
    }
    assert_eq!(session.evaluate().unwrap()[0].1, loss(3));
}

/// The derivative of the doubling calls, printed: shared subterms are named once each (their
/// printed sizes, 2^level operations, do not overflow the count that decides it).
#[test]
fn forty_levels_of_doubling_calls_print_one_definition_per_shared_subterm() {
    let src = doubling_source(40);
    let (model, _) = check_source(
        &SourceFile::new("deep.dsl", src.as_str()),
        &adjoint::Limits::of_host(),
    )
    .unwrap();
    let graphs = adjoint::compile::graphs(&model);
    let printed = adjoint::compile::derivatives(&graphs, &model.loss_name, None, Style::Dsl)
        .expect("the derivative prints");
    assert!(printed.starts_with("dl/da = "), "{printed}");
    assert!(printed.lines().count() <= 100, "{printed}");
}

/// `n` scalar parameters and the sum of their squares, written in `let`s of 1,000 terms.
fn squares_of_parameters(n: usize) -> String {
    let mut src = String::from("dtype f64\n");
    for i in 0..n {
        src += &format!("param p{i} = {}\n", 1.0 + (i % 7) as f64 / 8.0);
    }
    let mut sums = Vec::new();
    for (k, chunk) in (0..n).collect::<Vec<_>>().chunks(1000).enumerate() {
        let terms: Vec<String> = chunk.iter().map(|i| format!("p{i}^2")).collect();
        src += &format!("let s{k} = {}\n", terms.join(" + "));
        sums.push(format!("s{k}"));
    }
    src + &format!("loss l = {}\n", sums.join(" + "))
}

/// What Cranelift is given for each function a one-step run of `src` compiles
/// (`clif_of_one_step`): its number
/// of instructions, and the most SSA values live at one point, counting a value from its
/// definition to its last use in the text (block parameters from their block's header).
/// Register allocation spends time in proportion to the values live beside each one it
/// places, so that count is what made compile time quadratic.
fn cranelift_work(src: &str, name: &str) -> Vec<(usize, usize)> {
    let text = clif_of_one_step(name, src);
    let mut functions = vec![];
    let mut body: Option<Vec<&str>> = None;
    for line in text.lines() {
        if line.starts_with("function ") {
            body = Some(vec![]);
        } else if line.starts_with('}') {
            functions.extend(body.take().map(|b| live_values(&b)));
        } else if let Some(b) = body.as_mut() {
            b.push(line.trim());
        }
    }
    functions
}

/// The SSA values (`v12`) named in a line of Cranelift text.
fn values(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() > 1 && w.starts_with('v') && w[1..].bytes().all(|b| b.is_ascii_digit()))
}

/// A function body's instruction count and the most values live at once.
fn live_values(body: &[&str]) -> (usize, usize) {
    use std::collections::HashMap;
    let (mut defined, mut last_use) = (HashMap::new(), HashMap::new());
    let mut instructions = 0;
    for (at, line) in body.iter().enumerate() {
        let declaration = ["ss", "gv", "sig", "fn", "const"]
            .iter()
            .any(|p| line.starts_with(p) && line.contains(" = "));
        if line.is_empty() || declaration {
            continue;
        }
        if line.starts_with("block") {
            for v in values(line) {
                defined.entry(v).or_insert(at);
            }
            continue;
        }
        instructions += 1;
        let (results, operands) = match line.split_once(" = ") {
            Some((lhs, rhs)) if lhs.starts_with('v') => (lhs, rhs),
            _ => ("", *line),
        };
        for v in values(results) {
            defined.entry(v).or_insert(at);
        }
        for v in values(operands) {
            last_use.insert(v, at);
        }
    }
    // Each value is live from its definition to its last use: +1 then -1, ends after starts.
    let mut events: Vec<(usize, i64)> = vec![];
    for (v, &from) in &defined {
        events.push((from, 1));
        events.push((last_use.get(v).copied().unwrap_or(from).max(from), -1));
    }
    events.sort_by_key(|&(at, delta)| (at, -delta));
    let (mut live, mut most) = (0i64, 0i64);
    for (_, delta) in events {
        live += delta;
        most = most.max(live);
    }
    (instructions, most as usize)
}

/// Compile work is linear in the number of scalar parameters, measured without a clock: twice
/// the parameters give twice the Cranelift instructions, and the values live at once stay
/// bounded. (Before functions this large were generated bounded, every parameter stayed in a
/// register across the training loop: 200 parameters still are, with 202 values live at once.)
#[test]
fn cranelift_work_grows_linearly_with_scalar_parameters() {
    let small = cranelift_work(&squares_of_parameters(1000), "p1000.dsl");
    let large = cranelift_work(&squares_of_parameters(2000), "p2000.dsl");
    assert_eq!(small.len(), large.len(), "{small:?} {large:?}");
    let total = |w: &[(usize, usize)]| w.iter().map(|f| f.0).sum::<usize>() as f64;
    let ratio = total(&large) / total(&small);
    assert!(
        (1.9..=2.1).contains(&ratio),
        "instructions {small:?} → {large:?}"
    );
    for (_, live) in small.iter().chain(&large) {
        assert!(*live <= 64, "values live at once {small:?} → {large:?}");
    }
    // The parameters' Adam update is one loop over them (`Tx::scalar_run`), not code per
    // parameter: about 20 instructions per parameter for a step (forward, gradient and
    // update) where code per parameter took 43.
    assert!(
        total(&large) / 2000.0 < 25.0,
        "instructions per parameter {small:?} → {large:?}"
    );
    // The measure sees what is not bounded: a function below the bound keeps its parameters.
    let unbounded = cranelift_work(&squares_of_parameters(200), "p200.dsl");
    assert!(unbounded.iter().any(|f| f.1 > 200), "{unbounded:?}");
}

/// `(x - i)^2` for i = 0, …, n − 1 at x = 1/2, written out term by term in `let`s of `chunk`
/// terms.
fn like_terms(n: usize, chunk: usize) -> String {
    let mut src = String::from("dtype f64\nparam x = 0.5\n");
    let mut sums = Vec::new();
    for (k, part) in (0..n).collect::<Vec<_>>().chunks(chunk).enumerate() {
        let terms: Vec<String> = part.iter().map(|i| format!("(x - {i})^2")).collect();
        src += &format!("let s{k} = {}\n", terms.join(" + "));
        sums.push(format!("s{k}"));
    }
    src + &format!("loss l = {}\n", sums.join(" + "))
}

/// A sum of 100,000 like terms in `let`s of 1,000, and one of 10,000 in a single `let`, are
/// checked as sums over arrays of their numbers (`check::reroll`; an array holds at most 4,096
/// of them): eight nodes per array at most (its first term, checked for its shape, the array,
/// the term over it, the sum, the `+` after it), where the terms written out were ten each. Their value and
/// derivative are the sum's, within the rounding of 10⁵ terms added in another order.
#[test]
fn long_sums_of_like_terms_are_checked_as_sums_over_arrays() {
    for (n, chunk, at_most) in [(100_000, 1_000, 8 * 100 + 10), (10_000, 10_000, 8 * 3 + 10)] {
        let src = like_terms(n, chunk);
        let (model, _) = check_source(
            &SourceFile::new("terms.dsl", src.as_str()),
            &adjoint::Limits::of_host(),
        )
        .unwrap();
        let nodes = model.forward.graph.len();
        assert!(nodes <= at_most, "{n} terms: {nodes} nodes");
        let mut session = compile_named("terms.dsl", &src)
            .unwrap()
            .session(0)
            .unwrap();
        let (loss, grads) = session.value_and_grad().unwrap();
        let want: f64 = (0..n).map(|i| (0.5 - i as f64).powi(2)).sum();
        let want_grad: f64 = (0..n).map(|i| 2.0 * (0.5 - i as f64)).sum();
        assert!(
            (loss - want).abs() <= 1e-12 * want,
            "{n} terms: {loss} against {want}"
        );
        let grad = grads[0].item();
        assert!(
            (grad - want_grad).abs() <= 1e-12 * want_grad.abs(),
            "{n} terms: {grad} against {want_grad}"
        );
    }
}

/// An error in a run of like terms is reported once, where the first term has it, not once per
/// term.
#[test]
fn an_error_in_like_terms_is_reported_once() {
    let terms: Vec<String> = (0..100).map(|i| format!("(y - {i})^2")).collect();
    let src = format!("param x = 0\nloss x + {}\n", terms.join(" + "));
    let Err(err) = compile_named("terms.dsl", &src) else {
        panic!("an unknown name compiles");
    };
    let text = err.to_string();
    assert_eq!(text.matches("unknown name `y`").count(), 1, "{text}");
}

/// A residual stack of `depth` identical layers (layer norm, a product, tanh GELU), its input
/// a parameter so that a one-step run needs no data.
fn layer_stack(depth: usize) -> String {
    let mut src = String::from("param x[8, 16] ~ normal(0, 1)\n");
    src += "fn layer(h, g, c, w, b) = h + gelu(layer_norm(h, g, c) @ w + b, approximate=true)\n";
    let mut h = String::from("x");
    for i in 0..depth {
        src += &format!(
            "param g{i}[16] ~ ones\nparam c{i}[16] ~ zeros\n\
             param w{i}[16, 16] ~ normal(0, 0.1)\nparam b{i}[16] ~ zeros\n\
             let h{i} = layer({h}, g{i}, c{i}, w{i}, b{i})\n"
        );
        h = format!("h{i}");
    }
    src + &format!("loss mean({h}^2)\noptimizer adam(lr = 0.01)\n")
}

/// The functions of the fused training loop's module in a one-step run of `src`: those it
/// calls (its parts and outlined steps: four or five arguments), then the loop itself (three),
/// each as `live_values` measures it.
fn training_loop_work(src: &str, name: &str) -> (Vec<(usize, usize)>, (usize, usize)) {
    let text = clif_of_one_step(name, src);
    let mut called = vec![];
    let mut body: Option<(Vec<&str>, bool)> = None;
    for line in text.lines() {
        if let Some(signature) = line.strip_prefix("function ") {
            let top = signature.contains("(i64, i64, i64)");
            body = Some((vec![], top));
        } else if line.starts_with('}') {
            let (lines, top) = body.take().unwrap();
            if top {
                return (called, live_values(&lines));
            }
            called.push(live_values(&lines));
        } else if let Some((b, _)) = body.as_mut() {
            b.push(line.trim());
        }
    }
    panic!("no training loop in {text}")
}

/// The code of a layer is compiled once however deep the stack: its steps are functions of
/// their own (`jit::outline`), and the second layer's are the first's (`jit::part_code`).
/// Only the training loop that calls them grows with the depth, by the calls and the update
/// of a layer's parameters.
#[test]
fn a_stack_of_identical_layers_compiles_each_layers_code_once() {
    let (shallow_steps, shallow_loop) = training_loop_work(&layer_stack(3), "stack3.dsl");
    let (deep_steps, deep_loop) = training_loop_work(&layer_stack(6), "stack6.dsl");
    assert!(shallow_steps.len() >= 4, "{shallow_steps:?}");
    assert_eq!(shallow_steps, deep_steps);
    let per_layer = (deep_loop.0 - shallow_loop.0) / 3;
    let whole = shallow_loop.0 + shallow_steps.iter().map(|f| f.0).sum::<usize>();
    assert!(
        per_layer < whole / 3,
        "each layer adds {per_layer} instructions to the loop; a whole layer is {}: {shallow_loop:?} → {deep_loop:?}",
        whole / 3
    );
}
