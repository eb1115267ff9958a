//! Data tables from CSV files, and binding their columns to a model's inputs.
//!
//! Invariant: every error names the file, and where it applies the row (1-based line number in
//! the file) and the column (by name and 1-based position).

use crate::ir::{Graph, Op};
use crate::model::Model;
use std::path::Path;

pub mod npy;

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
    #[error(
        "{file}: dimension `{dim}` is {first} (columns `{first_column}`…) for input `{first_input}` but {second} (up to column `{second_column}`) for input `{second_input}`"
    )]
    DimensionConflict {
        file: String,
        dim: String,
        first: usize,
        first_input: String,
        first_column: String,
        second: usize,
        second_input: String,
        second_column: String,
    },
}

/// A numeric table: named columns, row-major values.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub file: String,
    pub columns: Vec<String>,
    /// Line number in the file of each row, for error messages.
    pub lines: Vec<usize>,
    pub values: Vec<f64>,
}

impl Table {
    pub fn n_rows(&self) -> usize {
        self.lines.len()
    }

    pub fn load(path: &Path) -> Result<Table, DataError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| DataError::Io {
            file: file.clone(),
            message: e.to_string(),
        })?;
        Table::parse(&file, &text)
    }

    /// Parses comma-separated text with a header row. Blank lines are skipped.
    pub fn parse(file: &str, text: &str) -> Result<Table, DataError> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else {
            return Err(DataError::Empty { file: file.into() });
        };
        let columns: Vec<String> = header
            .split(',')
            .map(|c| c.trim().trim_matches('"').to_string())
            .collect();
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].contains(c) {
                return Err(DataError::DuplicateColumn {
                    file: file.into(),
                    column: c.clone(),
                });
            }
        }
        let mut values = Vec::new();
        let mut row_lines = Vec::new();
        for (idx, line) in lines {
            let row = idx + 1;
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != columns.len() {
                return Err(DataError::Ragged {
                    file: file.into(),
                    row,
                    expected: columns.len(),
                    found: fields.len(),
                });
            }
            for (j, f) in fields.iter().enumerate() {
                let cell = f.trim();
                let v: f64 = cell.parse().map_err(|_| DataError::Cell {
                    file: file.into(),
                    row,
                    column: columns[j].clone(),
                    position: j + 1,
                    problem: if cell.is_empty() {
                        "empty cell".into()
                    } else {
                        format!("`{cell}` is not a number")
                    },
                })?;
                if !v.is_finite() {
                    return Err(DataError::Cell {
                        file: file.into(),
                        row,
                        column: columns[j].clone(),
                        position: j + 1,
                        problem: format!("`{cell}` is not a finite number"),
                    });
                }
                values.push(v);
            }
            row_lines.push(row);
        }
        if row_lines.is_empty() {
            return Err(DataError::NoRows { file: file.into() });
        }
        Ok(Table {
            file: file.into(),
            columns,
            lines: row_lines,
            values,
        })
    }

    fn column_index(&self, name: &str, input: &str) -> Result<usize, DataError> {
        self.columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| DataError::MissingColumn {
                file: self.file.clone(),
                column: name.into(),
                input: input.into(),
                available: abbreviate(&self.columns),
            })
    }
}

fn abbreviate(cols: &[String]) -> String {
    if cols.len() <= 12 {
        cols.join(", ")
    } else {
        format!(
            "{}, …, {} ({} columns)",
            cols[..6].join(", "),
            cols[cols.len() - 3..].join(", "),
            cols.len()
        )
    }
}

/// The values of every input, row-major, as f64; and the number of rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub n_rows: usize,
    /// One array per input, `n_rows × width` values.
    pub inputs: Vec<Vec<f64>>,
    pub widths: Vec<usize>,
    /// Sizes of the symbolic column dimensions, bound from the data.
    pub dims: Vec<(u32, u64)>,
    /// The file the rows came from, for messages.
    pub source: Option<String>,
}

/// Picks each input's columns out of the table and checks integer inputs (class labels).
pub fn bind(model: &Model, table: &Table) -> Result<Dataset, DataError> {
    bind_with(model, table, &vec![false; model.graph().inputs.len()])
}

