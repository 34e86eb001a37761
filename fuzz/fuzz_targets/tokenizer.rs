//! Bytes -> tokenizers: build, encode, decode, stream-decode. The first byte picks:
//! - 0: SmolLM2-135M-Instruct's byte-level BPE (49152 tokens, 48900 merges, read once
//!   from the TVL file in `$VTC_FUZZ_TVL`, default
//!   `~/.cache/vtc/smollm2-135m-instruct.q4_1.tvl`; the handmade BPE if absent); the
//!   rest is the text. `decode(encode(s)) == s` whenever every byte of `s` has a token.
//! - 1: a handmade byte-level BPE (all 256 byte tokens, merges, ChatML specials):
//!   `decode(encode(s)) == s` always.
//! - 2: a handmade SentencePiece vocabulary (`<0xXX>` byte fallback, pieces scored, `<s>`
//!   `</s>` `<unk>`): `decode(encode(s))` is `s` with each literal `▁` read as a space.
//! - otherwise: the tables themselves come from the input (see [`tables`]), to hit
//!   `Tokenizer::new`'s validation (ids out of range, merges naming unknown tokens,
//!   tokens outside the byte-level form, ...), then encode/decode on the text.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tvl_format::{PreTokenizer, TokenizerKind};
use vtc_model::tokenizer::{StreamDecoder, Tokenizer, TokenizerData, byte_level_form};

fn smollm2() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let path = std::env::var_os("VTC_FUZZ_TVL")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| {
                    std::path::Path::new(&h).join(".cache/vtc/smollm2-135m-instruct.q4_1.tvl")
                })
            });
        let loaded = path
            .and_then(|p| tvl_loader::TvlFile::open(p).ok())
            .and_then(|f| {
                vtc_model::Model::load(&f)
                    .ok()
                    .map(|m| m.tokenizer().clone())
            });
        loaded.unwrap_or_else(|| handmade_bpe().clone())
    })
}

/// The handmade byte-level BPE of `vtc-testdata` (shared with the property tests of
/// `vtc-model`), BOS added.
fn handmade_bpe() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        Tokenizer::new(vtc_testdata::tokenizer_data!(
            TokenizerKind::ByteLevelBpe,
            PreTokenizer::SmolLm,
            vtc_testdata::tokenizer::handmade_bpe(byte_level_form, true)
        ))
        .expect("handmade BPE")
    })
}

/// The handmade SentencePiece vocabulary of `vtc-testdata` (shared with
/// `vtc-model/tests/fuzz_regressions.rs`).
fn handmade_spm() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        Tokenizer::new(vtc_testdata::tokenizer_data!(
            TokenizerKind::SentencePiece,
            PreTokenizer::Gpt2,
            vtc_testdata::tokenizer::handmade_spm()
        ))
        .expect("handmade SentencePiece")
    })
}

/// Encode, check ids, decode, stream-decode; decode must give `round_trip` if given.
fn exercise(tok: &Tokenizer, text: &str, round_trip: Option<&str>) {
    for special in [false, true] {
        let ids = tok
            .encode(text, special)
            .expect("a tokenizer with a vocabulary encodes");
        assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
        let decoded = tok.decode(&ids);
        if let Some(want) = round_trip {
            assert_eq!(decoded, want, "special: {special}, ids {ids:?}");
        }
        let mut sd = StreamDecoder::new();
        for &id in &ids {
            let _ = sd.push(tok, id);
        }
        let _ = sd.flush();
    }
    let _ = tok.encode_prompt(text);
}

/// The tables from the input: byte 0 flags (bit 0 SentencePiece, bit 1 SmolLM
/// pre-tokenizer, bit 2 add_bos, bit 3 scores, bit 4 types), bytes 1..5 the bos, eos,
/// eot and unk ids (255 = none), then records separated by 0xFE: the first byte of a
/// record says token (0: type from the next byte), merge (1) or text (2).
fn tables(data: &[u8]) -> Option<(TokenizerData, String)> {
    let (head, rest) = data.split_at_checked(5)?;
    let flags = head[0];
    let id = |b: u8| (b != 255).then_some(u32::from(b));
    let (mut tokens, mut types, mut merges, mut text) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rec in rest.split(|&b| b == 0xFE) {
        let Some((&kind, body)) = rec.split_first() else {
            continue;
        };
        match kind % 3 {
            0 => {
                let (ty, s) = body.split_first().map_or((1, body), |(&t, s)| (t % 8, s));
                tokens.push(s.to_vec());
                types.push(ty);
            }
            1 => merges.push(body.to_vec()),
            _ => text.extend_from_slice(body),
        }
    }
    let n = tokens.len();
    let data = TokenizerData {
        kind: if flags & 1 != 0 {
            TokenizerKind::SentencePiece
        } else {
            TokenizerKind::ByteLevelBpe
        },
        pretokenizer: if flags & 2 != 0 {
            PreTokenizer::SmolLm
        } else {
            PreTokenizer::Gpt2
        },
        tokens,
        token_types: if flags & 16 != 0 { types } else { Vec::new() },
        scores: if flags & 8 != 0 {
            (0..n).map(|i| (i % 13) as f32 - 6.0).collect()
        } else {
            Vec::new()
        },
        merges,
        bos_id: id(head[1]),
        eos_id: id(head[2]),
        eot_id: id(head[3]),
        unk_id: id(head[4]),
        add_bos: flags & 4 != 0,
        add_space_prefix: flags & 32 == 0,
    };
    Some((data, String::from_utf8_lossy(&text).into_owned()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match mode {
        0 => {
            let tok = smollm2();
            // Bytes without a token are dropped (documented): only then no round trip.
            let all_bytes = text
                .bytes()
                .all(|b| tok.token_id(&byte_level_form(&[b])).is_some());
            exercise(tok, &text, all_bytes.then_some(&*text));
        }
        1 => exercise(handmade_bpe(), &text, Some(&text)),
        // A literal `▁` encodes like a space and decodes to one (documented, as in
        // SentencePiece and llama.cpp; found by this target).
        2 => exercise(handmade_spm(), &text, Some(&text.replace('\u{2581}', " "))),
        _ => {
            let Some((tables, text)) = tables(rest) else {
                return;
            };
            match Tokenizer::new(tables) {
                Ok(tok) => exercise(&tok, &text, None),
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
    }
});
