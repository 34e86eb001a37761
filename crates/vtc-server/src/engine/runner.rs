//! Everything the engine asks of the model, behind one small trait.
//!
//! [`Runner`] is a fixed set of slots, each a sequence with its own KV cache. The engine
//! prefills a slot's prompt, then advances every active slot by one token per
//! [`Runner::step`]. [`vtc_model::Slots`] implements it: one KV cache per slot, and a
//! step is one batched pass over the weights for all rows (each weight read once per
//! step, whatever the number of active slots).

use vtc_kernels::Backend;
use vtc_model::{ModelError, Slots};

/// A set of sequences (slots) advanced by the engine.
///
/// Batch invariance is part of the contract: the logits of a slot depend only on the
/// tokens in that slot, never on which other slots are in the same step.
pub trait Runner {
    /// Number of slots.
    fn slots(&self) -> usize;
    /// Positions each slot's cache holds.
    fn max_seq(&self) -> usize;
    /// Positions already cached in `slot`.
    fn pos(&self, slot: usize) -> usize;
    /// Keep the first `pos` cached positions of `slot`.
    fn truncate(&mut self, slot: usize, pos: usize);
    /// Run `tokens` (at least one) at the next positions of `slot`; the logits after the
    /// last one.
    fn prefill(&mut self, slot: usize, tokens: &[u32]) -> Result<&[f32], ModelError>;
    /// Run one token for each listed slot (distinct slots), at each slot's next position.
    fn step(&mut self, rows: &[(usize, u32)]) -> Result<(), ModelError>;
    /// The logits of `rows[row]` of the last [`Runner::step`].
    fn logits(&self, row: usize) -> &[f32];
}

/// [`Runner`] is [`Slots`]: a step runs every listed slot's token through the weights
/// in one batched pass, each row with the bits it gets alone.
impl<B: Backend> Runner for Slots<'_, B> {
    fn slots(&self) -> usize {
        Slots::slots(self)
    }

    fn max_seq(&self) -> usize {
        Slots::max_seq(self)
    }

    fn pos(&self, slot: usize) -> usize {
        Slots::pos(self, slot)
    }

    fn truncate(&mut self, slot: usize, pos: usize) {
        Slots::truncate(self, slot, pos)
    }

    fn prefill(&mut self, slot: usize, tokens: &[u32]) -> Result<&[f32], ModelError> {
        Slots::prefill(self, slot, tokens)
    }

    fn step(&mut self, rows: &[(usize, u32)]) -> Result<(), ModelError> {
        Slots::step(self, rows)
    }

    fn logits(&self, row: usize) -> &[f32] {
        Slots::logits(self, row)
    }
}
