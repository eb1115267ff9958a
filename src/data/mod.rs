//! Data tables from CSV files, and binding their columns to a model's inputs.
//!
//! Invariant: every error names the file, and where it applies the row (1-based line number in
//! the file) and the column (by name and 1-based position).

use crate::ir::indices::IndexLimit;
use crate::ir::{Dim, Graph};
use crate::model::Model;
use crate::runtime::Buffer;
use std::path::Path;

#[doc(hidden)]
pub mod fuzz;
pub mod npy;
mod table;
pub mod text;

pub use table::Table;
use table::{ColumnIndex, CsvRows};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DataError {
    #[error(
        "the model reads CSV columns but no data file was given\n  (name the data with `data \"file.csv\"` in the model or `--data FILE`)"
    )]
    NoDataFile,
    #[error("{file}: cannot read: {message}")]
    Io { file: String, message: String },
    #[error("{file}: the file is empty; expected a header row naming the columns")]
    Empty { file: String },
    #[error("{file}:{row}: expected {expected} fields as in the header, found {found}")]
    Ragged {
        file: String,
        row: usize,
        expected: usize,
        found: usize,
    },
    #[error("{file}:{row}: column `{column}` (column {position}): {problem}")]
    Cell {
        file: String,
        row: usize,
        column: String,
        position: usize,
        problem: String,
    },
    #[error("{file}: no column `{column}` for input `{input}`; the header has: {available}")]
    MissingColumn {
        file: String,
        column: String,
        input: String,
        available: String,
    },
    #[error("{file}: the header names column `{column}` twice")]
    DuplicateColumn { file: String, column: String },
    #[error("{file}: has a header but no rows of data")]
    NoRows { file: String },
    #[error("{file}: {message}")]
    Array { file: String, message: String },
    /// Two inputs that share a symbolic column count found different numbers of columns.
    #[error("{file}: {message}")]
    DimensionConflict { file: String, message: String },
}

/// The values of every input, row-major, in the model's dtype (read straight into it: an f32
/// model holds no f64 copy of its data); and the number of rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    pub n_rows: usize,
    /// One array per input, `n_rows × width` values.
    pub inputs: Vec<Buffer>,
    pub widths: Vec<usize>,
    /// Sizes of the symbolic column dimensions, bound from the data.
    pub dims: Vec<(u32, u64)>,
    /// The file the rows came from, for messages.
    pub source: Option<String>,
    /// Inputs without the row dimension (`input K[3] from "k.npy"`): read whole, never split
    /// into batches or between training and validation; every step sees all of each.
    pub whole: Vec<bool>,
    /// For a model whose rows are windows of a text: the text. The rows are then its tiled
    /// windows (`Corpus::tiled_rows`), and training draws random windows of it instead.
    pub corpus: Option<std::sync::Arc<text::Corpus>>,
}

/// Picks each input's columns out of the table and checks integer inputs (class labels).
pub fn bind(model: &Model, table: &Table) -> Result<Dataset, DataError> {
    bind_with(model, table, &vec![false; model.graph().inputs.len()])
}

/// As `bind`, but an input marked optional whose columns are all absent (say, the labels when
/// predicting) is filled with zeros instead of being an error.
pub fn bind_with(model: &Model, table: &Table, optional: &[bool]) -> Result<Dataset, DataError> {
    let binder = Binder::new(model, &table.file, &table.columns, optional)?;
    let mut inputs = binder.empty_inputs(table.n_rows());
    let width = table.columns.len();
    for (r, &line) in table.lines.iter().enumerate() {
        binder.push_row(line, &table.values[r * width..(r + 1) * width], &mut inputs)?;
    }
    Ok(binder.dataset(table.n_rows(), inputs))
}

/// Where one input's values come from in each row.
enum Source {
    /// Zeros of this width: an optional input the table lacks.
    Zeros(usize),
    /// These columns, in order.
    Columns(Vec<usize>),
}

/// The plan that binds a table's columns to a model's inputs, applied one row at a time.
struct Binder<'a> {
    graph: &'a Graph,
    file: &'a str,
    columns: &'a [String],
    sources: Vec<Source>,
    /// For each input, the range its values index, if any.
    limits: &'a [Option<IndexLimit>],
    /// The element type the values are stored in.
    dtype: crate::ir::DType,
    dims: Vec<(u32, u64)>,
}

