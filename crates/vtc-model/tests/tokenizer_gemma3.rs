//! Gemma 3's SentencePiece tokenizer (262,144 tokens, byte fallback, no dummy prefix,
//! BOS added; user-defined newline, tab and space runs and HTML tags) against llama.cpp's
//! `llama-tokenize`: `data/gemma3-llama-tokenize.json` (written by
//! `scripts/gemma3_tokenizer_reference.py`) holds 300 varied strings with llama.cpp's
//! ids, special tokens parsed, and for every fourth string also not parsed. The
//! vocabulary comes from the real Gemma 3 270M GGUF (fetched through pip), converted to
//! a tables-only TVL file.

mod common;

use common::ids;
use tvl_loader::TvlFile;
use vtc_model::load_tokenizer;

#[test]
fn ids_equal_llama_cpp_llama_tokenize() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/gemma3-llama-tokenize.json"
    );
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 300);

    let gguf = common::gemma3_gguf();
    let g = vtc_import::GgufFile::open(&gguf).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tvl = dir.path().join("gemma3-tokenizer.tvl");
    vtc_import::tokenizer_only(&g)
        .unwrap()
        .write_file(&tvl)
        .unwrap();
    let file = TvlFile::open(&tvl).unwrap();
    let tok = load_tokenizer(&file).unwrap();
    assert!(tok.add_bos());

    let (mut checked, mut total_ids) = (0, 0);
    for (i, case) in cases.iter().enumerate() {
        let text = case["text"].as_str().unwrap();
        let got = tok.encode_prompt(text).unwrap();
        assert_eq!(got, ids(&case["ids"]), "case {i}: {text:?}");
        total_ids += got.len();
        checked += 1;
        if let Some(want) = case.get("ids_no_special") {
            let mut got = vec![tok.bos_id().unwrap()];
            got.extend(tok.encode(text, false).unwrap());
            assert_eq!(
                got,
                ids(want),
                "case {i} (special tokens not parsed): {text:?}"
            );
            checked += 1;
        }
    }
    eprintln!("{checked} encodings, {total_ids} ids, all equal to llama-tokenize");
}
