//! Forward passes over many rows in chunks of bounded workspace: a model's evaluation on all its
//! rows (the final summary, every validation pass, `eval`) binds a workspace for one chunk, not
//! for every row at once, and combines the chunks' outputs exactly (`ir::rows`).

use crate::compile::CompiledModel;
use crate::ir::rows::{Combine, combine_rules};
use crate::runtime::Workspace;

/// The most workspace one chunk of a forward pass binds: small enough to stay near the caches,
/// large enough that a chunk's products are not dominated by their calls.
pub const CHUNK_WORKSPACE_BYTES: u128 = 64 << 20;

/// A forward pass run in chunks: how many rows each holds and how each output combines.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunking {
    pub rows: usize,
    pub rules: Vec<Combine>,
}

/// How a forward pass of `compiled` over `rows` rows runs: in chunks (`Some`), or in one pass
/// when all rows fit in one chunk or an output does not combine over chunks. `syms` binds the
/// symbolic dimensions for a given row count.
pub fn chunking(
    compiled: &CompiledModel,
    rows: usize,
    syms: impl Fn(usize) -> Vec<u64>,
) -> Option<Chunking> {
    chunking_within(CHUNK_WORKSPACE_BYTES, compiled, rows, syms)
}

/// As `chunking`, with chunks whose workspace is at most `bytes` (one row each at least).
pub fn chunking_within(
    bytes: u128,
    compiled: &CompiledModel,
    rows: usize,
    syms: impl Fn(usize) -> Vec<u64>,
) -> Option<Chunking> {
    let row = compiled.model.row_dim?;
    if rows < 2 {
        return None;
    }
    let plan = &compiled.forward.plan;
    let dtype = compiled.model.graph().dtype;
    let (one, two) = (
        Workspace::bytes(plan, dtype, &syms(1)),
        Workspace::bytes(plan, dtype, &syms(2)),
    );
    let per_row = two.saturating_sub(one);
    if per_row == 0 {
        return None;
    }
    // Workspaces grow by the same bytes per row: every value of a chunked pass has at most one
    // row axis.
    let fit = bytes.saturating_sub(one) / per_row + 1;
    let chunk = fit.min(rows as u128) as usize;
    if chunk >= rows {
        return None;
    }
    let f = &compiled.graphs.forward;
    let outputs: Vec<_> = f.outputs.iter().map(|o| o.1).collect();
    let rules = combine_rules(&f.graph, row, &outputs)?;
    Some(Chunking { rows: chunk, rules })
}

/// The rows the largest pass of a forward evaluation over `rows` rows binds a workspace for.
pub fn rows_per_pass(
    compiled: &CompiledModel,
    rows: usize,
    syms: impl Fn(usize) -> Vec<u64>,
) -> usize {
    chunking(compiled, rows, syms).map_or(rows, |c| c.rows)
}

/// The outputs of all rows, from those of each chunk: values are added into it chunk by chunk.
#[derive(Clone, Debug, Default)]
pub struct Combined {
    pub values: Vec<Vec<f64>>,
    chunks: usize,
}

impl Combined {
    /// Adds one chunk's outputs (each output's values) of `rows` of `all` rows.
    pub fn add(&mut self, rules: &[Combine], outputs: &[Vec<f64>], rows: usize, all: usize) {
        if self.chunks == 0 {
            self.values = outputs.iter().map(|v| vec![0.0; v.len()]).collect();
        }
        for ((rule, acc), values) in rules.iter().zip(&mut self.values).zip(outputs) {
            let scale = rule.scale(rows, all);
            match rule {
                Combine::Sum { .. } => {
                    for (a, v) in acc.iter_mut().zip(values) {
                        *a += v * scale;
                    }
                }
                Combine::Same { .. } if self.chunks == 0 => {
                    for (a, v) in acc.iter_mut().zip(values) {
                        *a = v * scale;
                    }
                }
                Combine::Same { .. } => {}
            }
        }
        self.chunks += 1;
    }
}
