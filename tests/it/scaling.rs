//! Compile work grows with the size of the source: shared calls, many parameters and long sums
//! compile to graphs (and code) of the source's size, and train to the right values.

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
    let (model, _) = check_source(&SourceFile::new("deep.dsl", src.as_str())).unwrap();
    // The parameter, one `add` per level, the constant 2 and the power.
    assert_eq!(model.forward.graph.len(), 43, "{}", model.forward.text());
    let mut session = compile_named("deep.dsl", &src).unwrap().session(0);
    let (loss, grads) = session.value_and_grad().unwrap();
    // l = (2^40 a)^2 at a = 1, dl/da = 2 · 2^80; powers of two, exact in f64.
    assert_eq!(loss, 2f64.powi(80));
    assert_eq!(grads[0].item(), 2f64.powi(81));
}
