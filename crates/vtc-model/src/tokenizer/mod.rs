//! Text to token ids and back.
//!
//! [`Tokenizer`] is built from [`TokenizerData`], the owned tables of a model file, and
//! validated once. Implemented: GPT-2 style byte-level BPE ([`TokenizerKind::ByteLevelBpe`],
//! merges by rank) with the GPT-2, SmolLM, Qwen2 or Llama 3 pre-tokenizer;
//! SentencePiece-style BPE ([`TokenizerKind::SentencePiece`], merges by score, `<0xXX>`
//! byte fallback, as llama2.c's `run.c` encodes: see [`sentencepiece`]); and no
//! tokenizer at all ([`TokenizerKind::None`]: a model run from token ids, whose
//! `encode` fails with [`TokenizerError::NoTokenizer`]).
//!
//! Byte-level encoding, per call:
//! 1. with `parse_special`, control and user-defined tokens (types 3 and 4) are cut out of
//!    the text where they occur literally (leftmost, then longest match);
//! 2. each remaining piece of text is pre-tokenized ([`PreTokenizer`]): SmolLM splits every
//!    `\p{N}` character off on its own, then the GPT-2 regex split applies; Qwen2 and
//!    Llama 3 have their own pattern (see [`QWEN2_PATTERN`], [`LLAMA3_PATTERN`]);
//! 3. each pre-token's bytes become byte tokens, merged by BPE rank (lowest rank first,
//!    leftmost on ties). With Llama 3, a pre-token that is itself a token is that token,
//!    without merges (Hugging Face's `ignore_merges`, which llama.cpp applies for the
//!    Llama 3 pre-tokenizer). Repeated pre-tokens are served from a per-call cache.
//!
//! Decoding undoes the byte-to-unicode mapping; special tokens decode to their text.
//!
//! ```
//! use vtc_model::tokenizer::{Tokenizer, TokenizerData, byte_level_form};
//! use tvl_format::{PreTokenizer, TokenizerKind};
//!
//! // All 256 byte tokens, one merge ("a" + "b" -> "ab") and a control token.
//! let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| byte_level_form(&[b]).into_bytes()).collect();
//! tokens.push(b"ab".to_vec());
//! tokens.push(b"<|end|>".to_vec());
//! let mut token_types = vec![1u8; 258];
//! token_types[257] = 3;
//! let tok = Tokenizer::new(TokenizerData {
//!     kind: TokenizerKind::ByteLevelBpe,
//!     pretokenizer: PreTokenizer::SmolLm,
//!     tokens,
//!     token_types,
//!     scores: Vec::new(),
//!     merges: vec![b"a b".to_vec()],
//!     bos_id: None,
//!     eos_id: Some(257),
//!     eot_id: None,
//!     unk_id: None,
//!     add_bos: false,
//!     add_space_prefix: true,
//! })?;
//! let ids = tok.encode("abc<|end|>", true)?;
//! assert_eq!(ids, [256, u32::from(b'c'), 257]);
//! assert_eq!(tok.decode(&ids), "abc<|end|>");
//! # Ok::<(), vtc_model::tokenizer::TokenizerError>(())
//! ```

mod bpe;
mod byte_level;
mod chars;
mod error;
mod hash;
mod pretokenize;
pub mod sentencepiece;
mod special;
mod stream;

use std::fmt;

use tvl_format::{PreTokenizer, TokenizerKind};

pub use byte_level::byte_level_form;
pub use error::TokenizerError;
pub use pretokenize::{GPT2_PATTERN, LLAMA3_PATTERN, QWEN2_PATTERN};
pub use stream::StreamDecoder;

use bpe::MergeTable;
use hash::FastMap;
use special::{Segment, SpecialMatcher};

/// UTF-8 of U+FFFD, what an id outside the vocabulary decodes to.
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// Token type values of the `token_types` table (GGUF's numbering).
pub mod token_type {
    /// An ordinary token.
    pub const NORMAL: u8 = 1;
    /// The unknown token.
    pub const UNKNOWN: u8 = 2;
    /// A control token (`<|im_start|>`, `<|endoftext|>`...): matched in text only with
    /// `parse_special`.
    pub const CONTROL: u8 = 3;
    /// A user-defined token: matched in text like a control token.
    pub const USER_DEFINED: u8 = 4;
    /// An unused slot.
    pub const UNUSED: u8 = 5;
    /// A byte token (`<0xXX>`, SentencePiece byte fallback).
    pub const BYTE: u8 = 6;
}

