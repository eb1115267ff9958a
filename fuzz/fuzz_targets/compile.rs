//! Arbitrary bytes through the whole pipeline: lexer, parser, checker, differentiation,
//! simplification, Cranelift, and one training step on small data of the declared shapes.
//! Run with `cargo fuzz run compile` from the repository root (needs a nightly toolchain).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(model) = adjoint::compile(src) else {
        return;
    };
    let mut session = model.session(0);
    for input in model.inputs() {
        let shape: Vec<usize> = input.shape.iter().map(|d| d.unwrap_or(2)).collect();
        let n: usize = shape.iter().product();
        if n > 1 << 16 {
            return;
        }
        let values: Vec<f64> = (0..n).map(|i| (i % 3) as f64).collect();
        if session.set_input(&input.name, &values, &shape).is_err() {
            return;
        }
    }
    let _ = session.value_and_grad();
    let _ = session.steps(2);
});