impl<'a> Binder<'a> {
    fn new(
        model: &'a Model,
        file: &'a str,
        columns: &'a [String],
        optional: &[bool],
    ) -> Result<Binder<'a>, DataError> {
        let g = model.graph();
        let index = ColumnIndex::new(file, columns);
        let mut sources = Vec::new();
        // Each symbolic column count, with the input and column that fixed it (for messages).
        let mut dims: Vec<(u32, u64, String, String)> = Vec::new();
        for (i, (info, binding)) in g.inputs.iter().zip(&model.bindings).enumerate() {
            if binding.file.is_some() {
                sources.push(Source::Zeros(0));
                continue;
            }
            let absent = match &binding.prefix {
                None => binding.columns.iter().all(|c| index.find(c).is_none()),
                Some(p) => index.find(&format!("{p}0")).is_none(),
            };
            if optional.get(i) == Some(&true) && absent {
                let width = match info.shape.0.get(1) {
                    Some(Dim::Fixed(k)) => *k as usize,
                    _ => 1,
                };
                sources.push(Source::Zeros(width));
                continue;
            }
            let idx: Vec<usize> = match &binding.prefix {
                None => binding
                    .columns
                    .iter()
                    .map(|c| index.require(c, &info.name))
                    .collect::<Result<_, _>>()?,
                Some(prefix) => {
                    // The numbered columns `X0, X1, …` that the header has, in order.
                    let found: Vec<usize> = (0..)
                        .map_while(|j| index.find(&format!("{prefix}{j}")))
                        .collect();
                    if found.is_empty() {
                        index.require(&format!("{prefix}0"), &info.name)?;
                    }
                    if let Some(Dim::Sym(s)) = info.shape.0.get(1) {
                        let first = columns[found[0]].clone();
                        let last = columns[*found.last().unwrap()].clone();
                        match dims.iter().find(|d| d.0 == *s) {
                            Some((_, w, first_input, first_column)) if *w != found.len() as u64 => {
                                return Err(DataError::DimensionConflict {
                                    file: file.into(),
                                    message: format!(
                                        "dimension `{}` is {w} (columns `{first_column}`…) for input `{first_input}` but {} (up to column `{last}`) for input `{}`",
                                        g.syms[*s as usize],
                                        found.len(),
                                        info.name
                                    ),
                                });
                            }
                            Some(_) => {}
                            None => dims.push((*s, found.len() as u64, info.name.clone(), first)),
                        }
                    }
                    found
                }
            };
            sources.push(Source::Columns(idx));
        }
        Ok(Binder {
            graph: g,
            file,
            columns,
            sources,
            limits: &model.index_limits,
            dtype: g.dtype,
            dims: dims.into_iter().map(|d| (d.0, d.1)).collect(),
        })
    }

    /// One buffer per input, with room for `rows` rows when that is known.
    fn empty_inputs(&self, rows: usize) -> Vec<Buffer> {
        self.sources
            .iter()
            .map(|s| match s {
                Source::Zeros(w) => Buffer::with_capacity(self.dtype, rows * w),
                Source::Columns(c) => Buffer::with_capacity(self.dtype, rows * c.len()),
            })
            .collect()
    }

    /// Appends one row's values (all of the table's columns) to the inputs, checking each.
    fn push_row(&self, line: usize, row: &[f64], inputs: &mut [Buffer]) -> Result<(), DataError> {
        for (i, (source, values)) in self.sources.iter().zip(inputs).enumerate() {
            let info = &self.graph.inputs[i];
            match source {
                Source::Zeros(w) => (0..*w).for_each(|_| values.push(0.0)),
                Source::Columns(idx) => {
                    for &j in idx {
                        let v = row[j];
                        if let Some(problem) = value_problem(v, info, self.limits[i]) {
                            return Err(DataError::Cell {
                                file: self.file.into(),
                                row: line,
                                column: self.columns[j].clone(),
                                position: j + 1,
                                problem,
                            });
                        }
                        values.push(v);
                    }
                }
            }
        }
        Ok(())
    }

    fn dataset(self, n_rows: usize, inputs: Vec<Buffer>) -> Dataset {
        let widths = self
            .sources
            .iter()
            .map(|s| match s {
                Source::Zeros(w) => (*w).max(1),
                Source::Columns(c) => c.len(),
            })
            .collect();
        Dataset {
            n_rows,
            inputs,
            widths,
            dims: self.dims,
            source: Some(self.file.into()),
            whole: vec![false; self.sources.len()],
            corpus: None,
        }
    }
}

