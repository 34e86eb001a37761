//! Writes the seed corpora of the fuzz targets into `fuzz/seeds/<target>/`, all
//! deterministic and small (a few KB each). Run from the repository root:
//! `cargo run --manifest-path fuzz/Cargo.toml -p vtc-fuzz-seedgen`.

use std::path::{Path, PathBuf};

use vtc_import::{ConvertOptions, GgufFile, OutDType, convert};
use vtc_testdata::gguf::{GgufBuilder, Tiny, add_llama_tensors, gt};
use vtc_testdata::llama2c::{TINY_TOKENS, legacy_checkpoint, versioned_header};
use vtc_testdata::{Rng, hf};

/// dim 32 (the Q blocks' 32), hidden 32, 1 layer, 2 heads of 16, 1 kv head, vocab 16.
const SHAPE: Tiny = Tiny {
    dim: 32,
    hidden: 32,
    layers: 1,
    heads: 2,
    kv_heads: 1,
    head_dim: 16,
    vocab: 16,
};

/// A tiny Llama GGUF with matrices of ggml type `ty` and a gpt2 (`spm == false`) or
/// llama (SentencePiece) tokenizer of 16 tokens.
fn tiny_gguf(ty: u32, spm: bool, tied: bool) -> Vec<u8> {
    tiny_builder(ty, spm, tied).build()
}

/// [`tiny_gguf`] before it is built, so tensors can be added.
fn tiny_builder(ty: u32, spm: bool, tied: bool) -> GgufBuilder {
    let t = &SHAPE;
    let mut rng = Rng(ty as u64 + 7);
    let mut g = GgufBuilder::new();
    g.llama(t, 8);
    if spm {
        let tokens = [
            "<unk>",
            "<s>",
            "</s>",
            "<0x0A>",
            "<0x41>",
            "\u{2581}",
            "a",
            "b",
            "t",
            "h",
            "e",
            "th",
            "the",
            "\u{2581}the",
            "ab",
            "\u{2581}a",
        ];
        let types = [2, 3, 3, 6, 6, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        let scores: Vec<f32> = (0..16).map(|i| -(i as f32)).collect();
        g.str("tokenizer.ggml.model", "llama")
            .str_array("tokenizer.ggml.tokens", &tokens)
            .i32_array("tokenizer.ggml.token_type", &types)
            .f32_array("tokenizer.ggml.scores", &scores)
            .u32("tokenizer.ggml.unknown_token_id", 0)
            .bool("tokenizer.ggml.add_bos_token", true);
    } else {
        let tokens = [
            "a",
            "<s>",
            "</s>",
            "b",
            "t",
            "o",
            "k",
            "to",
            "tok",
            "Ġ",
            "Ġt",
            "1",
            "2",
            "é",
            "<|im_start|>",
            "<|im_end|>",
        ];
        let mut types = vec![1; 16];
        types[1] = 3;
        types[2] = 3;
        types[14] = 3;
        types[15] = 3;
        g.str("tokenizer.ggml.model", "gpt2")
            .str("tokenizer.ggml.pre", "smollm")
            .str_array("tokenizer.ggml.tokens", &tokens)
            .i32_array("tokenizer.ggml.token_type", &types)
            .str_array("tokenizer.ggml.merges", &["t o", "to k", "Ġ t"])
            .str(
                "tokenizer.chat_template",
                "{% for m in messages %}{{ m.content }}{% endfor %}",
            );
    }
    g.u32("tokenizer.ggml.bos_token_id", 1)
        .u32("tokenizer.ggml.eos_token_id", 2);
    add_llama_tensors(&mut g, t, ty, !tied, &mut rng);
    g
}

/// A legacy llama2.c checkpoint: dim 8, hidden 16, 1 layer, 2 heads (1 kv), vocab
/// `vocab`, seq 4, separate classifier when `separate`.
fn legacy(vocab: i32, separate: bool) -> Vec<u8> {
    let mut rng = Rng(3);
    let p = [8, 16, 1, 2, 1, if separate { -vocab } else { vocab }, 4];
    legacy_checkpoint(p, |_| rng.unit() * 0.1)
}

/// A version-1 (f32) or version-2 (Q8_0, group size 4) checkpoint of the same shape,
/// shared classifier.
fn versioned(version: i32, vocab: usize) -> Vec<u8> {
    let (d, h) = (8usize, 16usize);
    let p = [d, h, 1, 2, 1, vocab, 4].map(|v| v as i32);
    let mut b = versioned_header(version, p, 1, if version == 2 { 4 } else { 0 });
    let mut rng = Rng(5);
    for _ in 0..3 * d {
        b.extend(1.0f32.to_le_bytes());
    }
    let matrices = [vocab * d, d * d, 4 * d, 4 * d, d * d, h * d, d * h, h * d];
    for n in matrices {
        if version == 2 {
            b.extend(rng.bytes(n));
            for _ in 0..n / 4 {
                b.extend((0.01f32 + rng.unit().abs() * 0.01).to_le_bytes());
            }
        } else {
            for _ in 0..n {
                b.extend((rng.unit() * 0.1).to_le_bytes());
            }
        }
    }
    b
}

/// A llama2.c `tokenizer.bin` of `vocab` tokens (at least 8).
fn tokenizer_bin(vocab: usize) -> Vec<u8> {
    let tokens: Vec<Vec<u8>> = (0..vocab)
        .map(|i| {
            TINY_TOKENS
                .get(i)
                .map_or_else(|| format!("t{i}").into_bytes(), |w| w.to_vec())
        })
        .collect();
    vtc_testdata::llama2c::tokenizer_bin(8, &tokens)
}

fn with_len(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    let (last, init) = parts.split_last().unwrap();
    for p in init {
        out.extend((p.len() as u32).to_le_bytes());
        out.extend(*p);
    }
    out.extend(*last);
    out
}

const HF_CONFIG: &str = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 8,
 "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
 "num_key_value_heads": 1, "vocab_size": 6, "max_position_embeddings": 8,
 "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": true,
 "bos_token_id": 1, "eos_token_id": [2]}"#;

