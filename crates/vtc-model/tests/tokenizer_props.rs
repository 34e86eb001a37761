//! Property tests of the tokenizer on a handmade byte-level vocabulary: all 256 byte
//! tokens, merges that build common multi-byte pieces, and ChatML control tokens.

use proptest::prelude::*;
use tvl_format::{PreTokenizer, TokenizerKind};
use vtc_model::tokenizer::{
    GPT2_PATTERN, LLAMA3_PATTERN, QWEN2_PATTERN, StreamDecoder, Tokenizer, byte_level_form,
};
use vtc_testdata::tokenizer::{BPE_MERGES, handmade_bpe};

/// The handmade byte-level BPE (all 256 byte tokens, `BPE_MERGES`, ChatML specials),
/// shared with the `tokenizer` fuzz target; no BOS added.
fn vocab(pre: PreTokenizer) -> Tokenizer {
    Tokenizer::new(vtc_testdata::tokenizer_data!(
        TokenizerKind::ByteLevelBpe,
        pre,
        handmade_bpe(byte_level_form, false)
    ))
    .unwrap()
}

/// Text biased towards what the pre-tokenizer and merges care about.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => proptest::sample::select(vec![
            "the", " the", "in", "ing", " and", "'s", "'t", "12", "3", " ", "  ", "   ", "\n",
            "\n\n", "\t", "é", "ü", "中文", "😀", "👨‍👩‍👧", "\u{a0}", "\u{3000}", "!", "?!", "<|im_end|>",
            "<|im_start|>", "<|im", "|>", "½",
        ]).prop_map(str::to_string),
        1 => any::<String>(),
        1 => any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

/// Every pre-tokenizer.
const ALL_PRE: [PreTokenizer; 4] = [
    PreTokenizer::SmolLm,
    PreTokenizer::Gpt2,
    PreTokenizer::Qwen2,
    PreTokenizer::Llama3,
];

/// The pieces of `s` per the regex (fancy-regex), digits isolated first for SmolLM.
fn regex_pieces(s: &str, pre: PreTokenizer) -> Vec<&str> {
    use std::sync::LazyLock;
    static RE: LazyLock<fancy_regex::Regex> =
        LazyLock::new(|| fancy_regex::Regex::new(GPT2_PATTERN).unwrap());
    static QWEN2: LazyLock<fancy_regex::Regex> =
        LazyLock::new(|| fancy_regex::Regex::new(QWEN2_PATTERN).unwrap());
    static LLAMA3: LazyLock<fancy_regex::Regex> =
        LazyLock::new(|| fancy_regex::Regex::new(LLAMA3_PATTERN).unwrap());
    let re = match pre {
        PreTokenizer::Qwen2 => &*QWEN2,
        PreTokenizer::Llama3 => &*LLAMA3,
        _ => &*RE,
    };
    let mut segments = Vec::new();
    match pre {
        PreTokenizer::Gpt2 | PreTokenizer::Qwen2 | PreTokenizer::Llama3 => segments.push(s),
        PreTokenizer::SmolLm => {
            // Digits as HF's `Digits` pre-tokenizer finds them: `char::is_numeric`.
            let mut last = 0;
            for (at, c) in s.char_indices().filter(|&(_, c)| c.is_numeric()) {
                segments.push(&s[last..at]);
                segments.push(&s[at..at + c.len_utf8()]);
                last = at + c.len_utf8();
            }
            segments.push(&s[last..]);
        }
    }
    segments
        .into_iter()
        .flat_map(|seg| re.find_iter(seg).map(|m| m.unwrap().as_str()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_inverts_encode(s in text(), special in any::<bool>()) {
        for pre in ALL_PRE {
            let tok = vocab(pre);
            let ids = tok.encode(&s, special).unwrap();
            prop_assert_eq!(tok.decode(&ids), s.clone());
            prop_assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
            if !special {
                prop_assert!(ids.iter().all(|&id| !tok.is_special(id)));
            }
        }
    }

    #[test]
    fn arbitrary_unicode_round_trips(s in any::<String>()) {
        let tok = vocab(PreTokenizer::SmolLm);
        prop_assert_eq!(tok.decode(&tok.encode(&s, true).unwrap()), s.clone());
        prop_assert_eq!(tok.decode(&tok.encode(&s, false).unwrap()), s);
    }

    /// Encoding is piecewise: the whole text gives the concatenation of its pre-tokens'
    /// encodings (no merge crosses a piece, and the per-call cache changes nothing).
    #[test]
    fn encoding_is_the_concatenation_of_the_pieces(s in text()) {
        for pre in ALL_PRE {
            let tok = vocab(pre);
            let whole = tok.encode(&s, false).unwrap();
            let mut parts = Vec::new();
            for p in regex_pieces(&s, pre) {
                parts.extend(tok.encode(p, false).unwrap());
            }
            prop_assert_eq!(whole, parts);
        }
    }

    /// Streaming any id sequence (bytes of broken characters, specials, ids outside the
    /// vocabulary) yields exactly `decode` of the whole sequence.
    #[test]
    fn stream_decoder_matches_decode(
        ids in proptest::collection::vec(
            prop_oneof![
                6 => 0u32..256,
                2 => 0xC0u32..0xF8,   // lead bytes: start characters that may not finish
                2 => 0x80u32..0xC0,   // continuation bytes
                2 => 256u32..275,     // merged tokens and specials
                1 => 275u32..300,     // outside the vocabulary
            ],
            0..60,
        )
    ) {
        let tok = vocab(PreTokenizer::SmolLm);
        let mut sd = StreamDecoder::new();
        let mut streamed = String::new();
        for &id in &ids {
            let piece = sd.push(&tok, id);
            streamed.push_str(&piece);
        }
        streamed.push_str(&sd.flush());
        prop_assert_eq!(streamed, tok.decode(&ids));
    }

    /// Streaming the encoding of any text releases the text in order, never a broken
    /// character, and ends with nothing pending.
    #[test]
    fn stream_decoder_over_encoded_text(s in text()) {
        let tok = vocab(PreTokenizer::SmolLm);
        let mut sd = StreamDecoder::new();
        let mut streamed = String::new();
        for id in tok.encode(&s, true).unwrap() {
            let piece = sd.push(&tok, id);
            let broken = piece.contains(char::REPLACEMENT_CHARACTER)
                && !s.contains(char::REPLACEMENT_CHARACTER);
            prop_assert!(!broken, "broken character in {:?}", piece);
            streamed.push_str(&piece);
        }
        prop_assert!(!sd.has_pending());
        prop_assert_eq!(sd.flush(), "");
        prop_assert_eq!(streamed, s);
    }
}

#[test]
fn vocab_is_well_formed() {
    let tok = vocab(PreTokenizer::SmolLm);
    assert_eq!(tok.vocab_size(), 256 + BPE_MERGES.len() + 3);
    assert_eq!(tok.token_bytes(256 + 10), Some("é".as_bytes()));
    assert_eq!(tok.encode("the", false).unwrap().len(), 2); // "t" + "he": " t" needs a space
    assert_eq!(tok.encode(" the", false).unwrap(), [256 + 2]);
    assert_eq!(tok.decode(&[tok.eos_id().unwrap()]), "<|im_end|>");
}