/// Owned tokenizer tables, as read from a model file.
#[derive(Clone, Debug)]
pub struct TokenizerData {
    /// The algorithm.
    pub kind: TokenizerKind,
    /// How text is cut before BPE (byte-level BPE only).
    pub pretokenizer: PreTokenizer,
    /// Token strings exactly as stored: for byte-level BPE the UTF-8 of GPT-2's
    /// byte-to-unicode form (`Ġthe`); special tokens as their literal text.
    pub tokens: Vec<Vec<u8>>,
    /// Token types (see [`token_type`]), one per token, or empty for "all normal".
    pub token_types: Vec<u8>,
    /// Token scores, one per token, or empty (used by SentencePiece-style BPE).
    pub scores: Vec<f32>,
    /// Merges as `"left right"` strings, in rank order (byte-level BPE).
    pub merges: Vec<Vec<u8>>,
    /// Beginning-of-sequence token.
    pub bos_id: Option<u32>,
    /// End-of-sequence token.
    pub eos_id: Option<u32>,
    /// End-of-turn token (chat).
    pub eot_id: Option<u32>,
    /// Unknown token. Byte-level BPE does not use it: a byte without a token in the
    /// vocabulary is dropped (as Hugging Face `tokenizers` and llama.cpp do).
    pub unk_id: Option<u32>,
    /// Whether [`Tokenizer::encode_prompt`] starts with the BOS token.
    pub add_bos: bool,
    /// SentencePiece: whether each piece of text gets the dummy-prefix space (true for
    /// Llama 2 and llama2.c vocabularies, false for Gemma's). Ignored by byte-level BPE.
    pub add_space_prefix: bool,
}

impl TokenizerData {
    /// Convert a raw id field of a file (with [`tvl_format::NONE_ID`] for "none").
    pub fn id_field(raw: u32) -> Option<u32> {
        (raw != tvl_format::NONE_ID).then_some(raw)
    }
}

/// The algorithm-specific part of a tokenizer.
#[derive(Clone)]
enum Model {
    /// No tokenizer: ids only.
    None,
    /// SentencePiece-style BPE.
    SentencePiece(sentencepiece::SpModel),
    /// GPT-2 byte-level BPE.
    ByteLevel {
        /// Token of each byte, `u32::MAX` if the vocabulary lacks it.
        byte_ids: Box<[u32; 256]>,
        /// Pair -> (rank, merged id).
        merges: MergeTable,
        pretokenizer: PreTokenizer,
    },
}

/// A validated tokenizer: encoding, decoding and special token ids.
///
/// Immutable after construction; `encode` takes `&self` and may be called from several
/// threads at once.
#[derive(Clone)]
pub struct Tokenizer {
    kind: TokenizerKind,
    /// Stored token strings, concatenated; token i is `stored[stored_at[i]..stored_at[i+1]]`.
    stored: Vec<u8>,
    stored_at: Vec<usize>,
    /// Decoded token bytes, same layout.
    decoded: Vec<u8>,
    decoded_at: Vec<usize>,
    /// Token types, one per token (normal where the file had none).
    types: Vec<u8>,
    /// Stored string -> lowest id with it.
    ids: FastMap<Box<[u8]>, u32>,
    /// Control and user-defined tokens, matched when special tokens are parsed.
    specials: SpecialMatcher,
    /// User-defined tokens only, matched always (as llama.cpp does).
    user_defined: SpecialMatcher,
    model: Model,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    eot_id: Option<u32>,
    unk_id: Option<u32>,
    add_bos: bool,
    /// SentencePiece: the dummy-prefix space is put in front of each piece of text.
    space_prefix: bool,
}

/// No token.
const NONE: u32 = u32::MAX;

fn is_special_type(t: u8) -> bool {
    t == token_type::CONTROL || t == token_type::USER_DEFINED
}

