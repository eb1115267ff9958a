//! Compile work grows with the size of the source: shared calls, many parameters and long sums
//! compile to graphs (and code) of the source's size, and train to the right values.

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
