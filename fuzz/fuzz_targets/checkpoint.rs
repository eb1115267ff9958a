//! Arbitrary bytes as a checkpoint file: decoding and checksum verification, then `--resume`'s
//! state restore (range checks included) into a trainer, and a few training steps from what it
//! restored. Seeded with real checkpoints (`fuzz/corpus/checkpoint/seed-*`). Run with
//! `cargo fuzz run checkpoint` from the repository root (needs a nightly toolchain);
//! `cargo test` replays the corpus through the same entry point.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    adjoint::fuzz::resume_checkpoint(data);
});