/// As `bind`, but an input marked optional whose columns are all absent (say, the labels when
/// predicting) is filled with zeros instead of being an error.
pub fn bind_with(model: &Model, table: &Table, optional: &[bool]) -> Result<Dataset, DataError> {
    let g = model.graph();
    let n = table.n_rows();
    let mut inputs = Vec::new();
    let mut widths = Vec::new();
    let mut dims: Vec<(u32, u64, String, String)> = Vec::new();
    for (i, (info, binding)) in g.inputs.iter().zip(&model.bindings).enumerate() {
        let absent = match &binding.prefix {
            None => binding.columns.iter().all(|c| !table.columns.contains(c)),
            Some(p) => !table.columns.contains(&format!("{p}0")),
        };
        if optional.get(i) == Some(&true) && absent {
            let width = match info.shape.0.get(1) {
                Some(crate::ir::Dim::Fixed(k)) => *k as usize,
                _ => 1,
            };
            inputs.push(vec![0.0; n * width]);
            widths.push(width);
            continue;
        }
        let names: Vec<String> = match &binding.prefix {
            None => binding.columns.clone(),
            Some(prefix) => {
                // The numbered columns `X0, X1, …` that the header has, in order.
                let found: Vec<String> = (0..)
                    .map(|j| format!("{prefix}{j}"))
                    .take_while(|c| table.columns.contains(c))
                    .collect();
                if found.is_empty() {
                    table.column_index(&format!("{prefix}0"), &info.name)?;
                }
                if let Some(crate::ir::Dim::Sym(s)) = info.shape.0.get(1) {
                    let last = found.last().cloned().unwrap_or_default();
                    match dims.iter().find(|d| d.0 == *s) {
                        Some((_, w, first_input, first_col)) if *w != found.len() as u64 => {
                            return Err(DataError::DimensionConflict {
                                file: table.file.clone(),
                                dim: g.syms[*s as usize].clone(),
                                first: *w as usize,
                                first_input: first_input.clone(),
                                first_column: first_col.clone(),
                                second: found.len(),
                                second_input: info.name.clone(),
                                second_column: last,
                            });
                        }
                        Some(_) => {}
                        None => {
                            dims.push((*s, found.len() as u64, info.name.clone(), found[0].clone()))
                        }
                    }
                }
                found
            }
        };
        let idx: Vec<usize> = names
            .iter()
            .map(|c| table.column_index(c, &info.name))
            .collect::<Result<_, _>>()?;
        let width = idx.len();
        let mut values = Vec::with_capacity(n * width);
        let classes = one_hot_classes(g, i as u32);
        for r in 0..n {
            for &j in &idx {
                let v = table.values[r * table.columns.len() + j];
                let cell_error = |problem: String| DataError::Cell {
                    file: table.file.clone(),
                    row: table.lines[r],
                    column: table.columns[j].clone(),
                    position: j + 1,
                    problem,
                };
                if let Some(why) = value_problem(v, info, classes) {
                    return Err(cell_error(why));
                }
                values.push(v);
            }
        }
        inputs.push(values);
        widths.push(width);
    }
    Ok(Dataset {
        n_rows: n,
        inputs,
        widths,
        dims: dims.into_iter().map(|d| (d.0, d.1)).collect(),
        source: Some(table.file.clone()),
    })
}

/// What is wrong with a value of an input, if anything: not finite, not a class index for an
/// `int` input, or a label beyond the classes of a `one_hot` (or `cross_entropy`) it feeds.
fn value_problem(v: f64, info: &crate::ir::InputInfo, classes: Option<u32>) -> Option<String> {
    if !v.is_finite() {
        return Some(format!("`{v}` is not a finite number"));
    }
    if info.is_int && (v.fract() != 0.0 || v < 0.0) {
        return Some(format!(
            "`{v}` is not a class index (a whole number ≥ 0) for input `{}`",
            info.name
        ));
    }
    match classes {
        Some(k) if v >= k as f64 => Some(format!(
            "label {v} is out of range: `{}` is one-hot encoded with {k} classes",
            info.name
        )),
        _ => None,
    }
}

/// The number of classes when an input feeds `one_hot`, the smallest if several.
fn one_hot_classes(g: &Graph, input: u32) -> Option<u32> {
    g.ids()
        .filter_map(|id| {
            let node = g.node(id);
            match node.op {
                Op::OneHot { classes }
                    if node.inputs.iter().any(|&a| *g.op(a) == Op::Input(input)) =>
                {
                    Some(classes)
                }
                _ => None,
            }
        })
        .min()
}

impl Dataset {
    /// The rows at `idx`, in that order.
    pub fn rows(&self, idx: &[usize]) -> Dataset {
        let inputs = self
            .inputs
            .iter()
            .zip(&self.widths)
            .map(|(v, &w)| {
                idx.iter()
                    .flat_map(|&r| v[r * w..(r + 1) * w].iter().copied())
                    .collect()
            })
            .collect();
        Dataset {
            n_rows: idx.len(),
            inputs,
            widths: self.widths.clone(),
            dims: self.dims.clone(),
            source: self.source.clone(),
        }
    }

