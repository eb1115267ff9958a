//! Arbitrary bytes as a text read as character tokens. Run with `cargo fuzz run text` from the
//! repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| adjoint::data::fuzz::text(data));
