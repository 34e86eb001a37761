//! The hostile-input catalogue of the importers, part 2 (part 1: `malformed.rs` for the
//! GGUF container, `convert_errors.rs` for GGUF conversion, `llama2c_hf.rs`): model
//! configurations out of range in each input format (GGUF metadata, llama2.c header,
//! Hugging Face `config.json`), token ids outside the vocabulary, truncations at every
//! field of llama2.c checkpoints and `tokenizer.bin`, and truncated or inconsistent
//! safetensors. Every case asserts the typed error variant and that the message names
//! the field (what) and the value or offset (where).

mod common;

use std::path::Path;

use common::{gt, tiny_llama};
use vtc_import::convert::{ConvertOptions, ImportError, OutDType};
use vtc_import::hf::HfError;
use vtc_import::llama2c::{Checkpoint, Header, Llama2cError, Vocab};
use vtc_import::{GgufFile, convert};
use vtc_testdata::hf;
use vtc_testdata::llama2c::{
    HUGE_PARAMS, TINY_TOKENS, legacy_checkpoint, legacy_header, tokenizer_bin, vocab_entry,
};

// ---------------------------------------------------------------------------------
// GGUF metadata out of range.

fn gguf_err(edit: impl FnOnce(&mut common::GgufBuilder)) -> ImportError {
    let mut b = tiny_llama(gt::F32, 3, true);
    edit(&mut b);
    let g = GgufFile::from_bytes(b.build()).unwrap();
    match convert(&g, &ConvertOptions::default(), &mut |_, _| {}) {
        Ok(_) => panic!("converted"),
        Err(e) => e,
    }
}

/// `InvalidConfig` whose message contains every one of `words`.
fn assert_invalid(e: &ImportError, words: &[&str]) {
    let ImportError::InvalidConfig { reason } = e else {
        panic!("expected InvalidConfig, got {e:?}");
    };
    for w in words {
        assert!(reason.contains(w), "{reason:?} lacks {w:?}");
    }
}

#[test]
fn gguf_zero_heads() {
    let e = gguf_err(|b| {
        b.u32("llama.attention.head_count", 0);
    });
    assert_invalid(&e, &["llama.attention.head_count = 0", "1..=2^20"]);
}

#[test]
fn gguf_zero_kv_heads() {
    let e = gguf_err(|b| {
        b.u32("llama.attention.head_count_kv", 0);
    });
    assert_invalid(&e, &["llama.attention.head_count_kv = 0", "1..=2^20"]);
}

#[test]
fn gguf_kv_heads_not_dividing_heads() {
    let e = gguf_err(|b| {
        b.u32("llama.attention.head_count_kv", 3);
    });
    assert_invalid(&e, &["llama.attention.head_count_kv = 3", "must divide"]);
}

#[test]
fn gguf_odd_head_dim_for_rope() {
    // Given explicitly...
    let e = gguf_err(|b| {
        b.u32("llama.rope.dimension_count", 15);
    });
    assert_invalid(&e, &["llama.rope.dimension_count = 15", "even"]);
    // ... and implied by embedding_length / head_count (64 / 64 = 1).
    let e = gguf_err(|b| {
        b.remove("llama.rope.dimension_count")
            .u32("llama.attention.head_count", 64);
    });
    assert_invalid(&e, &["embedding_length / attention.head_count = 1", "even"]);
}

#[test]
fn gguf_eps_nan_negative_zero_infinite() {
    for eps in [f32::NAN, -1e-5, 0.0, f32::INFINITY] {
        let e = gguf_err(|b| {
            b.f32("llama.attention.layer_norm_rms_epsilon", eps);
        });
        assert_invalid(&e, &["layer_norm_rms_epsilon", &eps.to_string()]);
    }
}

#[test]
fn gguf_theta_nan_negative_zero_infinite() {
    for theta in [f32::NAN, -10000.0, 0.0, f32::NEG_INFINITY] {
        let e = gguf_err(|b| {
            b.f32("llama.rope.freq_base", theta);
        });
        assert_invalid(&e, &["rope.freq_base", &theta.to_string()]);
    }
}

