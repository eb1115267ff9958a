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
//!
//! [`load`] consumes `adjoint.order` and `adjoint.checksum` and does not return them; every other
//! key comes back unchanged. Files from other tools, which lack both keys, load too: their tensors
//! come back in file order, unverified.
//!
//! The encoder writes the metadata entries in hash-map order, so saving the same checkpoint
//! twice can give files whose headers differ in byte order; they load identically.
//!
//! [`save`] replaces the file atomically: a crash or power loss leaves either the old checkpoint
//! or the new one, never a mix. A process killed mid-save can leave a `.<file name>.tmp-*` file
//! next to the checkpoint; it is never read and is safe to delete.
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
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
         {found}, but the checkpoint recorded {expected} when it was saved (if the tensor was \
         changed on purpose, delete the `adjoint.checksum` metadata entry)",
        .path.display()
    )]
    ChecksumMismatch {
        path: PathBuf,
        tensor: String,
        expected: String,
        found: String,
    },

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
/// On error the file at `path`, if any, is unchanged and no temporary file is left behind.
pub fn save(path: &Path, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    let bytes = encode(path, ckpt)?;
    write_atomically(path, &bytes)
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

    for key in [ORDER_KEY, CHECKSUM_KEY] {
        if ckpt.metadata.contains_key(key) {
            return Err(invalid(format!(
                "metadata key `{key}` is reserved; save writes it itself"
            )));
        }
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

    let metadata = ckpt
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain([
            (ORDER_KEY.to_string(), order),
            (CHECKSUM_KEY.to_string(), checksums),
        ])
        .collect();
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
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| invalid(format!("the safetensors encoder rejected it: {e}")))
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Removes the temporary file unless it has been renamed into place, so that every early
/// return (and unwinding panic) cleans up.
struct TempFile {
    path: PathBuf,
    renamed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The directory holding `path` and a fresh temporary file name in it.
fn temp_sibling(path: &Path) -> Option<(&Path, PathBuf)> {
    let file_name = path.file_name()?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Same directory as the target: rename is only atomic within one filesystem. The pid and
    // counter keep concurrent savers (threads or processes) off each other's temporary files.
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    Some((dir, dir.join(tmp_name)))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let io_err = |action: String| {
        move |source: io::Error| CheckpointError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    let (dir, tmp_path) = temp_sibling(path).ok_or_else(|| CheckpointError::InvalidInput {
        path: path.to_path_buf(),
        reason: "the path does not end in a file name".into(),
    })?;

    // create_new: never truncate a file some other process is writing. The cleanup guard is
    // armed only once the file is ours, so a name clash never deletes someone else's file.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp_path)
        .map_err(io_err(format!(
            "creating the temporary file {}",
            tmp_path.display()
        )))?;
    let mut tmp = TempFile {
        path: tmp_path,
        renamed: false,
    };
    file.write_all(bytes).map_err(io_err(format!(
        "writing the temporary file {}",
        tmp.path.display()
    )))?;
    // Without this the rename can reach the disk before the data, and a power loss would
    // leave a checkpoint full of zeros or garbage under the final name.
    file.sync_all().map_err(io_err(format!(
        "flushing the temporary file {} to disk",
        tmp.path.display()
    )))?;
    drop(file);

    fs::rename(&tmp.path, path).map_err(io_err(format!(
        "renaming the temporary file {} over the checkpoint",
        tmp.path.display()
    )))?;
    tmp.renamed = true;

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
    let bytes = read_file(path)?;
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };

    let (header_len, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| corrupt(describe_format_error(&bytes, e)))?;
    let data = bytes.get(8 + header_len..).unwrap_or(&[]);

    let mut metadata: BTreeMap<String, String> = header
        .metadata()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let file_order = header.offset_keys();
    let order = match metadata.remove(ORDER_KEY) {
        Some(entry) => parse_order(&entry, &file_order).map_err(corrupt)?,
        None => file_order,
    };
    let checksums = match metadata.remove(CHECKSUM_KEY) {
        Some(entry) => Some(parse_checksums(&entry, &order).map_err(corrupt)?),
        None => None,
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
    Ok(Checkpoint { tensors, metadata })
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
        let (dir, tmp) = temp_sibling(Path::new("m.safetensors")).unwrap();
        assert_eq!(dir, Path::new("."));
        let prefix = format!("./.m.safetensors.tmp-{}-", std::process::id());
        assert!(
            tmp.to_str().unwrap().starts_with(&prefix),
            "{}",
            tmp.display()
        );

        let (dir, tmp) = temp_sibling(Path::new("/a/b/m.safetensors")).unwrap();
        assert_eq!(dir, Path::new("/a/b"));
        assert_eq!(tmp.parent(), Some(Path::new("/a/b")));
        let (_, again) = temp_sibling(Path::new("/a/b/m.safetensors")).unwrap();
        assert_ne!(tmp, again);

        assert!(temp_sibling(Path::new("/")).is_none());
        assert!(temp_sibling(Path::new("a/..")).is_none());
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

        // The target is a directory: the rename fails after the data was written and synced.
        let target = dir.join("occupied");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), b"x").unwrap();
        let err = save(&target, &sample()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, CheckpointError::Io { .. }), "{msg}");
        assert!(msg.contains("renaming the temporary file"), "{msg}");
        assert!(temp_files_in(&dir).is_empty(), "{:?}", temp_files_in(&dir));
        assert_eq!(fs::read(target.join("keep")).unwrap(), b"x");

        // The directory does not exist: nothing can be created.
        let missing = dir.join("no-such-dir").join("m.safetensors");
        let msg = save(&missing, &sample()).unwrap_err().to_string();
        assert!(msg.contains("creating the temporary file"), "{msg}");
        assert!(msg.contains(&missing.display().to_string()), "{msg}");

        let msg = save(Path::new("/"), &sample()).unwrap_err().to_string();
        assert!(msg.contains("does not end in a file name"), "{msg}");
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
        let good = fs::read(&path).unwrap();
        // Same-length edits keep the header length valid, so only the entries themselves are
        // wrong.
        let edits: [(&str, &str, &str); 3] = [
            ("\"b\\na\"", "\"b\\nb\"", "lists tensor `b` twice"),
            ("fnv1a64\\n", "fnv1a32\\n", "checksum algorithm \"fnv1a32\""),
            (" a\"", " c\"", "no checksum for tensor `a`"),
        ];
        for (from, to, expected) in edits {
            let at = good
                .windows(from.len())
                .position(|w| w == from.as_bytes())
                .unwrap_or_else(|| panic!("{from} not in the header"));
            let mut bytes = good.clone();
            bytes[at..at + to.len()].copy_from_slice(to.as_bytes());
            fs::write(&path, bytes).unwrap();
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

    /// Not a test on its own: the kill test re-runs this binary with only this test selected and
    /// the environment variable set, making the child save checkpoints until it is killed.
    #[test]
    fn kill_test_child_saves_in_a_loop() {
        let Some(target) = std::env::var_os(KILL_CHILD_ENV) else {
            return;
        };
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
                .args([child_test.as_str(), "--exact", "--test-threads=1"])
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
