//! Trainer state to and from checkpoints: parameters, optimizer state, step count and powers of
//! β, the data-shuffling RNG, the minibatch cursor and the run's length (the horizon of its
//! learning-rate schedule), so that a resumed run continues exactly as if it had never stopped.
//!
//! A checkpoint is resumed only when it is whole: written by [`save`], every tensor and metadata
//! entry unchanged since (the checksums of `checkpoint`), and every value in range. Parameters
//! alone, from any safetensors file, are what [`init_from`] reads.

use crate::checkpoint::{
    self, Checkpoint, CheckpointError, DTypeTag, Integrity, NamedTensor, TensorData,
};
use crate::data::text::{TextIdentity, Vocabulary};
use crate::ir::DType;
use crate::runtime::Buffer;
use crate::train::{Cursor, Trainer};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

const POW_KEY: &str = "adjoint.beta_powers";
const CURSOR_KEY: &str = "adjoint.cursor";
/// `<end> <horizon>`: the step the run that wrote the checkpoint was to end at, and the step
/// count its schedule decays over (cosine).
const RUN_KEY: &str = "adjoint.run";
/// The optimizer and its hyperparameters as text, to say what differs when the hash does.
const OPTIMIZER_KEY: &str = "adjoint.optimizer";
/// For a model reading a text: its vocabulary, the sorted distinct characters as one string.
pub const VOCABULARY_KEY: &str = "adjoint.vocabulary";
/// For a model reading a text: `<characters> <checksum>` of the text it trained on.
const TEXT_KEY: &str = "adjoint.text";

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

/// The tensor's values in `dtype`, converting between f32 and f64 (for [`init_from`]).
fn buffer_as(t: &NamedTensor, dtype: DType) -> Buffer {
    match (&t.data, dtype) {
        (TensorData::F32(v), DType::F32) => Buffer::F32(v.clone()),
        (TensorData::F64(v), DType::F64) => Buffer::F64(v.clone()),
        (TensorData::F32(v), DType::F64) => Buffer::F64(v.iter().map(|&x| f64::from(x)).collect()),
        (TensorData::F64(v), DType::F32) => Buffer::F32(v.iter().map(|&x| x as f32).collect()),
    }
}

fn tag(d: DType) -> DTypeTag {
    match d {
        DType::F32 => DTypeTag::F32,
        DType::F64 => DTypeTag::F64,
    }
}

/// A stable hash of everything that determines what a checkpoint's tensors mean and how its
/// run continues: the evaluation graph, the training step's graph where it differs (dropout's
/// masks are part of the run), the optimizer and the dtype.
pub fn model_hash(t: &Trainer) -> String {
    let c = &t.compiled;
    let mut described = format!(
        "{}\n{}\n{}",
        c.graphs.forward.text(),
        c.model.optimizer,
        c.model.graph().dtype.name()
    );
    // Appended only where it exists, so that a model without one keeps its checkpoints' hash.
    if let Some(training) = &c.graphs.training {
        described.push_str("\ntraining step:\n");
        described.push_str(&training.forward.text());
    }
    checkpoint::fnv1a64_hex(described.as_bytes())
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
    for s in &g.states {
        out.push((state_key(&s.name), s.shape.as_fixed().unwrap(), d));
    }
    out
}

/// The tensor name of a model state tensor (`state.batch_norm0.running_mean`): apart from the
/// optimizer's `state/<param>/<k>`, which a parameter's name cannot make it.
fn state_key(name: &str) -> String {
    format!("state.{name}")
}

