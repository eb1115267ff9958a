//! Arbitrary bytes through the whole pipeline: lexer, parser, checker, differentiation,
//! simplification, Cranelift, and one training step on small data of the declared shapes.
//! Run with `cargo fuzz run compile` from the repository root (needs a nightly toolchain).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| adjoint::fuzz::compile_and_train(data));
