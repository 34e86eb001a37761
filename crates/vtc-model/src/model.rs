//! A loaded model (config, weight views, tokenizer) and a session (one sequence: its
//! state, KV cache and backend).

use tvl_format::{DType, NONE_ID, TokenizerKind, names, tokenizer_flags};
use tvl_loader::TvlFile;
use vtc_kernels::Backend;

use crate::tokenizer::{Tokenizer, TokenizerData};
use crate::{
    BATCH, BatchState, Config, Logits, ModelError, RunState, Weights, forward, forward_batch,
};

/// A model whose weights are views into a mapped TVL file.
#[derive(Debug)]
pub struct Model<'a> {
    config: Config,
    weights: Weights<'a>,
    tokenizer: Tokenizer,
}

impl<'a> Model<'a> {
    /// Check the config, look up every weight and build the tokenizer. Weight bytes
    /// are not touched (the first forward pass pages them in).
    pub fn load(file: &'a TvlFile) -> Result<Self, ModelError> {
        let config = Config::from_tvl(file.config())?;
        let weights = Weights::from_tvl(file, &config)?;
        let tokenizer = load_tokenizer(file)?;
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(ModelError::Config {
                field: "vocab_size",
                value: config.vocab_size.to_string(),
                why: "smaller than the tokenizer's vocabulary",
            });
        }
        Ok(Self {
            config,
            weights,
            tokenizer,
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The weight views.
    pub fn weights(&self) -> &Weights<'a> {
        &self.weights
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Bytes of weights streamed per decoded token.
    pub fn weight_bytes_per_token(&self) -> usize {
        self.weights.bytes_per_token()
    }
}

/// The tokenizer of `file` alone, whatever its architecture (also a tables-only file,
/// `arch` 0): its tables and the config's tokenizer fields, validated.
pub fn load_tokenizer(file: &TvlFile) -> Result<Tokenizer, ModelError> {
    Ok(Tokenizer::new(tokenizer_data(file)?)?)
}

/// Read the tokenizer tables of `file` (copied: the tokenizer builds lookup tables).
fn tokenizer_data(file: &TvlFile) -> Result<TokenizerData, ModelError> {
    let c = file.config();
    let kind = TokenizerKind::from_u32(c.tokenizer).ok_or(ModelError::Config {
        field: "tokenizer",
        value: c.tokenizer.to_string(),
        why: "unknown tokenizer kind",
    })?;
    let pretokenizer =
        tvl_format::PreTokenizer::from_u32(c.pretokenizer).ok_or(ModelError::Config {
            field: "pretokenizer",
            value: c.pretokenizer.to_string(),
            why: "unknown pre-tokenizer",
        })?;
    if c.tokenizer_flags & !tokenizer_flags::ALL != 0 {
        return Err(ModelError::Config {
            field: "tokenizer_flags",
            value: format!("{:#x}", c.tokenizer_flags),
            why: "unknown tokenizer flag bits",
        });
    }
    let strings = |blob: &str, offsets: &str| -> Result<Vec<Vec<u8>>, ModelError> {
        let (Some(b), Some(o)) = (file.get(blob), file.get(offsets)) else {
            return Ok(Vec::new());
        };
        let (bytes, offs) = (b.as_u8()?, o.as_u32()?);
        let bad = |why| ModelError::Table {
            name: offsets.to_string(),
            why,
        };
        if offs.first() != Some(&0) || offs.last().map(|&e| e as usize) != Some(bytes.len()) {
            return Err(bad("must start at 0 and end at the blob length"));
        }
        offs.windows(2)
            .map(|w| {
                bytes
                    .get(w[0] as usize..w[1] as usize)
                    .map(<[u8]>::to_vec)
                    .ok_or(bad("offsets must not decrease"))
            })
            .collect()
    };
    let tokens = strings(names::TOKENS, names::TOKEN_OFFSETS)?;
    let merges = strings(names::MERGES, names::MERGE_OFFSETS)?;
    let optional = |name: &str, dtype: DType| file.get(name).filter(|v| v.dtype() == dtype);
    let token_types = match optional(names::TOKEN_TYPES, DType::U8) {
        Some(v) => v.as_u8()?.to_vec(),
        None => Vec::new(),
    };
    let scores = match optional(names::SCORES, DType::F32) {
        Some(v) => v.as_f32()?.to_vec(),
        None => Vec::new(),
    };
    let id = |v: u32| (v != NONE_ID).then_some(v);
    Ok(TokenizerData {
        kind,
        pretokenizer,
        tokens,
        token_types,
        scores,
        merges,
        bos_id: id(c.bos_id),
        eos_id: id(c.eos_id),
        eot_id: id(c.eot_id),
        unk_id: id(c.unk_id),
        add_bos: c.add_bos != 0,
        add_space_prefix: c.tokenizer_flags & tokenizer_flags::NO_SPACE_PREFIX == 0,
    })
}

/// One sequence being run through a model on a backend: the KV cache and activations,
/// allocated once.
pub struct Session<'m, B: Backend> {
    model: &'m Model<'m>,
    backend: B,
    state: RunState,
    /// Buffers of batched runs, allocated by the first one.
    batch: Option<BatchState>,
    /// Tokens per batch of `prefill` and `score`.
    batch_size: usize,
    pos: usize,
}

impl<'m, B: Backend> Session<'m, B> {
    /// A session with room for `max_seq` positions (at most the model's context length).
    pub fn new(model: &'m Model<'m>, backend: B, max_seq: usize) -> Result<Self, ModelError> {
        let ctx = model.config.context_len;
        if max_seq == 0 || max_seq > ctx {
            return Err(ModelError::ContextTooLong {
                requested: max_seq,
                max: ctx,
            });
        }
        Ok(Self {
            state: RunState::new(&model.config, max_seq),
            batch: None,
            batch_size: BATCH,
            model,
            backend,
            pos: 0,
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

    /// Positions already in the KV cache.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Positions the cache can hold.
    pub fn max_seq(&self) -> usize {
        self.state.max_seq
    }

    /// Tokens per batch of [`Session::prefill`] and [`Session::score`] ([`BATCH`]
    /// unless set; at least 1). Smaller batches need less memory, larger ones read
    /// the weights fewer times per prompt; the logits are the same bits either way.
    pub fn set_batch_size(&mut self, tokens: usize) {
        self.batch_size = tokens.max(1);
        self.batch = None;
    }

    /// Forget the sequence (the cache is overwritten as positions are reused).
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Keep only the first `pos` cached positions (no-op if `pos >= self.pos()`); the
    /// next token runs at position `pos`, overwriting what the cache held there.
    pub fn truncate(&mut self, pos: usize) {
        self.pos = pos.min(self.pos);
    }

    /// Run `token` at the next position; returns the logits for the token after it.
    pub fn forward(&mut self, token: u32) -> Result<&[f32], ModelError> {
        let vocab = self.model.config.vocab_size;
        if token as usize >= vocab {
            return Err(ModelError::TokenOutOfRange { token, vocab });
        }
        if self.pos >= self.state.max_seq {
            return Err(ModelError::ContextFull {
                max_seq: self.state.max_seq,
            });
        }
        let (be, cfg, w, state, pos) = (
            &self.backend,
            &self.model.config,
            &self.model.weights,
            &mut self.state,
            self.pos,
        );
        forward(be, cfg, w, state, token, pos);
        self.pos += 1;
        Ok(&self.state.logits)
    }

    /// Run a sequence of tokens (a prompt) at the next positions; returns the logits
    /// after the last one. The tokens go through the graph in batches of up to
    /// [`BATCH`] ([`forward_batch`]; see [`Session::set_batch_size`]), each weight
    /// read once per batch; the logits are
    /// bit for bit those of [`Session::forward`] token by token.
    pub fn prefill(&mut self, tokens: &[u32]) -> Result<&[f32], ModelError> {
        self.check_run(tokens)?;
        let chunks = tokens.chunks(self.batch_size);
        let last = chunks.len() - 1;
        for (c, chunk) in chunks.enumerate() {
            let want = if c == last {
                Logits::Last
            } else {
                Logits::None
            };
            self.run_batch(chunk, want);
        }
        Ok(&self.state.logits)
    }

    /// Run `tokens` at the next positions, batched as [`Session::prefill`], and call
    /// `each(i, logits)` with the logits after `tokens[i]`, for every `i` in order
    /// (what scoring a text needs: see [`perplexity`](crate::perplexity)).
    pub fn score(
        &mut self,
        tokens: &[u32],
        each: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<(), ModelError> {
        self.check_run(tokens)?;
        let vocab = self.model.config.vocab_size;
        let size = self.batch_size;
        for (c, chunk) in tokens.chunks(size).enumerate() {
            self.run_batch(chunk, Logits::All);
            let logits = match &self.batch {
                Some(b) if chunk.len() > 1 => &b.logits[..chunk.len() * vocab],
                _ => &self.state.logits[..],
            };
            for (i, l) in logits.chunks_exact(vocab).enumerate() {
                each(c * size + i, l);
            }
        }
        Ok(())
    }

    /// The checks of a batched run: not empty, every token in the vocabulary, room in
    /// the cache for all of them (before any work is done).
    fn check_run(&self, tokens: &[u32]) -> Result<(), ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::EmptyPrompt);
        }
        let vocab = self.model.config.vocab_size;
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::TokenOutOfRange { token, vocab });
        }
        if self.pos + tokens.len() > self.state.max_seq {
            return Err(ModelError::ContextFull {
                max_seq: self.state.max_seq,
            });
        }
        Ok(())
    }

    /// Run up to `batch_size` checked tokens: one token as [`forward`] (its logits in
    /// `state.logits` whatever `want` says), more with [`forward_batch`].
    fn run_batch(&mut self, tokens: &[u32], want: Logits) {
        let (be, cfg, w, state, pos, size) = (
            &self.backend,
            &self.model.config,
            &self.model.weights,
            &mut self.state,
            self.pos,
            self.batch_size,
        );
        if let [token] = tokens {
            forward(be, cfg, w, state, *token, pos);
        } else {
            let batch = self
                .batch
                .get_or_insert_with(|| BatchState::new(cfg, size.min(state.max_seq)));
            forward_batch(be, cfg, w, state, batch, tokens, pos, want);
        }
        self.pos += tokens.len();
    }

    /// The logits of the last forward pass.
    pub fn logits(&self) -> &[f32] {
        &self.state.logits
    }
}
