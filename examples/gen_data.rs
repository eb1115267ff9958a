//! Regenerates the synthetic data sets in `examples/data/` from fixed seeds:
//! `cargo run --example gen_data`. A test checks the shipped files match this program.

use adjoint::init::{rng, std_normal};
use std::fmt::Write;

/// z = A·w_true + 0.1·noise, with A's columns standard normal; 4000 rows.
pub fn linreg_csv() -> String {
    let mut r = rng(20261129);
    let w_true = [2.0, -3.0, 0.5];
    let mut out = String::from("a0,a1,a2,z\n");
    for _ in 0..4000 {
        let a: Vec<f64> = (0..3).map(|_| std_normal(&mut r)).collect();
        let z: f64 =
            a.iter().zip(&w_true).map(|(x, w)| x * w).sum::<f64>() + 0.1 * std_normal(&mut r);
        let _ = writeln!(out, "{:.6},{:.6},{:.6},{:.6}", a[0], a[1], a[2], z);
    }
    out
}

/// 2000 draws from 0.3·N(−2, 0.5²) + 0.7·N(1.5, 1²).
pub fn gmm_csv() -> String {
    let mut r = rng(7);
    let mut out = String::from("x\n");
    for _ in 0..2000 {
        let first = rand::RngExt::random::<f64>(&mut r) < 0.3;
        let x = if first {
            -2.0 + 0.5 * std_normal(&mut r)
        } else {
            1.5 + std_normal(&mut r)
        };
        let _ = writeln!(out, "{x:.6}");
    }
    out
}

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data");
    std::fs::write(dir.join("linreg.csv"), linreg_csv()).expect("write linreg.csv");
    std::fs::write(dir.join("gmm.csv"), gmm_csv()).expect("write gmm.csv");
    println!("wrote linreg.csv and gmm.csv in {}", dir.display());
}
