//! Text corpora read as character tokens: the vocabulary (the text's distinct characters,
//! sorted), the token stream, and the windows of it that a model's text-bound inputs hold.
//!
//! Tokens are Unicode characters (scalar values), not bytes: a text must be UTF-8, and a byte
//! that is not is an error naming its line and column. Line endings are characters like any
//! other (a CRLF file has `\r` in its vocabulary).

use super::DataError;
use crate::ir::indices::IndexUse;
use crate::model::Model;
use std::path::Path;

/// The distinct characters of a text, sorted by code point; a token is an index into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocabulary(Vec<char>);

impl Vocabulary {
    /// The sorted distinct characters of `text`.
    pub fn of(text: &str) -> Vocabulary {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Vocabulary(chars)
    }

    /// The vocabulary written by [`Vocabulary::text`]; `None` unless its characters are
    /// distinct and sorted.
    pub fn parse(saved: &str) -> Option<Vocabulary> {
        let chars: Vec<char> = saved.chars().collect();
        chars
            .windows(2)
            .all(|w| w[0] < w[1])
            .then_some(Vocabulary(chars))
    }

    /// The characters in order, as one string (how a checkpoint keeps it).
    pub fn text(&self) -> String {
        self.0.iter().collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The token of a character.
    pub fn token(&self, c: char) -> Option<u32> {
        self.0.binary_search(&c).ok().map(|i| i as u32)
    }

    /// The character of a token.
    pub fn char(&self, token: usize) -> char {
        self.0[token]
    }

    /// The characters of `other` this one lacks.
    pub fn missing_from(&self, other: &Vocabulary) -> Vec<char> {
        other
            .0
            .iter()
            .copied()
            .filter(|&c| self.token(c).is_none())
            .collect()
    }
}

/// A character as a message shows it: printable ones quoted, others escaped (`'\n'`).
pub fn show_char(c: char) -> String {
    format!("{:?}", c)
}

/// What a checkpoint keeps of the text a run trained on: the vocabulary (so that `eval`,
/// `predict` and `sample` read tokens as training did), and the training text's length in
/// characters with the checksum of the whole file (so that `--resume` continues on the same
/// windows).
#[derive(Clone, Debug, PartialEq)]
pub struct TextIdentity {
    pub vocabulary: Vocabulary,
    /// `<characters> <checksum>`.
    pub text: String,
}

/// One text-bound input: which input, and how many characters its windows are shifted by.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowInput {
    pub input: usize,
    pub offset: usize,
}

/// A text as tokens, with what the model's text-bound inputs read of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Corpus {
    /// The file, for messages.
    pub file: String,
    pub tokens: Vec<u32>,
    pub vocabulary: Vocabulary,
    /// A checksum of the text (FNV-1a of its bytes), so a resumed run can tell it changed.
    pub checksum: String,
    /// Characters in a window (`T`).
    pub window: usize,
    pub inputs: Vec<WindowInput>,
}

impl Corpus {
    /// A text's bytes as tokens of its own vocabulary, for windows of `window` characters read
    /// by `inputs`: checked to be UTF-8, not empty, and long enough for a window.
    pub fn from_bytes(
        file: String,
        bytes: Vec<u8>,
        window: usize,
        inputs: Vec<WindowInput>,
    ) -> Result<Corpus, DataError> {
        let text = utf8(&file, bytes)?;
        if text.is_empty() {
            return Err(DataError::Array {
                file,
                message: "the text is empty: there are no characters to train on".into(),
            });
        }
        let vocabulary = Vocabulary::of(&text);
        let tokens: Vec<u32> = text
            .chars()
            .map(|c| {
                vocabulary
                    .token(c)
                    .expect("every character is in the text's vocabulary")
            })
            .collect();
        let corpus = Corpus {
            file: file.clone(),
            checksum: crate::checkpoint::fnv1a64_hex(text.as_bytes()),
            tokens,
            vocabulary,
            window,
            inputs,
        };
        if corpus.starts() == 0 {
            return Err(DataError::Array {
                file,
                message: format!(
                    "the text has {} character(s), fewer than the {} a window needs ({window} characters{})",
                    corpus.tokens.len(),
                    corpus.span(),
                    match corpus.span() - window {
                        0 => String::new(),
                        k => format!(", and {k} more for the input shifted by {k}"),
                    }
                ),
            });
        }
        Ok(corpus)
    }

    /// The characters a window and its shifted copies cover together.
    pub fn span(&self) -> usize {
        self.window + self.inputs.iter().map(|w| w.offset).max().unwrap_or(0)
    }

    /// How many distinct window starts there are (0 when the text is shorter than a span).
    pub fn starts(&self) -> usize {
        (self.tokens.len() + 1).saturating_sub(self.span())
    }

    /// The windows that tile the text from its start without overlapping (`0, T, 2T, …`):
    /// the rows `eval`, `predict` and a validation split see, and an epoch's count of windows.
    pub fn tiled_windows(&self) -> usize {
        match self.starts() {
            0 => 0,
            s => (s - 1) / self.window + 1,
        }
    }

    /// What a checkpoint keeps of the text a run trained on.
    pub fn identity(&self) -> TextIdentity {
        TextIdentity {
            vocabulary: self.vocabulary.clone(),
            text: format!("{} {}", self.tokens.len(), self.checksum),
        }
    }

