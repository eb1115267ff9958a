//! The workspace each example and W5 binds while training, with buffers shared by temporaries
//! whose lifetimes do not overlap and without: pinned, so that a change in lowering that costs
//! memory is reviewed (BENCHMARKS.md, "Memory", quotes these figures).

use crate::support::*;
use adjoint::compile::CompiledModel;
use adjoint::data::{Table, bind};
use adjoint::memory::{Rows, Run, footprint};
use adjoint::runtime::{Workspace, human_bytes};

/// A row of the table: the whole run's workspaces (the gradient step's on a batch, the forward
/// pass's on every row at log points), then the gradient step's alone.
fn line(name: &str, compiled: &CompiledModel, rows: Rows) -> String {
    let f = footprint(Run::Training, compiled, rows);
    assert!(f.workspace <= f.workspace_without_reuse, "{name}: {f:?}");
    let plan = &compiled.gradient.plan;
    let dtype = compiled.model.graph().dtype;
    let batch = rows.batch.map_or(rows.rows, |b| b.min(rows.rows)).max(1);
    let syms = vec![batch; compiled.model.graph().syms.len()];
    let step = Workspace::bytes(plan, dtype, &syms) as u64;
    let step_without = Workspace::bytes_without_reuse(plan, dtype, &syms) as u64;
    format!(
        "{name:<14} {:>6} rows  run {:>10} / {:>10} ({})  step {:>10} / {:>10} ({})\n",
        rows.rows,
        human_bytes(f.workspace),
        human_bytes(f.workspace_without_reuse),
        ratio(f.workspace, f.workspace_without_reuse),
        human_bytes(step),
        human_bytes(step_without),
        ratio(step, step_without),
    )
}

fn ratio(a: u64, b: u64) -> String {
    format!("{:.2}×", a as f64 / b.max(1) as f64)
}

#[test]
fn training_workspaces_with_and_without_buffer_reuse() {
    let mut out = String::new();
    for path in dsl_files("examples") {
        let model = model_of(&path);
        let data = model.data.as_ref().map(|d| {
            let table = Table::load(&path.parent().unwrap().join(d)).unwrap();
            bind(&model, &table).unwrap()
        });
        let batch = model.train.batch;
        let compiled = CompiledModel::from_model(model).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        out += &line(name, &compiled, Rows::of(data.as_ref(), batch));
    }
    // W5's 60,000 rows of 784 pixels and a label, in batches of 128 (`bench::w5_data`).
    let w5 = CompiledModel::from_model(model_of_source("w5.dsl", adjoint::bench::W5)).unwrap();
    let rows = Rows {
        rows: 60_000,
        batch: w5.model.train.batch,
        dims: &[],
        values: 60_000 * 785,
    };
    assert_eq!(rows.batch, Some(128));
    out += &line("W5", &w5, rows);
    // W8's steps of 16 windows (`bench::w8`), evaluated on the same 16.
    let w8 = CompiledModel::from_model(model_of_source("w8.dsl", adjoint::bench::W8)).unwrap();
    let rows = Rows {
        rows: 16,
        batch: Some(16),
        dims: &[],
        values: 2 * 16 * 64,
    };
    out += &line("W8", &w8, rows);
    insta::assert_snapshot!(out);
}
