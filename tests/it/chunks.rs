//! Evaluation in chunks of rows (`chunks`): the same loss and metrics as one pass over every
//! row, and a workspace for one chunk.

use crate::support::*;
use adjoint::chunks::{Chunking, chunking_within};
use adjoint::compile::CompiledModel;
use adjoint::data::{Table, bind};
use adjoint::ir::DType;
use adjoint::ir::rows::Combine;
use adjoint::memory::{Rows, Run, footprint};
use adjoint::runtime::Buffer;
use adjoint::train::Trainer;

/// A loss that is a mean, a metric of each combining rule (a mean, a sum over rows, a value of
/// the parameters alone, a vector of means).
const MODEL: &str = "
input x[n, 3]
input y[n]: int
param W[3, 4] ~ normal(0, 1)
param b[4] ~ normal(0, 1)
let logits = x @ W + b
loss cross_entropy(logits, y)
metric accuracy = mean(argmax(logits, axis=1) == y)
metric total = sum(logits)
metric norm = sum(W * W)
metric per_class = mean(one_hot(y, 4) * logits, axis=0)
";

fn table(rows: usize) -> Table {
    let mut csv = String::from("x0,x1,x2,y\n");
    for r in 0..rows {
        let v = |k: usize| ((r * 7 + k * 13) % 17) as f64 / 5.0 - 1.5;
        csv += &format!("{},{},{},{}\n", v(0), v(1), v(2), (r * 5) % 4);
    }
    Table::parse("rows.csv", &csv).unwrap()
}

fn model(dtype: DType) -> CompiledModel {
    CompiledModel::from_model(with_dtype(model_of_source("chunks.dsl", MODEL), dtype)).unwrap()
}

#[test]
fn chunked_evaluation_equals_one_pass_in_both_float_types() {
    for (dtype, tolerance) in [(DType::F64, 1e-13), (DType::F32, 1e-5)] {
        let compiled = model(dtype);
        let data = bind(&compiled.model, &table(1000)).unwrap();
        let inputs: Vec<Buffer> = data
            .inputs
            .iter()
            .map(|v| v.in_dtype(dtype).into_owned())
            .collect();
        let mut trainer = Trainer::new(&compiled, 3);
        let syms = |r: usize| vec![r as u64];
        // A workspace of a few rows: chunks of 93 rows, the last one short.
        let per_row = adjoint::runtime::Workspace::bytes(&compiled.forward.plan, dtype, &syms(2))
            - adjoint::runtime::Workspace::bytes(&compiled.forward.plan, dtype, &syms(1));
        let bytes = adjoint::runtime::Workspace::bytes(&compiled.forward.plan, dtype, &syms(93));
        let chunking = chunking_within(bytes + per_row / 2, &compiled, 1000, syms).unwrap();
        assert_eq!(
            chunking,
            Chunking {
                rows: 93,
                rules: vec![
                    Combine::Sum { power: -1 },
                    Combine::Sum { power: -1 },
                    Combine::Sum { power: 0 },
                    Combine::Same { power: 0 },
                    Combine::Sum { power: -1 },
                ]
            }
        );
        let once = trainer.evaluate_once(&inputs, 1000).unwrap();
        let chunked = trainer
            .evaluate_in_chunks(&inputs, 1000, &chunking)
            .unwrap();
        assert_eq!(once.len(), chunked.len());
        for (a, b) in once.iter().zip(&chunked) {
            assert_eq!((&a.name, a.values.len()), (&b.name, b.values.len()));
            for (x, y) in a.values.iter().zip(&b.values) {
                assert!(x.is_finite() && y.is_finite(), "{}: {x} vs {y}", a.name);
                assert!(
                    rel_err(*x, *y, 1e-3) <= tolerance,
                    "{dtype:?} {}: one pass {x}, chunks {y}",
                    a.name
                );
            }
        }
        // The accuracy is a count of rows over 1000: chunks of 93 rows must still find it.
        let accuracy = once[1].values[0] * 1000.0;
        assert!((accuracy - accuracy.round()).abs() < 1e-3, "{accuracy}");
    }
}

#[test]
fn a_metric_that_mixes_rows_is_evaluated_in_one_pass() {
    let source = format!("{MODEL}metric spread = sum((x - mean(x, axis=0))^2)\n");
    let compiled = CompiledModel::from_model(model_of_source("mixed.dsl", &source)).unwrap();
    assert_eq!(
        chunking_within(1, &compiled, 1000, |r| vec![r as u64]),
        None
    );
}

#[test]
fn the_memory_check_counts_one_chunk_of_the_evaluation() {
    let compiled = model(DType::F64);
    let rows = Rows {
        rows: 10_000_000,
        batch: Some(32),
        dims: &[],
        values: 0,
    };
    let f = footprint(Run::Training, &compiled, rows);
    let plan = &compiled.forward.plan;
    let all = adjoint::runtime::Workspace::bytes(plan, DType::F64, &[10_000_000]) as u64;
    // The forward pass over ten million rows would bind more than the chunk target alone.
    assert!(all > adjoint::chunks::CHUNK_WORKSPACE_BYTES as u64, "{all}");
    assert!(
        f.workspace <= adjoint::chunks::CHUNK_WORKSPACE_BYTES as u64 + (1 << 20),
        "{f:?}"
    );
}
