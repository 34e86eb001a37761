//! Several sequences served together: each slot has its own KV cache, and one
//! [`Slots::run`] runs tokens of several sequences through the weights in one pass
//! (the next token of every decoding sequence, and a chunk of a joining one's prompt),
//! so one read of the weights advances all of them.

use vtc_kernels::Backend;

use crate::{BATCH, KvCache, Logits, Model, ModelError, Row, Scratch, forward};

/// Tokens of one slot in a [`Slots::run`]: they run at the slot's next positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run<'t> {
    /// The slot.
    pub slot: usize,
    /// Its next tokens (at least one).
    pub tokens: &'t [u32],
    /// Whether the logits after the last of them are wanted.
    pub logits: bool,
}

/// `slots` sequences over one model and backend: a KV cache per slot (allocated once)
/// and the scratch buffers of a pass shared by all. A slot's logits are bit for bit
/// those a [`Session`](crate::Session) running the same tokens alone gives, whatever
/// the other slots hold and whichever of them run in the same step.
pub struct Slots<'m, B: Backend> {
    model: &'m Model<'m>,
    backend: B,
    caches: Vec<KvCache>,
    pos: Vec<usize>,
    scratch: Scratch,
    rows: Vec<Row>,
    /// The rows of the last pass whose logits were wanted.
    picked: Vec<usize>,
    /// Their logits, `[picked][vocab]`.
    logits: Vec<f32>,
}

impl<'m, B: Backend> Slots<'m, B> {
    /// `slots` (at least 1) sequences of up to `max_seq` positions each (at most the
    /// model's context length).
    pub fn new(
        model: &'m Model<'m>,
        backend: B,
        slots: usize,
        max_seq: usize,
    ) -> Result<Self, ModelError> {
        let cfg = model.config();
        if max_seq == 0 || max_seq > cfg.context_len {
            return Err(ModelError::ContextTooLong {
                requested: max_seq,
                max: cfg.context_len,
            });
        }
        let slots = slots.max(1);
        let capacity = BATCH.max(slots);
        Ok(Self {
            caches: (0..slots).map(|_| KvCache::new(cfg, max_seq)).collect(),
            pos: vec![0; slots],
            scratch: Scratch::new(cfg, model.weights(), capacity, max_seq),
            rows: Vec::with_capacity(capacity),
            picked: Vec::with_capacity(slots),
            logits: vec![0.0; slots * cfg.vocab_size],
            model,
            backend,
        })
    }

    /// The model.
    pub fn model(&self) -> &'m Model<'m> {
        self.model
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.caches.len()
    }

    /// Positions each slot can hold.
    pub fn max_seq(&self) -> usize {
        self.scratch.max_seq
    }

    /// Tokens one [`Slots::run`] may hold (all its runs together): at least
    /// [`BATCH`] and the number of slots.
    pub fn capacity(&self) -> usize {
        self.scratch.capacity
    }

    /// Positions slot `slot` holds.
    ///
    /// # Panics
    /// If `slot >= self.slots()`.
    pub fn pos(&self, slot: usize) -> usize {
        self.pos[slot]
    }

    /// Keep only the first `pos` positions of slot `slot` (no-op if it holds fewer):
    /// its next token runs at position `pos`, reusing what comes before it (a
    /// conversation that continues what the slot already read).
    ///
    /// # Panics
    /// If `slot >= self.slots()`.
    pub fn truncate(&mut self, slot: usize, pos: usize) {
        self.pos[slot] = self.pos[slot].min(pos);
    }