/// Whether a checkpoint tensor is a model state tensor (`state_key`).
fn is_state_key(name: &str) -> bool {
    name.starts_with("state.")
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
    for (s, b) in g.states.iter().zip(&t.model_state) {
        tensors.push(tensor(state_key(&s.name), s.shape.as_fixed().unwrap(), b));
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
    let order = match t.cursor.windows {
        true => WINDOWS.to_string(),
        false => order.join(","),
    };
    metadata.insert(
        CURSOR_KEY.into(),
        format!("{} {} {order}", t.cursor.pos, t.cursor.epoch),
    );
    if let Some(text) = &t.text {
        metadata.insert(VOCABULARY_KEY.into(), text.vocabulary.text());
        metadata.insert(TEXT_KEY.into(), text.text.clone());
    }
    metadata.insert(
        RUN_KEY.into(),
        format!("{} {}", t.run_end.max(t.step), t.total_steps),
    );
    metadata.insert(checkpoint::MODEL_HASH_KEY.into(), model_hash(t));
    metadata.insert(OPTIMIZER_KEY.into(), t.compiled.model.optimizer.to_string());
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

fn cannot_resume(path: &Path, reason: impl Into<String>) -> CheckpointError {
    CheckpointError::CannotResume {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Restores parameters and the model's state tensors only (for evaluation), and the
/// vocabulary of a run on a text: the checkpoint must hold every parameter and state tensor.
/// An f64 trainer (the checking commands run in f64) takes an f32 model's checkpoint, widened
/// exactly.
pub fn load_params(t: &mut Trainer, path: &Path) -> Result<(), CheckpointError> {
    let ckpt = checkpoint::load(path)?;
    t.text = text_identity(path, &ckpt)?;
    let evaluated = |name: &str| name.starts_with("param/") || is_state_key(name);
    let want: Vec<_> = expected(t)
        .into_iter()
        .filter(|e| evaluated(&e.0))
        .collect();
    let widen = t.compiled.model.graph().dtype == DType::F64;
    let params: Vec<NamedTensor> = ckpt
        .tensors
        .into_iter()
        .filter(|n| evaluated(&n.name))
        .map(|n| if widen { widened(n) } else { n })
        .collect();
    checkpoint::check_against(
        &Checkpoint {
            tensors: params.clone(),
            metadata: BTreeMap::new(),
        },
        &want,
    )?;
    let np = t.params.len();
    for (i, (name, _, _)) in want.iter().enumerate() {
        let b = buffer(
            params
                .iter()
                .find(|n| &n.name == name)
                .expect("checked above"),
        );
        match i.checked_sub(np) {
            None => t.params[i] = b,
            Some(k) => t.model_state[k] = b,
        }
    }
    Ok(())
}

/// The step count and the data stream of a checkpoint (`adjoint.step`, `adjoint.rng`), so that
/// the next training step `t.step + 1` draws the dropout masks the resumed run would.
pub fn load_step(t: &mut Trainer, path: &Path) -> Result<(), CheckpointError> {
    let ckpt = checkpoint::load(path)?;
    let meta = |key: &str| ckpt.metadata.get(key).map(String::as_str);
    let step = match meta(checkpoint::STEP_KEY) {
        None => 0,
        Some(text) => text
            .parse()
            .map_err(|_| cannot_resume(path, format!("its step {text:?} is not a whole number")))?,
    };
    if let Some(text) = meta(checkpoint::RNG_KEY) {
        t.data_rng = parse_rng(text).map_err(|e| cannot_resume(path, format!("its RNG {e}")))?;
    }
    t.step = step;
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

/// Starts from the parameters of a checkpoint or of any safetensors file (numpy's, PyTorch's):
/// each parameter `p` is read from the tensor `param/p`, or else `p`, converted to the model's
/// dtype. Everything else in the file (optimizer state, step count, other tensors) is ignored,
/// so the file may come from another optimizer or dialect; the trainer starts at step 0.
pub fn init_from(t: &mut Trainer, path: &Path) -> Result<(), CheckpointError> {
    let ckpt = checkpoint::load(path)?;
    let g = t.compiled.model.graph();
    let dtype = g.dtype;
    let mut params = Vec::with_capacity(g.params.len());
    for p in &g.params {
        let shape = p.shape.as_fixed().unwrap();
        let prefixed = format!("param/{}", p.name);
        let Some(found) = ckpt.tensor(&prefixed).or_else(|| ckpt.tensor(&p.name)) else {
            let names: Vec<&str> = ckpt.tensors.iter().map(|t| t.name.as_str()).collect();
            return Err(cannot_init(
                path,
                format!(
                    "it has no tensor `{prefixed}` or `{}` for parameter `{}`; its tensors: {}",
                    p.name,
                    p.name,
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        };
        if found.shape != shape {
            return Err(cannot_init(
                path,
                format!(
                    "tensor `{}` has shape {:?}, but parameter `{}` has shape {shape:?}",
                    found.name, found.shape, p.name
                ),
            ));
        }
        params.push(buffer_as(found, dtype));
    }
    t.params = params;
    t.params_given = true;
    Ok(())
}

fn cannot_init(path: &Path, reason: String) -> CheckpointError {
    CheckpointError::CannotInit {
        path: path.to_path_buf(),
        reason,
    }
}

/// Restores everything a resumed run needs; refuses a checkpoint of another model or
/// optimizer, one whose contents changed since it was saved, and one with values out of range.
pub fn resume(t: &mut Trainer, path: &Path) -> Result<(), CheckpointError> {
    let (ckpt, integrity) = checkpoint::load_verified(path)?;
    restore(t, path, &ckpt, integrity)
}

/// [`resume`] from the bytes of a checkpoint file (`path` only names it in errors); what the
/// checkpoint fuzz target and its corpus test run.
pub fn resume_from_bytes(
    t: &mut Trainer,
    path: &Path,
    bytes: &[u8],
) -> Result<(), CheckpointError> {
    let (ckpt, integrity) = checkpoint::decode(path, bytes)?;
    restore(t, path, &ckpt, integrity)
}

/// The state a checkpoint's metadata describes, parsed and range-checked, before any of it
/// touches the trainer.
struct SavedState {
    step: crate::optim::StepState,
    rng: ChaCha8Rng,
    cursor: Cursor,
    run_end: u64,
    horizon: u64,
    text: Option<TextIdentity>,
}

fn restore(
    t: &mut Trainer,
    path: &Path,
    ckpt: &Checkpoint,
    integrity: Integrity,
) -> Result<(), CheckpointError> {
    let init_hint = format!(
        "to start from its parameters instead, use --init-from {}",
        path.display()
    );
    if !ckpt.metadata.contains_key(checkpoint::STEP_KEY) {
        return Err(cannot_resume(
            path,
            format!(
                "it is not an adjoint training checkpoint (it has no `{}` metadata entry), so \
                 there is no optimizer state to continue; {init_hint}",
                checkpoint::STEP_KEY
            ),
        ));
    }
    if integrity != Integrity::Complete {
        return Err(cannot_resume(
            path,
            format!(
                "it was written by an earlier version of adjoint, whose checkpoints record \
                 neither the run's length nor a checksum of their metadata, so it cannot be \
                 continued exactly; {init_hint}"
            ),
        ));
    }
    check_same_training(t, path, ckpt, &init_hint)?;
    checkpoint::check_against(ckpt, &expected(t))
        .map_err(|e| cannot_resume(path, format!("{e}; {init_hint}")))?;
    if ckpt.metadata.get(checkpoint::MODEL_HASH_KEY) != Some(&model_hash(t)) {
        return Err(cannot_resume(
            path,
            format!(
                "the model differs from the one that wrote it (its forward graph or its training step changed); \
                 resuming continues a run unchanged, so {init_hint}"
            ),
        ));
    }
    let saved = parse_state(t, path, ckpt)?;

    let by_name = |n: &str| ckpt.tensor(n).expect("checked above");
    let names: Vec<String> = expected(t).into_iter().map(|e| e.0).collect();
    // `expected`'s order: the parameters, their optimizer state, the model's state tensors.
    let np = t.params.len();
    let ns = t.state.len();
    for (i, name) in names.iter().enumerate() {
        let b = buffer(by_name(name));
        if i < np {
            t.params[i] = b;
        } else if i < np + ns {
            t.state[i - np] = b;
        } else {
            t.model_state[i - np - ns] = b;
        }
    }
    t.step = saved.step.t;
    t.opt_step = saved.step;
    t.data_rng = saved.rng;
    t.cursor = saved.cursor;
    t.text = saved.text;
    t.run_end = saved.run_end;
    t.total_steps = saved.horizon;
    t.horizon_fixed = true;
    Ok(())
}

/// The dtype and the optimizer (with its hyperparameters) are the trainer's; when not, says
/// which differs.
fn check_same_training(
    t: &Trainer,
    path: &Path,
    ckpt: &Checkpoint,
    init_hint: &str,
) -> Result<(), CheckpointError> {
    let saved_dtype = ckpt.metadata.get(checkpoint::DTYPE_KEY).map(String::as_str);
    let dtype = t.compiled.model.graph().dtype.name();
    let saved_optimizer = ckpt.metadata.get(OPTIMIZER_KEY).map(String::as_str);
    let optimizer = t.compiled.model.optimizer.to_string();
    let what = if saved_dtype != Some(dtype) {
        format!(
            "it was trained in {}, this run computes in {dtype}",
            saved_dtype.unwrap_or("an unrecorded dtype")
        )
    } else if saved_optimizer != Some(optimizer.as_str()) {
        format!(
            "it was trained with {}, this run uses {optimizer} (a changed --optimizer, --lr or \
             hyperparameter)",
            saved_optimizer.unwrap_or("an unrecorded optimizer")
        )
    } else {
        return Ok(());
    };
    Err(cannot_resume(
        path,
        format!("{what}; resuming continues a run unchanged, so {init_hint}"),
    ))
}

fn parse_state(t: &Trainer, path: &Path, ckpt: &Checkpoint) -> Result<SavedState, CheckpointError> {
    let bad = |key: &str, reason: String| CheckpointError::BadMetadata {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason,
    };
    let meta = |key: &str| {
        ckpt.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| bad(key, "is missing".into()))
    };
    let number = |key: &str, text: &str, what: &str| {
        text.parse::<u64>()
            .map_err(|_| bad(key, format!("has {what} {text:?}, not a whole number")))
    };

    let step_text = meta(checkpoint::STEP_KEY)?;
    let step = number(checkpoint::STEP_KEY, step_text, "step count")?;

    let run = meta(RUN_KEY)?;
    let [end_text, horizon_text] = run.split(' ').collect::<Vec<_>>()[..] else {
        return Err(bad(RUN_KEY, format!("is {run:?}, not `<end> <horizon>`")));
    };
    let run_end = number(RUN_KEY, end_text, "end step")?;
    let horizon = number(RUN_KEY, horizon_text, "horizon")?;
    if step > run_end {
        return Err(bad(
            checkpoint::STEP_KEY,
            format!("is {step}, past the end of its run at step {run_end} (`{RUN_KEY}`)"),
        ));
    }

    let pows = meta(POW_KEY)?;
    let parsed: Option<Vec<f64>> = pows
        .split(' ')
        .map(|h| {
            (h.len() == 16)
                .then(|| u64::from_str_radix(h, 16).ok())
                .flatten()
                .map(f64::from_bits)
        })
        .collect();
    let Some([pow1, pow2]) = parsed.as_deref().and_then(|p| <[f64; 2]>::try_from(p).ok()) else {
        return Err(bad(
            POW_KEY,
            format!("is {pows:?}, not two 16-digit hexadecimal f64 bit patterns"),
        ));
    };
    let constants = t.compiled.model.optimizer.constants();
    for (name, pow, beta) in [("β1", pow1, constants.beta1), ("β2", pow2, constants.beta2)] {
        if !consistent_power(pow, beta, step) {
            return Err(bad(
                POW_KEY,
                format!(
                    "has {name}ᵗ = {pow:e}, but {name} = {beta} after {step} steps gives {:e}",
                    beta.powf(step as f64)
                ),
            ));
        }
    }

    let rng =
        parse_rng(meta(checkpoint::RNG_KEY)?).map_err(|reason| bad(checkpoint::RNG_KEY, reason))?;
    let cursor = parse_cursor(meta(CURSOR_KEY)?, step).map_err(|reason| bad(CURSOR_KEY, reason))?;
    let text = text_identity(path, ckpt)?;
    Ok(SavedState {
        text,
        step: crate::optim::StepState {
            t: step,
            pow1,
            pow2,
        },
        rng,
        cursor,
        run_end,
        horizon,
    })
}

/// The text a checkpoint's run trained on, for a model that reads one.
fn text_identity(path: &Path, ckpt: &Checkpoint) -> Result<Option<TextIdentity>, CheckpointError> {
    let bad = |key: &str, reason: &str| CheckpointError::BadMetadata {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason: reason.into(),
    };
    match (
        ckpt.metadata.get(VOCABULARY_KEY),
        ckpt.metadata.get(TEXT_KEY),
    ) {
        (None, None) => Ok(None),
        (Some(v), Some(text)) => Ok(Some(TextIdentity {
            vocabulary: Vocabulary::parse(v).ok_or_else(|| {
                bad(
                    VOCABULARY_KEY,
                    "is not a vocabulary (distinct characters in order)",
                )
            })?,
            text: text.clone(),
        })),
        (None, Some(_)) => Err(bad(VOCABULARY_KEY, "is missing")),
        (Some(_), None) => Err(bad(TEXT_KEY, "is missing")),
    }
}

/// Whether `pow` can be βᵗ as the optimizer computes it (repeated products, flushed to 0 below
/// the smallest normal number): within the rounding of t products of powf's value.
fn consistent_power(pow: f64, beta: f64, t: u64) -> bool {
    if !(pow.is_finite() && (0.0..=1.0).contains(&pow)) {
        return false;
    }
    let exact = beta.powf(t as f64);
    // Each product rounds by at most half an ulp: t of them drift by t·2⁻⁵³ relative; near the
    // flush to zero either side may already be 0.
    let tolerance = exact * (t as f64 * f64::EPSILON + 1e-12) + 4.0 * f64::MIN_POSITIVE;
    (pow - exact).abs() <= tolerance
}

fn parse_rng(text: &str) -> Result<ChaCha8Rng, String> {
    let parts: Vec<&str> = text.split(' ').collect();
    let ["chacha8", seed, stream, word] = parts[..] else {
        return Err(format!(
            "is {text:?}, not `chacha8 <seed> <stream> <position>`"
        ));
    };
    let seed_bytes: Option<Vec<u8>> = (seed.len() == 64 && seed.is_ascii())
        .then(|| {
            (0..32)
                .map(|i| u8::from_str_radix(&seed[2 * i..2 * i + 2], 16).ok())
                .collect()
        })
        .flatten();
    let Some(seed_bytes) = seed_bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) else {
        return Err(format!("has seed {seed:?}, not 64 hexadecimal digits"));
    };
    let stream: u64 = stream
        .parse()
        .map_err(|_| format!("has stream {stream:?}, not a whole number"))?;
    let word: u128 = word
        .parse()
        .map_err(|_| format!("has position {word:?}, not a whole number"))?;
    let mut rng = ChaCha8Rng::from_seed(seed_bytes);
    rng.set_stream(stream);
    rng.set_word_pos(word);
    Ok(rng)
}

/// The cursor's order for random windows of a text, which have none.
const WINDOWS: &str = "windows";

/// `<pos> <epoch> <order>`: the order must be a permutation of its rows, the position within it,
/// and the epoch no more than the steps taken (each epoch starts with a step).
fn parse_cursor(text: &str, step: u64) -> Result<Cursor, String> {
    let mut parts = text.splitn(3, ' ');
    let (Some(pos), Some(epoch), Some(order)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "is not `<position> <epoch> <row order>` ({} bytes)",
            text.len()
        ));
    };
    let pos: usize = pos
        .parse()
        .map_err(|_| format!("has position {pos:?}, not a whole number"))?;
    let epoch: u64 = epoch
        .parse()
        .map_err(|_| format!("has epoch {epoch:?}, not a whole number"))?;
    if order == WINDOWS {
        // Windows drawn in this epoch: at most one batch per step.
        if epoch > step {
            return Err(format!("has epoch {epoch}, more than its {step} steps"));
        }
        return Ok(Cursor {
            order: vec![],
            pos,
            epoch,
            windows: true,
        });
    }
    let order: Vec<usize> = if order.is_empty() {
        vec![]
    } else {
        order
            .split(',')
            .enumerate()
            .map(|(i, r)| {
                r.parse().map_err(|_| {
                    format!("has row {r:?} at place {i} of its order, not a row index")
                })
            })
            .collect::<Result<_, _>>()?
    };
    let mut seen = HashSet::with_capacity(order.len());
    for (i, &row) in order.iter().enumerate() {
        if row >= order.len() {
            return Err(format!(
                "has row {row} at place {i} of its order, but the order has {} rows",
                order.len()
            ));
        }
        if !seen.insert(row) {
            return Err(format!(
                "has row {row} twice in its order (again at place {i})"
            ));
        }
    }
    if pos > order.len() {
        return Err(format!(
            "has position {pos}, past the end of its {} rows",
            order.len()
        ));
    }
    if epoch > step {
        return Err(format!(
            "has epoch {epoch}, more than the {step} steps taken"
        ));
    }
    Ok(Cursor {
        order,
        pos,
        epoch,
        windows: false,
    })
}