#[test]
fn gguf_special_ids_outside_the_vocabulary() {
    for key in [
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.unknown_token_id",
    ] {
        for id in [40, 1000, u32::MAX - 1] {
            let e = gguf_err(|b| {
                b.u32(key, id);
            });
            match &e {
                ImportError::BadTokenId {
                    key: k,
                    id: got,
                    vocab: 40,
                } => assert_eq!((k.as_str(), *got), (key, u64::from(id))),
                other => panic!("{key} = {id}: {other:?}"),
            }
            let msg = e.to_string();
            assert!(msg.contains(key) && msg.contains(&id.to_string()), "{msg}");
        }
    }
}

#[test]
fn gguf_vocab_size_disagreeing_with_the_tokens() {
    // A vocab_size key claiming 2^20 tokens with 40 in the file: refused, not padded.
    let e = gguf_err(|b| {
        b.u32("llama.vocab_size", 1 << 20);
    });
    assert!(
        matches!(e, ImportError::TableLength { ref key, expected, found: 40 }
            if key == "tokenizer.ggml.tokens" && expected == 1 << 20),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------
// llama2.c header out of range.

fn bad_header(p: [i32; 7]) -> (&'static str, i64, &'static str) {
    match Header::parse(&legacy_header(p)) {
        Err(Llama2cError::BadHeader { field, value, why }) => (field, value, why),
        other => panic!("{p:?}: {other:?}"),
    }
}

#[test]
fn llama2c_zero_heads_and_kv_heads() {
    assert_eq!(
        bad_header([8, 16, 1, 0, 1, 10, 4]),
        ("n_heads", 0, "must be in 1..=2^20")
    );
    assert_eq!(
        bad_header([8, 16, 1, 2, 0, 10, 4]),
        ("n_kv_heads", 0, "must be in 1..=2^20")
    );
}

#[test]
fn llama2c_kv_heads_not_dividing_heads() {
    assert_eq!(
        bad_header([12, 16, 1, 2, 3, 10, 4]),
        ("n_kv_heads", 3, "must divide n_heads")
    );
}

#[test]
fn llama2c_odd_head_dim_for_rope() {
    // 12 / 4 = 3.
    assert_eq!(
        bad_header([12, 16, 1, 4, 1, 10, 4]),
        ("n_heads", 4, "must divide dim into even head dims")
    );
    // 8 / 3 is not whole.
    assert_eq!(bad_header([8, 16, 1, 3, 1, 10, 4]).0, "n_heads");
}

#[test]
fn llama2c_sizes_out_of_range() {
    for (i, field) in [
        "dim",
        "hidden_dim",
        "n_layers",
        "n_heads",
        "n_kv_heads",
        "vocab_size",
        "seq_len",
    ]
    .into_iter()
    .enumerate()
    {
        for v in [0, -7, (1 << 20) + 1, i32::MIN, i32::MAX] {
            let mut p = [8, 16, 1, 2, 1, 10, 4];
            p[i] = v;
            if field == "vocab_size" && v < 0 && v > -(1 << 20) {
                continue; // a negative vocab size flags a separate classifier
            }
            let (f, value, why) = bad_header(p);
            assert_eq!(
                (f, value, why),
                (field, i64::from(v), "must be in 1..=2^20")
            );
            let msg = Header::parse(&legacy_header(p)).unwrap_err().to_string();
            assert!(msg.contains(field) && msg.contains(&v.to_string()), "{msg}");
        }
    }
}

/// A version-1 or -2 header (256 bytes) of the tiny shape.
fn versioned_header(version: i32, shared: u8, group: i32) -> Vec<u8> {
    vtc_testdata::llama2c::versioned_header(version, [8, 16, 1, 2, 1, 10, 4], shared, group)
}

#[test]
fn llama2c_versioned_header_fields() {
    let field = |b: Vec<u8>| match Header::parse(&b) {
        Err(Llama2cError::BadHeader { field, value, .. }) => (field, value),
        other => panic!("{other:?}"),
    };
    assert_eq!(field(versioned_header(1, 2, 0)), ("shared_classifier", 2));
    assert_eq!(field(versioned_header(2, 1, 0)), ("group_size", 0));
    assert_eq!(field(versioned_header(2, 1, -64)), ("group_size", -64));
    // A group size that does not divide the tensors: named with the tensor.
    let mut b = versioned_header(2, 1, 3);
    b.resize(4096, 0);
    match Checkpoint::parse(&b) {
        Err(Llama2cError::GroupSize {
            tensor,
            elements: 80,
            group_size: 3,
        }) => assert_eq!(tensor, "token_embd.weight"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn llama2c_truncated_at_every_header_field() {
    let legacy = legacy_header([8, 16, 1, 2, 1, 10, 4]);
    for cut in 0..legacy.len() {
        match Header::parse(&legacy[..cut]) {
            Err(Llama2cError::ShortHeader { len, needed: 28 }) => assert_eq!(len, cut as u64),
            other => panic!("legacy cut at {cut}: {other:?}"),
        }
    }
    let v1 = versioned_header(1, 1, 0);
    for cut in 28..v1.len() {
        match Header::parse(&v1[..cut]) {
            Err(Llama2cError::ShortHeader { len, needed: 256 }) => assert_eq!(len, cut as u64),
            other => panic!("v1 cut at {cut}: {other:?}"),
        }
    }
}

/// The tiny legacy checkpoint of `llama2c_hf.rs` (dim 8, vocab 10, separate classifier).
fn tiny_legacy() -> Vec<u8> {
    legacy_checkpoint([8, 16, 1, 2, 1, -10, 4], |i| i as f32 * 1e-3)
}

#[test]
fn llama2c_truncated_at_every_tensor() {
    let good = tiny_legacy();
    let full = good.len() as u64;
    // Every 4-byte step from the end of the header to one short of the full file.
    for cut in (28..good.len()).step_by(4).chain([good.len() - 1]) {
        match Checkpoint::parse(&good[..cut]) {
            Err(Llama2cError::SizeMismatch {
                version: 0,
                expected,
                found,
            }) => assert_eq!((expected, found), (full, cut as u64)),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // A header claiming 2^20 layers after a 28-byte file: refused by size, at once.
    let huge = legacy_header(HUGE_PARAMS);
    assert!(matches!(
        Checkpoint::parse(&huge),
        Err(Llama2cError::SizeMismatch { found: 28, .. })
    ));
}

/// A `tokenizer.bin` of 10 tokens, for `tiny_legacy`.
fn tiny_vocab() -> Vec<u8> {
    let more: [&[u8]; 2] = [b"e", b"t"];
    tokenizer_bin(8, &[&TINY_TOKENS[..], &more].concat())
}

#[test]
fn llama2c_tokenizer_truncated_at_every_byte() {
    let good = tiny_vocab();
    assert_eq!(Vocab::parse(&good).unwrap().tokens.len(), 10);
    let mut boundaries = 0;
    for cut in 0..good.len() {
        match Vocab::parse(&good[..cut]) {
            Err(Llama2cError::TokenizerTruncated {
                offset,
                needed,
                available,
                ..
            }) => {
                assert!(offset <= cut as u64 && available < needed, "cut {cut}");
                assert_eq!(available, cut as u64 - offset.min(cut as u64));
            }
            // Cut between entries: fewer tokens than the model's vocabulary.
            Ok(v) => {
                boundaries += 1;
                assert!(v.tokens.len() < 10);
                let e = vtc_import::llama2c::convert(
                    &tiny_legacy(),
                    Some(v),
                    &ConvertOptions::default(),
                    &mut |_, _| {},
                )
                .err()
                .expect("refused");
                assert!(
                    matches!(
                        e,
                        ImportError::Llama2c(Llama2cError::TokenCount { expected: 10, .. })
                    ),
                    "{e:?}"
                );
            }
            Err(other) => panic!("cut at {cut}: {other:?}"),
        }
    }
    assert_eq!(
        boundaries, 10,
        "the header alone and after each of 9 entries"
    );
}

#[test]
fn llama2c_tokenizer_lengths_and_counts() {
    // A length above max_token_length, and a huge length under a huge maximum: both
    // refused before any allocation of that size.
    let mut b = 4i32.to_le_bytes().to_vec();
    b.extend(vocab_entry(0.0, b"abcde"));
    match Vocab::parse(&b) {
        Err(Llama2cError::TokenLength {
            token: 0,
            offset: 8,
            len: 5,
            max: 4,
        }) => {}
        other => panic!("{other:?}"),
    }
    let mut b = i32::MAX.to_le_bytes().to_vec();
    b.extend(0f32.to_le_bytes());
    b.extend(i32::MAX.to_le_bytes());
    b.extend(b"xy");
    match Vocab::parse(&b) {
        Err(Llama2cError::TokenizerTruncated {
            token: 0,
            offset: 12,
            needed,
            available: 2,
        }) => assert_eq!(needed, i32::MAX as u64),
        other => panic!("{other:?}"),
    }
    // More tokens than the model's vocabulary (the special ids then exist, but the
    // table is not the model's).
    let mut more = tiny_vocab();
    more.extend(vocab_entry(0.0, b"extra"));
    let e = vtc_import::llama2c::convert(
        &tiny_legacy(),
        Some(Vocab::parse(&more).unwrap()),
        &ConvertOptions::default(),
        &mut |_, _| {},
    )
    .err()
    .expect("refused");
    assert!(
        matches!(
            e,
            ImportError::Llama2c(Llama2cError::TokenCount {
                expected: 10,
                found: 11
            })
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("11 tokens"));
}

// ---------------------------------------------------------------------------------
// Hugging Face config.json out of range, token ids, safetensors.

const CONFIG: &str = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 8,
    "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
    "num_key_value_heads": 1, "vocab_size": 4, "max_position_embeddings": 16,
    "rope_theta": 10000.0, "rms_norm_eps": 1e-05, "tie_word_embeddings": true}"#;

const TOKENIZER: &str = r#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "c": 3},
    "merges": ["a b"]}, "pre_tokenizer": {"type": "ByteLevel"}}"#;

/// The weights of `CONFIG`: every tensor F32, values 0.25.
fn safetensors_bytes() -> Vec<u8> {
    hf::safetensors(safetensors::Dtype::F32, hf::tiny_llama_tensors(4), |n| {
        0.25f32.to_le_bytes().repeat(n)
    })
}

/// Write a directory (config, weights, optional tokenizer) and convert it.
fn hf(config: &str, weights: &[u8], tokenizer: Option<&str>) -> Result<(), ImportError> {
    let dir = tempfile::tempdir().unwrap();
    let d: &Path = dir.path();
    std::fs::write(d.join("config.json"), config).unwrap();
    std::fs::write(d.join("model.safetensors"), weights).unwrap();
    if let Some(t) = tokenizer {
        std::fs::write(d.join("tokenizer.json"), t).unwrap();
    }
    let opts = ConvertOptions {
        dtype: OutDType::F32,
        ..ConvertOptions::default()
    };
    vtc_import::hf::convert_dir(d, &opts, &mut |_, _| {}).map(|_| ())
}

fn hf_config_err(from: &str, to: &str) -> ImportError {
    assert!(CONFIG.contains(from), "{from}");
    hf(
        &CONFIG.replace(from, to),
        &safetensors_bytes(),
        Some(TOKENIZER),
    )
    .unwrap_err()
}

#[test]
fn hf_the_base_directory_converts() {
    hf(CONFIG, &safetensors_bytes(), Some(TOKENIZER)).unwrap();
}

#[test]
fn hf_zero_heads_and_kv_heads() {
    let e = hf_config_err("\"num_attention_heads\": 2", "\"num_attention_heads\": 0");
    assert_invalid(&e, &["num_attention_heads = 0"]);
    let e = hf_config_err("\"num_key_value_heads\": 1", "\"num_key_value_heads\": 0");
    assert_invalid(&e, &["num_key_value_heads = 0"]);
}

#[test]
fn hf_kv_heads_not_dividing_heads() {
    let e = hf_config_err(
        "\"num_attention_heads\": 2,\n    \"num_key_value_heads\": 1",
        "\"num_attention_heads\": 4,\n    \"num_key_value_heads\": 3",
    );
    assert_invalid(&e, &["num_key_value_heads = 3", "must divide"]);
}

#[test]
fn hf_odd_head_dim_for_rope() {
    // 8 / 8 = 1, and 8 / 3 is not whole.
    for heads in [8, 3] {
        let e = hf_config_err(
            "\"num_attention_heads\": 2,\n    \"num_key_value_heads\": 1",
            &format!("\"num_attention_heads\": {heads},\n    \"num_key_value_heads\": 1"),
        );
        if heads == 8 {
            assert_invalid(&e, &["hidden_size / num_attention_heads = 1", "even"]);
        } else {
            assert_invalid(&e, &["hidden_size 8", "num_attention_heads 3"]);
        }
    }
}

#[test]
fn hf_eps_and_theta_out_of_range() {
    for (from, to, word) in [
        (
            "\"rms_norm_eps\": 1e-05",
            "\"rms_norm_eps\": -1e-05",
            "rms_norm_eps = -0.00001",
        ),
        (
            "\"rms_norm_eps\": 1e-05",
            "\"rms_norm_eps\": 0",
            "rms_norm_eps = 0",
        ),
        (
            "\"rope_theta\": 10000.0",
            "\"rope_theta\": 0.0",
            "rope_theta = 0",
        ),
        (
            "\"rope_theta\": 10000.0",
            "\"rope_theta\": -5",
            "rope_theta = -5",
        ),
        // Finite in JSON, infinite as f32.
        (
            "\"rope_theta\": 10000.0",
            "\"rope_theta\": 1e39",
            "rope_theta = inf",
        ),
        (
            "\"rms_norm_eps\": 1e-05",
            "\"rms_norm_eps\": 1e-50",
            "rms_norm_eps = 0",
        ),
    ] {
        let e = hf_config_err(from, to);
        assert_invalid(&e, &[word]);
    }
    // Not a number at all (JSON has no NaN): a typed field error naming the field.
    let e = hf_config_err("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": \"NaN\"");
    assert!(
        matches!(e, ImportError::Hf(HfError::BadField { ref field, ref found, .. })
            if field == "rms_norm_eps" && found == "\"NaN\""),
        "{e:?}"
    );
}

#[test]
fn hf_sizes_out_of_range() {
    for field in [
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "vocab_size",
    ] {
        for v in ["0", "1048577"] {
            let from = CONFIG
                .split(',')
                .find(|kv| kv.contains(field))
                .unwrap()
                .trim();
            let e = hf_config_err(from, &format!("\"{field}\": {v}"));
            assert_invalid(&e, &[&format!("{field} = {v}")]);
        }
        let from = CONFIG
            .split(',')
            .find(|kv| kv.contains(field))
            .unwrap()
            .trim();
        let e = hf_config_err(from, &format!("\"{field}\": 4294967296"));
        assert!(
            matches!(e, ImportError::Hf(HfError::BadField { field: ref f, .. }) if f == field),
            "{e:?}"
        );
    }
}

#[test]
fn hf_vocab_size_bounded_by_the_embedding_before_the_tokenizer() {
    // 2^20 tokens claimed, 4 rows of embedding present: a shape error naming the
    // tensor, before a slot per claimed token is allocated (see also import_alloc.rs).
    let e = hf_config_err("\"vocab_size\": 4", "\"vocab_size\": 1048576");
    match e {
        ImportError::Hf(HfError::Shape {
            tensor,
            expected,
            found,
        }) => {
            assert_eq!(tensor, "model.embed_tokens.weight");
            assert_eq!((expected, found), (vec![1 << 20, 8], vec![4, 8]));
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn hf_special_ids_outside_the_vocabulary() {
    for (field, json) in [
        ("bos_token_id", "\"bos_token_id\": 4"),
        ("eos_token_id", "\"eos_token_id\": [4, 1]"),
        ("eos_token_id", "\"eos_token_id\": 4294967295"),
    ] {
        let e = hf_config_err(
            "\"tie_word_embeddings\": true",
            &format!("{json}, \"tie_word_embeddings\": true"),
        );
        match &e {
            ImportError::Hf(HfError::BadField {
                field: f, expected, ..
            }) => {
                assert_eq!(f, field);
                assert_eq!(*expected, "a token id inside the vocabulary");
            }
            other => panic!("{json}: {other:?}"),
        }
        assert!(e.to_string().contains("config.json"), "{e}");
    }
    // Ids in tokenizer.json: a vocab entry and an added token past vocab_size.
    for tok in [
        TOKENIZER.replace("\"c\": 3", "\"c\": 4"),
        TOKENIZER.replace(
            "\"pre_tokenizer\"",
            "\"added_tokens\": [{\"id\": 99, \"content\": \"<s>\", \"special\": true}], \"pre_tokenizer\"",
        ),
    ] {
        let e = hf(CONFIG, &safetensors_bytes(), Some(&tok)).unwrap_err();
        assert!(
            matches!(e, ImportError::Hf(HfError::BadTokenId { id: 4 | 99, why, .. })
                if why.contains("vocab_size")),
            "{e:?}"
        );
    }
    // Two tokens with one id.
    let tok = TOKENIZER.replace("\"c\": 3", "\"c\": 2");
    let e = hf(CONFIG, &safetensors_bytes(), Some(&tok)).unwrap_err();
    assert!(
        matches!(
            e,
            ImportError::Hf(HfError::BadTokenId {
                id: 2,
                why: "another token has the same id",
                ..
            })
        ),
        "{e:?}"
    );
}

fn st_err(weights: &[u8]) -> (String, String) {
    match hf(CONFIG, weights, None) {
        Err(ImportError::Hf(HfError::Safetensors { path, source })) => {
            assert!(path.ends_with("model.safetensors"));
            (format!("{source:?}"), source.to_string())
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn safetensors_truncated_at_every_header_byte() {
    let good = safetensors_bytes();
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    for cut in (0..8 + header_len).chain([good.len() - 1, 8 + header_len + 4]) {
        let (variant, _) = st_err(&good[..cut]);
        assert!(!variant.is_empty(), "cut at {cut}");
    }
}

#[test]
fn safetensors_header_length_and_offsets() {
    let good = safetensors_bytes();
    // A header length past the end (and one that would overflow).
    for len in [u64::MAX, 1 << 40, good.len() as u64] {
        let mut b = good.clone();
        b[..8].copy_from_slice(&len.to_le_bytes());
        let (variant, msg) = st_err(&b);
        assert!(
            variant.starts_with("HeaderTooLarge") || variant.starts_with("InvalidHeaderLength"),
            "{len}: {variant} {msg}"
        );
    }
    // Data offsets edited in the JSON: past the end, overlapping, shape disagreeing.
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&good[8..8 + header_len])
        .unwrap()
        .to_string();
    let edit = |from: &str, to: &str| {
        assert!(header.contains(from), "{from} not in {header}");
        let h = header.replacen(from, to, 1);
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend(h.as_bytes());
        b.extend(&good[8 + header_len..]);
        b
    };
    // The first tensor's offsets are [0, 128] (embed 4x8 f32).
    let (variant, _) = st_err(&edit("[0,128]", "[0,99999]"));
    assert!(
        variant.starts_with("InvalidOffset") || variant.starts_with("TensorInvalidInfo"),
        "{variant}"
    );
    let (variant, _) = st_err(&edit("[0,128]", "[64,192]"));
    assert!(
        variant.starts_with("InvalidOffset") || variant.starts_with("TensorInvalidInfo"),
        "{variant}"
    );
    let (variant, _) = st_err(&edit("[4,8]", "[4,9]"));
    assert!(
        variant.starts_with("TensorInvalidInfo") || variant.starts_with("InvalidOffset"),
        "{variant}"
    );
    let (variant, _) = st_err(&edit("\"F32\"", "\"F99\""));
    assert!(
        variant.starts_with("InvalidHeaderDeserialization"),
        "{variant}"
    );
}