    /// A seeded random split: (training rows, the held-out `fraction`).
    pub fn split(&self, fraction: f64, seed: u64) -> (Dataset, Dataset) {
        use rand::RngExt;
        let mut order: Vec<usize> = (0..self.n_rows).collect();
        let mut rng = crate::init::rng(seed ^ 0x5A17_5A17);
        for i in (1..order.len()).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        let held = ((self.n_rows as f64) * fraction).round() as usize;
        let held = held.min(self.n_rows.saturating_sub(1));
        let (val, train) = order.split_at(held);
        let (mut train, mut val) = (train.to_vec(), val.to_vec());
        train.sort_unstable();
        val.sort_unstable();
        (self.rows(&train), self.rows(&val))
    }
}

/// A NumPy `.npy` array: shape and values as f64 (row-major), read no larger than the memory
/// budget allows.
pub fn load_npy(path: &Path) -> Result<(Vec<usize>, Vec<f64>), DataError> {
    let file = path.display().to_string();
    let bytes =
        crate::limits::read_bounded(path, crate::limits::memory_budget() / 8).map_err(|e| {
            DataError::Io {
                file: file.clone(),
                message: e.to_string(),
            }
        })?;
    npy::parse(&bytes).map_err(|e| DataError::Array {
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
    let g = model.graph();
    let from_file: Vec<bool> = model.bindings.iter().map(|b| b.file.is_some()).collect();
    let csv_needed =
        (0..g.inputs.len()).any(|i| !from_file[i] && !optional.get(i).copied().unwrap_or(false));
    let mut arrays: Vec<Option<(String, Vec<usize>, Vec<f64>)>> = Vec::new();
    for b in &model.bindings {
        arrays.push(match &b.file {
            Some(f) => {
                let p = base.join(f);
                let (shape, values) = load_npy(&p)?;
                Some((p.display().to_string(), shape, values))
            }
            None => None,
        });
    }
    let mut ds = if csv_needed {
        let path = csv.ok_or(DataError::NoDataFile)?;
        let table = Table::load(path)?;
        let opt: Vec<bool> = (0..g.inputs.len())
            .map(|i| from_file[i] || optional.get(i).copied().unwrap_or(false))
            .collect();
        let mut ds = bind_with(model, &table, &opt)?;
        ds.source = Some(table.file.clone());
        ds
    } else {
        let n = arrays
            .iter()
            .flatten()
            .map(|a| a.1.first().copied().unwrap_or(0))
            .next()
            .unwrap_or(0);
        Dataset {
            n_rows: n,
            inputs: vec![vec![]; g.inputs.len()],
            widths: vec![1; g.inputs.len()],
            dims: vec![],
            source: None,
        }
    };
    for (i, a) in arrays.into_iter().enumerate() {
        let Some((file, shape, values)) = a else {
            continue;
        };
        let info = &g.inputs[i];
        let rows = shape.first().copied().unwrap_or(1);
        let width: usize = shape.iter().skip(1).product();
        let problem = |what: String| DataError::Array {
            file: file.clone(),
            message: what,
        };
        if shape.len() != info.shape.rank() {
            return Err(problem(format!(
                "input `{}` is declared with rank {} but the array has shape {shape:?}",
                info.name,
                info.shape.rank()
            )));
        }
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
        match info.shape.0.get(1) {
            Some(crate::ir::Dim::Fixed(k)) if *k as usize != width => {
                return Err(problem(format!(
                    "input `{}` has {k} columns but the array has {width}",
                    info.name
                )));
            }
            Some(crate::ir::Dim::Sym(s)) => match ds.dims.iter().find(|d| d.0 == *s) {
                Some(&(_, w)) if w as usize != width => {
                    return Err(problem(format!(
                        "dimension `{}` is {w} elsewhere but {width} here (input `{}`)",
                        g.syms[*s as usize], info.name
                    )));
                }
                Some(_) => {}
                None => ds.dims.push((*s, width as u64)),
            },
            _ => {}
        }
        if rows == 0 {
            return Err(problem(format!("no rows for input `{}`", info.name)));
        }
        let classes = one_hot_classes(g, i as u32);
        let width = width.max(1);
        for (k, &v) in values.iter().enumerate() {
            let at = format!("row {}, column {}", k / width + 1, k % width + 1);
            if let Some(why) = value_problem(v, info, classes) {
                return Err(problem(format!("{at}: {why}")));
            }
        }
        ds.inputs[i] = values;
        ds.widths[i] = width.max(1);
        if ds.source.is_none() {
            ds.source = Some(file);
        }
    }
    Ok(ds)
}
