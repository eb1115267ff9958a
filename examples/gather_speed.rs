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

/// Per-call times of each form in microseconds: rounds of `calls` calls (one: a busy machine
/// preempts long rounds), the forms taking turns
/// so that a busy machine slows both alike. Returns each form's median and fastest round.
fn interleaved_us(
    forms: &mut [Box<dyn FnMut() + '_>],
    rounds: usize,
    calls: usize,
) -> Vec<(f64, f64)> {
    let mut times = vec![Vec::with_capacity(rounds); forms.len()];
    for f in forms.iter_mut() {
        f();
    }
    for _ in 0..rounds {
        for (f, t) in forms.iter_mut().zip(&mut times) {
            let start = Instant::now();
            for _ in 0..calls {
                f();
            }
            t.push(start.elapsed().as_secs_f64() * 1e6 / calls as f64);
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            (t[t.len() / 2], t[0])
        })
        .collect()
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
    let forms = [
        ("gather E[tok]", "E[tok]".to_string()),
        ("one_hot(tok, V) @ E", format!("one_hot(tok, {VOCAB}) @ E")),
    ];
    for dtype in ["f32", "f64"] {
        let mut sessions = Vec::new();
        for (_, lookup) in &forms {
            let mut session = adjoint::compile(&model(dtype, lookup))?.session(0)?;
            session.set_input("tok", &tok, &[ROWS])?;
            sessions.push(session);
        }
        let mut calls: Vec<Box<dyn FnMut() + '_>> = sessions
            .iter_mut()
            .map(|s| {
                Box::new(move || {
                    s.value_and_grad().unwrap();
                }) as Box<dyn FnMut() + '_>
            })
            .collect();
        let times = interleaved_us(&mut calls, 401, 1);
        for ((name, _), (median, fastest)) in forms.iter().zip(times) {
            println!(
                "{dtype} {name:>20}: forward and backward {median:8.1} µs median, {fastest:8.1} µs fastest round"
            );
        }
    }
    Ok(())
}
