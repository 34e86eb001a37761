//! Handmade tokenizer vocabularies as plain tables. The tables mirror the fields of
//! `vtc_model::tokenizer::TokenizerData` except the algorithm and the pre-tokenizer;
//! [`tokenizer_data!`](crate::tokenizer_data) turns them into that type in the
//! caller's crate (this crate does not depend on `vtc-model`).

/// A tokenizer's tables: what `vtc_model::tokenizer::TokenizerData` holds but the
/// algorithm and the pre-tokenizer, in plain types.
#[derive(Clone, Debug, Default)]
pub struct TokenizerTables {
    /// Token strings as stored (byte-level form for byte-level BPE).
    pub tokens: Vec<Vec<u8>>,
    /// One type per token (1 normal, 2 unknown, 3 control, 6 byte).
    pub token_types: Vec<u8>,
    /// One score per token, or empty.
    pub scores: Vec<f32>,
    /// Merges as `"left right"`, in rank order.
    pub merges: Vec<Vec<u8>>,
    /// The special token ids.
    pub special: SpecialIds,
    /// Whether a prompt starts with BOS.
    pub add_bos: bool,
}

/// The special token ids of a vocabulary (`None`: the vocabulary has no such token).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpecialIds {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// End of turn.
    pub eot: Option<u32>,
    /// Unknown token.
    pub unk: Option<u32>,
}

impl SpecialIds {
    /// Llama's SentencePiece ids: `<unk>` 0, `<s>` 1 (BOS, and end of turn), `</s>` 2.
    pub const LLAMA: Self = Self {
        bos: Some(1),
        eos: Some(2),
        eot: Some(1),
        unk: Some(0),
    };
}

impl TokenizerTables {
    /// SentencePiece tables with [`SpecialIds::LLAMA`], BOS added, no merges.
    pub fn sentencepiece(tokens: Vec<Vec<u8>>, token_types: Vec<u8>, scores: Vec<f32>) -> Self {
        Self {
            tokens,
            token_types,
            scores,
            merges: Vec::new(),
            special: SpecialIds::LLAMA,
            add_bos: true,
        }
    }
}

/// `vtc_model::tokenizer::TokenizerData` from `kind`, `pretokenizer` and a
/// [`TokenizerTables`](crate::tokenizer::TokenizerTables). Expands in the caller's
/// crate, which must depend on `vtc_model`:
///
/// ```text
/// use tvl_format::{PreTokenizer, TokenizerKind};
/// let data = vtc_testdata::tokenizer_data!(
///     TokenizerKind::SentencePiece,
///     PreTokenizer::Gpt2,
///     vtc_testdata::tokenizer::handmade_spm()
/// );
/// let tok = vtc_model::tokenizer::Tokenizer::new(data).unwrap();
/// ```
#[macro_export]
macro_rules! tokenizer_data {
    ($kind:expr, $pretokenizer:expr, $tables:expr $(,)?) => {{
        let t: $crate::tokenizer::TokenizerTables = $tables;
        ::vtc_model::tokenizer::TokenizerData {
            kind: $kind,
            pretokenizer: $pretokenizer,
            tokens: t.tokens,
            token_types: t.token_types,
            scores: t.scores,
            merges: t.merges,
            bos_id: t.special.bos,
            eos_id: t.special.eos,
            eot_id: t.special.eot,
            unk_id: t.special.unk,
            add_bos: t.add_bos,
            add_space_prefix: true,
        }
    }};
}

/// The scored pieces of [`handmade_spm`], in id order after the 259 first tokens.
pub const SPM_PIECES: [&str; 26] = [
    "\u{2581}",
    "t",
    "h",
    "e",
    "a",
    "n",
    "d",
    "o",
    "c",
    "é",
    "中",
    "1",
    "2",
    "th",
    "he",
    "the",
    "\u{2581}t",
    "\u{2581}the",
    "an",
    "and",
    "\u{2581}and",
    "12",
    "\u{2581}\u{2581}",
    "<",
    ">",
    "s",
];

/// A handmade SentencePiece vocabulary with byte fallback (the `tokenizer` fuzz
/// target's mode 2): `<unk>`, `<s>`, `</s>`, the 256 byte tokens `<0x00>`..`<0xFF>`,
/// then [`SPM_PIECES`]; token `i` scored `-i / 7`; Llama's special ids
/// ([`TokenizerTables::sentencepiece`]).
pub fn handmade_spm() -> TokenizerTables {
    let mut tokens: Vec<Vec<u8>> = vec![b"<unk>".to_vec(), b"<s>".to_vec(), b"</s>".to_vec()];
    let mut types = vec![2u8, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>").into_bytes());
        types.push(6);
    }
    for p in SPM_PIECES {
        tokens.push(p.as_bytes().to_vec());
        types.push(1);
    }
    let scores = (0..tokens.len()).map(|i| -(i as f32) / 7.0).collect();
    TokenizerTables::sentencepiece(tokens, types, scores)
}

/// The merges of [`handmade_bpe`] in rank order, as (left, right) in raw bytes: common
/// English pieces, runs of spaces and newlines, `'s`, `12`, and (rank 10) the two bytes
/// of `é`, a merge inside one character.
pub const BPE_MERGES: &[(&[u8], &[u8])] = &[
    (b" ", b"t"),
    (b"h", b"e"),
    (b" t", b"he"),
    (b"i", b"n"),
    (b"e", b"r"),
    (b" ", b" "),
    (b"  ", b"  "),
    (b"\n", b"\n"),
    (b"'", b"s"),
    (b"1", b"2"),
    (b"\xc3", b"\xa9"),
    (b"o", b"n"),
    (b" ", b"a"),
    (b" a", b"n"),
    (b"in", b"g"),
    (b" an", b"d"),
];

/// The control tokens of [`handmade_bpe`], last in the vocabulary.
pub const BPE_SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// A handmade byte-level BPE vocabulary: the 256 byte tokens (id = byte), one token per
/// merge of [`BPE_MERGES`] (ids 256..), then [`BPE_SPECIALS`] as control tokens:
/// `<|im_start|>` BOS, `<|im_end|>` EOS, `<|endoftext|>` end of turn, no unknown token.
/// `byte_level_form` is GPT-2's byte-to-unicode mapping (pass
/// `vtc_model::tokenizer::byte_level_form`).
pub fn handmade_bpe(byte_level_form: impl Fn(&[u8]) -> String, add_bos: bool) -> TokenizerTables {
    let mut tokens: Vec<Vec<u8>> = (0..=255u8)
        .map(|b| byte_level_form(&[b]).into_bytes())
        .collect();
    let mut merges = Vec::new();
    for &(l, r) in BPE_MERGES {
        merges.push(format!("{} {}", byte_level_form(l), byte_level_form(r)).into_bytes());
        tokens.push(byte_level_form(&[l, r].concat()).into_bytes());
    }
    let mut token_types = vec![1u8; tokens.len()];
    for s in BPE_SPECIALS {
        tokens.push(s.as_bytes().to_vec());
        token_types.push(3);
    }
    let n = tokens.len() as u32;
    TokenizerTables {
        tokens,
        token_types,
        scores: Vec::new(),
        merges,
        special: SpecialIds {
            bos: Some(n - 2),
            eos: Some(n - 1),
            eot: Some(n - 3),
            unk: None,
        },
        add_bos,
    }
}
