//! Compile latency against model size: the table in BENCHMARKS.md. Two families of models, each
//! a sum written in `let`s of 1,000 terms (the parser's depth limit allows 20,000):
//! `(x - i)^2` over one parameter, and `p_i^2` over as many scalar parameters.
//! Run with `cargo run --release --example compile_scaling`; each row is the fastest of three
//! compilations, source to the fused training step's native code, in wall-clock time and in the
//! CPU time the process used meanwhile (Linux: `/proc/self/stat`, in 10 ms ticks), which a
//! shared machine inflates less.

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

/// User and system CPU time of this process so far, in milliseconds.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in brackets and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the file, in ticks of 10 ms.
    (ticks(11) + ticks(12)) * 10.0
}

struct Row {
    nodes: usize,
    wall: Duration,
    cpu_ms: f64,
    stages: Vec<(&'static str, Duration)>,
}

/// Nodes of the simplified forward and gradient graphs, and the fastest of three compilations.
fn measure(src: &str) -> Row {
    let file = SourceFile::new("scaling.dsl", src);
    let mut best: Option<Row> = None;
    for _ in 0..3 {
        let cpu = cpu_ms();
        let (c, _) =
            CompiledModel::compile(&file, &adjoint::Limits::of_host()).expect("the model compiles");
        let cpu_ms = cpu_ms() - cpu;
        assert!(!c.cached, "each compilation is measured in full");
        let nodes = c.graphs.forward.graph.len() + c.graphs.gradient.graph.len();
        let stages = c.timings.stages.clone();
        let wall = stages.iter().map(|s| s.1).sum();
        if best.as_ref().is_none_or(|b| wall < b.wall) {
            best = Some(Row {
                nodes,
                wall,
                cpu_ms,
                stages,
            });
        }
    }
    best.expect("three runs")
}

/// A family of models: its name, its source for `n` terms, and the sizes measured.
type Family = (&'static str, fn(usize) -> String, &'static [usize]);

fn main() {
    let families: [Family; 2] = [
        (
            "sum of (x - i)^2",
            sum_of_terms,
            &[10, 100, 1_000, 10_000, 100_000],
        ),
        (
            "scalar parameters",
            scalar_params,
            &[10, 100, 1_000, 10_000, 100_000],
        ),
    ];
    // `compile_scaling scalar 10000` measures one row (for a profiler): a family's first word
    // and a number of terms.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only = |name: &str, n: usize| match &args[..] {
        [family, terms] => name.starts_with(family.as_str()) && terms.parse() == Ok(n),
        _ => true,
    };
    println!(
        "| model | terms | nodes | wall ms | CPU ms | wall ms per 1,000 nodes | stages, wall (ms) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, source, sizes) in families {
        for &n in sizes.iter().filter(|&&n| only(name, n)) {
            let row = measure(&source(n));
            let ms = row.wall.as_secs_f64() * 1e3;
            let stages: Vec<String> = row
                .stages
                .iter()
                .map(|(s, d)| format!("{s} {:.1}", d.as_secs_f64() * 1e3))
                .collect();
            println!(
                "| {name} | {n} | {} | {ms:.1} | {:.0} | {:.2} | {} |",
                row.nodes,
                row.cpu_ms,
                ms / row.nodes as f64 * 1e3,
                stages.join(", ")
            );
        }
    }
}
