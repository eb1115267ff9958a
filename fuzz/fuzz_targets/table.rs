//! Arbitrary bytes as a CSV table, then bound to a model's inputs (named columns, a numbered
//! range, class labels). Run with `cargo fuzz run table` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| adjoint::data::fuzz::table(data));
