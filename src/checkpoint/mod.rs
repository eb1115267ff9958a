//! Training checkpoints: named f32/f64 tensors plus string metadata, stored as safetensors.
//!
//! # On-disk layout
//!
//! A checkpoint is one [safetensors](https://github.com/huggingface/safetensors) file, so any
//! safetensors reader can open it:
//!
//! ```text
//! [8 bytes]  N, the header length, u64 little-endian
//! [N bytes]  JSON header, space-padded to a multiple of 8:
//!            { "__metadata__": { "<key>": "<value>", ... },
//!              "<tensor name>": { "dtype": "F32" | "F64", "shape": [d0, d1, ...],
//!                                 "data_offsets": [begin, end] }, ... }
//! [rest]     tensor bytes, little-endian, row-major (C order), tensors back to back;
//!            offsets are relative to the start of this section
//! ```
//!
//! The safetensors encoder orders tensors in the file by dtype and then by name, not in the
//! order they were given, so the order is kept in the metadata instead.
//!
//! Tensor names used by adjoint:
//!
//! | name | contents |
//! |---|---|
//! | `param/<name>` | a model parameter |
//! | `state/<name>/<k>` | the k-th optimizer state array of parameter `<name>` (e.g. Adam's m and v) |
//!
//! Metadata keys (all values are strings):
//!
//! | key | contents |
//! |---|---|
//! | [`STEP_KEY`] `adjoint.step` | completed optimizer steps, decimal |
//! | [`RNG_KEY`] `adjoint.rng` | the training RNG state, so a resumed run draws the same batches |
//! | [`MODEL_HASH_KEY`] `adjoint.model_hash` | [`fnv1a64_hex`] of the model source, to refuse resuming a different model |
//! | [`DTYPE_KEY`] `adjoint.dtype` | the model's compute dtype, `f32` or `f64` |
//! | [`ORDER_KEY`] `adjoint.order` | written by [`save`]: tensor names in checkpoint order, one per line |
//! | [`CHECKSUM_KEY`] `adjoint.checksum` | written by [`save`]: the line `fnv1a64`, then one line `<16 hex digits> <name>` per tensor, hashing that tensor's bytes as stored |
//! | [`METADATA_CHECKSUM_KEY`] `adjoint.metadata_checksum` | written by [`save`]: the line `fnv1a64`, then one line `<16 hex digits> <key>` per other metadata entry (these two included), in key order, hashing the entry's value |
//!
//! [`load`] consumes the three reserved keys and does not return them; every other key comes
//! back unchanged. A checkpoint written by [`save`] is covered whole: any edit of a tensor's bytes
//! or of a metadata entry (changed, added or removed) is refused with an error naming it. Files
//! from other tools, which lack the three keys, load too: their tensors come back in file order,
//! unverified ([`load_verified`] says which).
//!
//! The header's metadata entries are written in key order, so identical checkpoints are
//! identical files.
//!
//! [`save`] replaces the file atomically: a crash or power loss leaves either the old checkpoint
//! or the new one, never a mix. A process killed mid-save can leave a
//! `.<file name>.tmp-<pid>-*` file next to the checkpoint; it is never read, and the next save
//! to the same path deletes it once process `<pid>` has exited.
//!
//! # Reading a checkpoint from Python
//!
//! PyTorch (`pip install safetensors torch`):
//!
//! ```python
//! from safetensors.torch import load_file
//!
//! tensors = load_file("model.safetensors")   # {name: torch.Tensor}, float32 / float64
//! params = {k.removeprefix("param/"): v for k, v in tensors.items() if k.startswith("param/")}
//! ```
//!
//! JAX or plain numpy (`pip install safetensors numpy`):
//!
//! ```python
//! from safetensors.numpy import load_file
//! import jax.numpy as jnp
//!
//! arrays = load_file("model.safetensors")    # {name: numpy.ndarray}
//! params = {k.removeprefix("param/"): jnp.asarray(v)
//!           for k, v in arrays.items() if k.startswith("param/")}
//! ```
//!
//! JAX turns f64 arrays into f32 unless `jax.config.update("jax_enable_x64", True)` is set first.
//! The metadata, including the step count and `adjoint.order`, is available with
//! `safetensors.safe_open("model.safetensors", framework="np").metadata()`.
//!
//! # Example
//!
//! ```no_run
//! use adjoint::checkpoint::{self, Checkpoint, DTypeTag, NamedTensor, TensorData};
//! use std::path::Path;
//!
//! let mut ckpt = Checkpoint::default();
//! ckpt.tensors.push(NamedTensor {
//!     name: "param/w".into(),
//!     shape: vec![2, 2],
//!     data: TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]),
//! });
//! ckpt.metadata.insert(checkpoint::STEP_KEY.into(), "100".into());
//! checkpoint::save(Path::new("model.safetensors"), &ckpt)?;
//!
//! let loaded = checkpoint::load(Path::new("model.safetensors"))?;
//! checkpoint::check_against(&loaded, &[("param/w".into(), vec![2, 2], DTypeTag::F32)])?;
//! # Ok::<(), checkpoint::CheckpointError>(())
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, View};

/// Metadata key for the number of completed optimizer steps.
pub const STEP_KEY: &str = "adjoint.step";
/// Metadata key for the serialized training RNG state.
pub const RNG_KEY: &str = "adjoint.rng";
/// Metadata key for the [`fnv1a64_hex`] hash of the model the checkpoint belongs to.
pub const MODEL_HASH_KEY: &str = "adjoint.model_hash";
/// Metadata key for the model's compute dtype (`f32` or `f64`).
pub const DTYPE_KEY: &str = "adjoint.dtype";
/// Reserved metadata key: tensor order, written by [`save`] and consumed by [`load`].
pub const ORDER_KEY: &str = "adjoint.order";
/// Reserved metadata key: per-tensor checksums, written by [`save`] and verified by [`load`].
pub const CHECKSUM_KEY: &str = "adjoint.checksum";
/// Reserved metadata key: a checksum of every other metadata entry, written by [`save`] and
/// verified by [`load`].
pub const METADATA_CHECKSUM_KEY: &str = "adjoint.metadata_checksum";

const CHECKSUM_ALGORITHM: &str = "fnv1a64";

/// Element type of a checkpoint tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DTypeTag {
    F32,
    F64,
}

impl fmt::Display for DTypeTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DTypeTag::F32 => "f32",
            DTypeTag::F64 => "f64",
        })
    }
}

/// The elements of a tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl TensorData {
    pub fn dtype(&self) -> DTypeTag {
        match self {
            TensorData::F32(_) => DTypeTag::F32,
            TensorData::F64(_) => DTypeTag::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            TensorData::F32(v) => {
                let mut out = vec![0; v.len() * 4];
                for (chunk, x) in out.chunks_exact_mut(4).zip(v) {
                    chunk.copy_from_slice(&x.to_le_bytes());
                }
                out
            }
            TensorData::F64(v) => {
                let mut out = vec![0; v.len() * 8];
                for (chunk, x) in out.chunks_exact_mut(8).zip(v) {
                    chunk.copy_from_slice(&x.to_le_bytes());
                }
                out
            }
        }
    }
}

/// One tensor of a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl NamedTensor {
    pub fn dtype(&self) -> DTypeTag {
        self.data.dtype()
    }
}

/// Tensors in a fixed order plus string metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    pub tensors: Vec<NamedTensor>,
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// The tensor with this name, if any.
    pub fn tensor(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// How a checkpoint tensor differs from what the model expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MismatchKind {
    Missing,
    WrongShape,
    WrongDType,
    Unexpected,
}

impl fmt::Display for MismatchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MismatchKind::Missing => "is missing from the checkpoint",
            MismatchKind::WrongShape => "has the wrong shape",
            MismatchKind::WrongDType => "has the wrong dtype",
            MismatchKind::Unexpected => "is in the checkpoint but not in the model",
        })
    }
}

/// How a metadata entry differs from what the checkpoint recorded when it was saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataChange {
    Edited,
    Added,
    Removed,
}