/// What is wrong with a value of an input, if anything: not finite, not a class index for an
/// `int` input, or an index beyond the range of a `one_hot` (or `cross_entropy`) or a gather
/// that reads it.
pub(crate) fn value_problem(
    v: f64,
    info: &crate::ir::InputInfo,
    limit: Option<IndexLimit>,
) -> Option<String> {
    if !v.is_finite() {
        return Some(format!("`{v}` is not a finite number"));
    }
    if info.is_int && (v.fract() != 0.0 || v < 0.0) {
        return Some(format!(
            "`{v}` is not a class index (a whole number ≥ 0) for input `{}`",
            info.name
        ));
    }
    limit.and_then(|l| l.problem(v, &info.name))
}

impl Dataset {
    /// The rows at `idx`, in that order (inputs without rows whole).
    pub fn rows(&self, idx: &[usize]) -> Dataset {
        let inputs = self
            .inputs
            .iter()
            .zip(&self.widths)
            .enumerate()
            .map(|(i, (v, &w))| match self.is_whole(i) {
                true => v.clone(),
                false => {
                    let mut rows = Buffer::with_capacity(v.dtype(), idx.len() * w);
                    v.gather_rows(w, idx, &mut rows);
                    rows
                }
            })
            .collect();
        Dataset {
            n_rows: idx.len(),
            inputs,
            widths: self.widths.clone(),
            dims: self.dims.clone(),
            source: self.source.clone(),
            whole: self.whole.clone(),
            corpus: None,
        }
    }

    /// Whether input `i` is read whole rather than by rows.
    pub fn is_whole(&self, i: usize) -> bool {
        self.whole.get(i).copied().unwrap_or(false)
    }

    /// A seeded random split: (training rows, the held-out `fraction`). A text's split is
    /// its held-out tail instead: the last `fraction` of its characters (not shuffled, so
    /// that no held-out window overlaps a training one).
    pub fn split(&self, fraction: f64, seed: u64) -> (Dataset, Dataset) {
        if let Some(c) = &self.corpus {
            let held = ((c.tokens.len() as f64) * fraction).round() as usize;
            let (train, tail) = c.split_at(c.tokens.len() - held);
            return (self.with_corpus(train), self.with_corpus(tail));
        }
        let (train, val) = split_rows(self.n_rows, fraction, seed);
        (self.rows(&train), self.rows(&val))
    }

    /// This data with its text replaced by `corpus`, and the rows its tiled windows.
    pub fn with_corpus(&self, corpus: text::Corpus) -> Dataset {
        let mut d = self.clone();
        d.n_rows = corpus.tiled_windows();
        for (i, values) in corpus.tiled_rows(d.inputs[0].dtype()) {
            d.inputs[i] = values;
            d.widths[i] = corpus.window;
        }
        d.source = Some(corpus.file.clone());
        d.corpus = Some(std::sync::Arc::new(corpus));
        d
    }
}

/// A NumPy `.npy` file (version 1, little-endian f64, row-major) of `values` with `shape`.
pub fn npy_bytes(shape: &[usize], values: &[f64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape_text}, }}");
    // The data starts at a multiple of 64 bytes; the header ends with a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    bytes
}

