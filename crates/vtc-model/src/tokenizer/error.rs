use tvl_format::TokenizerKind;

/// Errors of building a [`Tokenizer`](super::Tokenizer) from its tables and of encoding.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenizerError {
    /// The tokenizer kind is not implemented (yet).
    #[error("tokenizer kind {0:?} is not supported")]
    Unsupported(TokenizerKind),
    /// The model file has no tokenizer ([`TokenizerKind::None`]): it runs from token ids
    /// only.
    #[error("the model file has no tokenizer (convert it with one, e.g. --tokenizer)")]
    NoTokenizer,
    /// The vocabulary has no tokens.
    #[error("the vocabulary is empty")]
    EmptyVocab,
    /// More tokens than a `u32` id can address (`u32::MAX` is reserved).
    #[error("the vocabulary has {0} tokens, more than u32 ids can address")]
    VocabTooLarge(usize),
    /// `token_types` is neither empty nor one entry per token.
    #[error("token_types has {got} entries, the vocabulary has {vocab} tokens")]
    TokenTypesLength {
        /// Entries given.
        got: usize,
        /// Vocabulary size.
        vocab: usize,
    },
    /// `scores` is neither empty nor one entry per token.
    #[error("scores has {got} entries, the vocabulary has {vocab} tokens")]
    ScoresLength {
        /// Entries given.
        got: usize,
        /// Vocabulary size.
        vocab: usize,
    },
    /// A special token id (`bos`, `eos`, `eot` or `unk`) is not below the vocabulary size.
    #[error("{which} token id {id} is outside the vocabulary of {vocab} tokens")]
    SpecialIdOutOfRange {
        /// Which id: "bos", "eos", "eot" or "unk".
        which: &'static str,
        /// The id.
        id: u32,
        /// Vocabulary size.
        vocab: usize,
    },
    /// `add_bos` is set but there is no BOS token.
    #[error("add_bos is set but the tokenizer has no BOS token")]
    AddBosWithoutBos,
    /// A token string is not valid UTF-8.
    #[error("token {id}: invalid UTF-8 at byte {offset}")]
    TokenNotUtf8 {
        /// Token id.
        id: u32,
        /// Byte offset of the error in the token string.
        offset: usize,
    },
    /// A byte-level token holds a character outside GPT-2's byte-to-unicode mapping.
    #[error("token {id}: character {ch:?} at byte {offset} is not in the byte-level mapping")]
    TokenNotByteLevel {
        /// Token id.
        id: u32,
        /// Byte offset of the character in the token string.
        offset: usize,
        /// The character.
        ch: char,
    },
    /// A merge is not two non-empty token strings separated by a space.
    #[error("merge {index}: {text:?} is not two tokens separated by a space")]
    MalformedMerge {
        /// Merge index (its rank).
        index: usize,
        /// The merge string (lossy UTF-8).
        text: String,
    },
    /// A merge names a token that is not in the vocabulary.
    #[error("merge {index}: {part:?} is not a token of the vocabulary")]
    UnknownMergeToken {
        /// Merge index (its rank).
        index: usize,
        /// The missing token string, left or right part (lossy UTF-8).
        part: String,
    },
}
