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
//! | `state.<name>` | a state tensor of the model, e.g. `state.batch_norm0.running_mean` |
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

mod atomic;
pub use atomic::*;
mod encode;
use encode::*;
mod decode;
pub use decode::*;

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

#[cfg(test)]
mod tests;