impl fmt::Display for MetadataChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetadataChange::Edited => "was changed",
            MetadataChange::Added => "was added",
            MetadataChange::Removed => "was removed",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {} does not exist", .path.display())]
    NotFound { path: PathBuf },

    #[error("checkpoint path {} is a directory, not a checkpoint file", .path.display())]
    IsDirectory { path: PathBuf },

    #[error("checkpoint {}: {action} failed: {source}", .path.display())]
    Io {
        path: PathBuf,
        action: String,
        #[source]
        source: io::Error,
    },

    #[error("checkpoint {} is not a valid safetensors file: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },

    #[error(
        "checkpoint {}: tensor `{tensor}` has dtype {dtype}, which adjoint cannot load \
         (only F32 and F64 are supported)",
        .path.display()
    )]
    UnsupportedDType {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },

    #[error(
        "checkpoint {}: the bytes of tensor `{tensor}` are corrupted: their checksum is \
         {found}, but the checkpoint recorded {expected} when it was saved",
        .path.display()
    )]
    ChecksumMismatch {
        path: PathBuf,
        tensor: String,
        expected: String,
        found: String,
    },

    #[error(
        "checkpoint {}: metadata entry `{key}` {change} after the checkpoint was saved (it does \
         not match the `adjoint.metadata_checksum` entry); the file was edited or damaged",
        .path.display()
    )]
    MetadataChanged {
        path: PathBuf,
        key: String,
        change: MetadataChange,
    },

    #[error("checkpoint {}: metadata entry `{key}` {reason}", .path.display())]
    BadMetadata {
        path: PathBuf,
        key: String,
        reason: String,
    },

    #[error("cannot resume from checkpoint {}: {reason}", .path.display())]
    CannotResume { path: PathBuf, reason: String },

    #[error("cannot start from the parameters in {}: {reason}", .path.display())]
    CannotInit { path: PathBuf, reason: String },

    #[error("cannot save checkpoint {}: {reason}", .path.display())]
    InvalidInput { path: PathBuf, reason: String },

    /// From [`check_against`], which sees only the in-memory checkpoint and so has no path.
    #[error(
        "checkpoint does not match the model: tensor `{tensor}` {kind}: expected {expected}, \
         found {found}"
    )]
    Mismatch {
        tensor: String,
        kind: MismatchKind,
        expected: String,
        found: String,
    },
}

/// 64-bit FNV-1a of `bytes` as 16 lowercase hex digits. The algorithm is fixed, so the value
/// is stable across platforms, builds and versions and can be stored in files.
pub fn fnv1a64_hex(bytes: &[u8]) -> String {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = bytes
        .iter()
        .fold(OFFSET_BASIS, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("{hash:016x}")
}

// ---------------------------------------------------------------------------------------------
// save

/// Writes `ckpt` to `path`, replacing any existing file atomically and durably.
///
/// A symbolic link is followed: the file it points to is replaced and the link stays. A path
/// that names anything but a regular file (a directory, a device such as `/dev/full`, a pipe or
/// a socket) is refused before anything is written. Temporary files that an earlier, killed
/// save to the same path left behind are removed.
///
/// On error the file at `path`, if any, is unchanged and no temporary file is left behind.
pub fn save(path: &Path, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    let target = save_target(path)?;
    let bytes = encode(path, ckpt)?;
    remove_stale_temp_files(&target);
    write_atomically(&target, &bytes)
}

/// The bytes [`save`] would write for `ckpt`, checksums included.
pub fn to_bytes(ckpt: &Checkpoint) -> Result<Vec<u8>, CheckpointError> {
    encode(Path::new("(in memory)"), ckpt)
}

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
fn without_path(e: io::Error) -> io::Error {
    e.raw_os_error().map_or(e, io::Error::from_raw_os_error)
}

fn no_file_name(path: &Path) -> CheckpointError {
    CheckpointError::InvalidInput {
        path: path.to_path_buf(),
        reason: "the path does not end in a file name".into(),
    }
}

/// The regular file a save to `path` replaces (or creates): symbolic links followed, anything
/// that is not a regular file refused.
fn save_target(path: &Path) -> Result<PathBuf, CheckpointError> {
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

struct RawView<'a> {
    dtype: Dtype,
    shape: &'a [usize],
    data: &'a [u8],
}

impl View for RawView<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn encode(path: &Path, ckpt: &Checkpoint) -> Result<Vec<u8>, CheckpointError> {
    let invalid = |reason: String| CheckpointError::InvalidInput {
        path: path.to_path_buf(),
        reason,
    };

    for key in [ORDER_KEY, CHECKSUM_KEY, METADATA_CHECKSUM_KEY] {
        if ckpt.metadata.contains_key(key) {
            return Err(invalid(format!(
                "metadata key `{key}` is reserved; save writes it itself"
            )));
        }
    }
    // Keys are stored one per line in the metadata checksum entry.
    if let Some(key) = ckpt.metadata.keys().find(|k| k.contains('\n')) {
        return Err(invalid(format!(
            "metadata key {key:?} is not allowed (keys must be single-line)"
        )));
    }
    let mut seen = HashSet::new();
    for t in &ckpt.tensors {
        // Names are stored one per line in the order and checksum entries, and `__metadata__`
        // is the header's own metadata slot.
        if t.name.is_empty() || t.name.contains('\n') || t.name == "__metadata__" {
            return Err(invalid(format!(
                "tensor name {:?} is not allowed (names must be non-empty, single-line and not \
                 `__metadata__`)",
                t.name
            )));
        }
        if !seen.insert(t.name.as_str()) {
            return Err(invalid(format!(
                "tensor `{}` appears more than once",
                t.name
            )));
        }
        let elements = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if elements != Some(t.data.len()) {
            return Err(invalid(format!(
                "tensor `{}` has shape {:?} but {} elements",
                t.name,
                t.shape,
                t.data.len()
            )));
        }
    }

    let raw: Vec<Vec<u8>> = ckpt.tensors.iter().map(|t| t.data.to_le_bytes()).collect();
    let mut order = String::new();
    let mut checksums = String::from(CHECKSUM_ALGORITHM);
    for (i, (t, bytes)) in ckpt.tensors.iter().zip(&raw).enumerate() {
        if i > 0 {
            order.push('\n');
        }
        order.push_str(&t.name);
        checksums.push('\n');
        checksums.push_str(&fnv1a64_hex(bytes));
        checksums.push(' ');
        checksums.push_str(&t.name);
    }

    let mut metadata = ckpt.metadata.clone();
    metadata.insert(ORDER_KEY.into(), order);
    metadata.insert(CHECKSUM_KEY.into(), checksums);
    let covered = metadata_checksums(&metadata);
    metadata.insert(METADATA_CHECKSUM_KEY.into(), covered);

    let views = ckpt.tensors.iter().zip(&raw).map(|(t, bytes)| {
        let dtype = match t.dtype() {
            DTypeTag::F32 => Dtype::F32,
            DTypeTag::F64 => Dtype::F64,
        };
        (
            t.name.as_str(),
            RawView {
                dtype,
                shape: &t.shape,
                data: bytes,
            },
        )
    });
    // The encoder lays the tensors out; its header is then written again with the metadata in
    // sorted order, since the encoder writes it in hash-map order and identical checkpoints
    // must be identical files.
    let encoded = safetensors::serialize(views, None)
        .map_err(|e| invalid(format!("the safetensors encoder rejected it: {e}")))?;
    with_sorted_metadata(&encoded, &metadata)
        .map_err(|e| invalid(format!("re-encoding the header failed: {e}")))
}

/// The metadata checksum entry for `metadata`: the algorithm's name, then one line
/// `<16 hex digits> <key>` per entry, in key order, hashing the entry's value.
fn metadata_checksums(metadata: &BTreeMap<String, String>) -> String {
    let mut out = String::from(CHECKSUM_ALGORITHM);
    for (key, value) in metadata {
        out.push('\n');
        out.push_str(&fnv1a64_hex(value.as_bytes()));
        out.push(' ');
        out.push_str(key);
    }
    out
}

/// `encoded` (a safetensors file without metadata) with `metadata` added to its header as
/// the first entry, keys sorted, the header padded with spaces to a multiple of 8 bytes.
fn with_sorted_metadata(
    encoded: &[u8],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    let len_bytes: [u8; 8] = encoded
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or("the encoder wrote no header length")?;
    let header_len = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|e| e.to_string())?;
    let header = encoded
        .get(8..8 + header_len)
        .ok_or("the encoder's header runs past its output")?;
    let data = &encoded[8 + header_len..];
    let tensors = std::str::from_utf8(header)
        .map_err(|e| e.to_string())?
        .trim_end_matches(' ');
    let tensors = tensors
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or("the encoder's header is not a JSON object")?;
    let mut header = String::from("{\"__metadata__\":");
    header.push_str(&serde_json::to_string(metadata).map_err(|e| e.to_string())?);
    if !tensors.is_empty() {
        header.push(',');
        header.push_str(tensors);
    }
    header.push('}');
    let padded_len = header.len().next_multiple_of(8);
    let mut out = Vec::with_capacity(8 + padded_len + data.len());
    out.extend((padded_len as u64).to_le_bytes());
    out.extend(header.as_bytes());
    out.resize(8 + padded_len, b' ');
    out.extend(data);
    Ok(out)
}

