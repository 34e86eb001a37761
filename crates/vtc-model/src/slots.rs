//! Several sequences served together: each slot has its own KV cache, and one
//! [`Slots::step`] runs the next token of every active sequence through the weights in
//! one pass, so one read of the weights advances all of them.

use vtc_kernels::Backend;

use crate::forward::Want;
use crate::{BATCH, KvCache, Model, ModelError, Row, Scratch, forward};

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
    /// Logits of the rows of the last step, `[rows][vocab]` (or of the last prefill,
    /// in row 0).
    logits: Vec<f32>,
    /// Rows of the last step.
    stepped: usize,
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
        Ok(Self {
            caches: (0..slots).map(|_| KvCache::new(cfg, max_seq)).collect(),
            pos: vec![0; slots],
            scratch: Scratch::new(cfg, model.weights(), BATCH.max(slots), max_seq),
            rows: Vec::with_capacity(BATCH.max(slots)),
            logits: vec![0.0; slots * cfg.vocab_size],
            stepped: 0,
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

    /// Run `tokens` (a prompt, or its part the slot does not hold yet) at the next
    /// positions of slot `slot`, in passes of up to [`BATCH`] tokens; returns the
    /// logits after the last one (valid until the next call).
    pub fn prefill(&mut self, slot: usize, tokens: &[u32]) -> Result<&[f32], ModelError> {
        self.check_slot(slot)?;
        if tokens.is_empty() {
            return Err(ModelError::EmptyPrompt);
        }
        let vocab = self.model.config().vocab_size;
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::TokenOutOfRange { token, vocab });
        }
        if self.pos[slot] + tokens.len() > self.max_seq() {
            return Err(ModelError::ContextFull {
                max_seq: self.max_seq(),
            });
        }
        let chunks = tokens.chunks(self.scratch.capacity);
        let last = chunks.len() - 1;
        for (c, chunk) in chunks.enumerate() {
            let pos = self.pos[slot];
            self.rows.clear();
            self.rows
                .extend(chunk.iter().enumerate().map(|(i, &token)| Row {
                    seq: slot,
                    token,
                    pos: pos + i,
                }));
            self.pass(if c == last { Want::Last } else { Want::None });
            self.pos[slot] += chunk.len();
        }
        self.stepped = 0;
        Ok(&self.logits[..vocab])
    }

    /// One decode step: token `t` at the next position of slot `s` for every `(s, t)`
    /// of `rows` (distinct slots, any order), all in one pass. Row `i`'s logits are
    /// then [`Slots::logits`]`(i)`. Nothing runs if a row is invalid.
    pub fn step(&mut self, rows: &[(usize, u32)]) -> Result<(), ModelError> {
        if rows.is_empty() {
            return Err(ModelError::EmptyPrompt);
        }
        let vocab = self.model.config().vocab_size;
        for (i, &(slot, token)) in rows.iter().enumerate() {
            self.check_slot(slot)?;
            if rows[..i].iter().any(|&(s, _)| s == slot) {
                return Err(ModelError::Slot {
                    slot,
                    slots: self.slots(),
                    why: "appears twice in one step",
                });
            }
            if token as usize >= vocab {
                return Err(ModelError::TokenOutOfRange { token, vocab });
            }
            if self.pos[slot] >= self.max_seq() {
                return Err(ModelError::ContextFull {
                    max_seq: self.max_seq(),
                });
            }
        }
        self.rows.clear();
        self.rows.extend(rows.iter().map(|&(slot, token)| Row {
            seq: slot,
            token,
            pos: self.pos[slot],
        }));
        let n = rows.len();
        self.pass(Want::All);
        for &(slot, _) in rows {
            self.pos[slot] += 1;
        }
        self.stepped = n;
        Ok(())
    }

    /// The logits after row `row` of the last [`Slots::step`].
    ///
    /// # Panics
    /// If the last step had no row `row`.
    pub fn logits(&self, row: usize) -> &[f32] {
        assert!(
            row < self.stepped,
            "row {row} of a step of {}",
            self.stepped
        );
        let vocab = self.model.config().vocab_size;
        &self.logits[row * vocab..(row + 1) * vocab]
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

    /// Run `self.rows` (checked) through the graph, the logits `want` says into
    /// `self.logits`.
    fn pass(&mut self, want: Want) {
        let (n, vocab) = (self.rows.len(), self.model.config().vocab_size);
        let logits = want.logits(&mut self.logits, n, vocab);
        forward(
            &self.backend,
            self.model.config(),
            self.model.weights(),
            &mut self.scratch,
            &mut self.caches,
            &self.rows,
            logits,
        );
    }
}
