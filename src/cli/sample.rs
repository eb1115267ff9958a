//! `adjoint sample`: text drawn from a model of a text, one character at a time, each from the
//! model's logits for the position after the context.

use super::*;
use crate::data::text::{Vocabulary, show_char};
use crate::ir::{Dim, Op};
use rand::RngExt;

#[derive(clap::Args)]
pub(super) struct SampleArgs {
    /// The model file (.dsl): it reads a text (`from text "…"`) and its first `output` holds
    /// logits over the vocabulary for every position of a window, `[n, T, V]`.
    file: PathBuf,
    /// The trained parameters and vocabulary (a checkpoint written by `train --save`).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The text the sample continues; it is printed first.
    #[arg(long)]
    prompt: String,
    /// How many characters to draw.
    #[arg(long, default_value_t = 200)]
    chars: u64,
    /// Logits are divided by this before the softmax: below 1 sharper, above 1 flatter; 0 takes
    /// the most likely character every time (greedy).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    temperature: f64,
    /// Seed of the draws: the same seed draws the same text.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// The most characters one command draws.
const MAX_CHARS: u64 = 1_000_000;

/// What sampling reads of the model: the input the context fills, the window length, the
/// output's name and the vocabulary size it scores.
struct Sampler {
    context_input: usize,
    window: usize,
    output: String,
    classes: usize,
}

pub(super) fn sample(args: &SampleArgs) -> Result<(), CliError> {
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        return Err(CliError::BadInput(format!(
            "--temperature must be a finite number ≥ 0 (0 draws the most likely character), found {}",
            args.temperature
        )));
    }
    if args.chars > MAX_CHARS {
        return Err(CliError::BadInput(format!(
            "--chars is at most {MAX_CHARS}, found {}",
            args.chars
        )));
    }
    let (file, model, _) = load_model(&args.file)?;
    let sampler = sampler(&model, &file)?;
    let dataset = whole_inputs(&model, &args.file)?;
    let compiled = compile_model(model, &file)?;
    let mut trainer = Trainer::new(&compiled, 0);
    crate::resume::load_params(&mut trainer, &args.checkpoint).map_err(bad_input)?;
    let Some(text) = trainer.text.clone() else {
        return Err(CliError::BadInput(format!(
            "{} has no vocabulary: it was not written by a run on a text",
            args.checkpoint.display()
        )));
    };
    let vocabulary = text.vocabulary;
    if vocabulary.len() != sampler.classes {
        return Err(CliError::BadInput(format!(
            "output `{}` scores {} characters, but the checkpoint's vocabulary has {}",
            sampler.output,
            sampler.classes,
            vocabulary.len()
        )));
    }
    let mut tokens = prompt_tokens(&args.prompt, &vocabulary)?;
    let dtype = compiled.model.graph().dtype;
    // Every input starts as zeros of one row (the labels and other shifted windows are never
    // read by the output); inputs read whole come from their files.
    let mut inputs: Vec<crate::runtime::Buffer> = compiled
        .model
        .graph()
        .inputs
        .iter()
        .enumerate()
        .map(|(i, info)| match &dataset {
            Some(d) if d.is_whole(i) => d.inputs[i].in_dtype(dtype).into_owned(),
            _ => crate::runtime::Buffer::zeros(
                dtype,
                info.shape
                    .concrete(&vec![1; compiled.model.graph().syms.len()])
                    .iter()
                    .product(),
            ),
        })
        .collect();
    if let Some(d) = &dataset {
        trainer.bound_dims = d.dims.clone();
    }
    let mut rng = crate::init::rng(args.seed);
    let mut drawn = String::new();
    let t = sampler.window;
    for k in 0..args.chars {
        // The context is the last T tokens, from the window's start; a causal model's logits at
        // the context's last position do not depend on the zeros after it.
        let context = &tokens[tokens.len().saturating_sub(t)..];
        let buf = &mut inputs[sampler.context_input];
        for p in 0..t {
            buf.set(p, context.get(p).map_or(0.0, |&c| c as f64));
        }
        let outputs = trainer.predict(&inputs, 1).map_err(failed)?;
        let logits = &outputs
            .iter()
            .find(|o| o.0 == sampler.output)
            .expect("the sampled output is an output")
            .1
            .data;
        let at = context.len() - 1;
        let row = &logits[at * sampler.classes..(at + 1) * sampler.classes];
        let Some(next) = draw(row, args.temperature, &mut rng) else {
            return Err(CliError::Failed(format!(
                "output `{}` is not finite at drawn character {} (the checkpoint's parameters diverged?)",
                sampler.output,
                k + 1
            )));
        };
        tokens.push(next as u32);
        drawn.push(vocabulary.char(next));
    }
    out::write(format_args!("{}{drawn}\n", args.prompt));
    Ok(())
}

