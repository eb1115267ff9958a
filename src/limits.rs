//! What this process may take: the memory budget for a model's buffers, and bounded file reads.
//!
//! The budget is the least of three quarters of the machine's memory, the cgroup's limit (a
//! container's), and the process's address-space and data-segment limits (`ulimit -v`, `-d`):
//! an allocation above any of them aborts the process instead of failing.

use crate::runtime::human_bytes;
use std::io::Read;
use std::path::Path;

/// What a compilation checks a model against. The checker and the code generator read nothing
/// from the host: whoever compiles (the command line, an embedding program) says what the
/// limits are, so that the same model gives the same diagnostics wherever it is checked with
/// the same limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most memory one model's buffers may take, in bytes: a parameter larger than this is
    /// an error at its declaration.
    pub memory_budget: u64,
}

impl Limits {
    /// This host's limits, as `memory_budget` measures them.
    pub fn of_host() -> Limits {
        Limits {
            memory_budget: memory_budget(),
        }
    }
}

/// The most memory one model's buffers may take on this host, in bytes.
pub fn memory_budget() -> u64 {
    let machine = meminfo_total().unwrap_or(16 << 30) / 4 * 3;
    [machine]
        .into_iter()
        .chain(cgroup_limit())
        .chain(rlimit("Max address space"))
        .chain(rlimit("Max data size"))
        .min()
        .unwrap_or(machine)
}

fn meminfo_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// The cgroup (v2, else v1) memory limit; "max" or an absurd v1 value mean none.
fn cgroup_limit() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|f| std::fs::read_to_string(f).ok()?.trim().parse::<u64>().ok())
    .filter(|&b| b < 1 << 60)
}

/// A soft limit from `/proc/self/limits`, in bytes; "unlimited" is none.
fn rlimit(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("larger than {}, the most this reads", human_bytes(*.0))]
    TooLarge(u64),
    #[error("a device, not a file")]
    Device,
}

/// Character and block devices (`/dev/zero`, a disk) are not files to read whole.
#[cfg(unix)]
fn is_device(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_char_device() || meta.file_type().is_block_device()
}

#[cfg(not(unix))]
fn is_device(_: &std::fs::Metadata) -> bool {
    false
}

/// Reads a whole file, but not more than `limit` bytes: a device such as `/dev/zero`, or a file
/// (or pipe) larger than the limit, is refused instead of filling memory.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if is_device(&meta) {
        return Err(ReadError::Device);
    }
    let hint = meta.len();
    if hint > limit {
        return Err(ReadError::TooLarge(limit));
    }
    let mut bytes = Vec::with_capacity(hint as usize);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge(limit));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_stops_at_its_limit() {
        let e = read_bounded(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.to_string(), "a device, not a file");
        let dir = std::env::temp_dir().join(format!("adjoint-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ten");
        std::fs::write(&f, [7u8; 10]).unwrap();
        assert_eq!(read_bounded(&f, 10).unwrap(), vec![7u8; 10]);
        assert!(matches!(read_bounded(&f, 9), Err(ReadError::TooLarge(9))));
    }

    #[test]
    fn the_budget_is_positive_and_below_the_machine() {
        let b = memory_budget();
        assert!(b > 0);
        if let Some(total) = meminfo_total() {
            assert!(b <= total);
        }
    }
}