    /// Each text-bound input's values for the tiled windows, one `[rows, T]` array each.
    pub fn tiled_rows(&self, dtype: crate::ir::DType) -> Vec<(usize, crate::runtime::Buffer)> {
        let starts: Vec<usize> = (0..self.tiled_windows()).map(|k| k * self.window).collect();
        self.inputs
            .iter()
            .map(|w| {
                let mut values =
                    crate::runtime::Buffer::with_capacity(dtype, starts.len() * self.window);
                for &s in &starts {
                    let from = s + w.offset;
                    for &t in &self.tokens[from..from + self.window] {
                        values.push(t as f64);
                    }
                }
                (w.input, values)
            })
            .collect()
    }

    /// The first `keep` characters, and the rest: a training text and its held-out tail.
    pub fn split_at(&self, keep: usize) -> (Corpus, Corpus) {
        let part = |tokens: &[u32]| Corpus {
            tokens: tokens.to_vec(),
            ..self.clone()
        };
        let (head, tail) = self.tokens.split_at(keep.min(self.tokens.len()));
        (part(head), part(tail))
    }

    /// The same text in the tokens of `vocabulary` (a checkpoint's), which must hold every
    /// character of the text.
    pub fn with_vocabulary(&self, vocabulary: &Vocabulary) -> Result<Corpus, DataError> {
        let missing = vocabulary.missing_from(&self.vocabulary);
        if !missing.is_empty() {
            let shown: Vec<String> = missing.iter().take(8).map(|&c| show_char(c)).collect();
            return Err(DataError::Array {
                file: self.file.clone(),
                message: format!(
                    "the text has {} character(s) the model's vocabulary ({} characters, from the checkpoint) lacks: {}{}",
                    missing.len(),
                    vocabulary.len(),
                    shown.join(", "),
                    if missing.len() > 8 { ", …" } else { "" }
                ),
            });
        }
        let map: Vec<u32> = (0..self.vocabulary.len())
            .map(|t| {
                vocabulary
                    .token(self.vocabulary.char(t))
                    .expect("checked above")
            })
            .collect();
        Ok(Corpus {
            tokens: self.tokens.iter().map(|&t| map[t as usize]).collect(),
            vocabulary: vocabulary.clone(),
            ..self.clone()
        })
    }
}

/// The text-bound inputs of a model and the file they read, if any.
pub fn text_inputs(model: &Model) -> Option<(String, usize, Vec<WindowInput>)> {
    let g = model.graph();
    let mut file = None;
    let mut window = 0;
    let mut inputs = Vec::new();
    for (i, b) in model.bindings.iter().enumerate() {
        let Some(t) = &b.text else { continue };
        file.get_or_insert_with(|| t.file.clone());
        if let Some(crate::ir::Dim::Fixed(w)) = g.inputs[i].shape.0.get(1) {
            window = *w as usize;
        }
        inputs.push(WindowInput {
            input: i,
            offset: t.offset as usize,
        });
    }
    Some((file?, window, inputs))
}

/// Reads the model's text (relative to `base`) as tokens of its own vocabulary, checked: UTF-8,
/// not empty, long enough for a window, and no more characters than the classes of a
/// `one_hot` or `cross_entropy` the tokens feed.
pub fn load_corpus(model: &Model, base: &Path) -> Result<Option<Corpus>, DataError> {
    let Some((name, window, inputs)) = text_inputs(model) else {
        return Ok(None);
    };
    let path = base.join(&name);
    let file = path.display().to_string();
    let bytes =
        crate::limits::read_bounded(&path, crate::limits::memory_budget() / 8).map_err(|e| {
            DataError::Io {
                file: file.clone(),
                message: e.to_string(),
            }
        })?;
    let corpus = Corpus::from_bytes(file, bytes, window, inputs)?;
    check_classes(model, &corpus)?;
    Ok(Some(corpus))
}

/// The text's vocabulary fits the classes of every `one_hot` or `cross_entropy` its tokens
/// feed and the axis of every gather they index.
pub fn check_classes(model: &Model, corpus: &Corpus) -> Result<(), DataError> {
    let g = model.graph();
    for w in &corpus.inputs {
        let Some(limit) = model.index_limits[w.input] else {
            continue;
        };
        let size = corpus.vocabulary.len();
        if size as u64 > limit.len {
            let k = limit.len;
            let what = match limit.by {
                IndexUse::OneHot => format!("is one-hot encoded with {k} classes"),
                IndexUse::Gather => format!("indexes an axis of length {k}"),
            };
            return Err(DataError::Array {
                file: corpus.file.clone(),
                message: format!(
                    "the text has {size} distinct characters, but input `{}` {what} (write {size} for the vocabulary's size)",
                    g.inputs[w.input].name,
                ),
            });
        }
    }
    Ok(())
}

/// The bytes as text, or an error at the line and column (in characters) of the first byte
/// that is not UTF-8.
fn utf8(file: &str, bytes: Vec<u8>) -> Result<String, DataError> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let before = std::str::from_utf8(&bytes[..valid]).expect("valid up to here");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        DataError::Array {
            file: format!("{file}:{line}:{column}"),
            message: format!(
                "not UTF-8 text (byte 0x{:02x} cannot start or continue a character here); a text is read as UTF-8 characters",
                bytes[valid]
            ),
        }
    })
}