impl Tokenizer {
    /// Validate the tables and build the lookup structures.
    ///
    /// Checks: the kind is supported, the vocabulary is non-empty and addressable by `u32`,
    /// `token_types` / `scores` are empty or one per token, special ids are inside the
    /// vocabulary, byte-level token strings are UTF-8 in the byte-to-unicode form (control
    /// and user-defined tokens may be any bytes, they decode to themselves; unknown and
    /// unused tokens outside the form too), and every merge is two tokens of the
    /// vocabulary separated by a space. (A merge whose result is not a token, or that
    /// involves a control or user-defined token, can never apply and is left out.)
    ///
    /// SentencePiece vocabularies: token strings may be any bytes (`▁` marks a space, see
    /// [`sentencepiece`]); `merges` is not used (pairs come from the vocabulary and its
    /// scores). [`TokenizerKind::None`] gives a tokenizer without vocabulary (the tables,
    /// if any, are ignored), for models run from token ids.
    pub fn new(mut data: TokenizerData) -> Result<Tokenizer, TokenizerError> {
        let spm = match data.kind {
            TokenizerKind::ByteLevelBpe => false,
            TokenizerKind::SentencePiece => true,
            TokenizerKind::None => return Ok(Self::without_vocabulary()),
        };
        let vocab = data.tokens.len();
        if vocab == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        if vocab >= NONE as usize {
            return Err(TokenizerError::VocabTooLarge(vocab));
        }
        if !data.token_types.is_empty() && data.token_types.len() != vocab {
            return Err(TokenizerError::TokenTypesLength {
                got: data.token_types.len(),
                vocab,
            });
        }
        if !data.scores.is_empty() && data.scores.len() != vocab {
            return Err(TokenizerError::ScoresLength {
                got: data.scores.len(),
                vocab,
            });
        }
        for (which, id) in [
            ("bos", data.bos_id),
            ("eos", data.eos_id),
            ("eot", data.eot_id),
            ("unk", data.unk_id),
        ] {
            if let Some(id) = id.filter(|&id| id as usize >= vocab) {
                return Err(TokenizerError::SpecialIdOutOfRange { which, id, vocab });
            }
        }
        if data.add_bos && data.bos_id.is_none() {
            return Err(TokenizerError::AddBosWithoutBos);
        }
        let typed = !data.token_types.is_empty();
        let types = if data.token_types.is_empty() {
            vec![token_type::NORMAL; vocab]
        } else {
            std::mem::take(&mut data.token_types)
        };

        // Token strings: stored and decoded forms, and the string -> id map.
        let total: usize = data.tokens.iter().map(Vec::len).sum();
        let mut stored = Vec::with_capacity(total);
        let mut stored_at = Vec::with_capacity(vocab + 1);
        let mut decoded = Vec::with_capacity(total);
        let mut decoded_at = Vec::with_capacity(vocab + 1);
        let mut ids: FastMap<Box<[u8]>, u32> = FastMap::default();
        ids.reserve(vocab);
        stored_at.push(0);
        decoded_at.push(0);
        for (i, t) in data.tokens.iter().enumerate() {
            let id = i as u32;
            let ty = types[i];
            stored.extend_from_slice(t);
            stored_at.push(stored.len());
            // Control and user-defined tokens decode to their text; so do unknown and
            // unused ones that are not in the byte-level form.
            let raw = is_special_type(ty);
            let lenient = ty == token_type::UNKNOWN || ty == token_type::UNUSED;
            let start = decoded.len();
            if spm {
                sentencepiece::decode_token_into(t, ty, typed, &mut decoded);
                decoded_at.push(decoded.len());
                ids.entry(t.as_slice().into()).or_insert(id);
                continue;
            }
            let result = match std::str::from_utf8(t) {
                _ if raw => Err(None),
                Ok(s) => byte_level::decode_token_into(s, &mut decoded).map_err(|offset| {
                    let ch = s[offset..].chars().next().unwrap_or('\0');
                    Some(TokenizerError::TokenNotByteLevel { id, offset, ch })
                }),
                Err(e) => Err(Some(TokenizerError::TokenNotUtf8 {
                    id,
                    offset: e.valid_up_to(),
                })),
            };
            match result {
                Ok(()) => {}
                Err(Some(e)) if !lenient => return Err(e),
                Err(_) => {
                    decoded.truncate(start);
                    decoded.extend_from_slice(t);
                }
            }
            decoded_at.push(decoded.len());
            ids.entry(t.as_slice().into()).or_insert(id);
        }

        let matcher = |keep: &dyn Fn(u8) -> bool| {
            SpecialMatcher::new(
                data.tokens
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| keep(types[i]))
                    .map(|(i, t)| (i as u32, t.as_slice())),
            )
        };
        let specials = matcher(&is_special_type);
        let user_defined = matcher(&|t| t == token_type::USER_DEFINED);
        let model = if spm {
            Model::SentencePiece(sentencepiece::SpModel::new(
                &data.tokens,
                &types,
                typed,
                &data.scores,
                data.unk_id,
            ))
        } else {
            Self::byte_level_model(&data, &types, &ids)?
        };

