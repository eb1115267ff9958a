//! Data that is not a table: inputs read whole from `.npy` files, texts read as windows of
//! character tokens, and `adjoint sample`.

use crate::support::repo;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs adjoint in `dir`: (exit code, stdout, stderr).
fn adjoint_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_adjoint"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh directory holding a copy of the text fixtures.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("adjoint-text-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["bigram.dsl", "tiny.txt"] {
        std::fs::copy(repo().join("tests/data/text").join(f), dir.join(f)).unwrap();
    }
    dir
}

/// Lines of standard output with wall-clock figures masked.
fn without_timings(stdout: &str) -> String {
    stdout
        .lines()
        .map(|l| match l.find(" in ") {
            Some(at) if l.starts_with("compiled ") || l.starts_with("trained ") => {
                let after = &l[at + 4..];
                let rest = after.find(':').map_or("", |c| &after[c..]);
                format!("{} in [time]{rest}\n", &l[..at])
            }
            _ => format!("{l}\n"),
        })
        .collect()
}

/// `$ adjoint ARGS`, its exit code and its output, for a transcript.
fn transcript_of(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = adjoint_in(dir, args);
    format!(
        "$ adjoint {}\nexit {code}\n{}{err}\n",
        args.join(" "),
        without_timings(&out)
    )
}

#[test]
fn a_model_of_a_text_trains_on_random_windows_and_samples_reproducibly() {
    let dir = scratch("train");
    let mut transcript = transcript_of(&dir, &["train", "bigram.dsl", "--save", "b.safetensors"]);
    let sample = [
        "sample",
        "bigram.dsl",
        "--checkpoint",
        "b.safetensors",
        "--prompt",
        "Citizen:",
        "--chars",
        "120",
        "--temperature",
        "0.8",
        "--seed",
        "1",
    ];
    let first = adjoint_in(&dir, &sample);
    assert_eq!(first.0, 0, "{}", first.2);
    assert_eq!(first, adjoint_in(&dir, &sample), "same seed, same text");
    assert!(first.1.starts_with("Citizen:"));
    assert_eq!(first.1.chars().count(), "Citizen:".len() + 120 + 1);
    let mut other_seed = sample;
    other_seed[11] = "2";
    assert_ne!(first.1, adjoint_in(&dir, &other_seed).1);
    transcript += &transcript_of(&dir, &sample);
    let mut greedy = sample;
    greedy[9] = "0";
    transcript += &transcript_of(&dir, &greedy);
    transcript += &transcript_of(
        &dir,
        &["eval", "bigram.dsl", "--checkpoint", "b.safetensors"],
    );
    transcript += &transcript_of(
        &dir,
        &[
            "eval",
            "bigram.dsl",
            "--checkpoint",
            "b.safetensors",
            "--validation",
            "0.25",
        ],
    );
    transcript += &transcript_of(
        &dir,
        &[
            "train",
            "bigram.dsl",
            "--validation",
            "0.25",
            "--steps",
            "20",
        ],
    );
    transcript += &transcript_of(
        &dir,
        &[
            "predict",
            "bigram.dsl",
            "--checkpoint",
            "b.safetensors",
            "--out",
            "p.csv",
        ],
    );
    let predicted = std::fs::read_to_string(dir.join("p.csv")).unwrap();
    let header = predicted.lines().next().unwrap();
    // The logits of every position of every tiled window, flattened: 16 × 45 per row.
    assert_eq!(header.split(',').count(), 16 * 45);
    assert_eq!(predicted.lines().count(), 1 + 37);
    std::fs::remove_dir_all(&dir).unwrap();
    insta::assert_snapshot!(transcript);
}

/// The tensors and metadata of a checkpoint but the run's horizon, which a run resumed with
/// `--steps` keeps from the checkpoint it continues.
fn state_of(path: &Path) -> (Vec<adjoint::checkpoint::NamedTensor>, Vec<(String, String)>) {
    let c = adjoint::checkpoint::load(path).unwrap();
    let meta = c
        .metadata
        .into_iter()
        .filter(|(k, _)| k != "adjoint.run" && k != "adjoint.metadata_checksum")
        .collect();
    (c.tensors, meta)
}

