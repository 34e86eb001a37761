//! Inputs found by the cargo-fuzz targets in `fuzz/` (see `fuzz/README.md`), kept so that
//! `cargo test` checks them without cargo-fuzz.

use tvl_format::{PreTokenizer, TokenizerKind};
use vtc_model::tokenizer::{StreamDecoder, Tokenizer};

/// The `tokenizer` target's handmade SentencePiece vocabulary (mode 2): `<unk>`, `<s>`,
/// `</s>`, the 256 byte tokens, then scored pieces.
fn handmade_spm() -> Tokenizer {
    Tokenizer::new(vtc_testdata::tokenizer_data!(
        TokenizerKind::SentencePiece,
        PreTokenizer::Gpt2,
        vtc_testdata::tokenizer::handmade_spm()
    ))
    .unwrap()
}

/// What the target checks: ids inside the vocabulary, the decoded text, streaming.
fn round_trip(tok: &Tokenizer, text: &str, want: &str) {
    for special in [false, true] {
        let ids = tok.encode(text, special).unwrap();
        assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
        assert_eq!(tok.decode(&ids), want, "special: {special}, ids {ids:?}");
        let mut sd = StreamDecoder::new();
        let mut streamed = String::new();
        for &id in &ids {
            streamed.push_str(&sd.push(tok, id));
        }
        streamed.push_str(&sd.flush());
        // Streaming keeps the dummy-prefix spaces (documented): the same text otherwise.
        assert_eq!(streamed.replace(' ', ""), want.replace(' ', ""));
    }
}

/// `tokenizer` target, mode 2 (crash-369d4d0d...): the text holds a literal `▁`
/// (U+2581). SentencePiece (and llama.cpp) read it as a space, so it decodes to a space:
/// the round trip holds for the text with `▁` replaced by spaces, as now documented on
/// `Tokenizer::decode`; before, the docs promised `decode(encode(s)) == s` for every `s`.
#[test]
fn spm_literal_space_mark_decodes_to_a_space() {
    const CRASH: &[u8] = &[
        0x02, 0x8e, 0x68, 0x2c, 0x20, 0x3e, 0xef, 0xe0, 0x39, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0xd7, 0xff, 0xe2, 0x96, 0x81, 0xa8, 0xa8, 0xa8, 0xa8, 0xa8, 0xa8, 0xa8, 0xa8, 0xa8,
        0xff, 0xe0, 0x8e, 0x68, 0x2c, 0x00, 0x3e, 0xef, 0xbf, 0xe9, 0x03, 0xe9, 0xe9, 0xe9,
    ];
    let tok = handmade_spm();
    let text = String::from_utf8_lossy(&CRASH[1..]);
    assert!(text.contains('\u{2581}'));
    round_trip(&tok, &text, &text.replace('\u{2581}', " "));
    round_trip(&tok, "a\u{2581}b", "a b");
    round_trip(&tok, "\u{2581}the", " the");
    // Without a literal mark the text comes back unchanged.
    round_trip(&tok, "the 中文 <s> x\u{2580}", "the 中文 <s> x\u{2580}");
}
