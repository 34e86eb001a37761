//! The synthetic GQA model through the other importers: its llama2.c form (the golden
//! `model.llama2c.bin`, and a version-1 export written here) and a Hugging Face
//! directory (single and sharded safetensors, q/k in HF's half-split pairing) written
//! here from the GGUF weights. Each must reproduce the float64 reference logits on every
//! backend, and hold the same weights as the GGUF import.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tvl_loader::TvlFile;
use vtc_import::convert::{ConvertOptions, OutDType};
use vtc_import::gguf::GgufFile;
use vtc_model::Model;

/// The golden check of one converted file: every backend within `tol` of the reference,
/// and far from the NeoX-pairing reference.
fn check_golden(path: &Path, what: &str, tol: f64) {
    let file = TvlFile::open(path).unwrap();
    let model = Model::load(&file).unwrap();
    assert_eq!(model.config().n_kv_heads, 2);
    assert!(!model.config().tied_output);
    let (tokens, logits) = common::reference("logits");
    let (_, neox) = common::reference("logits_neox");
    let backends = vtc_kernels::available();
    assert!(!backends.is_empty());
    for be in backends {
        let err = common::max_err(&model, be, &tokens, &logits);
        eprintln!("{what} on {}: max |logit error| = {err:.3e}", be.name());
        assert!(err < tol, "{what} on {}: max logit error {err}", be.name());
        assert!(
            common::max_err(&model, be, &tokens, &neox) > 1e-2,
            "{what}: NeoX pairing matches"
        );
    }
}

/// Every weight of `a` equals the same-named weight of `b` bit for bit.
fn same_weights(a: &Path, b: &Path) {
    let (fa, fb) = (TvlFile::open(a).unwrap(), TvlFile::open(b).unwrap());
    let (ma, mb) = (Model::load(&fa).unwrap(), Model::load(&fb).unwrap());
    assert_eq!(ma.config(), mb.config());
    let mut n = 0;
    for t in fa.tensors() {
        let name = t.name();
        if name.starts_with("tokenizer.") {
            continue;
        }
        let u = fb.tensor(name).unwrap();
        assert_eq!((t.shape(), t.dtype()), (u.shape(), u.dtype()), "{name}");
        assert_eq!(t.bytes(), u.bytes(), "{name}");
        n += 1;
    }
    assert_eq!(n, 3 + 2 * 9);
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-{name}", std::process::id()))
}

fn gguf() -> GgufFile {
    GgufFile::open(common::golden_dir().join("synthetic-gqa/model.f32.gguf")).unwrap()
}

/// The GGUF tensors as f32, logical row-major (`[out, in]`).
fn gguf_f32(g: &GgufFile) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    g.tensors()
        .iter()
        .map(|t| {
            let n = t.n_elements() as usize;
            let v =
                vtc_import::dequant::dequantize_to_vec(t.ggml_type, g.tensor_data(t), n).unwrap();
            let shape = t.shape().iter().map(|&d| d as usize).collect();
            (t.name.clone(), (shape, v))
        })
        .collect()
}

fn convert_any(input: &Path, out: &Path, tokenizer: Option<&Path>, dtype: OutDType) {
    let opts = ConvertOptions {
        dtype,
        ..ConvertOptions::default()
    };
    vtc_import::source::convert_any(input, out, tokenizer, &opts, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("converting {}: {e}", input.display()));
}

#[test]
fn llama2c_legacy_checkpoint_gives_the_golden_logits() {
    let src = common::golden_dir().join("synthetic-gqa/model.llama2c.bin");
    assert_eq!(
        vtc_import::source::detect(&src).unwrap(),
        vtc_import::source::InputKind::Llama2c
    );
    let out = tmp("llama2c.f32.tvl");
    convert_any(&src, &out, None, OutDType::F32);
    check_golden(&out, "llama2.c legacy f32", 1e-4);
    same_weights(&out, &common::synthetic_tvl(OutDType::F32));

    // Without tokenizer.bin the file has no tokenizer: ids run, text does not.
    let file = TvlFile::open(&out).unwrap();
    let model = Model::load(&file).unwrap();
    assert!(matches!(
        model.tokenizer().encode_prompt("hi"),
        Err(vtc_model::tokenizer::TokenizerError::NoTokenizer)
    ));

    let out16 = tmp("llama2c.f16.tvl");
    convert_any(&src, &out16, None, OutDType::F16);
    check_golden(&out16, "llama2.c legacy f16", 2e-2);
}

/// The synthetic model written as a llama2.c version-1 export.
fn write_llama2c_v1(path: &Path) {
    let g = gguf();
    let t = gguf_f32(&g);
    let mut b = Vec::new();
    b.extend_from_slice(&0x616b_3432u32.to_le_bytes());
    b.extend_from_slice(&1i32.to_le_bytes());
    for v in [64i32, 176, 2, 4, 2, 256, 64] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.push(0); // separate classifier
    b.resize(256, 0);
    let mut put = |name: &str| {
        for x in &t[name].1 {
            b.extend_from_slice(&x.to_le_bytes());
        }
    };
    let layers = |p: &'static str| (0..2).map(move |l| format!("blk.{l}.{p}.weight"));
    layers("attn_norm").for_each(|n| put(&n));
    layers("ffn_norm").for_each(|n| put(&n));
    put("output_norm.weight");
    put("token_embd.weight");
    for p in [
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_gate",
        "ffn_down",
        "ffn_up",
    ] {
        layers(p).for_each(|n| put(&n));
    }
    put("output.weight");
    std::fs::write(path, b).unwrap();
}

