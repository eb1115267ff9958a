//! Compile latency against model size: the table in BENCHMARKS.md. Two families of models, each
//! a sum written in `let`s of 1,000 terms (the parser's depth limit allows 20,000):
//! `(x - i)^2` over one parameter, and `p_i^2` over as many scalar parameters.
//! Run with `cargo run --release --example compile_scaling`; each row is the fastest of three
//! compilations (the machine may be shared), source to the fused training step's native code.

use adjoint::{CompiledModel, SourceFile};
use std::time::Duration;

fn chunked_sum(terms: &[String]) -> String {
    let mut src = String::new();
    let mut names = Vec::new();
    for (k, chunk) in terms.chunks(1000).enumerate() {
        src += &format!("let s{k} = {}\n", chunk.join(" + "));
        names.push(format!("s{k}"));
    }
    src + &format!("loss l = {}\n", names.join(" + "))
}

fn sum_of_terms(n: usize) -> String {
    let terms: Vec<String> = (0..n).map(|i| format!("(x - {i})^2")).collect();
    format!("dtype f64\nparam x = 0\n{}", chunked_sum(&terms))
}

fn scalar_params(n: usize) -> String {
    let mut src = String::from("dtype f64\n");
    for i in 0..n {
        src += &format!("param p{i} = {}\n", 1.0 + (i % 7) as f64 / 8.0);
    }
    let terms: Vec<String> = (0..n).map(|i| format!("p{i}^2")).collect();
    src + &chunked_sum(&terms)
}

/// Nodes of the simplified forward and gradient graphs, the fastest compilation, and its stages.
fn measure(src: &str) -> (usize, Duration, Vec<(&'static str, Duration)>) {
    let file = SourceFile::new("scaling.dsl", src);
    let mut best: Option<(usize, Duration, Vec<(&'static str, Duration)>)> = None;
    for _ in 0..3 {
        let (c, _) = CompiledModel::compile(&file).expect("the model compiles");
        assert!(!c.cached, "each compilation is measured in full");
        let nodes = c.graphs.forward.graph.len() + c.graphs.gradient.graph.len();
        let stages = c.timings.stages.clone();
        let total = stages.iter().map(|s| s.1).sum();
        if best.as_ref().is_none_or(|b| total < b.1) {
            best = Some((nodes, total, stages));
        }
    }
    best.expect("three runs")
}

fn main() {
    let families: [(&str, fn(usize) -> String, &[usize]); 2] = [
        (
            "sum of (x - i)^2",
            sum_of_terms,
            &[10, 100, 1_000, 10_000, 100_000],
        ),
        (
            "scalar parameters",
            scalar_params,
            &[10, 100, 1_000, 10_000],
        ),
    ];
    println!("| model | terms | nodes | compile ms | ms per 1,000 nodes | stages (ms) |");
    println!("|---|---|---|---|---|---|");
    for (name, source, sizes) in families {
        for &n in sizes {
            let (nodes, total, stages) = measure(&source(n));
            let ms = total.as_secs_f64() * 1e3;
            let stages: Vec<String> = stages
                .iter()
                .map(|(s, d)| format!("{s} {:.1}", d.as_secs_f64() * 1e3))
                .collect();
            println!(
                "| {name} | {n} | {nodes} | {ms:.1} | {:.2} | {} |",
                ms / nodes as f64 * 1e3,
                stages.join(", ")
            );
        }
    }
}
