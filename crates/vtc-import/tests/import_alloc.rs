//! Hostile sizes must be refused before anything of that size is allocated. This binary
//! counts every byte the global allocator hands out (not just the peak) while hostile
//! inputs are parsed, and bounds it by the input size plus a small constant.

mod common;

use common::{put_str, put_u32, put_u64, vt};
use vtc_import::convert::{ConvertOptions, ImportError};
use vtc_import::hf::HfError;
use vtc_import::llama2c::{Checkpoint, Llama2cError, Vocab};
use vtc_import::{GgufError, GgufFile};
use vtc_testdata::alloc::CountingAlloc;
use vtc_testdata::llama2c::{HUGE_PARAMS, legacy_header};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc::new();

/// The small constant of "the input size plus a small constant".
const SLACK: usize = 16 << 10;

fn gguf_header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
    common::preamble(3, n_tensors, n_kv)
}

const HF_CONFIG: &str = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 8,
    "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
    "num_key_value_heads": 1, "vocab_size": 1048576, "max_position_embeddings": 16}"#;

#[test]
fn hostile_sizes_allocate_at_most_the_input_plus_a_constant() {
    // One test function: the counter is global and tests run on parallel threads.

    // GGUF: tensor and key counts, a string length, an array count.
    let mut cases = vec![gguf_header(u64::MAX, 0), gguf_header(0, 1 << 60)];
    let mut b = gguf_header(0, 1);
    put_u64(&mut b, u64::MAX);
    b.extend([b'k'; 16]);
    cases.push(b);
    for elem in [vt::U8, vt::STRING, vt::ARRAY] {
        let mut b = gguf_header(0, 1);
        put_str(&mut b, "arr");
        put_u32(&mut b, vt::ARRAY);
        put_u32(&mut b, elem);
        put_u64(&mut b, 1 << 61);
        b.extend([0u8; 8]);
        cases.push(b);
    }
    for bytes in cases {
        let len = bytes.len();
        let (r, used) = GLOBAL.measure(move || GgufFile::from_bytes(bytes));
        let e = r.unwrap_err();
        assert!(
            matches!(
                e,
                GgufError::TooManyTensors { .. }
                    | GgufError::TooManyKeys { .. }
                    | GgufError::StringTooLong { .. }
                    | GgufError::ArrayTooLong { .. }
            ),
            "{e:?}"
        );
        assert!(used < len + SLACK, "GGUF {e}: {used} bytes allocated");
    }

    // llama2.c: a 28-byte header claiming 2^20 layers of 2^20 x 2^20 matrices
    // (1024 heads of 1024).
    let huge = legacy_header(HUGE_PARAMS);
    let (r, used) = GLOBAL.measure(|| Checkpoint::parse(&huge));
    assert!(matches!(
        r,
        Err(Llama2cError::SizeMismatch { found: 28, .. })
    ));
    assert!(used < SLACK, "llama2.c header: {used} bytes allocated");

    // tokenizer.bin: a 2 GiB token length.
    let mut vocab = i32::MAX.to_le_bytes().to_vec();
    vocab.extend(0f32.to_le_bytes());
    vocab.extend(i32::MAX.to_le_bytes());
    let (r, used) = GLOBAL.measure(|| Vocab::parse(&vocab));
    assert!(matches!(r, Err(Llama2cError::TokenizerTruncated { .. })));
    assert!(used < SLACK, "tokenizer.bin: {used} bytes allocated");

    // Hugging Face: config.json claims 2^20 tokens, the tokenizer names 2 of them, the
    // safetensors file holds a 4-row embedding.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("config.json"), HF_CONFIG).unwrap();
    let tok = r#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []},
        "pre_tokenizer": {"type": "ByteLevel"}}"#;
    std::fs::write(d.join("tokenizer.json"), tok).unwrap();
    let emb = 0f32.to_le_bytes().repeat(32);
    let st = safetensors::serialize(
        [(
            "model.embed_tokens.weight",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4, 8], &emb)
                .unwrap(),
        )],
        None,
    )
    .unwrap();
    std::fs::write(d.join("model.safetensors"), &st).unwrap();
    let input = HF_CONFIG.len() + tok.len() + st.len();
    let (r, used) = GLOBAL
        .measure(|| vtc_import::hf::convert_dir(d, &ConvertOptions::default(), &mut |_, _| {}));
    assert!(
        matches!(r, Err(ImportError::Hf(HfError::Shape { .. }))),
        "{:?}",
        r.err()
    );
    // JSON trees and paths cost a few times their text; a slot per claimed token
    // (32 MiB) is what must not happen.
    assert!(
        used < 8 * input + SLACK,
        "HF directory of {input} bytes: {used} bytes allocated"
    );
}
