//! llama2.c and Hugging Face inputs: the version-2 (Q8_0) checkpoint layout, and typed
//! errors (never panics) for malformed checkpoints, `tokenizer.bin` files and model
//! directories.

use std::path::Path;

use proptest::prelude::*;
use vtc_import::convert::{ConvertOptions, ImportError, OutDType};
use vtc_import::hf::HfError;
use vtc_import::llama2c::{Checkpoint, Header, Llama2cError, Vocab};
use vtc_testdata::hf;
use vtc_testdata::llama2c::{
    MAGIC, legacy_checkpoint, legacy_header, versioned_header, vocab_entry,
};

/// A tiny legacy checkpoint: dim 8, hidden 16, 1 layer, 2 heads (1 kv head), vocab 10,
/// seq 4, separate classifier; values 0, 1, 2, ... in file order.
fn tiny_legacy() -> Vec<u8> {
    legacy_checkpoint([8, 16, 1, 2, 1, -10, 4], |i| i as f32)
}

#[test]
fn legacy_layout_is_run_c_order() {
    let b = tiny_legacy();
    let ck = Checkpoint::parse(&b).unwrap();
    let h = ck.header;
    assert_eq!(
        (h.version, h.dim, h.n_kv_heads, h.vocab_size),
        (0, 8, 1, 10)
    );
    assert!(!h.shared_classifier);
    let first = |name: &str| ck.tensor_f32(&b, name).unwrap()[0];
    assert_eq!(first("token_embd.weight"), 0.0);
    assert_eq!(first("blk.0.attn_norm.weight"), 80.0);
    assert_eq!(first("blk.0.attn_q.weight"), 88.0);
    assert_eq!(first("blk.0.attn_k.weight"), 152.0);
    // w1 = gate, then w2 = down, then w3 = up.
    assert_eq!(
        first("blk.0.ffn_gate.weight"),
        88.0 + 64.0 + 64.0 + 64.0 + 8.0
    );
    assert_eq!(first("blk.0.ffn_down.weight"), 288.0 + 128.0);
    assert_eq!(first("blk.0.ffn_up.weight"), 288.0 + 256.0);
    // The freq_cis tables (2 x 4 x 2 floats) are skipped before the classifier.
    assert_eq!(first("output_norm.weight"), 672.0);
    assert_eq!(first("output.weight"), 680.0 + 16.0);
    assert_eq!(ck.tensor_f32(&b, "freq_cis"), None);
}

/// The version-2 layout: 256-byte header with group size, f32 norms, then per matrix
/// its i8 values and its f32 scales.
#[test]
fn version2_q8_dequantizes_to_the_exact_products() {
    let (dim, hidden, vocab, gs) = (8usize, 16usize, 10usize, 4usize);
    let p = [dim, hidden, 1, 2, 2, vocab, 4].map(|v| v as i32);
    let mut b = versioned_header(2, p, 1, gs as i32); // shared classifier
    for _ in 0..(dim + dim + dim) {
        b.extend_from_slice(&1.0f32.to_le_bytes()); // norms
    }
    let sizes = [
        vocab * dim,
        64,
        64,
        64,
        64,
        hidden * dim,
        dim * hidden,
        hidden * dim,
    ];
    let mut expected = Vec::new();
    for (t, &n) in sizes.iter().enumerate() {
        let q: Vec<i8> = (0..n).map(|i| ((i * 7 + t) % 255) as i8).collect();
        let s: Vec<f32> = (0..n / gs).map(|g| 0.001 * (g + t + 1) as f32).collect();
        b.extend(q.iter().map(|&v| v as u8));
        for x in &s {
            b.extend_from_slice(&x.to_le_bytes());
        }
        expected.push(
            q.iter()
                .enumerate()
                .map(|(i, &v)| f32::from(v) * s[i / gs])
                .collect::<Vec<f32>>(),
        );
    }
    let ck = Checkpoint::parse(&b).unwrap();
    assert_eq!((ck.header.version, ck.header.group_size), (2, 4));
    assert!(ck.header.shared_classifier);
    let names = [
        "token_embd.weight",
        "blk.0.attn_q.weight",
        "blk.0.attn_k.weight",
        "blk.0.attn_v.weight",
        "blk.0.attn_output.weight",
        "blk.0.ffn_gate.weight",
        "blk.0.ffn_down.weight",
        "blk.0.ffn_up.weight",
    ];
    for (name, want) in names.iter().zip(&expected) {
        let got = ck.tensor_f32(&b, name).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(want), "{name}");
    }
    assert_eq!(ck.tensor_f32(&b, "output.weight"), None);
    // And it converts (tied output, no tokenizer).
    let conv =
        vtc_import::llama2c::convert(&b, None, &ConvertOptions::default(), &mut |_, _| {}).unwrap();
    assert_eq!(conv.config.tied_output, 1);
}

