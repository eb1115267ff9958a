//! Entry points for fuzzing the data readers: each takes arbitrary bytes, must never panic, and
//! checks what a successful read promises. The fuzz targets (`fuzz/fuzz_targets/table.rs`,
//! `npy.rs`, `text.rs`) and the corpus smoke test (`tests/it/fuzz_corpus.rs`) call these same functions.

use super::{Table, bind_with, npy};
use crate::model::Model;
use std::sync::OnceLock;

/// A model with every kind of CSV binding: named columns, a numbered range with a symbolic
/// width, class labels that feed `one_hot` and tokens that index a table (so both are
/// range-checked).
const MODEL: &str = "input a[n]\ninput X[n, d]\ninput y[n]: int\ninput t[n, 2]: int\nparam w = 0\nparam E[4] ~ zeros\nloss mean((w * a - sum(X, axis=1))^2) + mean(one_hot(y, 3)[:, 0]) + mean(E[t])\n";

fn model() -> &'static Model {
    static MODEL_CELL: OnceLock<Model> = OnceLock::new();
    MODEL_CELL.get_or_init(|| {
        let file = crate::diagnostics::SourceFile::new("fuzz.dsl", MODEL);
        crate::compile::check_source(&file, &crate::limits::Limits::of_host())
            .map(|(m, _)| m)
            .unwrap_or_else(|_| panic!("the fuzzing model does not compile"))
    })
}

/// CSV bytes read as a table, then bound to the model above (absent columns are fine).
pub fn table(bytes: &[u8]) {
    let Ok(table) = Table::read_bytes("fuzz.csv", bytes) else {
        return;
    };
    assert_eq!(table.values.len(), table.n_rows() * table.columns.len());
    assert!(table.values.iter().all(|v| v.is_finite()));
    assert!(
        table.lines.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        table.lines
    );
    let optional = [true, true, true, true];
    if let Ok(d) = bind_with(model(), &table, &optional) {
        for (values, width) in d.inputs.iter().zip(&d.widths) {
            assert_eq!(values.len(), d.n_rows * width);
        }
        assert!(
            d.inputs[2]
                .iter_f64()
                .all(|y| (0.0..3.0).contains(&y) && y.fract() == 0.0)
        );
        assert!(
            d.inputs[3]
                .iter_f64()
                .all(|t| (0.0..4.0).contains(&t) && t.fract() == 0.0)
        );
    }
}

/// `.npy` bytes parsed; a successful parse has as many values as its shape says.
pub fn npy(bytes: &[u8]) {
    if let Ok((shape, values)) = npy::parse(bytes) {
        assert_eq!(shape.iter().product::<usize>(), values.len());
    }
}

/// Text bytes read as character tokens for windows of 4 characters and their next characters;
/// a successful read has a sorted vocabulary that reads back, tokens inside it, and tiled
/// windows inside the text, as does its held-out tail's.
pub fn text(bytes: &[u8]) {
    use super::text::{Corpus, Vocabulary, WindowInput};
    let inputs = vec![
        WindowInput {
            input: 0,
            offset: 0,
        },
        WindowInput {
            input: 1,
            offset: 1,
        },
    ];
    let Ok(c) = Corpus::from_bytes("fuzz.txt".into(), bytes.to_vec(), 4, inputs) else {
        return;
    };
    let v = &c.vocabulary;
    assert_eq!(Vocabulary::parse(&v.text()).as_ref(), Some(v));
    assert!(c.tokens.iter().all(|&t| (t as usize) < v.len()));
    let text: String = c.tokens.iter().map(|&t| v.char(t as usize)).collect();
    assert_eq!(text.as_bytes(), bytes);
    for part in [c.clone(), c.split_at(c.tokens.len() / 2).1] {
        for (_, rows) in part.tiled_rows(crate::ir::DType::F64) {
            assert_eq!(rows.len(), part.tiled_windows() * part.window);
            assert!(rows.iter_f64().all(|t| t >= 0.0 && (t as usize) < v.len()));
        }
    }
    if let Some(other) = Vocabulary::parse("\n abc") {
        match c.with_vocabulary(&other) {
            Ok(r) => assert!(r.tokens.iter().all(|&t| (t as usize) < other.len())),
            Err(_) => assert!(!other.missing_from(v).is_empty()),
        }
    }
}