#[test]
fn a_run_on_text_windows_resumes_bit_for_bit_and_refuses_a_changed_text() {
    let dir = scratch("resume");
    for dtype in ["f64", "f32"] {
        let model = std::fs::read_to_string(dir.join("bigram.dsl"))
            .unwrap()
            .replace("dtype f64", &format!("dtype {dtype}"));
        std::fs::write(dir.join("m.dsl"), model).unwrap();
        let run = |args: &[&str]| {
            let (code, _, err) = adjoint_in(&dir, args);
            assert_eq!(code, 0, "{args:?}: {err}");
        };
        run(&[
            "train",
            "m.dsl",
            "--steps",
            "50",
            "--save",
            "whole.safetensors",
        ]);
        run(&[
            "train",
            "m.dsl",
            "--steps",
            "17",
            "--save",
            "part.safetensors",
        ]);
        run(&[
            "train",
            "m.dsl",
            "--resume",
            "part.safetensors",
            "--steps",
            "33",
            "--save",
            "rest.safetensors",
        ]);
        let (whole, rest) = (
            state_of(&dir.join("whole.safetensors")),
            state_of(&dir.join("rest.safetensors")),
        );
        assert_eq!(whole, rest, "{dtype}: the resumed run is the whole run");
        assert!(
            whole
                .1
                .iter()
                .any(|(k, v)| k == "adjoint.cursor" && v.ends_with(" windows"))
        );
    }
    let mut transcript = String::new();
    let resume = [
        "train",
        "bigram.dsl",
        "--resume",
        "part.safetensors",
        "--steps",
        "5",
    ];
    // m.dsl is f32 now; the fixture is f64: train its checkpoint again.
    adjoint_in(
        &dir,
        &[
            "train",
            "bigram.dsl",
            "--steps",
            "5",
            "--save",
            "part.safetensors",
        ],
    );
    let text = std::fs::read_to_string(dir.join("tiny.txt")).unwrap();
    // The same characters in another order: the vocabulary is the same, the windows are not.
    std::fs::write(dir.join("tiny.txt"), text.chars().rev().collect::<String>()).unwrap();
    transcript += &transcript_of(&dir, &resume);
    std::fs::write(dir.join("tiny.txt"), text.replace('z', "~")).unwrap();
    transcript += &transcript_of(&dir, &resume);
    std::fs::write(dir.join("tiny.txt"), &text).unwrap();
    transcript += &transcript_of(
        &dir,
        &[
            "train",
            "bigram.dsl",
            "--resume",
            "part.safetensors",
            "--steps",
            "5",
            "--validation",
            "0.2",
        ],
    );
    // The same model reading rows of a table cannot continue a run on windows of a text.
    let bigram = std::fs::read_to_string(dir.join("bigram.dsl")).unwrap();
    let rows_model = bigram
        .replace(" from text \"tiny.txt\" offset 1", "")
        .replace(" from text \"tiny.txt\"", "")
        + "data \"rows.csv\"\n";
    std::fs::write(dir.join("rows.dsl"), rows_model).unwrap();
    let header: Vec<String> = (0..16)
        .map(|j| format!("x{j}"))
        .chain((0..16).map(|j| format!("y{j}")))
        .collect();
    let row = vec!["1"; 32].join(",");
    std::fs::write(
        dir.join("rows.csv"),
        format!("{}\n{row}\n{row}\n", header.join(",")),
    )
    .unwrap();
    transcript += &transcript_of(
        &dir,
        &[
            "train",
            "rows.dsl",
            "--resume",
            "part.safetensors",
            "--steps",
            "5",
        ],
    );
    std::fs::remove_dir_all(&dir).unwrap();
    insta::assert_snapshot!(transcript);
}

