//! Axis permutations, batched products and `einsum` on generated programs of rank 0–5 with
//! broadcasting (fixed seeds): the gradient against central differences in f64, native code
//! against the interpreter in f64 and f32, and the printed derivative read back as the same
//! gradient.

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
        _ if rng.random_bool(0.3) => format!("[{}]", axes.join(", ")),
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

/// One operand of a generated product: its batch axes broadcast against `batch` (some
/// dropped from the front, some of length 1), then its matrix axes; sometimes stored
/// transposed and read through `transpose`.
fn product_operand(
    name: &str,
    batch: &[u64],
    matrix: &[u64],
    rng: &mut ChaCha8Rng,
) -> (String, String) {
    let mut dims = if matrix.len() == 2 {
        broadcast_against(batch, rng)
    } else {
        vec![]
    };
    let rank = dims.len() + matrix.len();
    if matrix.len() == 2 && rng.random_bool(0.4) {
        dims.extend([matrix[1], matrix[0]]);
        let mut perm: Vec<String> = (0..rank).map(|i| i.to_string()).collect();
        perm.swap(rank - 2, rank - 1);
        let decl = format!("param {name}{} ~ normal(0, 1)\n", shape_text(&dims));
        return (decl, format!("transpose({name}, ({}))", perm.join(", ")));
    }
    dims.extend(matrix);
    let decl = format!("param {name}{} ~ normal(0, 1)\n", shape_text(&dims));
    (decl, name.to_string())
}

/// A random well-typed batched product `A @ B` of rank up to 5: batch axes broadcast, vectors
/// on either side, transposed operands.
pub fn generated_product_program(seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let batch: Vec<u64> = (0..rng.random_range(0..=3usize))
        .map(|_| rng.random_range(1..4u64))
        .collect();
    let (m, k, n) = (
        rng.random_range(1..5u64),
        rng.random_range(1..5u64),
        rng.random_range(1..5u64),
    );
    let vector_a = rng.random_bool(0.15);
    let vector_b = !vector_a && rng.random_bool(0.15);
    let a_matrix = if vector_a { vec![k] } else { vec![m, k] };
    let b_matrix = if vector_b { vec![k] } else { vec![k, n] };
    let (da, a) = product_operand("A", &batch, &a_matrix, &mut rng);
    let (db, b) = product_operand("B", &batch, &b_matrix, &mut rng);
    let f = ["tanh", "sin", "sigmoid"][rng.random_range(0..3)];
    // A plain sum makes the product's cotangent a broadcast constant.
    let loss = match rng.random_range(0..4) {
        0 => format!("sum({a} @ {b})"),
        _ => format!("sum({f}({a} @ {b})) + 0.1 * sum(({a} @ {b})^2)"),
    };
    format!("dtype f64\n{da}{db}loss {loss}\n")
}

/// A random `einsum` of two operands: letters of each kind (batch, contracted, kept from one
/// operand, summed out of one), each term and the output in a random order.
pub fn generated_einsum_program(seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pool = "abcdefghijkl".chars();
    let mut group = |rng: &mut ChaCha8Rng, most: usize| -> Vec<char> {
        let count = rng.random_range(0..=most);
        (0..count).map(|_| pool.next().unwrap()).collect()
    };
    let batch = group(&mut rng, 2);
    let contracted = group(&mut rng, 2);
    let (kept_a, kept_b) = (group(&mut rng, 2), group(&mut rng, 1));
    let (summed_a, summed_b) = (group(&mut rng, 1), group(&mut rng, 1));
    let sizes: Vec<(char, u64)> = "abcdefghijkl"
        .chars()
        .map(|c| (c, rng.random_range(1..4u64)))
        .collect();
    let term = |rng: &mut ChaCha8Rng, parts: &[&[char]]| -> (String, Vec<u64>) {
        let mut letters: Vec<char> = parts.concat();
        letters.shuffle(rng);
        let dims = letters
            .iter()
            .map(|c| sizes.iter().find(|s| s.0 == *c).unwrap().1)
            .collect();
        (letters.into_iter().collect(), dims)
    };
    let (ta, da) = term(&mut rng, &[&batch, &contracted, &kept_a, &summed_a]);
    let (tb, db) = term(&mut rng, &[&batch, &contracted, &kept_b, &summed_b]);
    let (out, _) = term(&mut rng, &[&batch, &kept_a, &kept_b]);
    format!(
        "dtype f64\nparam A{} ~ normal(0, 1)\nparam B{} ~ normal(0, 1)\nloss sum(sin(einsum(\"{ta},{tb}->{out}\", A, B)))\n",
        shape_text(&da),
        shape_text(&db)
    )
}

const PROGRAMS: u64 = 60;

/// Both generators' programs, each named with its source.
fn generated() -> Vec<(String, String)> {
    (0..PROGRAMS)
        .flat_map(|seed| {
            [
                (seed, generated_transpose_program(seed)),
                (seed, generated_product_program(seed)),
                (seed, generated_einsum_program(seed)),
            ]
        })
        .map(|(seed, src)| (format!("generated program {seed}:\n{src}"), src))
        .collect()
}

#[test]
fn generated_programs_match_finite_differences() {
    for (seed, (name, src)) in (0..).zip(generated()) {
        let model = model_of_source("generated.dsl", &src);
        crate::gradients::check_gradients(&name, &model, 1, seed..seed + 1);
    }
}

#[test]
fn generated_programs_native_code_matches_interpreter() {
    for (seed, (name, src)) in (0..).zip(generated()) {
        let model = model_of_source("generated.dsl", &src);
        for dtype in [DType::F64, DType::F32] {
            crate::jit::check_jit(&name, &model, dtype, 1, seed);
        }
    }
}

#[test]
fn generated_programs_printed_derivatives_read_back() {
    for (name, src) in generated() {
        let model = model_of_source("generated.dsl", &src);
        crate::derivatives::round_trip(&name, &model);
    }
}
