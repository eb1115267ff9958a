//! An embedding lookup's forward and backward pass, as a gather (`E[tok]`) and as the product
//! with one-hot rows it replaces (`one_hot(tok, V) @ E`): 16 × 64 tokens into a table
//! `E[96, 128]`, the tokens flattened to one axis of 1,024 (the product takes matrices).
//! Run with `cargo run --release --example gather_speed`.

use std::time::Instant;

const ROWS: usize = 16 * 64;
const VOCAB: usize = 96;

fn model(dtype: &str, lookup: &str) -> String {
    format!(
        "dtype {dtype}\ninput tok[n]: int\nparam E[{VOCAB}, 128] ~ normal(0, 0.1)\nloss mean(({lookup})^2)\noptimizer sgd(lr = 0.1)\n"
    )
}

/// The median time of one call of `f`, in microseconds, over `rounds` rounds.
fn median_us(rounds: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[rounds / 2]
}

fn main() -> Result<(), adjoint::Error> {
    adjoint::set_threads(1);
    // Tokens from a fixed linear congruential stream: every row of the table is read.
    let mut state = 12345u64;
    let tok: Vec<f64> = (0..ROWS)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % VOCAB as u64) as f64
        })
        .collect();
    for dtype in ["f32", "f64"] {
        for (name, lookup) in [
            ("gather E[tok]", "E[tok]".to_string()),
            ("one_hot(tok, V) @ E", format!("one_hot(tok, {VOCAB}) @ E")),
        ] {
            let compiled = adjoint::compile(&model(dtype, &lookup))?;
            let mut session = compiled.session(0);
            session.set_input("tok", &tok, &[ROWS])?;
            let grad = median_us(201, || {
                session.value_and_grad().unwrap();
            });
            let step = median_us(21, || {
                session.steps(100).unwrap();
            }) / 100.0;
            println!(
                "{dtype} {name:>20}: forward and backward {grad:8.1} µs (value_and_grad), a training step {step:8.1} µs"
            );
        }
    }
    Ok(())
}
