//! Axis permutations on generated programs of rank 0–5 with broadcasting (fixed seeds): the
//! gradient against central differences in f64, native code against the interpreter in f64
//! and f32, and the printed derivative read back as the same gradient.

use crate::support::*;
use adjoint::ir::DType;
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

fn shape_text(dims: &[u64]) -> String {
    if dims.is_empty() {
        return String::new();
    }
    let dims: Vec<String> = dims.iter().map(u64::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// `axes` as the language writes them, some counted from the end.
fn axes_text(perm: &[usize], rng: &mut ChaCha8Rng) -> String {
    let rank = perm.len() as i64;
    let axes: Vec<String> = perm
        .iter()
        .map(|&a| {
            if rng.random_bool(0.3) {
                (a as i64 - rank).to_string()
            } else {
                a.to_string()
            }
        })
        .collect();
    match axes.len() {
        1 => format!("({},)", axes[0]),
        _ => format!("({})", axes.join(", ")),
    }
}

fn random_perm(rank: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..rank).collect();
    perm.shuffle(rng);
    perm
}

/// A call permuting `x` of `dims` and the dims of its result: with explicit axes (once or
/// twice in a row) or without (reversed).
fn random_transpose(x: &str, dims: &[u64], rng: &mut ChaCha8Rng) -> (String, Vec<u64>) {
    let rank = dims.len();
    if rank == 0 || rng.random_bool(0.25) {
        let out = dims.iter().rev().copied().collect();
        return (format!("transpose({x})"), out);
    }
    let p = random_perm(rank, rng);
    let mut out: Vec<u64> = p.iter().map(|&a| dims[a]).collect();
    let mut text = format!("transpose({x}, {})", axes_text(&p, rng));
    if rng.random_bool(0.3) {
        let q = random_perm(rank, rng);
        out = q.iter().map(|&a| out[a]).collect();
        text = format!("transpose({text}, {})", axes_text(&q, rng));
    }
    (text, out)
}

/// A weight that broadcasts against `dims`: some axes of length 1, some leading axes dropped.
fn broadcast_against(dims: &[u64], rng: &mut ChaCha8Rng) -> Vec<u64> {
    let dropped = rng.random_range(0..=dims.len());
    let dropped = if rng.random_bool(0.5) { 0 } else { dropped };
    dims[dropped..]
        .iter()
        .map(|&d| if rng.random_bool(0.3) { 1 } else { d })
        .collect()
}

/// A random well-typed program of permutations on an operand of rank 0–5.
pub fn generated_transpose_program(seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rank = rng.random_range(0..=5usize);
    let dims: Vec<u64> = (0..rank).map(|_| rng.random_range(1..4u64)).collect();
    let (t, out) = random_transpose("x", &dims, &mut rng);
    let w = broadcast_against(&out, &mut rng);
    let f = ["tanh", "sigmoid", "exp", "sin"][rng.random_range(0..4)];
    format!(
        "dtype f64\nparam x{} ~ normal(0, 1)\nparam w{} ~ normal(0, 1)\nloss sum({f}({t}) * w) + sum({t}^2 * w)\n",
        shape_text(&dims),
        shape_text(&w)
    )
}

const PROGRAMS: u64 = 60;

#[test]
fn generated_transposes_match_finite_differences() {
    for seed in 0..PROGRAMS {
        let src = generated_transpose_program(seed);
        let model = model_of_source(&format!("transpose{seed}.dsl"), &src);
        crate::gradients::check_gradients(
            &format!("generated program {seed}:\n{src}"),
            &model,
            1,
            seed..seed + 1,
        );
    }
}

#[test]
fn generated_transposes_native_code_matches_interpreter() {
    for seed in 0..PROGRAMS {
        let src = generated_transpose_program(seed);
        let model = model_of_source(&format!("transpose{seed}.dsl"), &src);
        let name = format!("generated program {seed}:\n{src}");
        for dtype in [DType::F64, DType::F32] {
            crate::jit::check_jit(&name, &model, dtype, 1, seed);
        }
    }
}

#[test]
fn generated_transposes_printed_derivatives_read_back() {
    for seed in 0..PROGRAMS {
        let src = generated_transpose_program(seed);
        let model = model_of_source(&format!("transpose{seed}.dsl"), &src);
        crate::derivatives::round_trip(&format!("generated program {seed}:\n{src}"), &model);
    }
}
