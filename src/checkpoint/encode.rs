//! The bytes of a checkpoint: tensors in safetensors layout, metadata in sorted order with the
//! checksums that cover every tensor and entry.

use super::*;

pub(super) struct RawView<'a> {
    pub(super) dtype: Dtype,
    pub(super) shape: &'a [usize],
    pub(super) data: &'a [u8],
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

pub(super) fn encode(path: &Path, ckpt: &Checkpoint) -> Result<Vec<u8>, CheckpointError> {
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
pub(super) fn metadata_checksums(metadata: &BTreeMap<String, String>) -> String {
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
pub(super) fn with_sorted_metadata(
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
