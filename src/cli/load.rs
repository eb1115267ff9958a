//! Reading what a command needs: the model file, its checked model, native code and data.

use super::*;

/// The largest model file read: far above any written or generated model, far below memory.
const MODEL_FILE_LIMIT: u64 = 64 << 20;

pub(super) fn read_source(path: &Path) -> Result<SourceFile, CliError> {
    let bytes = crate::limits::read_bounded(path, MODEL_FILE_LIMIT)
        .map_err(|e| CliError::BadInput(format!("cannot read {}: {e}", path.display())))?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(SourceFile::new(path.display().to_string(), text)),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let (line, col) = line_col(&bytes[..valid]);
            Err(CliError::BadInput(format!(
                "{}:{line}:{col}: not UTF-8 text (byte 0x{:02x} cannot start or continue a character here)",
                path.display(),
                bytes[valid]
            )))
        }
    }
}

/// One-based line and column (in characters) just after `valid`, UTF-8 text.
fn line_col(valid: &[u8]) -> (usize, usize) {
    let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = String::from_utf8_lossy(&valid[line_start..])
        .chars()
        .count()
        + 1;
    (line, col)
}

/// Reads and checks a model file. Errors are printed; warnings are returned for the caller to
/// print or not.
pub(super) fn load_model(
    path: &Path,
) -> Result<
    (
        SourceFile,
        crate::model::Model,
        Vec<crate::diagnostics::Diagnostic>,
    ),
    CliError,
> {
    let file = read_source(path)?;
    match compile::check_source(&file, &crate::limits::Limits::of_host()) {
        Ok((model, warnings)) => Ok((file, model, warnings)),
        Err(diags) => {
            eprint!("{}", render_all(&diags, &file));
            Err(CliError::Diagnosed)
        }
    }
}

/// Compiles a checked model to native code; diagnostics are printed.
pub(super) fn compile_model(
    model: crate::model::Model,
    file: &SourceFile,
) -> Result<CompiledModel, CliError> {
    CompiledModel::from_model(model).map_err(|e| match e {
        CompileError::Diagnostics(d) => {
            eprint!("{}", render_all(&d, file));
            CliError::Diagnosed
        }
        e => failed(e),
    })
}

/// The data file: the one given on the command line, else the model's own `data`, which is
/// relative to the model file.
pub(super) fn data_path(
    model: &crate::model::Model,
    given: Option<&Path>,
    model_file: &Path,
) -> Option<PathBuf> {
    given.map(Path::to_path_buf).or_else(|| {
        model
            .data
            .as_ref()
            .map(|d| model_file.parent().unwrap_or(Path::new(".")).join(d))
    })
}

/// Refuses `--data` for a model that would not read it: every input the command needs is
/// bound to a `.npy` file in the model, so the given file would be silently ignored.
/// `optional[i]` marks an input the command can do without.
pub(super) fn refuse_unread_data(
    model: &crate::model::Model,
    given: Option<&Path>,
    optional: &[bool],
) -> Result<(), CliError> {
    let Some(given) = given else {
        return Ok(());
    };
    let reads_csv = model
        .bindings
        .iter()
        .enumerate()
        .any(|(i, b)| b.file.is_none() && !optional.get(i).copied().unwrap_or(false));
    if reads_csv || model.graph().inputs.is_empty() {
        return Ok(());
    }
    let files: Vec<String> = model
        .graph()
        .inputs
        .iter()
        .zip(&model.bindings)
        .filter_map(|(info, b)| Some(format!("{} from \"{}\"", info.name, b.file.as_ref()?)))
        .collect();
    Err(CliError::BadInput(format!(
        "--data {} would not be read: the model reads its inputs from .npy files ({}); to use other data, bind the inputs to its files with `from \"file.npy\"` in a copy of the model",
        given.display(),
        files.join(", ")
    )))
}

/// The model (in f64) and its data, for the checking commands.
pub(super) fn model_and_data(
    path: &Path,
    data: Option<&Path>,
) -> Result<
    (
        SourceFile,
        crate::model::Model,
        Option<crate::data::Dataset>,
    ),
    CliError,
> {
    let (file, mut model, warnings) = load_model(path)?;
    eprint!("{}", render_all(&warnings, &file));
    model.set_dtype(crate::ir::DType::F64);
    refuse_unread_data(&model, data, &[])?;
    let dataset = load_data(&model, data_path(&model, data, path).as_deref(), path, &[])?;
    Ok((file, model, dataset))
}

