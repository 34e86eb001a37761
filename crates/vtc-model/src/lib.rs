//! VTC's transformer graph: a Llama-architecture model whose weights are zero-copy views
//! into a TVL file, run on any [`vtc_kernels::Backend`].
//!
//! ```no_run
//! use vtc_model::{GenerateOptions, Model, Session};
//!
//! let file = tvl_loader::TvlFile::open("model.tvl")?;
//! let model = Model::load(&file)?;
//! let backend = vtc_kernels::select(None)?;
//! let mut session = Session::new(&model, backend, 512)?;
//! let prompt = model.tokenizer().encode_prompt("Once upon a time")?;
//! for tok in session.generate(&prompt, GenerateOptions::default())? {
//!     print!("{}", tok?.text);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod chat;
mod config;
mod forward;
mod generate;
mod model;
mod perplexity;
mod sampler;
mod slots;
mod state;
pub mod tokenizer;
mod weights;

pub use config::{Config, Gate};
pub use forward::{BATCH, Logits, Row, forward};
pub use generate::{GenerateOptions, Generated, Generation, StopReason};
pub use model::{Model, Session, load_tokenizer};
pub use perplexity::{
    DEFAULT_PERPLEXITY_CTX, PerplexityReport, perplexity, perplexity_ids, perplexity_windows,
    token_nll,
};
pub use sampler::{Sampler, SamplerConfig, argmax};
pub use slots::{Run, Slots};
pub use state::{Activations, KvCache, Scratch};
pub use weights::{LayerWeights, Weights};

use tvl_format::{DType, Layout};

/// Errors of loading and running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be opened or a tensor view failed.
    #[error(transparent)]
    Load(#[from] tvl_loader::LoadError),
    /// A weight matrix could not be viewed.
    #[error(transparent)]
    Kernel(#[from] vtc_kernels::KernelError),
    /// The tokenizer tables are invalid, or text could not be encoded.
    #[error(transparent)]
    Tokenizer(#[from] tokenizer::TokenizerError),
    /// A config value is out of range.
    #[error("config field {field} = {value}: {why}")]
    Config {
        /// Field name.
        field: &'static str,
        /// The value found.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A tensor has the wrong shape for the config.
    #[error("tensor {name}: shape {got:?}, the config needs {want:?}")]
    TensorShape {
        /// Tensor name.
        name: String,
        /// Shape the config implies.
        want: Vec<usize>,
        /// Shape in the file.
        got: Vec<usize>,
    },
    /// A tensor has a dtype or layout the model cannot use there.
    #[error("tensor {name}: {dtype} {layout}, expected {want}")]
    TensorKind {
        /// Tensor name.
        name: String,
        /// Its dtype.
        dtype: DType,
        /// Its layout.
        layout: Layout,
        /// What is needed.
        want: &'static str,
    },
    /// A tokenizer table is inconsistent.
    #[error("tokenizer table {name}: {why}")]
    Table {
        /// Tensor name.
        name: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A token id is outside the vocabulary.
    #[error("token id {token} is outside the vocabulary of {vocab}")]
    TokenOutOfRange {
        /// The id.
        token: u32,
        /// Vocabulary size.
        vocab: usize,
    },
    /// The session's KV cache is full.
    #[error("context full: the session holds at most {max_seq} positions")]
    ContextFull {
        /// Positions the session holds.
        max_seq: usize,
    },
    /// More positions were asked for than the model or session allows.
    #[error(
        "{requested} positions requested, at most {max} fit (shorten the prompt or lower max tokens)"
    )]
    ContextTooLong {
        /// Positions needed.
        requested: usize,
        /// Positions available.
        max: usize,
    },
    /// A slot index of [`Slots`] is out of range or repeated.
    #[error("slot {slot} (of {slots}): {why}")]
    Slot {
        /// The slot asked for.
        slot: usize,
        /// Slots there are.
        slots: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// A [`Slots::run`] of more tokens than one pass holds.
    #[error("a pass of {rows} tokens exceeds the {capacity} one pass holds")]
    PassTooLarge {
        /// Tokens asked for.
        rows: usize,
        /// Tokens a pass holds ([`Slots::capacity`]).
        capacity: usize,
    },
    /// Generation needs at least one prompt token.
    #[error("the prompt is empty (it encodes to no tokens)")]
    EmptyPrompt,
    /// A perplexity window length outside `2..=max` (the model's context length).
    #[error("perplexity window of {ctx} tokens: must be at least 2 and at most {max}")]
    PerplexityWindow {
        /// Window length asked for.
        ctx: usize,
        /// The model's context length.
        max: usize,
    },
    /// Perplexity needs at least two tokens (one to condition on, one to score).
    #[error("perplexity needs at least 2 tokens, got {tokens}")]
    TooFewTokens {
        /// Tokens given.
        tokens: usize,
    },
}