/// The row indices of a seeded random split of `n_rows` rows, each list in increasing order:
/// (training rows, the held-out `fraction`, at least one row left to train on).
pub fn split_rows(n_rows: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    use rand::RngExt;
    let mut order: Vec<usize> = (0..n_rows).collect();
    let mut rng = crate::init::rng(seed ^ 0x5A17_5A17);
    for i in (1..order.len()).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    let held = ((n_rows as f64) * fraction).round() as usize;
    let held = held.min(n_rows.saturating_sub(1));
    let (val, train) = order.split_at(held);
    let (mut train, mut val) = (train.to_vec(), val.to_vec());
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

/// Reads the CSV-bound inputs of a model from `path` a row at a time, straight into their buffers:
/// the file's text is never held whole, and columns no input reads are checked but not kept.
fn stream_csv(
    model: &Model,
    path: &Path,
    optional: &[bool],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Dataset, DataError> {
    let file = path.display().to_string();
    let io = |e: std::io::Error| DataError::Io {
        file: file.clone(),
        message: e.to_string(),
    };
    let src = std::fs::File::open(path).map_err(io)?;
    let size = src.metadata().map_err(io)?.len();
    let src = Progress {
        inner: std::io::BufReader::with_capacity(1 << 16, src),
        read: 0,
        size,
        report: progress,
    };
    let mut rows = CsvRows::new(&file, src)?;
    let columns = rows.columns.clone();
    let binder = Binder::new(model, &file, &columns, optional)?;
    let mut inputs = binder.empty_inputs(0);
    let mut values = Vec::with_capacity(columns.len());
    let mut n_rows = 0;
    while let Some(line) = rows.next_row(&mut values)? {
        binder.push_row(line, &values, &mut inputs)?;
        n_rows += 1;
    }
    Ok(binder.dataset(n_rows, inputs))
}

/// A reader that reports how far it has read.
struct Progress<'a, R> {
    inner: R,
    read: u64,
    size: u64,
    report: &'a mut dyn FnMut(u64, u64),
}

impl<R: std::io::Read> std::io::Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let before = self.read >> 20;
        self.read += n as u64;
        if self.read >> 20 != before || n == 0 {
            (self.report)(self.read, self.size);
        }
        Ok(n)
    }
}

/// A NumPy `.npy` array: shape and values as f64 (row-major), read no larger than the memory
/// budget allows.
pub fn load_npy(path: &Path) -> Result<(Vec<usize>, Vec<f64>), DataError> {
    match load_npy_as(path, crate::ir::DType::F64)? {
        (shape, Buffer::F64(values)) => Ok((shape, values)),
        (shape, values) => Ok((shape, values.to_f64())),
    }
}

/// A NumPy `.npy` array: shape and values in `dtype` (row-major), read no larger than the memory
/// budget allows.
pub fn load_npy_as(path: &Path, dtype: crate::ir::DType) -> Result<npy::TypedArray, DataError> {
    let file = path.display().to_string();
    let bytes =
        crate::limits::read_bounded(path, crate::limits::memory_budget() / 8).map_err(|e| {
            DataError::Io {
                file: file.clone(),
                message: e.to_string(),
            }
        })?;
    npy::parse_as(&bytes, dtype).map_err(|e| DataError::Array {
        file,
        message: e.to_string(),
    })
}

/// The data of a model: its CSV-bound inputs from `csv`, its `.npy`-bound inputs from their
/// files (relative to `base`, the model's folder). Inputs marked optional may be absent.
pub fn load(
    model: &Model,
    csv: Option<&Path>,
    base: &Path,
    optional: &[bool],
) -> Result<Dataset, DataError> {
    load_with_progress(model, csv, base, optional, &mut |_, _| {})
}