        Ok(Tokenizer {
            kind: data.kind,
            stored,
            stored_at,
            decoded,
            decoded_at,
            types,
            ids,
            specials,
            user_defined,
            model,
            bos_id: data.bos_id,
            eos_id: data.eos_id,
            eot_id: data.eot_id,
            unk_id: data.unk_id,
            add_bos: data.add_bos,
            space_prefix: spm && data.add_space_prefix,
        })
    }

    /// The tokenizer of a file without one: no tokens, `encode` fails.
    fn without_vocabulary() -> Self {
        Tokenizer {
            kind: TokenizerKind::None,
            stored: Vec::new(),
            stored_at: vec![0],
            decoded: Vec::new(),
            decoded_at: vec![0],
            types: Vec::new(),
            ids: FastMap::default(),
            specials: SpecialMatcher::default(),
            user_defined: SpecialMatcher::default(),
            model: Model::None,
            bos_id: None,
            eos_id: None,
            eot_id: None,
            unk_id: None,
            add_bos: false,
            space_prefix: false,
        }
    }

    /// The byte-level part: byte tokens and merges by rank.
    fn byte_level_model(
        data: &TokenizerData,
        types: &[u8],
        ids: &FastMap<Box<[u8]>, u32>,
    ) -> Result<Model, TokenizerError> {
        // The 256 byte tokens.
        let mut byte_ids = Box::new([NONE; 256]);
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let s = byte_level_form(&[b as u8]);
            if let Some(&id) = ids.get(s.as_bytes())
                && !is_special_type(types[id as usize])
            {
                *slot = id;
            }
        }

        // Merges by rank. A merge whose parts exist but that can never apply or has no
        // token to produce (a part or the result is a control / user-defined token, or the
        // result is missing, as in files that carry a placeholder merge) is left out.
        let ordinary = |id: u32| !is_special_type(types[id as usize]);
        let mut merges = MergeTable::default();
        let mut joined = Vec::new();
        for (index, m) in data.merges.iter().enumerate() {
            let malformed = || TokenizerError::MalformedMerge {
                index,
                text: String::from_utf8_lossy(m).into_owned(),
            };
            // The separator is the first space after the first byte (a byte-level token
            // never contains a space, but other vocabularies may start one with it).
            let sep = m
                .iter()
                .skip(1)
                .position(|&b| b == b' ')
                .map(|p| p + 1)
                .ok_or_else(malformed)?;
            let (left, right) = (&m[..sep], &m[sep + 1..]);
            if right.is_empty() {
                return Err(malformed());
            }
            let find = |part: &[u8]| {
                ids.get(part)
                    .copied()
                    .ok_or_else(|| TokenizerError::UnknownMergeToken {
                        index,
                        part: String::from_utf8_lossy(part).into_owned(),
                    })
            };
            let (l, r) = (find(left)?, find(right)?);
            let rank = u32::try_from(index).map_err(|_| malformed())?;
            joined.clear();
            joined.extend_from_slice(left);
            joined.extend_from_slice(right);
            match ids.get(joined.as_slice()) {
                Some(&j) if ordinary(l) && ordinary(r) && ordinary(j) => {
                    merges.insert(l, r, rank, j)
                }
                _ => {}
            }
        }

        Ok(Model::ByteLevel {
            byte_ids,
            merges,
            pretokenizer: data.pretokenizer,
        })
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.types.len()
    }

    /// The algorithm.
    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// Encode `text` (no BOS). User-defined tokens written literally in the text become
    /// their ids; with `parse_special`, control tokens do too (without, they are encoded
    /// as plain text). This is llama.cpp's rule (user-defined tokens are Gemma's newline,
    /// tab and space runs and HTML tags; SmolLM2 has none).
    ///
    /// A byte whose token the vocabulary lacks (SmolLM2 has no token for 21 bytes, e.g.
    /// 0x04, or 0xF1 which starts the characters of planes 4 to 7) is dropped before the
    /// merges, as Hugging Face `tokenizers` does (its neighbours may merge; llama.cpp drops
    /// it after merging instead). Then `decode(encode(text)) != text`.
    ///
    /// SentencePiece: each piece of plain text (the whole text, or each piece between
    /// special tokens) gets the dummy-prefix space if the vocabulary asks for it
    /// ([`TokenizerData::add_space_prefix`]), as llama.cpp does.
    /// A character without a token falls back to byte tokens (or the unknown token).
    ///
    /// Fails only for a tokenizer without vocabulary ([`TokenizerError::NoTokenizer`]).
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        if let Model::None = self.model {
            return Err(TokenizerError::NoTokenizer);
        }
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        let mut enc = Encoder::new(self);
        let matcher = if parse_special {
            &self.specials
        } else {
            &self.user_defined
        };
        if !matcher.is_empty() {
            for seg in matcher.segments(text) {
                match seg {
                    Segment::Text(s) => enc.encode_text(s, &mut out),
                    Segment::Special(id) => out.push(id),
                }
            }
        } else {
            enc.encode_text(text, &mut out);
        }
        Ok(out)
    }

    /// Encode a prompt: BOS first iff the model asks for it (`add_bos`), special tokens
    /// parsed.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = self.encode(text, true)?;
        if let (true, Some(bos)) = (self.add_bos, self.bos_id) {
            ids.insert(0, bos);
        }
        Ok(ids)
    }

    /// The bytes token `id` decodes to (byte-level mapping undone; special tokens give
    /// their text), or `None` outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let (&a, &b) = (self.decoded_at.get(i)?, self.decoded_at.get(i + 1)?);
        self.decoded.get(a..b)
    }

    /// The token string exactly as stored in the vocabulary (`Ġthe`), or `None` outside
    /// the vocabulary.
    pub fn token_string(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let (&a, &b) = (self.stored_at.get(i)?, self.stored_at.get(i + 1)?);
        self.stored.get(a..b)
    }

    /// The type of token `id` (see [`token_type`]), or `None` outside the vocabulary.
    pub fn token_type(&self, id: u32) -> Option<u8> {
        self.types.get(id as usize).copied()
    }

    /// Whether `id` is a control or user-defined token.
    pub fn is_special(&self, id: u32) -> bool {
        self.token_type(id).is_some_and(is_special_type)
    }

    /// Decode ids to text; invalid UTF-8 becomes U+FFFD, and so does each id outside the
    /// vocabulary.
    ///
    /// SentencePiece: the space that encoding puts in front of each piece of text (the
    /// dummy prefix) is removed again: one leading space of the first token, and of the
    /// first token after each control or user-defined token (run.c drops it after BOS).
    /// So `decode(encode(text)) == text` when every character has a token or byte
    /// tokens, except that a literal `▁` (U+2581) in the text encodes like a space and
    /// decodes to one (as in SentencePiece and llama.cpp). [`StreamDecoder`] decodes
    /// continuations and keeps every space.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        let spm = self.space_prefix;
        let mut piece_start = spm;
        for &id in ids {
            let mut b = self.token_bytes(id).unwrap_or(REPLACEMENT);
            if self.is_special(id) {
                piece_start = spm;
            } else if piece_start {
                piece_start = false;
                b = b.strip_prefix(b" ").unwrap_or(b);
            }
            bytes.extend_from_slice(b);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Beginning-of-sequence token.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// End-of-sequence token.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// End-of-turn token.
    pub fn eot_id(&self) -> Option<u32> {
        self.eot_id
    }

    /// Unknown token.
    pub fn unk_id(&self) -> Option<u32> {
        self.unk_id
    }

    /// Whether [`encode_prompt`](Self::encode_prompt) starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether generation stops at `id`: the end-of-sequence or end-of-turn token.
    pub fn is_stop(&self, id: u32) -> bool {
        Some(id) == self.eos_id || Some(id) == self.eot_id
    }

    /// The id of the token stored as `s` (byte-level form for ordinary tokens: `"Ġthe"`,
    /// literal text for special tokens: `"<|im_end|>"`); the lowest id if several.
    pub fn token_id(&self, s: &str) -> Option<u32> {
        self.ids.get(s.as_bytes()).copied()
    }
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Tokenizer");
        d.field("kind", &self.kind)
            .field("vocab_size", &self.vocab_size());
        match &self.model {
            Model::None => {}
            Model::SentencePiece(m) => {
                d.field("merges", &m.merges());
            }
            Model::ByteLevel {
                merges,
                pretokenizer,
                ..
            } => {
                d.field("pretokenizer", pretokenizer)
                    .field("merges", &merges.len());
            }
        }
        d.field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("eot_id", &self.eot_id)
            .field("unk_id", &self.unk_id)
            .field("add_bos", &self.add_bos)
            .finish_non_exhaustive()
    }
}