#[test]
fn malformed_checkpoints_are_typed_errors() {
    let good = tiny_legacy();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("short header", good[..20].to_vec()),
        ("truncated", good[..good.len() - 4].to_vec()),
        ("trailing", [good.clone(), vec![0; 4]].concat()),
        ("dim 0", legacy_header([0, 16, 1, 2, 1, 10, 4])),
        ("huge dim", legacy_header([i32::MAX, 16, 1, 2, 1, 10, 4])),
        ("odd head dim", legacy_header([6, 16, 1, 2, 1, 10, 4])),
        ("kv heads", legacy_header([8, 16, 1, 2, 3, 10, 4])),
        ("negative layers", legacy_header([8, 16, -1, 2, 1, 10, 4])),
        ("unknown version", {
            let mut h = MAGIC.to_le_bytes().to_vec();
            h.extend_from_slice(&7i32.to_le_bytes());
            h.resize(256, 0);
            h
        }),
        ("v1 short", {
            let mut h = MAGIC.to_le_bytes().to_vec();
            h.extend_from_slice(&1i32.to_le_bytes());
            h
        }),
    ];
    for (what, bytes) in cases {
        let e = Checkpoint::parse(&bytes).expect_err(what);
        assert!(!e.to_string().is_empty());
        match (what, &e) {
            (
                "truncated",
                Llama2cError::SizeMismatch {
                    expected, found, ..
                },
            ) => {
                assert_eq!(*expected, *found + 4)
            }
            ("unknown version", Llama2cError::UnsupportedVersion { version: 7 }) => {}
            ("truncated" | "unknown version", other) => panic!("{what}: {other:?}"),
            _ => {}
        }
    }
    assert!(matches!(
        Header::parse(&legacy_header([8, 16, 1, 2, 1, 10, 4])),
        Ok((Header { version: 0, .. }, 28))
    ));
}

