//! The order of batches: the shuffled row cursor (saved in checkpoints) and a text's random
//! windows.

use super::*;

/// The position of minibatching in the data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cursor {
    /// This epoch's order of the rows (empty for a text's windows).
    pub order: Vec<usize>,
    /// The next row of `order` to use, or the windows of a text drawn in this epoch; at the
    /// end, a new epoch starts (with a new shuffle of rows).
    pub pos: usize,
    pub epoch: u64,
    /// Whether the batches are random windows of a text (`data::text`), whose starts come
    /// from the trainer's data stream.
    pub windows: bool,
}

/// Batches of random windows of a text: each window's start is drawn from the run's data
/// stream, so a seeded run sees the same windows, and a resumed one continues them.
pub(super) struct TextBatches {
    /// The text's tokens, in the model's dtype.
    pub(super) tokens: Buffer,
    /// Each text-bound input's index and shift.
    pub(super) inputs: Vec<(usize, usize)>,
    pub(super) window: usize,
    /// Starts are drawn from `0..starts`.
    pub(super) starts: usize,
    /// This batch's starts, reused.
    pub(super) drawn: Vec<usize>,
}

impl TextBatches {
    pub(super) fn new(c: &crate::data::text::Corpus, dtype: crate::ir::DType) -> TextBatches {
        let tokens: Vec<f64> = c.tokens.iter().map(|&t| t as f64).collect();
        TextBatches {
            tokens: Buffer::from_f64(dtype, &tokens),
            inputs: c.inputs.iter().map(|w| (w.input, w.offset)).collect(),
            window: c.window,
            starts: c.starts(),
            drawn: Vec::new(),
        }
    }

    /// Draws `batch` window starts and copies each text-bound input's windows into its buffer.
    pub(super) fn draw(&mut self, batch: usize, rng: &mut ChaCha8Rng, bufs: &mut [Buffer]) {
        self.drawn.clear();
        for _ in 0..batch {
            self.drawn.push(rng.random_range(0..self.starts));
        }
        for &(input, offset) in &self.inputs {
            self.tokens
                .gather_windows(self.window, offset, &self.drawn, &mut bufs[input]);
        }
    }
}

/// A copy of the data stream at its current position (the generator itself is not `Clone`).
pub(super) fn copy_rng(rng: &ChaCha8Rng) -> ChaCha8Rng {
    let mut copy = ChaCha8Rng::from_seed(rng.get_seed());
    copy.set_stream(rng.get_stream());
    copy.set_word_pos(rng.get_word_pos());
    copy
}

/// Fisher–Yates with the trainer's own stream, so runs with the same seed see the same batches.
pub(super) fn shuffle(v: &mut [usize], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}