/// Largest pre-token (in bytes) kept in the per-call cache.
const CACHE_MAX_PIECE: usize = 64;
/// Most entries in the per-call cache.
const CACHE_MAX_ENTRIES: usize = 1 << 16;

/// A piece of at most 7 bytes packed into one word (bytes, then the length in the top
/// byte): hashed and compared without touching the text.
#[inline]
fn short_key(piece: &[u8]) -> Option<u64> {
    if piece.len() > 7 {
        return None;
    }
    let mut w = [0u8; 8];
    w[..piece.len()].copy_from_slice(piece);
    w[7] = piece.len() as u8;
    Some(u64::from_le_bytes(w))
}

/// Per-call encoding state: scratch buffers and the cache of merged pre-tokens
/// (`(start, len)` in `cached_ids`).
struct Encoder<'t, 'a> {
    tok: &'t Tokenizer,
    scratch: bpe::Scratch,
    word: Vec<u32>,
    short: FastMap<u64, (u32, u32)>,
    long: FastMap<&'a str, (u32, u32)>,
    cached_ids: Vec<u32>,
    /// Byte-level form of the current pre-token (for the whole-token lookup).
    form: String,
}

impl<'t, 'a> Encoder<'t, 'a> {
    fn new(tok: &'t Tokenizer) -> Self {
        Self {
            tok,
            scratch: bpe::Scratch::default(),
            word: Vec::new(),
            short: FastMap::default(),
            long: FastMap::default(),
            cached_ids: Vec::new(),
            form: String::new(),
        }
    }