    /// One pass of `runs` (distinct slots, any order, at most [`Slots::capacity`]
    /// tokens in all): each run's tokens at the next positions of its slot. Afterwards
    /// [`Slots::logits`]`(i)` is the logits after the last token of the `i`-th run that
    /// asked for them. Nothing runs if a run is invalid.
    pub fn run(&mut self, runs: &[Run<'_>]) -> Result<(), ModelError> {
        self.run_each(runs.iter().map(|r| (r.slot, r.tokens, r.logits)))
    }

    /// Run `tokens` (a prompt, or its part the slot does not hold yet) at the next
    /// positions of slot `slot`, in passes of up to [`Slots::capacity`] tokens; returns
    /// the logits after the last one (valid until the next call).
    pub fn prefill(&mut self, slot: usize, tokens: &[u32]) -> Result<&[f32], ModelError> {
        self.check_slot(slot)?;
        if tokens.is_empty() {
            return Err(ModelError::EmptyPrompt);
        }
        // Checked whole before the first pass, so that nothing runs if a token is bad.
        self.check_run(slot, tokens)?;
        let chunks = tokens.chunks(self.capacity());
        let last = chunks.len() - 1;
        for (c, chunk) in chunks.enumerate() {
            self.run_each(std::iter::once((slot, chunk, c == last)))?;
        }
        Ok(self.logits(0))
    }

    /// One decode step: token `t` at the next position of slot `s` for every `(s, t)`
    /// of `rows` (distinct slots, any order), all in one pass. Row `i`'s logits are
    /// then [`Slots::logits`]`(i)`. Nothing runs if a row is invalid.
    pub fn step(&mut self, rows: &[(usize, u32)]) -> Result<(), ModelError> {
        self.run_each(
            rows.iter()
                .map(|(slot, token)| (*slot, std::slice::from_ref(token), true)),
        )
    }

    /// The logits after the last token of the `i`-th run that asked for them in the
    /// last pass (row `i` of a [`Slots::step`]).
    ///
    /// # Panics
    /// If the last pass had fewer than `i + 1` such runs.
    pub fn logits(&self, i: usize) -> &[f32] {
        assert!(
            i < self.picked.len(),
            "logits {i} of a pass with {} wanted",
            self.picked.len()
        );
        let vocab = self.model.config().vocab_size;
        &self.logits[i * vocab..(i + 1) * vocab]
    }

    /// [`Slots::run`] over `(slot, tokens, logits)` triples (a `Clone` iterator, so
    /// that a decode step needs no buffer of runs).
    fn run_each<'t>(
        &mut self,
        runs: impl Iterator<Item = (usize, &'t [u32], bool)> + Clone,
    ) -> Result<(), ModelError> {
        let (mut total, mut any) = (0, false);
        for (i, (slot, tokens, _)) in runs.clone().enumerate() {
            any = true;
            self.check_slot(slot)?;
            if runs.clone().take(i).any(|(s, ..)| s == slot) {
                return Err(ModelError::Slot {
                    slot,
                    slots: self.slots(),
                    why: "appears twice in one pass",
                });
            }
            if tokens.is_empty() {
                return Err(ModelError::EmptyPrompt);
            }
            self.check_run(slot, tokens)?;
            total += tokens.len();
        }
        if !any {
            return Err(ModelError::EmptyPrompt);
        }
        if total > self.capacity() {
            return Err(ModelError::PassTooLarge {
                rows: total,
                capacity: self.capacity(),
            });
        }
        self.rows.clear();
        self.picked.clear();
        for (slot, tokens, logits) in runs.clone() {
            let pos = self.pos[slot];
            self.rows
                .extend(tokens.iter().enumerate().map(|(i, &token)| Row {
                    seq: slot,
                    token,
                    pos: pos + i,
                }));
            if logits {
                self.picked.push(self.rows.len() - 1);
            }
        }
        // Logits are computed in row order; the runs asking for them are in run order,
        // which is the same (each run's rows follow the previous run's).
        let vocab = self.model.config().vocab_size;
        let need = self.picked.len() * vocab;
        if self.logits.len() < need {
            self.logits.resize(need, 0.0);
        }
        let logits = match self.picked.len() {
            0 => Logits::None,
            _ => Logits::Rows(&self.picked, &mut self.logits[..need]),
        };
        forward(
            &self.backend,
            self.model.config(),
            self.model.weights(),
            &mut self.scratch,
            &mut self.caches,
            &self.rows,
            logits,
        );
        for (slot, tokens, _) in runs {
            self.pos[slot] += tokens.len();
        }
        Ok(())
    }

    /// The tokens of a run for `slot` are in the vocabulary and fit its cache.
    fn check_run(&self, slot: usize, tokens: &[u32]) -> Result<(), ModelError> {
        let vocab = self.model.config().vocab_size;
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::TokenOutOfRange { token, vocab });
        }
        if self.pos[slot] + tokens.len() > self.max_seq() {
            return Err(ModelError::ContextFull {
                max_seq: self.max_seq(),
            });
        }
        Ok(())
    }

    fn check_slot(&self, slot: usize) -> Result<(), ModelError> {
        if slot >= self.slots() {
            return Err(ModelError::Slot {
                slot,
                slots: self.slots(),
                why: "out of range",
            });
        }
        Ok(())
    }
}
