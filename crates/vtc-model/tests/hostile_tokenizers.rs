//! Hostile tokenizer tables reaching the model: merges naming tokens that are not in the
//! vocabulary (from GGUF and from a Hugging Face `tokenizer.json`, which the importers
//! copy as they are), special ids outside the vocabulary and broken string tables in a
//! TVL file. Each is a typed error of `Model::load` naming what and where.

use std::mem::offset_of;

use tvl_format::{CONFIG_OFFSET, ModelConfig, names};
use tvl_loader::TvlFile;
use vtc_import::{ConvertOptions, GgufFile, convert};
use vtc_model::tokenizer::TokenizerError;
use vtc_model::{Model, ModelError};
use vtc_testdata::gguf;

/// The tiny GGUF Llama with a byte-level vocabulary in which the merges `t o`, `to k`
/// are valid, converted to TVL bytes.
fn tvl_with_merges(merges: &[&str]) -> Vec<u8> {
    let mut b = gguf::tiny_llama(gguf::gt::F32, 9, true);
    let mut tokens: Vec<String> = ["t", "o", "to", "k", "tok"].map(String::from).to_vec();
    tokens.extend((5..40).map(|i| format!("w{i}")));
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    b.str_array("tokenizer.ggml.tokens", &tokens)
        .str_array("tokenizer.ggml.merges", merges);
    let g = GgufFile::from_bytes(b.build()).unwrap();
    let conv = convert(&g, &ConvertOptions::default(), &mut |_, _| {}).unwrap();
    let mut out = Vec::new();
    conv.writer.write_to(&mut out).unwrap();
    out
}

fn load_err(bytes: &[u8]) -> ModelError {
    let file = TvlFile::from_bytes(bytes).unwrap();
    match Model::load(&file) {
        Ok(_) => panic!("loaded"),
        Err(e) => e,
    }
}

#[test]
fn the_base_model_loads() {
    let file = TvlFile::from_bytes(&tvl_with_merges(&["t o", "to k"])).unwrap();
    let model = Model::load(&file).unwrap();
    assert_eq!(model.tokenizer().encode("tok", false).unwrap(), [4]);
}

#[test]
fn gguf_merges_naming_unknown_tokens() {
    let e = load_err(&tvl_with_merges(&["t o", "to zz"]));
    assert!(
        matches!(e, ModelError::Tokenizer(TokenizerError::UnknownMergeToken { index: 1, ref part }) if part == "zz"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("merge 1") && msg.contains("\"zz\""), "{msg}");
    let e = load_err(&tvl_with_merges(&["q o"]));
    assert!(matches!(
        e,
        ModelError::Tokenizer(TokenizerError::UnknownMergeToken { index: 0, ref part }) if part == "q"
    ));
}

#[test]
fn gguf_merges_without_a_separator() {
    let e = load_err(&tvl_with_merges(&["t o", "tok"]));
    assert!(
        matches!(e, ModelError::Tokenizer(TokenizerError::MalformedMerge { index: 1, ref text }) if text == "tok"),
        "{e:?}"
    );
}

/// The TVL bytes with a config field rewritten.
fn patch_config(bytes: &mut [u8], field: usize, v: u32) {
    let at = CONFIG_OFFSET + field;
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn tvl_special_ids_outside_the_vocabulary() {
    for (field, which) in [
        (offset_of!(ModelConfig, bos_id), "bos"),
        (offset_of!(ModelConfig, eos_id), "eos"),
        (offset_of!(ModelConfig, eot_id), "eot"),
        (offset_of!(ModelConfig, unk_id), "unk"),
    ] {
        let mut b = tvl_with_merges(&["t o"]);
        patch_config(&mut b, field, 40);
        let e = load_err(&b);
        assert!(
            matches!(e, ModelError::Tokenizer(TokenizerError::SpecialIdOutOfRange { which: w, id: 40, vocab: 40 }) if w == which),
            "{which}: {e:?}"
        );
        assert!(
            e.to_string().contains(&format!("{which} token id 40")),
            "{e}"
        );
    }
}

#[test]
fn tvl_vocab_size_below_the_tokenizer() {
    let mut b = tvl_with_merges(&["t o"]);
    patch_config(&mut b, offset_of!(ModelConfig, vocab_size), 39);
    // The embedding table no longer matches first: either way a typed error.
    let e = load_err(&b);
    assert!(
        matches!(
            e,
            ModelError::Config {
                field: "vocab_size",
                ..
            } | ModelError::TensorShape { .. }
                | ModelError::Load(_)
        ),
        "{e:?}"
    );
}

/// Rewrite the u32 at `index` of the tensor `name` (a string-table offsets tensor).
fn patch_u32(bytes: &mut [u8], name: &str, index: usize, v: u32) {
    let at = {
        let file = TvlFile::from_bytes(bytes).unwrap();
        let t = file.tensor(name).unwrap();
        t.offset() as usize + 4 * index
    };
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn tvl_string_tables_out_of_range() {
    // The last token offset past the blob, and offsets that decrease.
    let mut b = tvl_with_merges(&["t o"]);
    patch_u32(&mut b, names::TOKEN_OFFSETS, 40, u32::MAX);
    let e = load_err(&b);
    assert!(
        matches!(e, ModelError::Table { ref name, why } if name == names::TOKEN_OFFSETS && why.contains("blob length")),
        "{e:?}"
    );
    let mut b = tvl_with_merges(&["t o"]);
    patch_u32(&mut b, names::TOKEN_OFFSETS, 3, 1000);
    let e = load_err(&b);
    assert!(
        matches!(e, ModelError::Table { ref name, why } if name == names::TOKEN_OFFSETS && why.contains("decrease")),
        "{e:?}"
    );
    let mut b = tvl_with_merges(&["t o"]);
    patch_u32(&mut b, names::MERGE_OFFSETS, 0, 1);
    let e = load_err(&b);
    assert!(
        matches!(e, ModelError::Table { ref name, .. } if name == names::MERGE_OFFSETS),
        "{e:?}"
    );
}
