//! Everything the engine asks of the model, behind one small trait.
//!
//! [`Runner`] is a fixed set of slots, each a sequence with its own KV cache. Each
//! engine step is one [`Runner::run`]: the next token of every decoding slot and a
//! chunk of every joining slot's prompt, together. [`vtc_model::Slots`] implements
//! it: one KV cache per slot, and a run is one batched pass over the weights for all
//! its tokens (each weight read once per step, whatever the number of slots in it).

use vtc_kernels::Backend;
use vtc_model::{ModelError, Run, Slots};

/// A set of sequences (slots) advanced by the engine.
///
/// Batch invariance is part of the contract: the logits of a slot depend only on the
/// tokens in that slot, never on which other slots are in the same run.
pub trait Runner {
    /// Number of slots.
    fn slots(&self) -> usize;
    /// Positions each slot's cache holds.
    fn max_seq(&self) -> usize;
    /// Tokens one [`Runner::run`] holds, all its runs together (at least `slots()`).
    fn capacity(&self) -> usize;
    /// Positions already cached in `slot`.
    fn pos(&self, slot: usize) -> usize;
    /// Keep the first `pos` cached positions of `slot`.
    fn truncate(&mut self, slot: usize, pos: usize);
    /// Run each run's tokens (at least one; distinct slots; at most `capacity()` in
    /// all) at the next positions of its slot, in one pass.
    fn run(&mut self, runs: &[Run<'_>]) -> Result<(), ModelError>;
    /// The logits after the last token of the `i`-th run of the last
    /// [`Runner::run`] that asked for them.
    fn logits(&self, i: usize) -> &[f32];
}

/// [`Runner`] is [`Slots`]: a run is one batched pass through the weights, each
/// token with the bits it gets alone.
impl<B: Backend> Runner for Slots<'_, B> {
    fn slots(&self) -> usize {
        Slots::slots(self)
    }

    fn max_seq(&self) -> usize {
        Slots::max_seq(self)
    }

    fn capacity(&self) -> usize {
        Slots::capacity(self)
    }

    fn pos(&self, slot: usize) -> usize {
        Slots::pos(self, slot)
    }

    fn truncate(&mut self, slot: usize, pos: usize) {
        Slots::truncate(self, slot, pos)
    }

    fn run(&mut self, runs: &[Run<'_>]) -> Result<(), ModelError> {
        Slots::run(self, runs)
    }

    fn logits(&self, i: usize) -> &[f32] {
        Slots::logits(self, i)
    }
}
