//! Arbitrary bytes as a NumPy `.npy` file. Run with `cargo fuzz run npy` from the repository
//! root.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| adjoint::data::fuzz::npy(data));
