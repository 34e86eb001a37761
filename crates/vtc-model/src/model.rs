//! A loaded model (config, weight views, tokenizer) and a session (one sequence: its
//! state, KV cache and backend).

use tvl_format::{DType, NONE_ID, TokenizerKind, names, tokenizer_flags};
use tvl_loader::TvlFile;
use vtc_kernels::Backend;

use crate::forward::Want;
use crate::tokenizer::{Tokenizer, TokenizerData};
use crate::{BATCH, Config, KvCache, ModelError, Row, Scratch, Weights, forward};

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

/// One sequence being run through a model on a backend: the KV cache and scratch
/// buffers, allocated once.
pub struct Session<'m, B: Backend> {
    model: &'m Model<'m>,
    backend: B,
    cache: KvCache,
    /// Buffers of one-token passes (decode).
    decode: Scratch,
    /// Buffers of passes of several tokens, allocated by the first one.
    batch: Option<Scratch>,
    /// Tokens per batch of `prefill` and `score`.
    batch_size: usize,
    /// Logits of the last token run, `[vocab]`.
    logits: Vec<f32>,
    /// Logits of every token of a scored batch, allocated by the first `score`.
    scores: Vec<f32>,
    /// The rows of the current pass (reused, so decoding does not allocate).
    rows: Vec<Row>,
    pos: usize,
}

impl<'m, B: Backend> Session<'m, B> {
    /// A session with room for `max_seq` positions (at most the model's context length).
    pub fn new(model: &'m Model<'m>, backend: B, max_seq: usize) -> Result<Self, ModelError> {
        let cfg = &model.config;
        if max_seq == 0 || max_seq > cfg.context_len {
            return Err(ModelError::ContextTooLong {
                requested: max_seq,
                max: cfg.context_len,
            });
        }
        Ok(Self {
            cache: KvCache::new(cfg, max_seq),
            decode: Scratch::new(cfg, model.weights(), 1, max_seq),
            batch: None,
            batch_size: BATCH,
            logits: vec![0.0; cfg.vocab_size],
            scores: Vec::new(),
            rows: Vec::new(),
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
        self.cache.max_seq
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

    /// Keep only the first `pos` positions of the cache (no-op if it holds fewer): the
    /// next token runs at position `pos`, reusing what comes before it.
    pub fn truncate(&mut self, pos: usize) {
        self.pos = self.pos.min(pos);
    }

    /// Run `token` at the next position; returns the logits for the token after it.
    pub fn forward(&mut self, token: u32) -> Result<&[f32], ModelError> {
        self.check_run(&[token])?;
        self.run(&[token], Want::Last);
        Ok(&self.logits)
    }

    /// Run a sequence of tokens (a prompt) at the next positions; returns the logits
    /// after the last one. The tokens go through the graph in batches of up to
    /// [`BATCH`] (see [`Session::set_batch_size`]), each weight read once per batch;
    /// the logits are bit for bit those of [`Session::forward`] token by token.
    pub fn prefill(&mut self, tokens: &[u32]) -> Result<&[f32], ModelError> {
        self.check_run(tokens)?;
        let chunks = tokens.chunks(self.batch_size);
        let last = chunks.len() - 1;
        for (c, chunk) in chunks.enumerate() {
            self.run(chunk, if c == last { Want::Last } else { Want::None });
        }
        Ok(&self.logits)
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
            self.run(chunk, Want::All);
            for (i, l) in self.scores[..chunk.len() * vocab]
                .chunks_exact(vocab)
                .enumerate()
            {
                each(c * size + i, l);
            }
        }
        if let Some(l) = self
            .scores
            .chunks_exact(vocab)
            .nth((tokens.len() - 1) % size)
        {
            self.logits.copy_from_slice(l);
        }
        Ok(())
    }

    /// The checks of a run: not empty, every token in the vocabulary, room in the
    /// cache for all of them (before any work is done).
    fn check_run(&self, tokens: &[u32]) -> Result<(), ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::EmptyPrompt);
        }
        let vocab = self.model.config.vocab_size;
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::TokenOutOfRange { token, vocab });
        }
        if self.pos + tokens.len() > self.cache.max_seq {
            return Err(ModelError::ContextFull {
                max_seq: self.cache.max_seq,
            });
        }
        Ok(())
    }

    /// Run up to `batch_size` checked tokens at the next positions as one pass: one
    /// token in the decode buffers, more in the batch buffers.
    fn run(&mut self, tokens: &[u32], want: Want) {
        let (cfg, max_seq, pos) = (&self.model.config, self.cache.max_seq, self.pos);
        self.rows.clear();
        self.rows
            .extend(tokens.iter().enumerate().map(|(i, &token)| Row {
                seq: 0,
                token,
                pos: pos + i,
            }));
        let scratch = match tokens.len() {
            1 => &mut self.decode,
            _ => {
                let size = self.batch_size.min(max_seq);
                self.batch
                    .get_or_insert_with(|| Scratch::new(cfg, &self.model.weights, size, max_seq))
            }
        };
        let (n, vocab) = (tokens.len(), cfg.vocab_size);
        let out = match want {
            Want::All => {
                if self.scores.len() < n * vocab {
                    self.scores.resize(self.batch_size * vocab, 0.0);
                }
                &mut self.scores
            }
            _ => &mut self.logits,
        };
        let logits = want.logits(out, n, vocab);
        let caches = std::slice::from_mut(&mut self.cache);
        forward(
            &self.backend,
            cfg,
            &self.model.weights,
            scratch,
            caches,
            &self.rows,
            logits,
        );
        self.pos += tokens.len();
    }

    /// The logits of the last token run.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }
}
