//! Reading a checkpoint back: the file read with a bound, its format and checksums verified,
//! its tensors checked against what a model expects.

use super::*;

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
pub(super) fn verify_metadata(
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

pub(super) fn parse_metadata_checksums(entry: &str) -> Result<BTreeMap<&str, String>, String> {
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

pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, CheckpointError> {
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
pub(super) fn describe_format_error(bytes: &[u8], err: SafeTensorError) -> String {
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

pub(super) fn parse_order(entry: &str, file_order: &[String]) -> Result<Vec<String>, String> {
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

pub(super) fn parse_checksums(
    entry: &str,
    order: &[String],
) -> Result<HashMap<String, String>, String> {
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

pub(super) fn describe(dtype: DTypeTag, shape: &[usize]) -> String {
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