#[test]
fn llama2c_version1_export_gives_the_golden_logits() {
    let src = tmp("model.v1.bin");
    write_llama2c_v1(&src);
    let out = tmp("llama2c-v1.tvl");
    convert_any(&src, &out, None, OutDType::F32);
    check_golden(&out, "llama2.c v1 f32", 1e-4);
    same_weights(&out, &common::synthetic_tvl(OutDType::F32));
}

/// Hugging Face name of a GGUF tensor name.
fn hf_name(gguf: &str) -> String {
    let fixed = [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
    ];
    if let Some((_, hf)) = fixed.iter().find(|(g, _)| *g == gguf) {
        return hf.to_string();
    }
    let rest = gguf.strip_prefix("blk.").unwrap();
    let (layer, part) = rest.split_once('.').unwrap();
    let part = match part {
        "attn_norm.weight" => "input_layernorm",
        "attn_q.weight" => "self_attn.q_proj",
        "attn_k.weight" => "self_attn.k_proj",
        "attn_v.weight" => "self_attn.v_proj",
        "attn_output.weight" => "self_attn.o_proj",
        "ffn_norm.weight" => "post_attention_layernorm",
        "ffn_gate.weight" => "mlp.gate_proj",
        "ffn_up.weight" => "mlp.up_proj",
        "ffn_down.weight" => "mlp.down_proj",
        other => panic!("unexpected tensor {other}"),
    };
    format!("model.layers.{layer}.{part}.weight")
}

/// Write the synthetic model as a Hugging Face directory: q/k un-permuted to the
/// half-split pairing, `shards` safetensors files (an index when more than one), a
/// config.json and a byte-level tokenizer.json with the GGUF's vocabulary.
fn write_hf_dir(dir: &Path, shards: usize, dtype: safetensors::Dtype) {
    std::fs::create_dir_all(dir).unwrap();
    let g = gguf();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = gguf_f32(&g)
        .into_iter()
        .map(|(name, (shape, mut v))| {
            let heads = match name.rsplit('.').nth(1) {
                Some("attn_q") => 4,
                Some("attn_k") => 2,
                _ => 0,
            };
            if heads > 0 {
                v = vtc_import::hf::interleaved_to_half_split(&v, heads, 16, 64);
            }
            let bytes = match dtype {
                safetensors::Dtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                safetensors::Dtype::BF16 => v
                    .iter()
                    .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                    .collect(),
                other => panic!("{other:?}"),
            };
            (hf_name(&name), shape, bytes)
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let per = tensors.len().div_ceil(shards);
    let mut weight_map = serde_json::Map::new();
    for (i, chunk) in tensors.chunks(per).enumerate() {
        let file = if shards == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{shards:05}.safetensors", i + 1)
        };
        let views = chunk.iter().map(|(name, shape, bytes)| {
            let view = safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes).unwrap();
            (name.clone(), view)
        });
        std::fs::write(
            dir.join(&file),
            safetensors::serialize(views, None).unwrap(),
        )
        .unwrap();
        for (name, _, _) in chunk {
            weight_map.insert(name.clone(), file.clone().into());
        }
    }
    if shards > 1 {
        let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    }
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 176,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 256,
        "max_position_embeddings": 64,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": false,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "rope_scaling": null,
        "torch_dtype": "float32"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let tokens = g
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_array())
        .and_then(|a| a.as_strings())
        .unwrap();
    let vocab: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i.into()))
        .collect();
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "added_tokens": [],
        "pre_tokenizer": {
            "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true
        },
        "decoder": { "type": "ByteLevel" },
        "model": { "type": "BPE", "vocab": vocab, "merges": [] }
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    let tc = serde_json::json!({
        "add_bos_token": true,
        "chat_template": "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    });
    std::fs::write(dir.join("tokenizer_config.json"), tc.to_string()).unwrap();
}

#[test]
fn safetensors_directory_gives_the_golden_logits() {
    let dir = tmp("hf-single");
    write_hf_dir(&dir, 1, safetensors::Dtype::F32);
    assert_eq!(
        vtc_import::source::detect(&dir).unwrap(),
        vtc_import::source::InputKind::HfDir
    );
    let out = tmp("hf-single.tvl");
    convert_any(&dir, &out, None, OutDType::F32);
    check_golden(&out, "safetensors f32", 1e-4);
    // The q/k permutation restores exactly the GGUF (interleaved) rows.
    same_weights(&out, &common::synthetic_tvl(OutDType::F32));

    // The tokenizer and the chat template came along.
    let file = TvlFile::open(&out).unwrap();
    let model = Model::load(&file).unwrap();
    let gfile = TvlFile::open(common::synthetic_tvl(OutDType::F32)).unwrap();
    let gmodel = Model::load(&gfile).unwrap();
    let text = "Hello, world! 123";
    assert_eq!(
        model.tokenizer().encode(text, true).unwrap(),
        gmodel.tokenizer().encode(text, true).unwrap()
    );
    // tokenizer_config.json asks for BOS (the GGUF does not).
    assert_eq!(model.tokenizer().encode_prompt("a").unwrap(), [1, 97]);
    assert_eq!(model.tokenizer().eos_id(), Some(2));
    let template = file.tensor(tvl_format::names::CHAT_TEMPLATE).unwrap();
    assert!(
        std::str::from_utf8(template.as_u8().unwrap())
            .unwrap()
            .starts_with("{% for m in messages %}")
    );
}

#[test]
fn sharded_bf16_safetensors_directory_gives_the_golden_logits() {
    let dir = tmp("hf-sharded");
    write_hf_dir(&dir, 2, safetensors::Dtype::BF16);
    let out = tmp("hf-sharded.tvl");
    convert_any(&dir, &out, None, OutDType::F32);
    // bf16 keeps 8 bits of mantissa: the logits move by up to a few 1e-2.
    check_golden(&out, "safetensors bf16, 2 shards", 1e-1);
}
