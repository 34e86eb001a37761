//! Everything the engine asks of the model, behind one small trait.
//!
//! [`Runner`] is a fixed set of slots, each a sequence with its own KV cache. The engine
//! prefills a slot's prompt, then advances every active slot by one token per
//! [`Runner::step`]. [`SessionRunner`] implements it over one [`Session`] per slot (a
//! step runs each listed slot's token in turn); a batched implementation, one pass over
//! the weights for all rows, can replace it without the engine changing.

use vtc_kernels::Backend;
use vtc_model::{Model, ModelError, Session};

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

/// [`Runner`] over one [`Session`] per slot.
pub struct SessionRunner<'m, B: Backend> {
    sessions: Vec<Session<'m, B>>,
    /// Logits of each row of the last step.
    rows: Vec<Vec<f32>>,
}

impl<'m, B: Backend + Clone> SessionRunner<'m, B> {
    /// `slots` sessions of `max_seq` positions each, all on `backend`.
    pub fn new(
        model: &'m Model<'m>,
        backend: B,
        slots: usize,
        max_seq: usize,
    ) -> Result<Self, ModelError> {
        let sessions = (0..slots)
            .map(|_| Session::new(model, backend.clone(), max_seq))
            .collect::<Result<Vec<_>, _>>()?;
        let vocab = model.config().vocab_size;
        Ok(Self {
            sessions,
            rows: vec![vec![0.0; vocab]; slots],
        })
    }
}

impl<B: Backend> Runner for SessionRunner<'_, B> {
    fn slots(&self) -> usize {
        self.sessions.len()
    }

    fn max_seq(&self) -> usize {
        self.sessions.first().map_or(0, Session::max_seq)
    }

    fn pos(&self, slot: usize) -> usize {
        self.sessions[slot].pos()
    }

    fn truncate(&mut self, slot: usize, pos: usize) {
        self.sessions[slot].truncate(pos);
    }

    fn prefill(&mut self, slot: usize, tokens: &[u32]) -> Result<&[f32], ModelError> {
        self.sessions[slot].prefill(tokens)
    }

    fn step(&mut self, rows: &[(usize, u32)]) -> Result<(), ModelError> {
        for (row, &(slot, token)) in rows.iter().enumerate() {
            let logits = self.sessions[slot].forward(token)?;
            let buf = &mut self.rows[row];
            buf.clear();
            buf.extend_from_slice(logits);
        }
        Ok(())
    }

    fn logits(&self, row: usize) -> &[f32] {
        &self.rows[row]
    }
}
