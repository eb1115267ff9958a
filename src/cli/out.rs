//! Standard output that a closed pipe ends quietly (`adjoint train … | head -2`).
//!
//! Rust ignores SIGPIPE, so writing to a pipe whose reader has gone fails with `BrokenPipe`, and
//! `println!` turns that into a panic. Commands print through `say!` instead: once a write fails,
//! later output is dropped and a run that registered its stop flag is stopped as Ctrl-C stops it,
//! so what it trained is still saved where `--save` says. `main` then exits quietly with 141, the
//! status of a process ended by SIGPIPE, as `cat` and `git log` do; any other write error (a full
//! disk) is reported.

use std::io::Write as _;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The exit status of a command whose standard output was closed under it (128 + SIGPIPE).
pub const CLOSED_EXIT_CODE: i32 = 141;

static CLOSED: AtomicBool = AtomicBool::new(false);
static ERROR: Mutex<Option<std::io::Error>> = Mutex::new(None);
static STOP: OnceLock<&'static AtomicBool> = OnceLock::new();

/// Prints a line on standard output, or nothing once standard output has failed.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use say;

/// Writes text on standard output, or nothing once standard output has failed.
pub fn write(text: std::fmt::Arguments) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        fail(e);
    }
}

/// Asks a running command to stop (by setting `flag`) when standard output fails.
pub fn stop_on_failure(flag: &'static AtomicBool) {
    let _ = STOP.set(flag);
}

/// Whether standard output has failed.
pub fn failed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// The error standard output failed with, unless its reader just went away.
pub fn error() -> Option<String> {
    let error = ERROR.lock().unwrap_or_else(|p| p.into_inner());
    error
        .as_ref()
        .filter(|e| e.kind() != std::io::ErrorKind::BrokenPipe)
        .map(|e| format!("cannot write standard output: {e}"))
}

fn fail(e: std::io::Error) {
    CLOSED.store(true, Ordering::Relaxed);
    *ERROR.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    if let Some(flag) = STOP.get() {
        flag.store(true, Ordering::Relaxed);
    }
}