const HF_TOKENIZER: &str = r#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 3, "ab": 4, "Ġ": 5},
 "merges": ["a b"]}, "added_tokens": [{"id": 1, "content": "<s>", "special": true},
 {"id": 2, "content": "</s>", "special": true}],
 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true},
 {"type": "ByteLevel"}]}, "post_processor": {"single": [{"SpecialToken": {"id": "<s>"}}]}}"#;

/// The weights of `HF_CONFIG` in `dtype`, random values in [-0.1, 0.1).
fn hf_safetensors(dtype: safetensors::Dtype) -> Vec<u8> {
    let mut rng = Rng(11);
    hf::safetensors(dtype, hf::tiny_llama_tensors(6), |count| {
        (0..count)
            .flat_map(|_| {
                let x = rng.unit() * 0.1;
                match dtype {
                    safetensors::Dtype::F16 => half::f16::from_f32(x).to_le_bytes().to_vec(),
                    safetensors::Dtype::BF16 => half::bf16::from_f32(x).to_le_bytes().to_vec(),
                    _ => x.to_le_bytes().to_vec(),
                }
            })
            .collect()
    })
}

fn put(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
    println!("{:>8} {}", bytes.len(), dir.join(name).display());
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../seeds");
    let types = [
        ("f32", gt::F32),
        ("f16", gt::F16),
        ("bf16", gt::BF16),
        ("q8_0", gt::Q8_0),
        ("q4_0", gt::Q4_0),
        ("q4_1", gt::Q4_1),
        ("q5_0", gt::Q5_0),
        ("q5_1", gt::Q5_1),
    ];

    // gguf_convert: selector byte (output dtype, tile rows) + GGUF.
    let dir = root.join("gguf_convert");
    for (i, (name, ty)) in types.iter().enumerate() {
        let spm = i % 2 == 1;
        let g = tiny_gguf(*ty, spm, i % 3 == 0);
        put(
            &dir,
            &format!("tiny-{name}"),
            &[&[2 + 16 * i as u8][..], &g].concat(),
        );
    }
    // The K types need rows of 256: a tiny Q8_0 model with an extra [2, 256] matrix of
    // each (kept as an extra tensor, so converted with the selected output type).
    for (i, (name, ty)) in [("q4_k", gt::Q4_K), ("q5_k", gt::Q5_K), ("q6_k", gt::Q6_K)]
        .iter()
        .enumerate()
    {
        let mut g = tiny_builder(gt::Q8_0, false, true);
        let mut rng = Rng(*ty as u64);
        g.tensor(
            "extra.weight",
            &[256, 2],
            *ty,
            vtc_testdata::gguf::random_data(&mut rng, *ty, 512),
        );
        put(
            &dir,
            &format!("tiny-extra-{name}"),
            &[&[2 + 16 * i as u8][..], &g.build()].concat(),
        );
    }
    // A header with no tensors and some metadata of every value type.
    {
        let mut g = GgufBuilder::new();
        g.str("general.architecture", "llama")
            .u32("a.u32", 7)
            .f32("a.f32", 0.5)
            .bool("a.bool", true)
            .i32_array("a.i32s", &[1, -2])
            .f32_array("a.f32s", &[1.0])
            .str_array("a.strs", &["x", "yz"]);
        put(&dir, "metadata-only", &[&[0u8][..], &g.build()].concat());
    }

    // tvl_open: conversions of the tiny GGUFs, one per output type.
    let dir = root.join("tvl_open");
    for (i, dtype) in OutDType::ALL.iter().enumerate() {
        let (name, ty) = types[i];
        let g = GgufFile::from_bytes(tiny_gguf(ty, i % 2 == 1, i % 3 == 0)).unwrap();
        let opts = ConvertOptions {
            dtype: *dtype,
            ..ConvertOptions::default()
        };
        let conv = convert(&g, &opts, &mut |_, _| {}).unwrap();
        let mut out = Vec::new();
        conv.writer.write_to(&mut out).unwrap();
        put(&dir, &format!("from-{name}-to-{}", dtype.name()), &out);
    }
    {
        let conv = vtc_import::llama2c::convert(
            &versioned(2, 10),
            Some(vtc_import::llama2c::Vocab::parse(&tokenizer_bin(10)).unwrap()),
            &ConvertOptions::default(),
            &mut |_, _| {},
        )
        .unwrap();
        let mut out = Vec::new();
        conv.writer.write_to(&mut out).unwrap();
        put(&dir, "llama2c-v2-spm", &out);
    }

    // llama2c_import: u32 length + checkpoint + tokenizer.bin.
    let dir = root.join("llama2c_import");
    put(
        &dir,
        "legacy-separate-vocab",
        &with_len(&[&legacy(10, true), &tokenizer_bin(10)]),
    );
    put(
        &dir,
        "legacy-shared-novocab",
        &with_len(&[&legacy(8, false), &[]]),
    );
    put(
        &dir,
        "v1-vocab",
        &with_len(&[&versioned(1, 10), &tokenizer_bin(10)]),
    );
    put(
        &dir,
        "v2-vocab",
        &with_len(&[&versioned(2, 10), &tokenizer_bin(10)]),
    );

    // safetensors_import: u32 length + config.json, u32 length + safetensors, tokenizer.json.
    let dir = root.join("safetensors_import");
    for (name, dtype) in [
        ("f32", safetensors::Dtype::F32),
        ("f16", safetensors::Dtype::F16),
        ("bf16", safetensors::Dtype::BF16),
    ] {
        let st = hf_safetensors(dtype);
        put(
            &dir,
            &format!("tiny-{name}-tokenizer"),
            &with_len(&[HF_CONFIG.as_bytes(), &st, HF_TOKENIZER.as_bytes()]),
        );
        put(
            &dir,
            &format!("tiny-{name}"),
            &with_len(&[HF_CONFIG.as_bytes(), &st, &[]]),
        );
    }

    // tokenizer: mode byte + text (modes 0-2) or tables (mode 3).
    let dir = root.join("tokenizer");
    let texts = [
        "Once upon a time, the end.",
        "<|im_start|>user\nhi 12345 ünï 中文 😀<|im_end|>",
        "  \t\n\n the and'sing",
        "<s>a</s> b <unk>",
    ];
    for mode in 0..3u8 {
        for (i, t) in texts.iter().enumerate() {
            put(
                &dir,
                &format!("mode{mode}-text{i}"),
                &[&[mode][..], t.as_bytes()].concat(),
            );
        }
    }
    // Tables: flags, bos/eos/eot/unk, then 0xFE-separated records.
    let mut rec = vec![3u8, 0b10110, 1, 2, 255, 255];
    for (i, tok) in ["a", "<s>", "</s>", "b", "ab", "Ġ", "Ġa"]
        .iter()
        .enumerate()
    {
        rec.push(0xFE);
        rec.push(0);
        rec.push(if i == 1 || i == 2 { 3 } else { 1 });
        rec.extend(tok.as_bytes());
    }
    for m in ["a b", "Ġ a"] {
        rec.push(0xFE);
        rec.push(1);
        rec.extend(m.as_bytes());
    }
    rec.extend([0xFE, 2]);
    rec.extend(b"ab a<s>b");
    put(&dir, "tables-bpe", &rec);
    let mut spm = rec.clone();
    spm[1] |= 1 | 8;
    put(&dir, "tables-spm", &spm);
}
