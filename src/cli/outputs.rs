//! Output files, checked before any work is done, so that a long run never ends at a path it
//! cannot write: the extension names a format the command writes, the path is not a directory,
//! and its directory exists and accepts the file.

use super::CliError;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;

/// A checkpoint (`--save`): a regular file (symbolic links followed) or none yet, in a
/// writable directory.
pub(super) fn checkpoint(flag: &str, path: &Path) -> Result<(), CliError> {
    crate::checkpoint::check_writable(path)
        .map(drop)
        .map_err(|e| CliError::BadInput(format!("{flag}: {e}")))
}

/// A still picture (`--plot`, race's `--out`): `.png` or `.svg`.
pub(super) fn picture(flag: &str, path: &Path) -> Result<(), CliError> {
    crate::plot::Format::from_path(path).map_err(|e| CliError::BadInput(format!("{flag} {e}")))?;
    writable(flag, path)
}

/// An animation (race's `--animate`): `.gif` or `.svg`.
pub(super) fn animation(flag: &str, path: &Path) -> Result<(), CliError> {
    crate::plot::Animation::from_path(path)
        .map_err(|e| CliError::BadInput(format!("{flag} {e}")))?;
    writable(flag, path)
}

/// A CSV table (`--history`): `.csv`.
pub(super) fn csv(flag: &str, path: &Path) -> Result<(), CliError> {
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if !is_csv {
        return Err(CliError::BadInput(format!(
            "{flag} {}: unsupported file extension; expected .csv",
            path.display()
        )));
    }
    writable(flag, path)
}

/// A file of a fixed extension (`export -o model.py`).
pub(super) fn with_extension(flag: &str, path: &Path, ext: &str) -> Result<(), CliError> {
    let matches = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext));
    if !matches {
        return Err(CliError::BadInput(format!(
            "{flag} {}: unsupported file extension; expected .{ext}",
            path.display()
        )));
    }
    writable(flag, path)
}

/// The file can be written: an existing one is opened for writing (without truncating it), a
/// new one is tried as a temporary file in its directory.
fn writable(flag: &str, path: &Path) -> Result<(), CliError> {
    let refuse = |what: String| CliError::BadInput(format!("{flag} {}: {what}", path.display()));
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(refuse("is a directory".into())),
        Ok(_) => OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| refuse(format!("cannot be written: {}", describe(&e)))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::metadata(dir) {
            Ok(m) if m.is_dir() => tempfile::Builder::new()
                .prefix(".adjoint-write-check-")
                .tempfile_in(dir)
                .map(drop)
                .map_err(|e| {
                    refuse(format!(
                        "directory {} does not accept new files: {}",
                        dir.display(),
                        describe(&e)
                    ))
                }),
            Ok(_) => Err(refuse(format!("{} is not a directory", dir.display()))),
            Err(_) => Err(refuse(format!(
                "directory {} does not exist",
                dir.display()
            ))),
        },
        Err(e) => Err(refuse(describe(&e))),
    }
}

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::ReadOnlyFilesystem => "read-only file system".into(),
        _ => e.to_string(),
    }
}