/// As `load`, calling `progress(bytes read, file size)` as the CSV file is read.
pub fn load_with_progress(
    model: &Model,
    csv: Option<&Path>,
    base: &Path,
    optional: &[bool],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Dataset, DataError> {
    let g = model.graph();
    let from_file: Vec<bool> = model
        .bindings
        .iter()
        .map(|b| b.file.is_some() || b.text.is_some())
        .collect();
    let csv_needed =
        (0..g.inputs.len()).any(|i| !from_file[i] && !optional.get(i).copied().unwrap_or(false));
    // Each `.npy`-bound input's file name, shape and values.
    let mut arrays: Vec<Option<(String, npy::TypedArray)>> = Vec::new();
    for b in &model.bindings {
        arrays.push(match &b.file {
            Some(f) => {
                let p = base.join(f);
                Some((p.display().to_string(), load_npy_as(&p, g.dtype)?))
            }
            None => None,
        });
    }
    let mut ds = if csv_needed {
        let path = csv.ok_or(DataError::NoDataFile)?;
        stream_csv(model, path, optional, progress)?
    } else {
        // The rows of the first array with rows; none when every input is read whole.
        let n = arrays
            .iter()
            .enumerate()
            .filter(|(i, _)| model.is_row_input(*i))
            .find_map(|(_, a)| a.as_ref())
            .map_or(0, |a| a.1.0.first().copied().unwrap_or(0));
        Dataset {
            n_rows: n,
            inputs: vec![Buffer::zeros(g.dtype, 0); g.inputs.len()],
            widths: vec![1; g.inputs.len()],
            dims: vec![],
            source: None,
            whole: vec![false; g.inputs.len()],
            corpus: None,
        }
    };
    ds.whole = (0..g.inputs.len())
        .map(|i| !model.is_row_input(i))
        .collect();
    for (i, a) in arrays.into_iter().enumerate() {
        let Some((file, (shape, values))) = a else {
            continue;
        };
        let info = &g.inputs[i];
        let problem = |what: String| DataError::Array {
            file: file.clone(),
            message: what,
        };
        let has_rows = model.is_row_input(i);
        let width: usize = match has_rows {
            true => shape.iter().skip(1).product(),
            false => shape.iter().product(),
        };
        if shape.len() != info.shape.rank() {
            return Err(problem(format!(
                "input `{}` is declared with rank {} ({}) but the array has shape {}",
                info.name,
                info.shape.rank(),
                g.shape_text(&info.shape),
                shape_text(&shape)
            )));
        }
        if has_rows {
            let rows = shape[0];
            if rows != ds.n_rows {
                let other = ds
                    .source
                    .clone()
                    .unwrap_or_else(|| "the other inputs".into());
                return Err(problem(format!(
                    "{rows} rows for input `{}` but {} rows in {other}",
                    info.name, ds.n_rows
                )));
            }
            if rows == 0 {
                return Err(problem(format!("no rows for input `{}`", info.name)));
            }
        }
        let first_axis = if has_rows { 1 } else { 0 };
        for (axis, (d, &size)) in info.shape.0.iter().zip(&shape).enumerate().skip(first_axis) {
            match d {
                crate::ir::Dim::Fixed(k) if *k as usize != size => {
                    return Err(problem(format!(
                        "input `{}` is declared {} but the array has shape {}: axis {} is {size}, not {k}",
                        info.name,
                        g.shape_text(&info.shape),
                        shape_text(&shape),
                        axis + 1
                    )));
                }
                crate::ir::Dim::Fixed(_) => {}
                crate::ir::Dim::Sym(s) => match ds.dims.iter().find(|d| d.0 == *s) {
                    Some(&(_, w)) if w as usize != size => {
                        return Err(problem(format!(
                            "dimension `{}` is {w} elsewhere but {size} here (input `{}`, axis {})",
                            g.syms[*s as usize],
                            info.name,
                            axis + 1
                        )));
                    }
                    Some(_) => {}
                    None => ds.dims.push((*s, size as u64)),
                },
            }
        }
        let limit = model.index_limits[i];
        let width = width.max(1);
        for (k, v) in values.iter_f64().enumerate() {
            let at = match has_rows {
                true => format!("row {}, column {}", k / width + 1, k % width + 1),
                false => format!("element {} (row-major, from 1)", k + 1),
            };
            if let Some(why) = value_problem(v, info, limit) {
                return Err(problem(format!("{at}: {why}")));
            }
        }
        ds.inputs[i] = values;
        ds.widths[i] = width.max(1);
        if ds.source.is_none() && has_rows {
            ds.source = Some(file);
        }
    }
    match text::load_corpus(model, base)? {
        Some(corpus) => Ok(ds.with_corpus(corpus)),
        None => Ok(ds),
    }
}

/// A shape as NumPy prints it: `(3,)`, `(2, 3)`.
fn shape_text(shape: &[usize]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