    /// Encode plain text.
    fn encode_text(&mut self, text: &'a str, out: &mut Vec<u32>) {
        let (byte_ids, merges, pretokenizer) = match &self.tok.model {
            Model::ByteLevel {
                byte_ids,
                merges,
                pretokenizer,
            } => (byte_ids, merges, pretokenizer),
            Model::SentencePiece(m) => {
                let prefix = self.tok.space_prefix;
                m.encode(text, prefix, &mut self.word, &mut self.scratch, out);
                return;
            }
            Model::None => return,
        };
        let whole_tokens = *pretokenizer == PreTokenizer::Llama3;
        pretokenize::split(text, *pretokenizer, |a, b| {
            let piece = &text[a..b];
            if let [byte] = piece.as_bytes() {
                match byte_ids[*byte as usize] {
                    NONE => {}
                    id => out.push(id),
                }
                return;
            }
            let key = short_key(piece.as_bytes());
            let hit = match key {
                Some(k) => self.short.get(&k),
                None => self.long.get(piece),
            };
            if let Some(&(at, len)) = hit {
                out.extend_from_slice(&self.cached_ids[at as usize..(at + len) as usize]);
                return;
            }
            self.word.clear();
            let whole = whole_tokens
                .then(|| {
                    byte_level::byte_level_form_into(piece.as_bytes(), &mut self.form);
                    self.tok.ids.get(self.form.as_bytes()).copied()
                })
                .flatten();
            if let Some(id) = whole {
                self.word.push(id);
            } else {
                self.word.extend(
                    piece
                        .bytes()
                        .map(|b| byte_ids[b as usize])
                        .filter(|&id| id != NONE),
                );
                bpe::merge(merges, &mut self.word, &mut self.scratch);
            }
            out.extend_from_slice(&self.word);
            if piece.len() <= CACHE_MAX_PIECE
                && self.short.len() + self.long.len() < CACHE_MAX_ENTRIES
            {
                let entry = (self.cached_ids.len() as u32, self.word.len() as u32);
                self.cached_ids.extend_from_slice(&self.word);
                match key {
                    Some(k) => self.short.insert(k, entry),
                    None => self.long.insert(piece, entry),
                };
            }
        });
    }
}

#[cfg(test)]
mod tests;