/// The directory holding `path` and the name prefix of its temporary files,
/// `.<file name>.tmp-<pid>-`.
fn temp_prefix(path: &Path) -> Option<(&Path, std::ffi::OsString)> {
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
fn temp_builder(prefix: &std::ffi::OsStr) -> tempfile::Builder<'_, 'static> {
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
fn remove_stale_temp_files(target: &Path) {
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
fn process_has_exited(pid: u32) -> bool {
    let proc_fs = Path::new("/proc");
    proc_fs.join("self").exists() && !proc_fs.join(pid.to_string()).exists()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
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
fn sync_dir(dir: &Path) -> io::Result<()> {
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
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// load

/// Reads a checkpoint written by [`save`] or by any safetensors writer (F32 and F64 tensors
/// only). Verifies the checksums [`save`] stores when they are present.
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    load_verified(path).map(|(ckpt, _)| ckpt)
}

/// How much of a loaded checkpoint its checksums covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integrity {
    /// No checksums: a file from another safetensors writer.
    Unchecked,
    /// The tensors' bytes, but not the metadata: a file from an earlier version of adjoint.
    TensorsOnly,
    /// Every tensor and every metadata entry, as [`save`] writes them.
    Complete,
}

/// [`load`], also saying what the checksums covered.
pub fn load_verified(path: &Path) -> Result<(Checkpoint, Integrity), CheckpointError> {
    let bytes = read_file(path)?;
    decode(path, &bytes)
}

/// Decodes the bytes of a checkpoint file; `path` only names it in errors.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<(Checkpoint, Integrity), CheckpointError> {
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };

    let (header_len, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| corrupt(describe_format_error(bytes, e)))?;
    let data = bytes.get(8 + header_len..).unwrap_or(&[]);

    let mut metadata: BTreeMap<String, String> = header
        .metadata()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // First, since it covers the entries the rest of the reading relies on.
    let metadata_checked = match metadata.remove(METADATA_CHECKSUM_KEY) {
        Some(entry) => {
            verify_metadata(path, &entry, &metadata)?;
            true
        }
        None => false,
    };
    let file_order = header.offset_keys();
    let order = match metadata.remove(ORDER_KEY) {
        Some(entry) => parse_order(&entry, &file_order).map_err(corrupt)?,
        None => file_order,
    };
    let checksums = match metadata.remove(CHECKSUM_KEY) {
        Some(entry) => Some(parse_checksums(&entry, &order).map_err(corrupt)?),
        None => None,
    };
    let integrity = match (&checksums, metadata_checked) {
        (Some(_), true) => Integrity::Complete,
        (Some(_), false) => Integrity::TensorsOnly,
        // A metadata checksum without tensor checksums is not what save writes.
        (None, true) => {
            return Err(corrupt(format!(
                "it has a `{METADATA_CHECKSUM_KEY}` entry but no `{CHECKSUM_KEY}` entry"
            )));
        }
        (None, false) => Integrity::Unchecked,
    };

    let mut tensors = Vec::with_capacity(order.len());
    for name in order {
        let info = header
            .info(&name)
            .ok_or_else(|| corrupt(format!("the header has no entry for tensor `{name}`")))?;
        let (begin, end) = info.data_offsets;
        let raw = data.get(begin..end).ok_or_else(|| {
            corrupt(format!(
                "the data offsets of tensor `{name}` point outside the file"
            ))
        })?;
        let tensor_data = match info.dtype {
            Dtype::F32 => TensorData::F32(
                raw.chunks_exact(4)
                    .map(|c| f32::from_bits(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    .collect(),
            ),
            Dtype::F64 => TensorData::F64(
                raw.chunks_exact(8)
                    .map(|c| {
                        f64::from_bits(u64::from_le_bytes([
                            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
                        ]))
                    })
                    .collect(),
            ),
            other => {
                return Err(CheckpointError::UnsupportedDType {
                    path: path.to_path_buf(),
                    tensor: name,
                    dtype: other.to_string(),
                });
            }
        };
        if let Some(expected) = checksums.as_ref().and_then(|c| c.get(&name)) {
            let found = fnv1a64_hex(raw);
            if found != *expected {
                return Err(CheckpointError::ChecksumMismatch {
                    path: path.to_path_buf(),
                    tensor: name,
                    expected: expected.clone(),
                    found,
                });
            }
        }
        tensors.push(NamedTensor {
            name,
            shape: info.shape.clone(),
            data: tensor_data,
        });
    }
    Ok((Checkpoint { tensors, metadata }, integrity))
}

/// Checks every metadata entry against the metadata checksum entry: each is listed with the
/// checksum of its value, and nothing else is listed.
fn verify_metadata(
    path: &Path,
    entry: &str,
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let changed = |key: &str, change| CheckpointError::MetadataChanged {
        path: path.to_path_buf(),
        key: key.to_string(),
        change,
    };
    let recorded = parse_metadata_checksums(entry).map_err(|reason| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason,
    })?;
    for (key, value) in metadata {
        match recorded.get(key.as_str()) {
            None => return Err(changed(key, MetadataChange::Added)),
            Some(sum) if *sum != fnv1a64_hex(value.as_bytes()) => {
                return Err(changed(key, MetadataChange::Edited));
            }
            Some(_) => {}
        }
    }
    if let Some(key) = recorded.keys().find(|k| !metadata.contains_key(**k)) {
        return Err(changed(key, MetadataChange::Removed));
    }
    Ok(())
}

fn parse_metadata_checksums(entry: &str) -> Result<BTreeMap<&str, String>, String> {
    let mut lines = entry.split('\n');
    let algorithm = lines.next().unwrap_or_default();
    if algorithm != CHECKSUM_ALGORITHM {
        return Err(format!(
            "the `{METADATA_CHECKSUM_KEY}` metadata entry uses checksum algorithm \
             {algorithm:?}; only {CHECKSUM_ALGORITHM} is known"
        ));
    }
    let mut sums = BTreeMap::new();
    for (i, line) in lines.enumerate() {
        let parsed = line
            .split_once(' ')
            .filter(|(hex, _)| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some((hex, key)) = parsed else {
            return Err(format!(
                "line {} of the `{METADATA_CHECKSUM_KEY}` metadata entry is not \
                 `<16 hex digits> <key>`",
                i + 2
            ));
        };
        if sums.insert(key, hex.to_ascii_lowercase()).is_some() {
            return Err(format!(
                "the `{METADATA_CHECKSUM_KEY}` metadata entry lists `{key}` twice"
            ));
        }
    }
    Ok(sums)
}

fn read_file(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    let not_found = || CheckpointError::NotFound {
        path: path.to_path_buf(),
    };
    let io_err = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        action: "reading the file".into(),
        source,
    };
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(CheckpointError::IsDirectory {
                path: path.to_path_buf(),
            });
        }
        // A device or pipe could be read forever (`/dev/zero`).
        Ok(m) if !m.is_file() => {
            return Err(CheckpointError::Corrupt {
                path: path.to_path_buf(),
                reason: "it is not a regular file (a device, pipe or socket)".into(),
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(io_err(e)),
    }
    // A device or a file larger than memory is refused rather than read until memory runs out.
    crate::limits::read_bounded(path, crate::limits::memory_budget()).map_err(|e| match e {
        // Deleted between the two calls.
        crate::limits::ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound => not_found(),
        crate::limits::ReadError::Io(e) => io_err(e),
        too_large => io_err(io::Error::other(too_large.to_string())),
    })
}

/// Turns a safetensors parse error into a sentence about the file, using the file itself for
/// the numbers the error does not carry.
fn describe_format_error(bytes: &[u8], err: SafeTensorError) -> String {
    let declared_header = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
    let after_length = bytes.len().saturating_sub(8);
    match err {
        SafeTensorError::HeaderTooSmall if bytes.is_empty() => "the file is empty".into(),
        SafeTensorError::HeaderTooSmall => format!(
            "the file is only {} bytes long, too short for the 8-byte header length that starts \
             every safetensors file",
            bytes.len()
        ),
        SafeTensorError::HeaderTooLarge => format!(
            "the first 8 bytes give a header length of {} bytes, beyond the 100 MB safetensors \
             allows; this is not a safetensors file",
            declared_header.unwrap_or(0)
        ),
        SafeTensorError::InvalidHeaderLength => format!(
            "the first 8 bytes give a header length of {} bytes, but only {after_length} bytes \
             follow; the file is truncated or is not a safetensors file",
            declared_header.unwrap_or(0)
        ),
        SafeTensorError::InvalidHeader(e) => {
            format!("the header is not UTF-8 text ({e}); the file is corrupted or not safetensors")
        }
        SafeTensorError::InvalidHeaderDeserialization(e) => format!(
            "the header is not a valid safetensors JSON header ({e}); the file is corrupted, \
             truncated or not safetensors"
        ),
        SafeTensorError::InvalidOffset(name) => format!(
            "the data offsets of tensor `{name}` leave a gap or overlap the previous tensor"
        ),
        SafeTensorError::TensorInvalidInfo => "a tensor's data offsets span a different number of \
             bytes than its dtype and shape require"
            .into(),
        SafeTensorError::MetadataIncompleteBuffer => {
            let data_len = declared_header
                .and_then(|n| usize::try_from(n).ok())
                .map_or(0, |n| after_length.saturating_sub(n));
            format!(
                "the header describes a different amount of tensor data than the {data_len} \
                 bytes that follow it; the file is truncated or has bytes appended"
            )
        }
        SafeTensorError::ValidationOverflow => {
            "a tensor's shape is so large that its size in bytes overflows".into()
        }
        other => format!("the header is inconsistent: {other}"),
    }
}

fn parse_order(entry: &str, file_order: &[String]) -> Result<Vec<String>, String> {
    let order: Vec<String> = if entry.is_empty() {
        Vec::new()
    } else {
        entry.split('\n').map(str::to_string).collect()
    };
    let in_file: HashSet<&str> = file_order.iter().map(String::as_str).collect();
    let mut seen = HashSet::new();
    for name in &order {
        if !in_file.contains(name.as_str()) {
            return Err(format!(
                "the `{ORDER_KEY}` metadata entry lists tensor `{name}`, which is not in the file"
            ));
        }
        if !seen.insert(name.as_str()) {
            return Err(format!(
                "the `{ORDER_KEY}` metadata entry lists tensor `{name}` twice"
            ));
        }
    }
    if let Some(name) = file_order.iter().find(|n| !seen.contains(n.as_str())) {
        return Err(format!(
            "tensor `{name}` is in the file but missing from the `{ORDER_KEY}` metadata entry"
        ));
    }
    Ok(order)
}

fn parse_checksums(entry: &str, order: &[String]) -> Result<HashMap<String, String>, String> {
    let mut lines = entry.split('\n');
    let algorithm = lines.next().unwrap_or_default();
    if algorithm != CHECKSUM_ALGORITHM {
        return Err(format!(
            "the `{CHECKSUM_KEY}` metadata entry uses checksum algorithm {algorithm:?}; only \
             {CHECKSUM_ALGORITHM} is known"
        ));
    }
    let mut sums = HashMap::new();
    for (i, line) in lines.enumerate() {
        let parsed = line
            .split_once(' ')
            .filter(|(hex, _)| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some((hex, name)) = parsed else {
            return Err(format!(
                "line {} of the `{CHECKSUM_KEY}` metadata entry is not `<16 hex digits> <name>`",
                i + 2
            ));
        };
        if sums
            .insert(name.to_string(), hex.to_ascii_lowercase())
            .is_some()
        {
            return Err(format!(
                "the `{CHECKSUM_KEY}` metadata entry lists tensor `{name}` twice"
            ));
        }
    }
    if let Some(name) = order.iter().find(|n| !sums.contains_key(n.as_str())) {
        return Err(format!(
            "the `{CHECKSUM_KEY}` metadata entry has no checksum for tensor `{name}`"
        ));
    }
    if sums.len() != order.len() {
        let extra = sums
            .keys()
            .find(|n| !order.contains(n))
            .cloned()
            .unwrap_or_default();
        return Err(format!(
            "the `{CHECKSUM_KEY}` metadata entry lists tensor `{extra}`, which is not in the file"
        ));
    }
    Ok(sums)
}

// ---------------------------------------------------------------------------------------------
// check_against

fn describe(dtype: DTypeTag, shape: &[usize]) -> String {
    format!("{dtype} {shape:?}")
}

/// Checks that `ckpt` holds exactly the tensors a model expects, each with its shape and dtype.
///
/// Reports the first expected tensor (in `expected` order) that is missing or differs, or else
/// the first checkpoint tensor the model does not expect.
pub fn check_against(
    ckpt: &Checkpoint,
    expected: &[(String, Vec<usize>, DTypeTag)],
) -> Result<(), CheckpointError> {
    let by_name: HashMap<&str, &NamedTensor> =
        ckpt.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    for (name, shape, dtype) in expected {
        let mismatch = |kind, found: String| CheckpointError::Mismatch {
            tensor: name.clone(),
            kind,
            expected: describe(*dtype, shape),
            found,
        };
        let Some(t) = by_name.get(name.as_str()) else {
            return Err(mismatch(
                MismatchKind::Missing,
                "no tensor with that name".into(),
            ));
        };
        if t.dtype() != *dtype {
            return Err(mismatch(
                MismatchKind::WrongDType,
                describe(t.dtype(), &t.shape),
            ));
        }
        if t.shape != *shape {
            return Err(mismatch(
                MismatchKind::WrongShape,
                describe(t.dtype(), &t.shape),
            ));
        }
    }
    let wanted: HashSet<&str> = expected.iter().map(|(n, _, _)| n.as_str()).collect();
    if let Some(t) = ckpt
        .tensors
        .iter()
        .find(|t| !wanted.contains(t.name.as_str()))
    {
        return Err(CheckpointError::Mismatch {
            tensor: t.name.clone(),
            kind: MismatchKind::Unexpected,
            expected: "no tensor with that name".into(),
            found: describe(t.dtype(), &t.shape),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// A fresh, empty directory under the system temp dir, unique per test and process, removed
    /// when dropped.
    struct ScratchDir(PathBuf);

    impl std::ops::Deref for ScratchDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for ScratchDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn scratch_dir(test: &str) -> ScratchDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "adjoint-checkpoint-{test}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }

    fn f32_tensor(name: &str, shape: &[usize], data: Vec<f32>) -> NamedTensor {
        NamedTensor {
            name: name.into(),
            shape: shape.to_vec(),
            data: TensorData::F32(data),
        }
    }

    fn f64_tensor(name: &str, shape: &[usize], data: Vec<f64>) -> NamedTensor {
        NamedTensor {
            name: name.into(),
            shape: shape.to_vec(),
            data: TensorData::F64(data),
        }
    }

    /// Names deliberately out of alphabetical and dtype order, and awkward values.
    fn sample() -> Checkpoint {
        let mut metadata = BTreeMap::new();
        metadata.insert(STEP_KEY.into(), "1234".into());
        metadata.insert(RNG_KEY.into(), "chacha:0123456789abcdef".into());
        metadata.insert(MODEL_HASH_KEY.into(), fnv1a64_hex(b"param w: [2, 3]"));
        metadata.insert(DTYPE_KEY.into(), "f32".into());
        metadata.insert(
            "note".into(),
            "unicode ✓, \"quotes\", newline\nand tab\t".into(),
        );
        Checkpoint {
            tensors: vec![
                f32_tensor(
                    "param/w",
                    &[2, 3],
                    vec![
                        -0.0,
                        f32::from_bits(0x7fc0_1234), // quiet NaN with a payload
                        f32::from_bits(0xff80_0001), // signalling NaN, negative
                        f32::INFINITY,
                        f32::from_bits(1), // smallest subnormal
                        f32::MAX,
                    ],
                ),
                f64_tensor(
                    "state/w/1",
                    &[3],
                    vec![
                        -0.0,
                        f64::from_bits(0x7ff8_0000_dead_beef),
                        f64::MIN_POSITIVE / 4.0,
                    ],
                ),
                f32_tensor("state/w/0", &[], vec![0.5]),
                f64_tensor("param/b", &[0, 4], vec![]),
                f32_tensor("a_last", &[1, 1, 2], vec![1.0, -1.0]),
            ],
            metadata,
        }
    }

    fn bits(t: &NamedTensor) -> Vec<u64> {
        match &t.data {
            TensorData::F32(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
            TensorData::F64(v) => v.iter().map(|x| x.to_bits()).collect(),
        }
    }

    fn assert_same_bits(a: &Checkpoint, b: &Checkpoint) {
        assert_eq!(a.metadata, b.metadata);
        assert_eq!(a.tensors.len(), b.tensors.len());
        for (x, y) in a.tensors.iter().zip(&b.tensors) {
            assert_eq!(x.name, y.name);
            assert_eq!(x.shape, y.shape);
            assert_eq!(x.dtype(), y.dtype(), "{}", x.name);
            assert_eq!(bits(x), bits(y), "{}", x.name);
        }
    }

    fn temp_files_in(dir: &Path) -> Vec<PathBuf> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".tmp-"))
            .collect()
    }

    /// A safetensors file with a hand-written header, padded like the reference writer does.
    fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut header = header.as_bytes().to_vec();
        header.resize(header.len().next_multiple_of(8), b' ');
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend(header);
        out.extend(data);
        out
    }

    fn load_err(path: &Path) -> (CheckpointError, String) {
        let err = load(path).expect_err("load should fail");
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()),
            "message lacks the path: {msg}"
        );
        (err, msg)
    }

    fn load_bytes_err(test: &str, bytes: &[u8]) -> (CheckpointError, String) {
        let dir = scratch_dir(test);
        let path = dir.join("bad.safetensors");
        fs::write(&path, bytes).unwrap();
        load_err(&path)
    }

    #[test]
    fn fnv1a64_matches_published_vectors() {
        assert_eq!(fnv1a64_hex(b""), "cbf29ce484222325");
        assert_eq!(fnv1a64_hex(b"a"), "af63dc4c8601ec8c");
        assert_eq!(fnv1a64_hex(b"foobar"), "85944171f73967e8");
    }

    #[test]
    fn round_trip_keeps_order_names_bits_and_metadata() {
        let dir = scratch_dir("roundtrip");
        let path = dir.join("model.safetensors");
        let ckpt = sample();
        save(&path, &ckpt).unwrap();
        let loaded = load(&path).unwrap();
        assert_same_bits(&ckpt, &loaded);
        assert!(!loaded.metadata.contains_key(ORDER_KEY));
        assert!(!loaded.metadata.contains_key(CHECKSUM_KEY));
        assert!(temp_files_in(&dir).is_empty());

        // Saving what was loaded loses and adds nothing. (The bytes may differ: the encoder
        // writes the metadata map in hash order.)
        let again = dir.join("again.safetensors");
        save(&again, &loaded).unwrap();
        assert_same_bits(&ckpt, &load(&again).unwrap());
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            fs::metadata(&again).unwrap().len()
        );
    }

    #[test]
    fn round_trip_of_empty_checkpoint() {
        let dir = scratch_dir("empty-ckpt");
        let path = dir.join("e.safetensors");
        save(&path, &Checkpoint::default()).unwrap();
        assert_eq!(load(&path).unwrap(), Checkpoint::default());
    }

    #[test]
    fn file_is_standard_safetensors_with_metadata_in_header() {
        let dir = scratch_dir("layout");
        let path = dir.join("m.safetensors");
        save(&path, &sample()).unwrap();
        let bytes = fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
        assert!(header.starts_with("{\"__metadata__\":{"), "{header}");
        assert!(header.contains("\"adjoint.step\":\"1234\""), "{header}");
        assert!(
            header.contains(
                "\"adjoint.order\":\"param/w\\nstate/w/1\\nstate/w/0\\nparam/b\\na_last\""
            )
        );
        assert!(
            header.contains("\"adjoint.checksum\":\"fnv1a64\\n"),
            "{header}"
        );
        assert!(
            header.contains("\"param/w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[")
        );
        assert_eq!(n % 8, 0);
    }

    #[test]
    fn save_replaces_existing_checkpoint_and_leaves_no_temp_file() {
        let dir = scratch_dir("overwrite");
        let path = dir.join("m.safetensors");
        save(&path, &sample()).unwrap();
        let second = Checkpoint {
            tensors: vec![f32_tensor("param/v", &[2], vec![3.0, 4.0])],
            metadata: BTreeMap::new(),
        };
        save(&path, &second).unwrap();
        assert_same_bits(&second, &load(&path).unwrap());
        assert!(temp_files_in(&dir).is_empty());
    }

    #[test]
    fn temporary_file_is_a_hidden_sibling_of_the_target() {
        let (dir, prefix) = temp_prefix(Path::new("m.safetensors")).unwrap();
        assert_eq!(dir, Path::new("."));
        assert_eq!(
            prefix.to_str().unwrap(),
            format!(".m.safetensors.tmp-{}-", std::process::id())
        );

        let (dir, _) = temp_prefix(Path::new("/a/b/m.safetensors")).unwrap();
        assert_eq!(dir, Path::new("/a/b"));

        assert!(temp_prefix(Path::new("/")).is_none());
        assert!(temp_prefix(Path::new("a/..")).is_none());
    }

    #[test]
    fn save_rejects_invalid_checkpoints_and_keeps_the_old_file() {
        let dir = scratch_dir("invalid-input");
        let path = dir.join("m.safetensors");
        save(&path, &sample()).unwrap();
        let before = fs::read(&path).unwrap();

        let cases: Vec<(Checkpoint, &str)> = vec![
            (
                Checkpoint {
                    tensors: vec![f32_tensor("param/w", &[2, 2], vec![1.0; 3])],
                    ..Default::default()
                },
                "has shape [2, 2] but 3 elements",
            ),
            (
                Checkpoint {
                    tensors: vec![
                        f32_tensor("p", &[1], vec![1.0]),
                        f64_tensor("p", &[1], vec![1.0]),
                    ],
                    ..Default::default()
                },
                "tensor `p` appears more than once",
            ),
            (
                Checkpoint {
                    tensors: vec![f32_tensor("two\nlines", &[1], vec![1.0])],
                    ..Default::default()
                },
                "is not allowed",
            ),
            (
                Checkpoint {
                    tensors: vec![f32_tensor("", &[1], vec![1.0])],
                    ..Default::default()
                },
                "is not allowed",
            ),
            (
                Checkpoint {
                    tensors: vec![f32_tensor("__metadata__", &[1], vec![1.0])],
                    ..Default::default()
                },
                "is not allowed",
            ),
            (
                Checkpoint {
                    tensors: vec![],
                    metadata: [(CHECKSUM_KEY.to_string(), "x".to_string())].into(),
                },
                "`adjoint.checksum` is reserved",
            ),
            (
                Checkpoint {
                    tensors: vec![f32_tensor("big", &[usize::MAX, 2], vec![])],
                    ..Default::default()
                },
                "has shape",
            ),
        ];
        for (ckpt, expected) in cases {
            let err = save(&path, &ckpt).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, CheckpointError::InvalidInput { .. }), "{msg}");
            assert!(msg.contains(expected), "{msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
        }
        assert_eq!(fs::read(&path).unwrap(), before);
        assert!(temp_files_in(&dir).is_empty());
    }

    #[test]
    fn failed_save_removes_temp_file_and_keeps_target() {
        let dir = scratch_dir("failed-save");

        // The target is a directory: refused before anything is written.
        let target = dir.join("occupied");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), b"x").unwrap();
        let err = save(&target, &sample()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, CheckpointError::InvalidInput { .. }), "{msg}");
        assert!(msg.contains("is a directory"), "{msg}");
        assert!(temp_files_in(&dir).is_empty(), "{:?}", temp_files_in(&dir));
        assert_eq!(fs::read(target.join("keep")).unwrap(), b"x");

        // The directory does not exist: nothing can be created.
        let missing = dir.join("no-such-dir").join("m.safetensors");
        let msg = save(&missing, &sample()).unwrap_err().to_string();
        assert!(msg.contains("creating a temporary file in"), "{msg}");
        assert!(msg.contains(&missing.display().to_string()), "{msg}");

        let msg = save(Path::new("/"), &sample()).unwrap_err().to_string();
        assert!(msg.contains("/ is a directory"), "{msg}");
    }

    #[test]
    fn load_reports_missing_path_and_directory() {
        let dir = scratch_dir("missing");
        let (err, msg) = load_err(&dir.join("nope.safetensors"));
        assert!(matches!(err, CheckpointError::NotFound { .. }));
        assert!(msg.contains("does not exist"), "{msg}");

        let (err, msg) = load_err(&dir);
        assert!(matches!(err, CheckpointError::IsDirectory { .. }));
        assert!(msg.contains("is a directory"), "{msg}");
    }

    #[test]
    fn load_reports_empty_and_foreign_files() {
        let (err, msg) = load_bytes_err("empty-file", b"");
        assert!(matches!(err, CheckpointError::Corrupt { .. }));
        assert!(msg.contains("the file is empty"), "{msg}");

        let (_, msg) = load_bytes_err("tiny-file", b"abc");
        assert!(msg.contains("only 3 bytes long"), "{msg}");

        // Text: the first 8 bytes read as an absurd header length.
        let (_, msg) = load_bytes_err("text-file", b"this is a README, not a checkpoint\n");
        assert!(msg.contains("not a safetensors file"), "{msg}");

        // A small length that runs past the end of the file.
        let mut bytes = 1000u64.to_le_bytes().to_vec();
        bytes.extend(b"{}");
        let (_, msg) = load_bytes_err("short-header", &bytes);
        assert!(
            msg.contains("header length of 1000 bytes, but only 2 bytes follow"),
            "{msg}"
        );
    }

    #[test]
    fn load_reports_corrupted_headers() {
        let cases: [(&str, Vec<u8>, &str); 7] = [
            (
                "bad-json",
                raw_file("{\"w\": {\"dtype\": \"F32\",", &[]),
                "not a valid safetensors JSON header",
            ),
            (
                "not-utf8",
                [&8u64.to_le_bytes()[..], b"{\"\xff\": 1}"].concat(),
                "not UTF-8",
            ),
            (
                "unknown-dtype",
                raw_file(
                    r#"{"w":{"dtype":"F13","shape":[1],"data_offsets":[0,4]}}"#,
                    &[0; 4],
                ),
                "not a valid safetensors JSON header",
            ),
            (
                "offsets-past-end",
                raw_file(
                    r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                    &[0; 4],
                ),
                "different amount of tensor data than the 4 bytes",
            ),
            (
                "length-vs-shape",
                raw_file(
                    r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                    &[0; 8],
                ),
                "different number of bytes than its dtype and shape require",
            ),
            (
                "overlap",
                raw_file(
                    r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                    &[0; 8],
                ),
                "leave a gap or overlap",
            ),
            (
                "overflow",
                raw_file(
                    r#"{"w":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,
                    &[0; 8],
                ),
                "overflows",
            ),
        ];
        for (test, bytes, expected) in cases {
            let (err, msg) = load_bytes_err(test, &bytes);
            assert!(
                matches!(err, CheckpointError::Corrupt { .. }),
                "{test}: {msg}"
            );
            assert!(msg.contains(expected), "{test}: {msg}");
        }
    }

    #[test]
    fn load_rejects_every_truncation() {
        let dir = scratch_dir("truncated");
        let path = dir.join("m.safetensors");
        save(&path, &sample()).unwrap();
        let full = fs::read(&path).unwrap();
        let cut_path = dir.join("cut.safetensors");
        for len in 0..full.len() {
            fs::write(&cut_path, &full[..len]).unwrap();
            let (err, msg) = load_err(&cut_path);
            assert!(
                matches!(err, CheckpointError::Corrupt { .. }),
                "cut at {len}: {msg}"
            );
        }
        let (_, msg) = {
            fs::write(&cut_path, &full[..full.len() - 3]).unwrap();
            load_err(&cut_path)
        };
        assert!(msg.contains("truncated"), "{msg}");
    }

    #[test]
    fn load_detects_tampered_tensor_bytes() {
        let dir = scratch_dir("tampered");
        let path = dir.join("m.safetensors");
        save(&path, &sample()).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        // `a_last` is F32 and sorts first among the F32 tensors, right after the F64 ones.
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
        let at = header.find("\"a_last\":").unwrap();
        let offsets = &header[at..];
        let begin: usize = offsets[offsets.find("data_offsets\":[").unwrap() + 15..]
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        bytes[8 + n + begin + 1] ^= 0x40;
        fs::write(&path, &bytes).unwrap();

        let (err, msg) = load_err(&path);
        assert!(
            matches!(&err, CheckpointError::ChecksumMismatch { tensor, .. } if tensor == "a_last"),
            "{msg}"
        );
        assert!(msg.contains("tensor `a_last` are corrupted"), "{msg}");
    }

    #[test]
    fn load_detects_tampered_adjoint_metadata() {
        let dir = scratch_dir("tampered-meta");
        let path = dir.join("m.safetensors");
        let ckpt = Checkpoint {
            tensors: vec![
                f32_tensor("b", &[1], vec![1.0]),
                f32_tensor("a", &[1], vec![2.0]),
            ],
            metadata: BTreeMap::new(),
        };
        save(&path, &ckpt).unwrap();
        let saved = fs::read(&path).unwrap();
        // Same-length edits keep the header length valid, so only the entries themselves are
        // wrong.
        let edits: [(&str, &str, &str, &str); 3] = [
            (
                "\"b\\na\"",
                "\"b\\nb\"",
                ORDER_KEY,
                "lists tensor `b` twice",
            ),
            (
                "\"fnv1a64\\n",
                "\"fnv1a32\\n",
                CHECKSUM_KEY,
                "checksum algorithm \"fnv1a32\"",
            ),
            (" a\"", " c\"", CHECKSUM_KEY, "no checksum for tensor `a`"),
        ];
        let edit = |good: &[u8], from: &str, to: &str| {
            let at = good
                .windows(from.len())
                .position(|w| w == from.as_bytes())
                .unwrap_or_else(|| panic!("{from} not in the header"));
            let mut bytes = good.to_vec();
            bytes[at..at + to.len()].copy_from_slice(to.as_bytes());
            fs::write(&path, bytes).unwrap();
        };
        // As saved, the metadata checksum names the entry that changed.
        for (from, to, key, _) in edits {
            edit(&saved, from, to);
            let (err, msg) = load_err(&path);
            assert!(
                matches!(&err, CheckpointError::MetadataChanged { key: k, .. } if k == key),
                "{msg}"
            );
        }
        // Without it (an earlier version's file), the entries' own checks catch each edit.
        fs::write(&path, &saved).unwrap();
        rewrite_header(&path, |h| {
            h["__metadata__"]
                .as_object_mut()
                .unwrap()
                .remove(METADATA_CHECKSUM_KEY);
        });
        let unchecked = fs::read(&path).unwrap();
        for (from, to, _, expected) in edits {
            edit(&unchecked, from, to);
            let (err, msg) = load_err(&path);
            assert!(matches!(err, CheckpointError::Corrupt { .. }), "{msg}");
            assert!(msg.contains(expected), "{msg}");
        }
    }

    #[test]
    fn load_never_panics_on_random_damage() {
        let dir = scratch_dir("fuzz");
        let path = dir.join("m.safetensors");
        save(&path, &sample()).unwrap();
        let good = fs::read(&path).unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let damaged = dir.join("damaged.safetensors");
        let mut failures = 0;
        for _ in 0..1500 {
            let mut bytes = good.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() % bytes.len() as u64) as usize;
                match next() % 3 {
                    0 => bytes[i] = next() as u8,
                    1 => bytes[i] ^= 1 << (next() % 8),
                    _ => bytes.truncate(i.max(1)),
                }
            }
            fs::write(&damaged, &bytes).unwrap();
            if load(&damaged).is_err() {
                failures += 1;
            }
        }
        // Damage that happens to hit only header padding is harmless; everything else must be
        // caught.
        assert!(
            failures > 1300,
            "only {failures} of 1500 damaged files were rejected"
        );
    }

    #[test]
    fn foreign_files_load_in_file_order_with_their_metadata() {
        let mut data = Vec::new();
        data.extend(2.5f64.to_le_bytes());
        data.extend(1.5f32.to_le_bytes());
        data.extend((-1.0f32).to_le_bytes());
        let bytes = raw_file(
            r#"{"__metadata__":{"format":"pt"},"z":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2,1],"data_offsets":[8,16]}}"#,
            &data,
        );
        let dir = scratch_dir("foreign");
        let path = dir.join("f.safetensors");
        fs::write(&path, bytes).unwrap();
        let ckpt = load(&path).unwrap();
        assert_eq!(
            ckpt.metadata,
            BTreeMap::from([("format".into(), "pt".into())])
        );
        assert_eq!(
            ckpt.tensors,
            vec![
                f64_tensor("z", &[1], vec![2.5]),
                f32_tensor("a", &[2, 1], vec![1.5, -1.0])
            ]
        );
    }

    #[test]
    fn load_names_unsupported_dtypes() {
        for (dtype, bytes_per) in [("BF16", 2), ("I64", 8), ("F16", 2), ("U8", 1)] {
            let header = format!(
                r#"{{"param/ok":{{"dtype":"F32","shape":[1],"data_offsets":[0,4]}},"param/emb":{{"dtype":"{dtype}","shape":[3],"data_offsets":[4,{}]}}}}"#,
                4 + 3 * bytes_per
            );
            let bytes = raw_file(&header, &vec![0u8; 4 + 3 * bytes_per]);
            let (err, msg) = load_bytes_err("dtype", &bytes);
            assert!(
                matches!(&err, CheckpointError::UnsupportedDType { tensor, dtype: d, .. }
                    if tensor == "param/emb" && d == dtype),
                "{msg}"
            );
            assert!(
                msg.contains(&format!("tensor `param/emb` has dtype {dtype}")),
                "{msg}"
            );
        }
    }

    type Expected = Vec<(String, Vec<usize>, DTypeTag)>;

    fn expected_for(ckpt: &Checkpoint) -> Expected {
        ckpt.tensors
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone(), t.dtype()))
            .collect()
    }

    #[test]
    fn check_against_accepts_a_matching_model_in_any_order() {
        let ckpt = sample();
        let mut expected = expected_for(&ckpt);
        expected.reverse();
        check_against(&ckpt, &expected).unwrap();
    }

    #[test]
    fn check_against_names_the_first_mismatch() {
        let ckpt = sample();
        let base = expected_for(&ckpt);
        let check = |edit: &dyn Fn(&mut Expected)| {
            let mut expected = base.clone();
            edit(&mut expected);
            let err = check_against(&ckpt, &expected).unwrap_err();
            let CheckpointError::Mismatch { tensor, kind, .. } = &err else {
                panic!("{err}")
            };
            (tensor.clone(), *kind, err.to_string())
        };

        let (tensor, kind, msg) = check(&|e| e[0].1 = vec![3, 2]);
        assert_eq!(
            (tensor.as_str(), kind),
            ("param/w", MismatchKind::WrongShape)
        );
        assert_eq!(
            msg,
            "checkpoint does not match the model: tensor `param/w` has the wrong shape: \
             expected f32 [3, 2], found f32 [2, 3]"
        );

        let (_, kind, msg) = check(&|e| e[1].2 = DTypeTag::F32);
        assert_eq!(kind, MismatchKind::WrongDType);
        assert_eq!(
            msg,
            "checkpoint does not match the model: tensor `state/w/1` has the wrong dtype: \
             expected f32 [3], found f64 [3]"
        );

        let (_, kind, msg) =
            check(&|e| e.insert(2, ("param/extra".into(), vec![4], DTypeTag::F64)));
        assert_eq!(kind, MismatchKind::Missing);
        assert_eq!(
            msg,
            "checkpoint does not match the model: tensor `param/extra` is missing from the \
             checkpoint: expected f64 [4], found no tensor with that name"
        );

        let (_, kind, msg) = check(&|e| {
            e.remove(2);
        });
        assert_eq!(kind, MismatchKind::Unexpected);
        assert_eq!(
            msg,
            "checkpoint does not match the model: tensor `state/w/0` is in the checkpoint but \
             not in the model: expected no tensor with that name, found f32 []"
        );

        // Several problems: the earliest expected tensor wins, and a missing or wrong tensor is
        // reported before an unexpected one.
        let (tensor, kind, _) = check(&|e| {
            e.remove(0);
            e[2].1 = vec![9];
            e[3].2 = DTypeTag::F64;
        });
        assert_eq!(
            (tensor.as_str(), kind),
            ("param/b", MismatchKind::WrongShape)
        );
    }

    /// The file's header as JSON, changed by `edit`, written back with the same tensor bytes.
    fn rewrite_header(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
        let bytes = fs::read(path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        edit(&mut header);
        fs::write(path, raw_file(&header.to_string(), &bytes[8 + n..])).unwrap();
    }

    #[test]
    fn every_metadata_entry_is_covered_by_the_checksum() {
        let dir = scratch_dir("metadata-checksum");
        let path = dir.join("m.safetensors");
        save(&path, &sample()).unwrap();
        let (_, integrity) = load_verified(&path).unwrap();
        assert_eq!(integrity, Integrity::Complete);
        let good = fs::read(&path).unwrap();
        let keys: Vec<String> = sample()
            .metadata
            .keys()
            .cloned()
            .chain([ORDER_KEY.to_string(), CHECKSUM_KEY.to_string()])
            .collect();
        for key in &keys {
            // One character more: the edit that a damaged byte or a hand edit makes.
            fs::write(&path, &good).unwrap();
            rewrite_header(&path, |h| {
                let v = &mut h["__metadata__"][key.as_str()];
                *v = format!("{}x", v.as_str().unwrap()).into();
            });
            let (err, msg) = load_err(&path);
            assert!(
                matches!(&err, CheckpointError::MetadataChanged { key: k, change: MetadataChange::Edited, .. } if k == key),
                "{key}: {msg}"
            );
            assert!(msg.contains(&format!("`{key}` was changed")), "{msg}");
        }
        fs::write(&path, &good).unwrap();
        rewrite_header(&path, |h| {
            h["__metadata__"]["adjoint.extra"] = "1".into();
        });
        let (_, msg) = load_err(&path);
        assert!(msg.contains("`adjoint.extra` was added"), "{msg}");
        fs::write(&path, &good).unwrap();
        rewrite_header(&path, |h| {
            h["__metadata__"].as_object_mut().unwrap().remove(STEP_KEY);
        });
        let (_, msg) = load_err(&path);
        assert!(msg.contains("`adjoint.step` was removed"), "{msg}");
        // Without the metadata checksum (an earlier version's file) it loads, saying so.
        fs::write(&path, &good).unwrap();
        rewrite_header(&path, |h| {
            h["__metadata__"]
                .as_object_mut()
                .unwrap()
                .remove(METADATA_CHECKSUM_KEY);
        });
        assert_eq!(load_verified(&path).unwrap().1, Integrity::TensorsOnly);
    }

    #[test]
    fn identical_checkpoints_are_identical_files() {
        let dir = scratch_dir("identical");
        let mut ckpt = sample();
        for i in 0..20 {
            ckpt.metadata.insert(format!("key{i}"), i.to_string());
        }
        save(&dir.join("a.safetensors"), &ckpt).unwrap();
        let first = fs::read(dir.join("a.safetensors")).unwrap();
        for _ in 0..5 {
            save(&dir.join("b.safetensors"), &ckpt).unwrap();
            assert!(fs::read(dir.join("b.safetensors")).unwrap() == first);
        }
        let n = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&first[8..8 + n]).unwrap();
        let at = |k: &str| header.find(&format!("\"{k}\":")).unwrap();
        assert!(at("adjoint.checksum") < at("adjoint.dtype") && at("key0") < at("key1"));
    }

    #[cfg(unix)]
    #[test]
    fn save_follows_symbolic_links_and_refuses_what_is_not_a_file() {
        use std::os::unix::fs::symlink;
        let dir = scratch_dir("links");
        let real = dir.join("real.safetensors");
        save(&real, &sample()).unwrap();
        let link = dir.join("link.safetensors");
        symlink("real.safetensors", &link).unwrap();
        let second = Checkpoint {
            tensors: vec![f32_tensor("param/v", &[1], vec![7.0])],
            metadata: BTreeMap::new(),
        };
        save(&link, &second).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_same_bits(&second, &load(&real).unwrap());
        assert_eq!(check_writable(&link).unwrap(), dir.join("real.safetensors"));

        // A dangling link: its target is created.
        let dangling = dir.join("dangling.safetensors");
        symlink(dir.join("new.safetensors"), &dangling).unwrap();
        save(&dangling, &second).unwrap();
        assert_same_bits(&second, &load(&dir.join("new.safetensors")).unwrap());

        // A loop of links.
        symlink(dir.join("loop2"), dir.join("loop1")).unwrap();
        symlink(dir.join("loop1"), dir.join("loop2")).unwrap();
        let msg = save(&dir.join("loop1"), &second).unwrap_err().to_string();
        assert!(msg.contains("symbolic links"), "{msg}");

        // A socket, like a device or a pipe, is never replaced by a regular file.
        let socket = dir.join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        for result in [
            save(&socket, &second).map(drop),
            check_writable(&socket).map(drop),
        ] {
            let msg = result.unwrap_err().to_string();
            assert!(msg.contains("not a regular file"), "{msg}");
        }
        assert!(!fs::symlink_metadata(&socket).unwrap().is_file());
        let msg = check_writable(&dir.join("missing").join("m.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("missing does not exist"), "{msg}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn save_removes_temporary_files_of_killed_savers() {
        let dir = scratch_dir("stale");
        let path = dir.join("m.safetensors");
        // No process has a pid this large (Linux's limit is 2^22).
        let dead = dir.join(".m.safetensors.tmp-4294967295-abcdefgh");
        // Process 1 is alive for as long as the system is up: its file may be in use.
        let alive = dir.join(".m.safetensors.tmp-1-abcdefgh");
        let other = dir.join(".n.safetensors.tmp-4294967295-abcdefgh");
        for f in [&dead, &alive, &other] {
            fs::write(f, b"partial").unwrap();
        }
        save(&path, &sample()).unwrap();
        assert!(!dead.exists());
        assert!(alive.exists() && other.exists());
    }

    // --- crash safety --------------------------------------------------------------------

    const KILL_CHILD_ENV: &str = "ADJOINT_CHECKPOINT_KILL_CHILD_TARGET";

    /// About 6 MB; every value is a function of `seed` and its position, so a reader can tell
    /// a complete checkpoint from a mixture of two.
    fn big_checkpoint(seed: u32) -> Checkpoint {
        let f32s = |n: usize, salt: u32| -> Vec<f32> {
            (0..n as u32)
                .map(|i| f32::from_bits(seed.wrapping_mul(0x9e37_79b9) ^ salt ^ i))
                .collect()
        };
        let f64s = |n: usize| -> Vec<f64> {
            (0..n as u64)
                .map(|i| f64::from_bits((u64::from(seed) << 40) ^ i))
                .collect()
        };
        Checkpoint {
            tensors: vec![
                f32_tensor("param/w", &[512, 1024], f32s(1 << 19, 0x1111)),
                f64_tensor("state/w/0", &[256, 1024], f64s(1 << 18)),
                f32_tensor("state/w/1", &[512, 1024], f32s(1 << 19, 0x2222)),
            ],
            metadata: [("seed".to_string(), seed.to_string())].into(),
        }
    }

    fn assert_is_complete_big_checkpoint(ckpt: &Checkpoint) -> u32 {
        let seed: u32 = ckpt.metadata["seed"].parse().unwrap();
        let expected = big_checkpoint(seed);
        assert_same_bits(&expected, ckpt);
        seed
    }

    /// Not a test on its own, so ignored (not reported as passing): the kill test re-runs this
    /// binary with only this test selected, ignored tests included and the environment variable
    /// set, making the child save checkpoints until it is killed.
    #[test]
    #[ignore = "the child process of sigkill_during_save_never_damages_the_checkpoint"]
    fn kill_test_child_saves_in_a_loop() {
        let target = std::env::var_os(KILL_CHILD_ENV)
            .unwrap_or_else(|| panic!("run by the kill test, with {KILL_CHILD_ENV} set"));
        let versions = [big_checkpoint(1), big_checkpoint(2)];
        for i in 0.. {
            save(Path::new(&target), &versions[i % 2]).unwrap();
        }
    }

    #[test]
    fn sigkill_during_save_never_damages_the_checkpoint() {
        let dir = scratch_dir("sigkill");
        let target = dir.join("model.safetensors");
        save(&target, &big_checkpoint(0)).unwrap();

        let this_module = module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, rest)| rest);
        let child_test = format!("{this_module}::kill_test_child_saves_in_a_loop");
        let exe = std::env::current_exe().unwrap();

        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut mid_save_kills = 0;
        let mut seeds_seen = HashSet::new();
        const KILLS: usize = 25;
        for _ in 0..KILLS {
            let mut child = Command::new(&exe)
                .args([
                    child_test.as_str(),
                    "--exact",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env(KILL_CHILD_ENV, &target)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();

            // Wait until the child is inside a save (its temporary file exists), then let it
            // run a little longer so kills land at different points of the write, the sync and
            // the rename.
            let start = Instant::now();
            while temp_files_in(&dir).is_empty() {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("child exited early with {status}");
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "child never started saving"
                );
                std::thread::sleep(Duration::from_micros(200));
            }
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            std::thread::sleep(Duration::from_micros(rng % 5_000));
            child.kill().unwrap(); // SIGKILL on unix: no destructors, no cleanup
            child.wait().unwrap();

            let leftovers = temp_files_in(&dir);
            if !leftovers.is_empty() {
                mid_save_kills += 1;
            }
            let ckpt = load(&target).expect("checkpoint damaged by a killed save");
            seeds_seen.insert(assert_is_complete_big_checkpoint(&ckpt));
            for tmp in leftovers {
                fs::remove_file(tmp).unwrap();
            }
        }
        eprintln!(
            "{KILLS} kills, {mid_save_kills} with a save in progress; versions seen at the \
             target: {seeds_seen:?}"
        );
        assert!(
            mid_save_kills >= KILLS / 5,
            "only {mid_save_kills} kills landed mid-save"
        );
    }
}
