//! The SentencePiece-style tokenizer on llama2.c's real vocabulary
//! (`../shared/data/llama2c-tokenizer.bin`, the Llama 2 vocabulary of 32000 tokens).
//!
//! `data/llama2c-tokenizer-cases.json` holds texts (prose, code, numbers, whitespace runs,
//! accents, Cyrillic and Greek, CJK, emoji, rare code points, 60 seeded random strings)
//! with the ids that llama2.c's `run.c` `encode()` gives them (BOS, dummy prefix, code
//! point lookup, `<0xXX>` byte fallback, merges by score), from an independent Python
//! re-implementation of `run.c`: `data/gen_llama2c_tokenizer_cases.py`.

mod common;

use std::path::PathBuf;

use proptest::prelude::*;
use tvl_format::{PreTokenizer, TokenizerKind};
use vtc_import::llama2c::Vocab;
use vtc_model::tokenizer::{StreamDecoder, Tokenizer, token_type};
use vtc_testdata::tokenizer::TokenizerTables;

fn vocab_path() -> PathBuf {
    vtc_testdata::shared_data("llama2c-tokenizer.bin")
}

fn tokenizer() -> &'static Tokenizer {
    static TOK: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
    TOK.get_or_init(|| {
        let v = Vocab::parse(&std::fs::read(vocab_path()).unwrap()).unwrap();
        Tokenizer::new(vtc_testdata::tokenizer_data!(
            TokenizerKind::SentencePiece,
            PreTokenizer::Gpt2,
            TokenizerTables::sentencepiece(v.tokens, v.types, v.scores)
        ))
        .unwrap()
    })
}

#[test]
fn vocabulary_parses_into_sentencepiece_form() {
    let v = Vocab::parse(&std::fs::read(vocab_path()).unwrap()).unwrap();
    assert_eq!((v.tokens.len(), v.max_token_length), (32000, 27));
    assert_eq!(v.tokens[1], b"<s>");
    assert_eq!(v.tokens[2], b"</s>");
    assert_eq!(v.tokens[3], b"<0x00>");
    assert_eq!(v.tokens[29871], "\u{2581}".as_bytes());
    assert_eq!(v.tokens[9038], "\u{2581}Once".as_bytes());
    assert_eq!(&v.types[..4], &[2, 3, 3, 6]);
    assert_eq!(v.types.iter().filter(|&&t| t == 6).count(), 256);
    let tok = tokenizer();
    assert_eq!(tok.token_type(13), Some(token_type::BYTE));
    assert_eq!(tok.token_bytes(13), Some(&b"\n"[..]));
    assert_eq!(tok.token_bytes(9038), Some(&b" Once"[..]));
    assert_eq!(tok.token_id("<s>"), Some(1));
}

#[test]
fn ids_equal_run_c() {
    let cases = common::tokenizer_cases("llama2c-tokenizer-cases.json");
    assert!(cases.len() >= 70);
    let tok = tokenizer();
    let mut total = 0;
    for case in &cases {
        let (name, text, want) = (&case.name, case.text.as_str(), &case.ids);
        let got = tok.encode_prompt(text).unwrap();
        assert_eq!(got, *want, "case {name}: {text:?}");
        assert_eq!(tok.decode(&got[1..]), text, "case {name}: decode");
        total += want.len();
    }
    assert!(total > 1000);
}

#[test]
fn encoding_details_follow_run_c() {
    let tok = tokenizer();
    // The famous first prompt of llama2.c.
    assert_eq!(
        tok.encode_prompt("Once upon a time").unwrap(),
        [1, 9038, 2501, 263, 931]
    );
    // Empty text: no dummy prefix.
    assert_eq!(tok.encode("", false).unwrap(), Vec::<u32>::new());
    // A newline has no token: byte fallback <0x0A> = 13.
    assert_eq!(tok.encode("\n", false).unwrap(), [29871, 13]);
    // Decoding drops the dummy prefix after BOS, and streaming keeps spaces.
    let ids = tok.encode_prompt("Hello world").unwrap();
    assert_eq!(tok.decode(&ids), "<s>Hello world");
    let mut s = StreamDecoder::new();
    let streamed: String = ids[1..].iter().map(|&id| s.push(tok, id)).collect();
    assert_eq!(streamed, " Hello world");
    // A literal "<s>" is BOS only with parse_special; the text after it gets the prefix.
    assert_eq!(tok.encode("<s>Hi", true).unwrap()[0], 1);
    assert_ne!(tok.encode("<s>Hi", false).unwrap()[0], 1);
    assert_eq!(tok.decode(&tok.encode("a<s>b", true).unwrap()), "a<s>b");
}

#[test]
fn encoding_speed() {
    // Reported, not asserted (timed tests are not reliable on shared machines).
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/english.txt"),
    )
    .unwrap_or_else(|_| "Once upon a time, there was a little girl named Lily. ".repeat(300));
    let text = text.repeat(8);
    let tok = tokenizer();
    let t = std::time::Instant::now();
    let ids = tok.encode(&text, false).unwrap();
    let s = t.elapsed().as_secs_f64();
    eprintln!(
        "llama2.c tokenizer: {} bytes -> {} ids in {:.1} ms ({:.1} MB/s)",
        text.len(),
        ids.len(),
        s * 1e3,
        text.len() as f64 / s / 1e6
    );
    assert_eq!(tok.decode(&ids), text);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ascii_round_trips(s in "[ -~\t\n]{0,200}") {
        let tok = tokenizer();
        prop_assert_eq!(tok.decode(&tok.encode(&s, false).unwrap()), s.clone());
        let ids = tok.encode_prompt(&s).unwrap();
        prop_assert_eq!(ids[0], 1);
        prop_assert_eq!(tok.decode(&ids[1..]), s);
    }

    #[test]
    fn any_utf8_round_trips(s in any::<String>(), special in any::<bool>()) {
        let tok = tokenizer();
        let ids = tok.encode(&s, special).unwrap();
        prop_assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
        // A literal `▁` reads as a space (SentencePiece's rule; found by fuzz/ tokenizer).
        prop_assert_eq!(tok.decode(&ids), s.replace('\u{2581}', " "));
    }

    #[test]
    fn space_marks_in_text_decode_to_spaces(a in "[a-z ]{0,8}", b in "[a-z ]{0,8}") {
        let tok = tokenizer();
        let s = format!("{a}\u{2581}{b}");
        let ids = tok.encode(&s, false).unwrap();
        prop_assert_eq!(tok.decode(&ids), format!("{a} {b}"));
    }
}
