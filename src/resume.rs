//! Trainer state to and from checkpoints: parameters, optimizer state, step count and powers of
//! β, the data-shuffling RNG and the minibatch cursor, so that a resumed run continues exactly
//! as if it had never stopped.

use crate::checkpoint::{self, Checkpoint, CheckpointError, DTypeTag, NamedTensor, TensorData};
use crate::ir::DType;
use crate::runtime::Buffer;
use crate::train::{Cursor, Trainer};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::Path;

const POW_KEY: &str = "adjoint.beta_powers";
const CURSOR_KEY: &str = "adjoint.cursor";

fn tensor(name: String, shape: Vec<usize>, b: &Buffer) -> NamedTensor {
    let data = match b {
        Buffer::F32(v) => TensorData::F32(v.clone()),
        Buffer::F64(v) => TensorData::F64(v.clone()),
    };
    NamedTensor { name, shape, data }
}

fn buffer(t: &NamedTensor) -> Buffer {
    match &t.data {
        TensorData::F32(v) => Buffer::F32(v.clone()),
        TensorData::F64(v) => Buffer::F64(v.clone()),
    }
}

fn tag(d: DType) -> DTypeTag {
    match d {
        DType::F32 => DTypeTag::F32,
        DType::F64 => DTypeTag::F64,
    }
}

/// A stable hash of everything that determines what a checkpoint's tensors mean.
pub fn model_hash(t: &Trainer) -> String {
    let c = &t.compiled;
    checkpoint::fnv1a64_hex(
        format!(
            "{}\n{}\n{}",
            c.graphs.forward.text(),
            c.model.optimizer,
            c.model.graph().dtype.name()
        )
        .as_bytes(),
    )
}

/// The tensors a trainer's checkpoint holds, with their shapes and dtype.
fn expected(t: &Trainer) -> Vec<(String, Vec<usize>, DTypeTag)> {
    let g = t.compiled.model.graph();
    let d = tag(g.dtype);
    let mut out = Vec::new();
    for p in &g.params {
        out.push((format!("param/{}", p.name), p.shape.as_fixed().unwrap(), d));
    }
    for p in &g.params {
        for k in 0..t.compiled.model.optimizer.kind.state_arrays() {
            out.push((
                format!("state/{}/{k}", p.name),
                p.shape.as_fixed().unwrap(),
                d,
            ));
        }
    }
    out
}

pub fn to_checkpoint(t: &Trainer) -> Checkpoint {
    let g = t.compiled.model.graph();
    let n_state = t.compiled.model.optimizer.kind.state_arrays();
    let mut tensors = Vec::new();
    for (p, b) in g.params.iter().zip(&t.params) {
        tensors.push(tensor(
            format!("param/{}", p.name),
            p.shape.as_fixed().unwrap(),
            b,
        ));
    }
    for (i, p) in g.params.iter().enumerate() {
        for k in 0..n_state {
            tensors.push(tensor(
                format!("state/{}/{k}", p.name),
                p.shape.as_fixed().unwrap(),
                &t.state[i * n_state + k],
            ));
        }
    }
    let rng = &t.data_rng;
    let seed: String = rng.get_seed().iter().map(|b| format!("{b:02x}")).collect();
    let order: Vec<String> = t.cursor.order.iter().map(|r| r.to_string()).collect();
    let mut metadata = BTreeMap::new();
    metadata.insert(checkpoint::STEP_KEY.into(), t.opt_step.t.to_string());
    metadata.insert(
        POW_KEY.into(),
        format!(
            "{:016x} {:016x}",
            t.opt_step.pow1.to_bits(),
            t.opt_step.pow2.to_bits()
        ),
    );
    metadata.insert(
        checkpoint::RNG_KEY.into(),
        format!("chacha8 {seed} {} {}", rng.get_stream(), rng.get_word_pos()),
    );
    metadata.insert(
        CURSOR_KEY.into(),
        format!("{} {} {}", t.cursor.pos, t.cursor.epoch, order.join(",")),
    );
    metadata.insert(checkpoint::MODEL_HASH_KEY.into(), model_hash(t));
    metadata.insert(
        checkpoint::DTYPE_KEY.into(),
        t.compiled.model.graph().dtype.name().into(),
    );
    Checkpoint { tensors, metadata }
}

/// Writes the trainer's state atomically.
pub fn save(t: &Trainer, path: &Path) -> Result<(), CheckpointError> {
    checkpoint::save(path, &to_checkpoint(t))
}

