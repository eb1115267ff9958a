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
fn the_text_corpus_runs_clean() {
    for (name, bytes) in corpus("text") {
        eprintln!("{name}");
        adjoint::data::fuzz::text(&bytes);
    }
}

#[test]
fn the_npy_corpus_runs_clean() {
    for (name, bytes) in corpus("npy") {
        eprintln!("{name}");
        adjoint::data::fuzz::npy(&bytes);
    }
}

#[test]
fn the_compile_corpus_runs_clean() {
    for (name, bytes) in corpus("compile") {
        eprintln!("{name}");
        adjoint::fuzz::compile_and_train(&bytes);
    }
}
