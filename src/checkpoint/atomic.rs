//! Writing a checkpoint so that a crash, a kill or a full disk never leaves a damaged file at the
//! target: checked targets, a temporary file beside it, fsyncs of the file and its directory,
//! and an atomic rename.

use super::*;

/// Checks, before any work is done, that [`save`] could write a checkpoint to `path`: the
/// target is a regular file or absent, and its directory exists and accepts new files (a
/// temporary file is created there and removed). Returns the file a save would replace, with
/// symbolic links followed.
pub fn check_writable(path: &Path) -> Result<PathBuf, CheckpointError> {
    let target = save_target(path)?;
    let (dir, prefix) = temp_prefix(&target).ok_or_else(|| no_file_name(path))?;
    let refuse = |reason: String| CheckpointError::InvalidInput {
        path: path.to_path_buf(),
        reason,
    };
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(refuse(format!("{} is not a directory", dir.display()))),
        Err(_) => {
            return Err(refuse(format!(
                "directory {} does not exist",
                dir.display()
            )));
        }
    }
    temp_builder(&prefix)
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| CheckpointError::Io {
            path: path.to_path_buf(),
            action: format!("creating a file in directory {}", dir.display()),
            source: without_path(e),
        })?;
    Ok(target)
}

/// The operating system's error alone: tempfile adds the random name it tried, which says
/// nothing to a user and differs from run to run.
pub(super) fn without_path(e: io::Error) -> io::Error {
    e.raw_os_error().map_or(e, io::Error::from_raw_os_error)
}

pub(super) fn no_file_name(path: &Path) -> CheckpointError {
    CheckpointError::InvalidInput {
        path: path.to_path_buf(),
        reason: "the path does not end in a file name".into(),
    }
}

/// The regular file a save to `path` replaces (or creates): symbolic links followed, anything
/// that is not a regular file refused.
pub(super) fn save_target(path: &Path) -> Result<PathBuf, CheckpointError> {
    // The same bound on a chain of links as the kernel's (ELOOP after 40).
    const MAX_LINKS: usize = 40;
    let refuse = |reason: String| CheckpointError::InvalidInput {
        path: path.to_path_buf(),
        reason,
    };
    let mut target = path.to_path_buf();
    for _ in 0..=MAX_LINKS {
        let meta = match fs::symlink_metadata(&target) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(target),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: path.to_path_buf(),
                    action: format!("looking up {}", target.display()),
                    source,
                });
            }
            Ok(meta) => meta,
        };
        let kind = meta.file_type();
        if kind.is_file() {
            return Ok(target);
        }
        if kind.is_dir() {
            return Err(refuse(format!("{} is a directory", target.display())));
        }
        if !kind.is_symlink() {
            return Err(refuse(format!(
                "{} is not a regular file (a device, pipe or socket); checkpoints are written \
                 to regular files only",
                target.display()
            )));
        }
        let link = fs::read_link(&target).map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            action: format!("reading the symbolic link {}", target.display()),
            source,
        })?;
        // A relative link is relative to the directory holding it.
        target = match target.parent() {
            Some(dir) if link.is_relative() => dir.join(link),
            _ => link,
        };
    }
    Err(refuse(format!(
        "more than {MAX_LINKS} symbolic links lead from it; is there a loop?"
    )))
}

/// The directory holding `path` and the name prefix of its temporary files,
/// `.<file name>.tmp-<pid>-`.
pub(super) fn temp_prefix(path: &Path) -> Option<(&Path, std::ffi::OsString)> {
    let file_name = path.file_name()?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Same directory as the target: rename is only atomic within one filesystem. The pid
    // tells a later save whether the process that made a leftover file is still alive.
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(file_name);
    prefix.push(format!(".tmp-{}-", std::process::id()));
    Some((dir, prefix))
}

/// Temporary files with `prefix`, created like the checkpoint itself would be: readable as the
/// umask allows (not tempfile's default 0600), random suffixes keeping concurrent savers apart.
pub(super) fn temp_builder(prefix: &std::ffi::OsStr) -> tempfile::Builder<'_, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix).rand_bytes(8);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    builder
}

/// Removes `.<file name>.tmp-<pid>-*` files beside `target` whose process has exited: a save
/// killed mid-write (SIGKILL, power loss) leaves one, and they are as large as a checkpoint.
/// Files of live processes, which may be saving right now, are kept.
pub(super) fn remove_stale_temp_files(target: &Path) {
    let Some((dir, own_prefix)) = temp_prefix(target) else {
        return;
    };
    let own_prefix = own_prefix.to_string_lossy();
    // `.<file name>.tmp-`: the prefix without this process's pid.
    let Some(stem) = own_prefix
        .strip_suffix('-')
        .and_then(|p| p.rsplit_once('-'))
        .map(|(stem, _pid)| format!("{stem}-"))
    else {
        return;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&stem))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && pid != std::process::id() && process_has_exited(pid) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether no process with this id exists. Where that cannot be known, false: a temporary file
/// is only ever deleted when its writer is certainly gone.
pub(super) fn process_has_exited(pid: u32) -> bool {
    let proc_fs = Path::new("/proc");
    proc_fs.join("self").exists() && !proc_fs.join(pid.to_string()).exists()
}

pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let io_err = |action: String| {
        move |source: io::Error| CheckpointError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    let (dir, prefix) = temp_prefix(path).ok_or_else(|| no_file_name(path))?;

    // The temporary file is created new (never truncating another process's file) and is
    // removed when dropped, so every early return (and unwinding panic) cleans up.
    let mut tmp = temp_builder(&prefix)
        .tempfile_in(dir)
        .map_err(without_path)
        .map_err(io_err(format!(
            "creating a temporary file in {}",
            dir.display()
        )))?;
    let tmp_display = tmp.path().display().to_string();
    tmp.write_all(bytes)
        .map_err(io_err(format!("writing the temporary file {tmp_display}")))?;
    // Without this the rename can reach the disk before the data, and a power loss would
    // leave a checkpoint full of zeros or garbage under the final name.
    tmp.as_file().sync_all().map_err(io_err(format!(
        "flushing the temporary file {tmp_display} to disk"
    )))?;

    tmp.persist(path).map_err(|e| CheckpointError::Io {
        path: path.to_path_buf(),
        action: format!("renaming the temporary file {tmp_display} over the checkpoint"),
        source: e.error,
    })?;

    // The rename itself lives in the directory; until the directory is synced a power loss can
    // bring back the old entry.
    sync_dir(dir).map_err(io_err(format!(
        "syncing directory {} (the new checkpoint is in place but may not survive a power loss)",
        dir.display()
    )))
}

#[cfg(unix)]
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        // Some filesystems (certain FUSE and network mounts) reject fsync on directories with
        // EINVAL; there is nothing more to be done there.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::Unsupported | io::ErrorKind::InvalidInput
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

// Directories cannot be opened as files through std on other platforms; NTFS journals the
// rename's metadata itself.
#[cfg(not(unix))]
pub(super) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// load