fn corrupt(path: &Path, reason: impl Into<String>) -> CheckpointError {
    CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Restores parameters only (for evaluation): the checkpoint must hold every parameter. An f64
/// trainer (the checking commands run in f64) takes an f32 model's checkpoint, widened exactly.
pub fn load_params(t: &mut Trainer, path: &Path) -> Result<(), CheckpointError> {
    let ckpt = checkpoint::load(path)?;
    let want: Vec<_> = expected(t)
        .into_iter()
        .filter(|e| e.0.starts_with("param/"))
        .collect();
    let widen = t.compiled.model.graph().dtype == DType::F64;
    let params: Vec<NamedTensor> = ckpt
        .tensors
        .into_iter()
        .filter(|n| n.name.starts_with("param/"))
        .map(|n| if widen { widened(n) } else { n })
        .collect();
    checkpoint::check_against(
        &Checkpoint {
            tensors: params.clone(),
            metadata: BTreeMap::new(),
        },
        &want,
    )?;
    for (i, (name, _, _)) in want.iter().enumerate() {
        t.params[i] = buffer(
            params
                .iter()
                .find(|n| &n.name == name)
                .expect("checked above"),
        );
    }
    Ok(())
}

/// An f32 tensor as f64, which holds every f32 value exactly; other tensors as they are.
fn widened(t: NamedTensor) -> NamedTensor {
    match t.data {
        TensorData::F32(v) => NamedTensor {
            data: TensorData::F64(v.into_iter().map(f64::from).collect()),
            ..t
        },
        TensorData::F64(_) => t,
    }
}

/// Restores everything a resumed run needs; refuses a checkpoint of another model.
pub fn resume(t: &mut Trainer, path: &Path) -> Result<(), CheckpointError> {
    let ckpt = checkpoint::load(path)?;
    checkpoint::check_against(&ckpt, &expected(t))?;
    if let Some(h) = ckpt.metadata.get(checkpoint::MODEL_HASH_KEY) {
        if *h != model_hash(t) {
            return Err(corrupt(
                path,
                "it was written by a different model or optimizer (the model hash differs); its tensors match by name and shape, so use it for evaluation only",
            ));
        }
    }
    let by_name = |n: &str| {
        ckpt.tensors
            .iter()
            .find(|t| t.name == n)
            .expect("checked above")
    };
    let names: Vec<String> = expected(t).into_iter().map(|e| e.0).collect();
    let np = t.params.len();
    for (i, name) in names.iter().enumerate() {
        let b = buffer(by_name(name));
        if i < np {
            t.params[i] = b;
        } else {
            t.state[i - np] = b;
        }
    }
    let meta = |k: &str| {
        ckpt.metadata
            .get(k)
            .ok_or_else(|| corrupt(path, format!("metadata `{k}` is missing")))
    };
    let step: u64 = meta(checkpoint::STEP_KEY)?
        .parse()
        .map_err(|_| corrupt(path, "bad step count"))?;
    let pows: Vec<u64> = meta(POW_KEY)?
        .split(' ')
        .map(|h| u64::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| corrupt(path, "bad β powers"))?;
    let [p1, p2] = pows[..] else {
        return Err(corrupt(path, "bad β powers"));
    };
    let rng_parts: Vec<&str> = meta(checkpoint::RNG_KEY)?.split(' ').collect();
    let ["chacha8", seed, stream, word] = rng_parts[..] else {
        return Err(corrupt(path, "bad RNG state"));
    };
    let mut seed_bytes = [0u8; 32];
    if seed.len() != 64 {
        return Err(corrupt(path, "bad RNG seed"));
    }
    for (i, b) in seed_bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&seed[2 * i..2 * i + 2], 16)
            .map_err(|_| corrupt(path, "bad RNG seed"))?;
    }
    let mut rng = ChaCha8Rng::from_seed(seed_bytes);
    rng.set_stream(
        stream
            .parse()
            .map_err(|_| corrupt(path, "bad RNG stream"))?,
    );
    rng.set_word_pos(
        word.parse()
            .map_err(|_| corrupt(path, "bad RNG position"))?,
    );
    let cursor = meta(CURSOR_KEY)?;
    let mut parts = cursor.splitn(3, ' ');
    let pos = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| corrupt(path, "bad data cursor"))?;
    let epoch = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| corrupt(path, "bad data cursor"))?;
    let order: Vec<usize> = match parts.next() {
        Some("") | None => vec![],
        Some(o) => o
            .split(',')
            .map(|r| r.parse())
            .collect::<Result<_, _>>()
            .map_err(|_| corrupt(path, "bad data cursor"))?,
    };
    t.opt_step = crate::optim::StepState {
        t: step,
        pow1: f64::from_bits(p1),
        pow2: f64::from_bits(p2),
    };
    t.step = step;
    t.data_rng = rng;
    t.cursor = Cursor { order, pos, epoch };
    Ok(())
}