#[test]
fn bad_texts_prompts_and_settings_are_located_errors_with_exit_2() {
    let dir = scratch("errors");
    let bigram = std::fs::read_to_string(dir.join("bigram.dsl")).unwrap();
    let with = |name: &str, from: &str, to: &str| {
        std::fs::write(dir.join(name), bigram.replace(from, to)).unwrap();
    };
    with("missing.dsl", "\"tiny.txt\"", "\"absent.txt\"");
    std::fs::write(dir.join("empty.txt"), "").unwrap();
    with("empty.dsl", "\"tiny.txt\"", "\"empty.txt\"");
    std::fs::write(dir.join("short.txt"), "First Citizen:").unwrap();
    with("short.dsl", "\"tiny.txt\"", "\"short.txt\"");
    std::fs::write(
        dir.join("latin1.txt"),
        b"First Citizen:\nBefore we proceed any further, caf\xe9 me speak.\n",
    )
    .unwrap();
    with("latin1.dsl", "\"tiny.txt\"", "\"latin1.txt\"");
    with("nobatch.dsl", ", batch = 8", "");
    with("classes.dsl", "45", "40");
    let mut transcript = String::new();
    for args in [
        &["train", "missing.dsl"][..],
        &["train", "empty.dsl"],
        &["train", "short.dsl"],
        &["train", "latin1.dsl"],
        &["train", "nobatch.dsl"],
        &["train", "classes.dsl"],
        &["train", "bigram.dsl", "--validation", "0.99"],
    ] {
        transcript += &transcript_of(&dir, args);
    }
    let (code, _, err) = adjoint_in(
        &dir,
        &[
            "train",
            "bigram.dsl",
            "--steps",
            "3",
            "--save",
            "b.safetensors",
        ],
    );
    assert_eq!(code, 0, "{err}");
    for args in [
        &[
            "sample",
            "bigram.dsl",
            "--checkpoint",
            "b.safetensors",
            "--prompt",
            "ROMEO:",
        ][..],
        &[
            "sample",
            "bigram.dsl",
            "--checkpoint",
            "b.safetensors",
            "--prompt",
            "",
        ],
        &[
            "sample",
            "bigram.dsl",
            "--checkpoint",
            "b.safetensors",
            "--prompt",
            "F",
            "--temperature",
            "-1",
        ],
        &[
            "sample",
            "bigram.dsl",
            "--checkpoint",
            "b.safetensors",
            "--prompt",
            "F",
            "--temperature",
            "NaN",
        ],
        &[
            "sample",
            "bigram.dsl",
            "--checkpoint",
            "b.safetensors",
            "--prompt",
            "F",
            "--chars",
            "2000000",
        ],
    ] {
        transcript += &transcript_of(&dir, args);
    }
    // A text with characters the trained vocabulary lacks, for eval.
    std::fs::write(
        dir.join("tiny.txt"),
        "First Citizen!\nQuick: 123 #;\n".repeat(3),
    )
    .unwrap();
    transcript += &transcript_of(
        &dir,
        &["eval", "bigram.dsl", "--checkpoint", "b.safetensors"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
    for line in transcript.lines().filter(|l| l.starts_with("exit ")) {
        assert_eq!(line, "exit 2", "{transcript}");
    }
    insta::assert_snapshot!(transcript);
}

#[test]
fn inputs_without_rows_are_read_whole_by_every_step() {
    let dir = std::env::temp_dir().join(format!("adjoint-whole-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let npy = |name: &str, shape: &[usize], values: &[f64]| {
        std::fs::write(dir.join(name), adjoint::data::npy_bytes(shape, values)).unwrap();
    };
    // Rows x of rank 3 with x·K = 1.5 in every row, a fixed vector K and matrix M: the best w,
    // 1.5 / sum(M) = 0.75, is the best of every batch too, which sees all of K and M.
    let rows = 12;
    let x: Vec<f64> = (0..rows)
        .flat_map(|r| {
            let (x1, x2) = (((r * 7) % 11) as f64 / 4.0, ((r * 5) % 7) as f64 / 2.0);
            [1.5 + 2.0 * x1 - 0.5 * x2, x1, x2]
        })
        .collect();
    npy("x.npy", &[rows, 1, 3], &x);
    npy("k.npy", &[3], &[1.0, -2.0, 0.5]);
    npy("m.npy", &[2, 3], &[0.5, 0.25, 0.25, 0.5, 0.25, 0.25]);
    let model = r#"dtype f64
input x[n, 1, 3] from "x.npy"
input K[3] from "k.npy"
input M[2, 3] from "m.npy"
param w = 0
loss mean((sum(x * K, axis=2) - w * sum(M))^2)
optimizer sgd(lr = 0.05)
train steps = 400
"#;
    std::fs::write(dir.join("whole.dsl"), model).unwrap();
    std::fs::write(
        dir.join("batched.dsl"),
        model.replace("steps = 400", "steps = 400, batch = 5, seed = 2"),
    )
    .unwrap();
    let best = 0.75;
    let mut transcript = String::new();
    for file in ["whole.dsl", "batched.dsl"] {
        let (code, out, err) = adjoint_in(&dir, &["train", file]);
        assert_eq!(code, 0, "{err}");
        let w: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix("w = "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((w - best).abs() < 1e-9, "{file}: w = {w}, best {best}");
        transcript += &format!(
            "$ adjoint train {file}\nexit {code}\n{}",
            without_timings(&out)
        );
    }
    // Shapes that do not match the declaration are errors naming the file.
    npy("k.npy", &[4], &[1.0, -2.0, 0.5, 0.0]);
    transcript += &transcript_of(&dir, &["train", "whole.dsl"]);
    npy("k.npy", &[3, 1], &[1.0, -2.0, 0.5]);
    transcript += &transcript_of(&dir, &["train", "whole.dsl"]);
    npy("k.npy", &[3], &[1.0, -2.0, 0.5]);
    npy("x.npy", &[rows, 3], &x);
    transcript += &transcript_of(&dir, &["train", "whole.dsl"]);
    npy("x.npy", &[rows, 1, 3], &x);
    npy("m.npy", &[2, 3], &[0.5, 0.25, f64::NAN, 0.5, 0.25, 0.25]);
    transcript += &transcript_of(&dir, &["train", "whole.dsl"]);
    std::fs::write(
        dir.join("only.dsl"),
        "dtype f64\ninput K[3] from \"k.npy\"\nparam w[3] ~ zeros\nloss sum((w - K)^2)\n",
    )
    .unwrap();
    transcript += &transcript_of(&dir, &["train", "only.dsl", "--steps", "200"]);
    transcript += &transcript_of(&dir, &["train", "only.dsl", "--validation", "0.5"]);
    std::fs::remove_dir_all(&dir).unwrap();
    insta::assert_snapshot!(transcript);
}

#[test]
fn the_api_binds_an_input_without_rows_whole_beside_rows_of_any_count() {
    let model = adjoint::compile(
        "dtype f64\ninput x[n, 3]\ninput K[3] from \"k.npy\"\nparam w = 2\nloss mean((x @ K - w)^2)\n",
    )
    .unwrap();
    let mut s = model.session(0).unwrap();
    s.set_input("K", &[1.0, -2.0, 0.5], &[3]).unwrap();
    s.set_input("x", &[1.0, 0.0, 2.0, 0.0, 1.0, 0.0], &[2, 3])
        .unwrap();
    // x·K = [2, -2]: ((2 - 2)² + (-2 - 2)²) / 2 = 8.
    assert_eq!(s.evaluate().unwrap()[0].1, 8.0);
    // Another row count for x keeps K bound: it has no rows.
    s.set_input("x", &[0.0, 0.0, 4.0], &[1, 3]).unwrap();
    assert_eq!(s.evaluate().unwrap()[0].1, 0.0);
    assert!(s.set_input("K", &[1.0, 2.0], &[2]).is_err());
}
