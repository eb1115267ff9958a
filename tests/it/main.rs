//! The integration tests: one binary, one module per concern.

// Matrix checks index rows and columns by name.
#![allow(clippy::needless_range_loop)]

mod support;

mod api;
mod batch_norm;
mod bench;
mod checkpoints;
mod chunks;
mod cli;
mod cli_reports;
mod conv;
mod derivatives;
mod diagnostics;
mod docs;
mod einsum;
mod fuzz_corpus;
mod gather;
mod gradients;
mod group_norm;
mod init;
mod inspect;
mod jit;
mod math;
mod memory;
mod modes;
mod npy;
mod optim;
mod products;
mod robustness;
mod scaling;
mod snapshots;
mod stability;
mod sums;
mod syntax;
mod text;
mod training;