pub(super) fn point_of(
    trainer: &Trainer,
    model: &crate::model::Model,
    data: Option<&crate::data::Dataset>,
) -> crate::inspect::Point {
    use crate::ir::Tensor;
    let g = model.graph();
    let inputs = match data {
        Some(d) => d
            .inputs
            .iter()
            .zip(&g.inputs)
            .map(|(v, info)| Tensor::new(info.shape.concrete(&[d.n_rows as u64]), v.to_f64()))
            .collect(),
        None => vec![],
    };
    let params = trainer
        .params
        .iter()
        .zip(&g.params)
        .map(|(b, p)| Tensor::new(p.shape.as_fixed().unwrap(), b.to_f64()))
        .collect();
    let states = trainer
        .model_state
        .iter()
        .zip(&g.states)
        .map(|(b, s)| Tensor::new(s.shape.as_fixed().unwrap(), b.to_f64()))
        .collect();
    crate::inspect::Point {
        inputs,
        params,
        states,
        syms: vec![data.map_or(0, |d| d.n_rows as u64); g.syms.len()],
    }
}

/// The model's data: CSV columns from `data_path`, `.npy` inputs from their files beside the
/// model. `None` for a model without inputs.
pub(super) fn load_data(
    model: &crate::model::Model,
    data_path: Option<&Path>,
    model_file: &Path,
    optional: &[bool],
) -> Result<Option<data::Dataset>, CliError> {
    if model.graph().inputs.is_empty() {
        return Ok(None);
    }
    let base = model_file.parent().unwrap_or(Path::new("."));
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut progress = |read: u64, size: u64| {
        if size < LARGE_DATA {
            return;
        }
        let bar = bar.get_or_insert_with(|| data_progress_bar(size));
        bar.set_position(read);
        if read >= size {
            bar.finish_and_clear();
        }
    };
    let loaded = data::load_with_progress(model, data_path, base, optional, &mut progress);
    match loaded {
        Ok(d) => Ok(Some(d)),
        // The hint about naming the data is part of the error that needs it (`NoDataFile`).
        Err(e) => Err(bad_input(e)),
    }
}

/// A data file from this size on shows a progress bar while it is read.
const LARGE_DATA: u64 = 64 << 20;

/// Bytes read of a data file, on stderr (indicatif draws nothing when it is not a terminal).
fn data_progress_bar(size: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(size);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "reading data {bar:30} {bytes}/{total_bytes}  {bytes_per_sec}  {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// A text-reading model's data in the tokens of the checkpoint's vocabulary (the one it was
/// trained with), which must hold every character of the text.
pub(super) fn in_trained_vocabulary(
    trainer: &Trainer,
    dataset: Option<data::Dataset>,
    checkpoint: &Path,
) -> Result<Option<data::Dataset>, CliError> {
    let Some(d) = dataset else { return Ok(None) };
    let Some(corpus) = &d.corpus else {
        return Ok(Some(d));
    };
    let Some(text) = &trainer.text else {
        return Err(CliError::BadInput(format!(
            "{} has no vocabulary: it was not written by a run on a text, and this model reads {}",
            checkpoint.display(),
            corpus.file
        )));
    };
    let recoded = corpus
        .with_vocabulary(&text.vocabulary)
        .map_err(bad_input)?;
    data::text::check_classes(&trainer.compiled.model, &recoded).map_err(bad_input)?;
    Ok(Some(d.with_corpus(recoded)))
}

/// A copy of the data's first `n` rows (a text's first windows), for `--rows N`.
pub(super) fn first_rows(
    dataset: Option<&data::Dataset>,
    n: usize,
) -> Result<data::Dataset, CliError> {
    let Some(d) = dataset.filter(|d| d.n_rows > 0) else {
        return Err(CliError::BadInput(
            "--rows picks rows of the data, and this model reads none".into(),
        ));
    };
    if n == 0 || n > d.n_rows {
        return Err(CliError::BadInput(format!(
            "--rows must be between 1 and the data's {} rows; found {n}",
            d.n_rows
        )));
    }
    say!("rows: the first {n} of {}", d.n_rows);
    Ok(d.rows(&(0..n).collect::<Vec<_>>()))
}

/// A refusal of a reference-interpreter run for its memory, with the flag that makes it fit
/// when the data has rows to leave out (`what` is the command's verb: "check", "inspect").
pub(super) fn fewer_rows_hint(
    e: impl std::fmt::Display,
    what: &str,
    dataset: Option<&data::Dataset>,
) -> CliError {
    match dataset.filter(|d| d.n_rows > 1) {
        Some(d) => CliError::BadInput(format!(
            "{e}; {what} on fewer of its {} rows with --rows N",
            d.n_rows
        )),
        None => bad_input(e),
    }
}
