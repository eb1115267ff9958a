//! Entry points shared by the fuzz targets (`fuzz/fuzz_targets/`) and the tests that replay
//! their corpora, so that `cargo test` runs the very code the fuzzer explores.

use crate::compile::CompiledModel;
use crate::data::{Dataset, Table, bind};
use crate::train::Trainer;
use std::path::Path;
use std::sync::OnceLock;

/// Model source through the whole pipeline, as the embedding API runs it: lexer, parser,
/// checker, differentiation, simplification, Cranelift, then a gradient and two training
/// steps on small data of the declared shapes (row dimensions 2; an `int` input's values
/// cycle through the indices its gathers and `one_hot`s take). Must never panic.
pub fn compile_and_train(bytes: &[u8]) {
    let Ok(src) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(model) = crate::api::compile(src) else {
        return;
    };
    let Ok(mut session) = model.session(0) else {
        return;
    };
    for (input, limit) in model.inputs().iter().zip(&model.model.index_limits) {
        let shape: Vec<usize> = input.shape.iter().map(|d| d.unwrap_or(2)).collect();
        let n: usize = shape.iter().product();
        if n > 1 << 16 {
            return;
        }
        let cycle = limit.map_or(3, |l| l.len.min(3)) as usize;
        let values: Vec<f64> = (0..n).map(|i| (i % cycle) as f64).collect();
        if session.set_input(&input.name, &values, &shape).is_err() {
            return;
        }
    }
    let _ = session.value_and_grad();
    let _ = session.steps(2);
}

/// The model whose trainer checkpoints are restored into: minibatches (so the data cursor and
/// the shuffling RNG are used), Adam (β powers and two state arrays), a cosine schedule with
/// warm-up (the run's horizon).
pub const CHECKPOINT_MODEL: &str = "input x[n]\ninput y[n]\nparam w ~ zeros\nparam b[2] ~ normal(0, 1)\nloss mean((w * x + b[0] - y)^2) + b[1]^2\noptimizer adam(lr = 0.01)\nschedule cosine(min = 0.001, warmup = 2)\ntrain steps = 20, batch = 3, log_every = 4\n";

const CHECKPOINT_DATA: &str = "x,y\n1,2\n2,4.5\n3,6\n4,8.5\n5,10\n6,12.5\n7,14\n8,16.5\n";

fn checkpoint_model() -> &'static (CompiledModel, Dataset) {
    static MODEL: OnceLock<(CompiledModel, Dataset)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let file = crate::diagnostics::SourceFile::new("fuzz.dsl", CHECKPOINT_MODEL);
        let (model, _) = crate::check_source(&file, &crate::limits::Limits::of_host())
            .expect("the fuzz model checks");
        let table = Table::parse("fuzz.csv", CHECKPOINT_DATA).expect("the fuzz data parses");
        let data = bind(&model, &table).expect("the fuzz data binds");
        let compiled = CompiledModel::from_model(model).expect("the fuzz model compiles");
        (compiled, data)
    })
}

/// Checkpoints of the model at several points of its training, to seed the fuzzer's corpus:
/// fresh, mid-epoch, at an epoch's end, and finished.
pub fn checkpoint_seeds() -> Vec<Vec<u8>> {
    let (compiled, data) = checkpoint_model();
    let dir = std::env::temp_dir().join(format!("adjoint-fuzz-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let mut seeds = Vec::new();
    for steps in [0, 1, 3, 7, 20] {
        let mut t = Trainer::new(compiled, 1);
        let mut settings = compiled.model.train.clone();
        settings.steps = Some(steps);
        t.fit(Some(data), &settings, |_| {})
            .expect("the fuzz model trains");
        let path = dir.join(format!("{steps}.safetensors"));
        crate::resume::save(&t, &path).expect("the seed saves");
        seeds.push(std::fs::read(&path).expect("the seed reads back"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    seeds
}

/// Decodes `bytes` as a checkpoint file and restores it as `--resume` does; when that
/// succeeds, trains a few steps from the restored state and saves it again. Then the same for
/// the file resealed: its checksums written anew for whatever it holds, since a mutation
/// almost never keeps them matching, and the checks behind them (ranges, shapes, the model)
/// would otherwise go unexplored. Returns whether the file as given was accepted. Must never
/// panic, whatever the bytes.
pub fn resume_checkpoint(bytes: &[u8]) -> bool {
    let accepted = restore_and_train(bytes);
    if let Some(resealed) = resealed(bytes) {
        restore_and_train(&resealed);
    }
    accepted
}

/// The file with its checksum entries dropped and written again by the checkpoint encoder.
pub fn resealed(bytes: &[u8]) -> Option<Vec<u8>> {
    let header_len = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header_end = header_len.checked_add(8)?;
    let mut header: serde_json::Value = serde_json::from_slice(bytes.get(8..header_end)?).ok()?;
    let metadata = header.get_mut("__metadata__")?.as_object_mut()?;
    for key in [
        crate::checkpoint::CHECKSUM_KEY,
        crate::checkpoint::METADATA_CHECKSUM_KEY,
    ] {
        metadata.remove(key);
    }
    let mut unsealed = header.to_string().into_bytes();
    unsealed.resize(unsealed.len().next_multiple_of(8), b' ');
    let mut file = (unsealed.len() as u64).to_le_bytes().to_vec();
    file.extend(unsealed);
    file.extend(&bytes[header_end..]);
    let (ckpt, _) = crate::checkpoint::decode(Path::new("fuzz.safetensors"), &file).ok()?;
    crate::checkpoint::to_bytes(&ckpt).ok()
}

fn restore_and_train(bytes: &[u8]) -> bool {
    let (compiled, data) = checkpoint_model();
    let mut t = Trainer::new(compiled, 0);
    let path = Path::new("fuzz.safetensors");
    if crate::resume::resume_from_bytes(&mut t, path, bytes).is_err() {
        return false;
    }
    let mut settings = compiled.model.train.clone();
    settings.steps = Some(3);
    let _ = t.fit(Some(data), &settings, |_| {});
    let _ = crate::resume::to_checkpoint(&t);
    true
}