/// Checks that the model can be sampled: it reads a text, its first output is `[n, T, V]` over
/// the unshifted window, which is the only text-bound input the output reads.
fn sampler(model: &crate::model::Model, file: &SourceFile) -> Result<Sampler, CliError> {
    let Some((_, window, text_inputs)) = crate::data::text::text_inputs(model) else {
        return Err(CliError::BadInput(format!(
            "{} reads no text (`input x[n, T]: int from text \"corpus.txt\"`): sample draws characters from a model of a text",
            file.name
        )));
    };
    let Some(p) = &model.predict else {
        return Err(CliError::BadInput(format!(
            "{} declares no `output`: sample draws from the first output's logits, `[n, T, V]` (e.g. `output logits = …`)",
            file.name
        )));
    };
    let (name, id) = p.outputs[0].clone();
    let shape = &p.graph.shape(id).0;
    let classes = match shape[..] {
        [Dim::Sym(_), Dim::Fixed(w), Dim::Fixed(v)] if w as usize == window => v as usize,
        _ => {
            return Err(CliError::BadInput(format!(
                "output `{name}` has shape {}, not the logits of each position of a window `[n, {window}, V]`",
                p.graph.shape_text(&p.graph.shape(id).clone())
            )));
        }
    };
    let live = p.graph.reachable(&[id]);
    let reads = |i: usize| {
        p.graph
            .ids()
            .any(|n| live[n.index()] && *p.graph.op(n) == Op::Input(i as u32))
    };
    if let Some(w) = text_inputs.iter().find(|w| w.offset > 0 && reads(w.input)) {
        return Err(CliError::BadInput(format!(
            "output `{name}` reads input `{}`, whose windows are shifted by {} (the characters to predict): sample feeds it only the context",
            model.graph().inputs[w.input].name,
            w.offset
        )));
    }
    let Some(context) = text_inputs.iter().find(|w| w.offset == 0) else {
        return Err(CliError::BadInput(format!(
            "{} has no unshifted text input (`from text \"…\"` without `offset`) for the context",
            file.name
        )));
    };
    Ok(Sampler {
        context_input: context.input,
        window,
        output: name,
        classes,
    })
}

/// The values of the inputs read whole (from `.npy` files), when the model has any.
fn whole_inputs(
    model: &crate::model::Model,
    path: &Path,
) -> Result<Option<crate::data::Dataset>, CliError> {
    let any_whole = (0..model.graph().inputs.len()).any(|i| !model.is_row_input(i));
    if !any_whole {
        return Ok(None);
    }
    let optional: Vec<bool> = (0..model.graph().inputs.len())
        .map(|i| model.is_row_input(i))
        .collect();
    load_data(model, None, path, &optional)
}

/// The prompt as tokens: every character must be in the vocabulary, and there must be one.
fn prompt_tokens(prompt: &str, vocabulary: &Vocabulary) -> Result<Vec<u32>, CliError> {
    if prompt.is_empty() {
        return Err(CliError::BadInput(
            "--prompt is empty: give at least one character to continue".into(),
        ));
    }
    prompt
        .chars()
        .enumerate()
        .map(|(k, c)| {
            vocabulary.token(c).ok_or_else(|| {
                CliError::BadInput(format!(
                    "--prompt: character {} ({}) is not in the model's vocabulary of {} characters",
                    k + 1,
                    show_char(c),
                    vocabulary.len()
                ))
            })
        })
        .collect()
}

/// A token drawn from softmax(logits / temperature), or the first most likely one at
/// temperature 0; `None` when a logit is not finite.
fn draw(logits: &[f64], temperature: f64, rng: &mut rand::rngs::ChaCha8Rng) -> Option<usize> {
    if logits.iter().any(|l| !l.is_finite()) {
        return None;
    }
    let best = logits
        .iter()
        .enumerate()
        .fold(0, |b, (i, &l)| if l > logits[b] { i } else { b });
    if temperature == 0.0 {
        return Some(best);
    }
    let top = logits[best];
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| ((l - top) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return Some(i);
        }
        u -= w;
    }
    // Rounding left a sliver past the last weight: the last character with any.
    weights.iter().rposition(|&w| w > 0.0)
}