#[test]
fn malformed_vocabularies_are_typed_errors() {
    let mut good = 8i32.to_le_bytes().to_vec();
    good.extend(vocab_entry(0.0, b"<unk>"));
    good.extend(vocab_entry(0.0, b"\n<s>\n"));
    good.extend(vocab_entry(0.0, b"\n</s>\n"));
    good.extend(vocab_entry(0.0, b"<0x0A>"));
    good.extend(vocab_entry(-1.0, b" a"));
    let v = Vocab::parse(&good).unwrap();
    assert_eq!(v.tokens[4], "\u{2581}a".as_bytes());
    assert_eq!(v.types, [2, 3, 3, 6, 1]);

    let mut long = 2i32.to_le_bytes().to_vec();
    long.extend(vocab_entry(0.0, b"abc"));
    let mut negative = 8i32.to_le_bytes().to_vec();
    negative.extend(0f32.to_le_bytes());
    negative.extend((-1i32).to_le_bytes());
    for (what, bytes) in [
        ("empty", vec![]),
        ("cut entry", good[..good.len() - 1].to_vec()),
        ("cut length", good[..good.len() - 5].to_vec()),
        ("too long", long),
        ("negative", negative),
    ] {
        let e = Vocab::parse(&bytes).expect_err(what);
        assert!(!e.to_string().is_empty(), "{what}");
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Checkpoint::parse(&bytes);
        let _ = Vocab::parse(&bytes);
        // A valid legacy header followed by garbage.
        let mut b = legacy_header([8, 16, 1, 2, 1, 10, 4]);
        b.extend_from_slice(&bytes);
        if let Ok(ck) = Checkpoint::parse(&b) {
            for name in ck.tensor_names().map(str::to_string).collect::<Vec<_>>() {
                prop_assert!(ck.tensor_f32(&b, &name).is_some());
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Hugging Face directories.

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

const CONFIG: &str = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 8,
    "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
    "num_key_value_heads": 1, "vocab_size": 4, "max_position_embeddings": 16,
    "tie_word_embeddings": true}"#;

/// A tiny HF directory: every tensor of the config in `dtype`, values 0.5.
fn tiny_hf(dir: &Path, dtype: safetensors::Dtype, skip: Option<&str>) {
    write(dir, "config.json", CONFIG);
    let mut tensors = hf::tiny_llama_tensors(4);
    tensors.retain(|(n, _)| Some(n.as_str()) != skip);
    let st = hf::safetensors(dtype, tensors, |count| match dtype {
        safetensors::Dtype::F16 => half::f16::from_f32(0.5).to_le_bytes().repeat(count),
        safetensors::Dtype::I32 => 1i32.to_le_bytes().repeat(count),
        _ => 0.5f32.to_le_bytes().repeat(count),
    });
    std::fs::write(dir.join("model.safetensors"), st).unwrap();
}

fn convert_dir(dir: &Path, dtype: OutDType) -> Result<vtc_import::Conversion, ImportError> {
    let opts = ConvertOptions {
        dtype,
        ..ConvertOptions::default()
    };
    vtc_import::hf::convert_dir(dir, &opts, &mut |_, _| {})
}

#[test]
fn f16_safetensors_stay_f16_and_exact() {
    let dir = tempfile::tempdir().unwrap();
    tiny_hf(dir.path(), safetensors::Dtype::F16, None);
    let conv = convert_dir(dir.path(), OutDType::F16).unwrap();
    assert!(conv.rounded_tensors.is_empty());
    assert_eq!(conv.config.tied_output, 1);
    assert_eq!(conv.config.tokenizer, 0, "no tokenizer.json: no tokenizer");
}

#[test]
fn malformed_directories_are_typed_errors() {
    let check = |what: &str, edit: &dyn Fn(&Path), ok: &dyn Fn(&ImportError) -> bool| {
        let dir = tempfile::tempdir().unwrap();
        tiny_hf(dir.path(), safetensors::Dtype::F32, None);
        edit(dir.path());
        let Err(e) = convert_dir(dir.path(), OutDType::F32) else {
            panic!("{what}: converted");
        };
        assert!(ok(&e), "{what}: {e:?}");
        assert!(!e.to_string().is_empty());
    };
    check(
        "no config",
        &|d| std::fs::remove_file(d.join("config.json")).unwrap(),
        &|e| matches!(e, ImportError::Io { .. }),
    );
    check(
        "bad json",
        &|d| write(d, "config.json", "{\"hidden_size\": 8,"),
        &|e| matches!(e, ImportError::Hf(HfError::Json { .. })),
    );
    check(
        "architecture",
        &|d| {
            write(
                d,
                "config.json",
                &CONFIG.replace("LlamaForCausalLM", "GPT2LMHeadModel"),
            )
        },
        &|e| matches!(e, ImportError::Unsupported { .. }),
    );
    check(
        "missing field",
        &|d| write(d, "config.json", &CONFIG.replace("\"vocab_size\": 4,", "")),
        &|e| matches!(e, ImportError::Hf(HfError::MissingField { field, .. }) if field == "vocab_size"),
    );
    check(
        "bad field",
        &|d| {
            write(
                d,
                "config.json",
                &CONFIG.replace("\"vocab_size\": 4", "\"vocab_size\": -4"),
            )
        },
        &|e| matches!(e, ImportError::Hf(HfError::BadField { .. })),
    );
    check(
        "rope scaling",
        &|d| {
            write(
                d,
                "config.json",
                &CONFIG.replace("\"tie_", "\"rope_scaling\": {\"type\": \"linear\"}, \"tie_"),
            )
        },
        &|e| matches!(e, ImportError::Unsupported { .. }),
    );
    check(
        "shape",
        &|d| {
            write(
                d,
                "config.json",
                &CONFIG.replace("\"intermediate_size\": 16", "\"intermediate_size\": 32"),
            )
        },
        &|e| matches!(e, ImportError::Hf(HfError::Shape { .. })),
    );
    check(
        "missing tensor",
        &|d| {
            tiny_hf(
                d,
                safetensors::Dtype::F32,
                Some("model.layers.0.mlp.up_proj.weight"),
            )
        },
        &|e| matches!(e, ImportError::MissingTensor { name } if name == "blk.0.ffn_up.weight"),
    );
    check(
        "dtype",
        &|d| tiny_hf(d, safetensors::Dtype::I32, None),
        &|e| matches!(e, ImportError::Hf(HfError::UnsupportedDtype { .. })),
    );
    check(
        "truncated safetensors",
        &|d| {
            let p = d.join("model.safetensors");
            let b = std::fs::read(&p).unwrap();
            std::fs::write(&p, &b[..b.len() - 3]).unwrap();
        },
        &|e| matches!(e, ImportError::Hf(HfError::Safetensors { .. })),
    );
    check(
        "no weights",
        &|d| std::fs::remove_file(d.join("model.safetensors")).unwrap(),
        &|e| matches!(e, ImportError::Hf(HfError::NoWeights { .. })),
    );
    check(
        "index escapes the directory",
        &|d| {
            std::fs::remove_file(d.join("model.safetensors")).unwrap();
            write(
                d,
                "model.safetensors.index.json",
                r#"{"weight_map": {"model.norm.weight": "../x.safetensors"}}"#,
            );
        },
        &|e| matches!(e, ImportError::Hf(HfError::BadField { .. })),
    );
    check(
        "pre-tokenizer",
        &|d| {
            write(
                d,
                "tokenizer.json",
                r#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                    "pre_tokenizer": {"type": "Metaspace"}}"#,
            )
        },
        &|e| matches!(e, ImportError::Unsupported { .. }),
    );
    check(
        "token id",
        &|d| {
            write(
                d,
                "tokenizer.json",
                r#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 9}, "merges": []},
                    "pre_tokenizer": {"type": "ByteLevel"}}"#,
            )
        },
        &|e| matches!(e, ImportError::Hf(HfError::BadTokenId { id: 9, .. })),
    );
}
