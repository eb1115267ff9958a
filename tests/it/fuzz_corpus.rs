//! A short smoke of each fuzz target: every file of its corpus (the seeds and the inputs that
//! once crashed it) through the entry point the target calls.

use crate::support::repo;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(repo().join("fuzz/corpus").join(target))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus for {target}");
    files
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn the_table_corpus_runs_clean() {
    for (name, bytes) in corpus("table") {
        eprintln!("{name}");
        adjoint::data::fuzz::table(&bytes);
    }
}

#[test]
fn the_npy_corpus_runs_clean() {
    for (name, bytes) in corpus("npy") {
        eprintln!("{name}");
        adjoint::data::fuzz::npy(&bytes);
    }
}

/// The compile target's body: every corpus model compiled, evaluated and stepped twice on
/// small data of its declared shapes (symbolic dimensions 2), without a panic.
#[test]
fn the_compile_corpus_runs_clean() {
    for (name, bytes) in corpus("compile") {
        eprintln!("{name}");
        let Ok(src) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let Ok(model) = adjoint::compile(src) else {
            continue;
        };
        let mut session = model.session(0);
        let mut bound = true;
        for input in model.inputs() {
            let shape: Vec<usize> = input.shape.iter().map(|d| d.unwrap_or(2)).collect();
            let n: usize = shape.iter().product();
            let values: Vec<f64> = (0..n).map(|i| (i % 3) as f64).collect();
            bound &= session.set_input(&input.name, &values, &shape).is_ok();
        }
        if bound {
            let _ = session.value_and_grad();
            let _ = session.steps(2);
        }
    }
}
