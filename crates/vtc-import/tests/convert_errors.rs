//! Configuration mapping and the conversion's typed errors, on tiny hand-built models.

mod common;

use common::{GgufBuilder, gt, tiny_llama, vt};
use tvl_format::{NONE_ID, PreTokenizer, TokenizerKind, names};
use tvl_loader::TvlFile;
use vtc_import::{ConvertOptions, GgmlType, GgufFile, ImportError, convert, model_config};

fn base() -> GgufBuilder {
    tiny_llama(gt::F32, 11, true)
}

fn convert_err(b: &GgufBuilder) -> ImportError {
    let g = GgufFile::from_bytes(b.build()).unwrap();
    match convert(&g, &ConvertOptions::default(), &mut |_, _| {}) {
        Ok(_) => panic!("converted"),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            e
        }
    }
}

fn config(b: &GgufBuilder) -> tvl_format::ModelConfig {
    model_config(&GgufFile::from_bytes(b.build()).unwrap()).unwrap()
}

#[test]
fn config_defaults_and_lenient_integers() {
    let mut b = base();
    b.remove("llama.attention.head_count_kv")
        .remove("llama.rope.dimension_count")
        .remove("llama.rope.freq_base")
        .remove("llama.attention.layer_norm_rms_epsilon")
        // Any integer type is fine for a count.
        .raw("llama.block_count", vt::U64, 2u64.to_le_bytes().to_vec())
        .raw(
            "llama.embedding_length",
            vt::I32,
            64i32.to_le_bytes().to_vec(),
        )
        .raw("tokenizer.ggml.bos_token_id", vt::U8, vec![1]);
    // Without head_count_kv, kv heads = heads (then attn_k/v must be [64, 64]).
    let c = config(&b);
    assert_eq!((c.n_heads, c.n_kv_heads, c.head_dim), (4, 4, 16));
    assert_eq!((c.rope_theta, c.rms_eps), (10000.0, 1e-5));
    assert_eq!((c.n_layers, c.dim, c.bos_id), (2, 64, 1));
    assert_eq!(c.vocab_size, 40, "vocab from the token count");
    assert_eq!(c.tied_output, 0);
    assert_eq!(c.unk_id, NONE_ID);
    assert_eq!(c.add_bos, 0, "gpt2 tokenizers default to no BOS");
    // ... so the tiny model's GQA k/v shapes are now wrong.
    assert!(
        matches!(convert_err(&b), ImportError::ShapeMismatch { ref name, .. } if name == "blk.0.attn_k.weight")
    );
}

#[test]
fn vocab_size_falls_back_to_token_embd_rows() {
    let mut b = base();
    b.remove("tokenizer.ggml.tokens")
        .remove("tokenizer.ggml.token_type")
        .remove("tokenizer.ggml.merges")
        .remove("tokenizer.ggml.model")
        .remove("tokenizer.ggml.pre");
    let c = config(&b);
    assert_eq!(c.vocab_size, 40);
    assert_eq!(c.tokenizer, TokenizerKind::None as u32);
    let g = GgufFile::from_bytes(b.build()).unwrap();
    let conv = convert(&g, &ConvertOptions::default(), &mut |_, _| {}).unwrap();
    let mut out = Vec::new();
    conv.writer.write_to(&mut out).unwrap();
    let tvl = TvlFile::from_bytes(&out).unwrap();
    assert!(tvl.get(names::TOKENS).is_none());
}

#[test]
fn tied_output_eot_and_tables() {
    let mut b = tiny_llama(gt::F32, 3, false);
    let mut toks: Vec<String> = (0..40).map(|i| format!("tok{i}")).collect();
    toks[7] = "<|eot_id|>".into();
    toks[9] = "<|im_end|>".into();
    let toks: Vec<&str> = toks.iter().map(String::as_str).collect();
    b.str_array("tokenizer.ggml.tokens", &toks)
        .str("tokenizer.ggml.model", "llama")
        .f32_array(
            "tokenizer.ggml.scores",
            &(0..40).map(|i| -(i as f32)).collect::<Vec<_>>(),
        )
        .str("tokenizer.chat_template", "{{ messages }}")
        .u32("tokenizer.ggml.unknown_token_id", 0);
    let c = config(&b);
    assert_eq!(c.tied_output, 1);
    assert_eq!(c.eot_id, 9, "<|im_end|> is preferred over <|eot_id|>");
    assert_eq!(c.tokenizer, TokenizerKind::SentencePiece as u32);
    assert_eq!(c.add_bos, 1, "SentencePiece tokenizers default to BOS");
    assert_eq!(c.unk_id, 0);
    b.u32("tokenizer.ggml.eot_token_id", 5)
        .bool("tokenizer.ggml.add_bos_token", false);
    let c = config(&b);
    assert_eq!((c.eot_id, c.add_bos), (5, 0));

    let g = GgufFile::from_bytes(b.build()).unwrap();
    let conv = convert(&g, &ConvertOptions::default(), &mut |_, _| {}).unwrap();
    let mut out = Vec::new();
    conv.writer.write_to(&mut out).unwrap();
    let tvl = TvlFile::from_bytes(&out).unwrap();
    assert!(tvl.get("output.weight").is_none());
    assert_eq!(
        tvl.tensor(names::SCORES).unwrap().as_f32().unwrap()[3],
        -3.0
    );
    assert_eq!(
        tvl.tensor(names::CHAT_TEMPLATE).unwrap().as_u8().unwrap(),
        b"{{ messages }}"
    );
    let offs = tvl.tensor(names::TOKEN_OFFSETS).unwrap().as_u32().unwrap();
    let bytes = tvl.tensor(names::TOKENS).unwrap().as_u8().unwrap();
    assert_eq!(&bytes[offs[9] as usize..offs[10] as usize], b"<|im_end|>");

    // No candidate in the vocabulary: eot = eos.
    let c = config(&tiny_llama(gt::F32, 3, false));
    assert_eq!(c.eot_id, c.eos_id);
}

#[test]
fn pretokenizers() {
    let mut b = base();
    b.str("tokenizer.ggml.pre", "smollm");
    assert_eq!(config(&b).pretokenizer, PreTokenizer::SmolLm as u32);
    b.str("tokenizer.ggml.pre", "gpt2");
    assert_eq!(config(&b).pretokenizer, PreTokenizer::Gpt2 as u32);
    b.remove("tokenizer.ggml.pre");
    assert_eq!(config(&b).pretokenizer, PreTokenizer::Gpt2 as u32);
    // The names llama.cpp gives its QWEN2 and LLAMA3 pre-tokenizer types.
    for name in ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"] {
        b.str("tokenizer.ggml.pre", name);
        assert_eq!(
            config(&b).pretokenizer,
            PreTokenizer::Qwen2 as u32,
            "{name}"
        );
    }
    for name in [
        "llama3",
        "llama-v3",
        "llama-bpe",
        "falcon3",
        "falcon-h1",
        "pixtral",
        "midm-2.0",
        "lfm2",
        "jina-v5-nano",
    ] {
        b.str("tokenizer.ggml.pre", name);
        assert_eq!(
            config(&b).pretokenizer,
            PreTokenizer::Llama3 as u32,
            "{name}"
        );
    }
    // The whole conversion goes through, and tables-only too.
    b.str("tokenizer.ggml.pre", "qwen2");
    let g = GgufFile::from_bytes(b.build()).unwrap();
    convert(&g, &ConvertOptions::default(), &mut |_, _| {}).unwrap();
    b.str("tokenizer.ggml.pre", "llama-bpe");
    let g = GgufFile::from_bytes(b.build()).unwrap();
    convert(&g, &ConvertOptions::default(), &mut |_, _| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.tvl");
    vtc_import::tokenizer_only(&g)
        .unwrap()
        .write_file(&path)
        .unwrap();
    let tvl = TvlFile::open(&path).unwrap();
    assert_eq!(tvl.config().pretokenizer, PreTokenizer::Llama3 as u32);
    // llama.cpp's BOS default for the Llama 3 names; the file's key wins.
    b.remove("tokenizer.ggml.add_bos_token");
    assert_eq!(config(&b).add_bos, 1, "llama-bpe defaults to BOS");
    b.bool("tokenizer.ggml.add_bos_token", false);
    assert_eq!(config(&b).add_bos, 0);
    b.str("tokenizer.ggml.pre", "qwen2")
        .remove("tokenizer.ggml.add_bos_token");
    assert_eq!(config(&b).add_bos, 0, "qwen2 defaults to no BOS");
    // Unknown names, and names of other llama.cpp types sharing a pattern, are refused.
    for name in [
        "falcon",
        "dbrx",
        "smaug-bpe",
        "stablelm2",
        "qwen35",
        "Qwen2",
    ] {
        b.str("tokenizer.ggml.pre", name);
        let e = convert_err(&b);
        assert!(
            matches!(e, ImportError::Unsupported { ref value, .. } if value == name),
            "{e}"
        );
        assert!(e.to_string().contains("tokenizer.ggml.pre"), "{e}");
        let e = vtc_import::tokenizer_only(&GgufFile::from_bytes(b.build()).unwrap())
            .err()
            .unwrap();
        assert!(
            matches!(e, ImportError::Unsupported { ref value, .. } if value == name),
            "{e}"
        );
    }
}

#[test]
fn unsupported_architecture_tokenizer_and_rope_scaling() {
    let mut b = base();
    b.str("general.architecture", "gpt2");
    assert!(
        matches!(convert_err(&b), ImportError::Unsupported { ref value, .. } if value == "gpt2")
    );
    let mut b = base();
    b.str("tokenizer.ggml.model", "bert");
    assert!(
        matches!(convert_err(&b), ImportError::Unsupported { ref value, .. } if value == "bert")
    );
    let mut b = base();
    b.str("llama.rope.scaling.type", "yarn");
    assert!(
        matches!(convert_err(&b), ImportError::Unsupported { ref value, .. } if value == "yarn")
    );
    b.str("llama.rope.scaling.type", "none");
    config(&b);
}

#[test]
fn missing_and_mistyped_keys() {
    let mut b = base();
    b.remove("llama.embedding_length");
    assert!(
        matches!(convert_err(&b), ImportError::MissingKey { ref key } if key == "llama.embedding_length")
    );
    let mut b = base();
    b.str("llama.block_count", "two");
    assert!(
        matches!(convert_err(&b), ImportError::BadKey { ref key, .. } if key == "llama.block_count")
    );
    let mut b = base();
    b.raw("llama.block_count", vt::I32, (-1i32).to_le_bytes().to_vec());
    assert!(matches!(convert_err(&b), ImportError::BadKey { .. }));
    let mut b = base();
    b.raw(
        "llama.context_length",
        vt::U64,
        (1u64 << 40).to_le_bytes().to_vec(),
    );
    assert!(
        matches!(convert_err(&b), ImportError::BadKey { ref key, .. } if key == "llama.context_length")
    );
    let mut b = base();
    b.u32("tokenizer.ggml.tokens", 3);
    assert!(
        matches!(convert_err(&b), ImportError::BadKey { ref key, .. } if key == "tokenizer.ggml.tokens")
    );
    let mut b = base();
    b.remove("general.architecture");
    assert!(matches!(convert_err(&b), ImportError::MissingKey { .. }));
    let mut b = base();
    b.remove("tokenizer.ggml.tokens");
    assert!(
        matches!(convert_err(&b), ImportError::MissingKey { ref key } if key == "tokenizer.ggml.tokens")
    );
}

#[test]
fn inconsistent_configurations() {
    let mut b = base();
    b.u32("llama.attention.head_count_kv", 3);
    assert!(matches!(convert_err(&b), ImportError::InvalidConfig { .. }));
    let mut b = base();
    b.u32("llama.block_count", 0);
    assert!(matches!(convert_err(&b), ImportError::InvalidConfig { .. }));
    let mut b = base();
    b.u32("llama.rope.dimension_count", 15);
    assert!(matches!(convert_err(&b), ImportError::InvalidConfig { .. }));
    let mut b = base();
    b.u32("llama.vocab_size", 41);
    assert!(matches!(
        convert_err(&b),
        ImportError::TableLength {
            expected: 41,
            found: 40,
            ..
        }
    ));
    let mut b = base();
    b.u32("tokenizer.ggml.eos_token_id", 40);
    assert!(matches!(
        convert_err(&b),
        ImportError::BadTokenId {
            id: 40,
            vocab: 40,
            ..
        }
    ));
    let mut b = base();
    b.f32_array("tokenizer.ggml.scores", &[0.0; 39]);
    assert!(matches!(
        convert_err(&b),
        ImportError::TableLength {
            expected: 40,
            found: 39,
            ..
        }
    ));
    let mut b = base();
    b.i32_array("tokenizer.ggml.token_type", &[300; 40]);
    assert!(matches!(convert_err(&b), ImportError::BadKey { .. }));
    let g = GgufFile::from_bytes(base().build()).unwrap();
    let opts = ConvertOptions {
        tile_rows: 0,
        ..ConvertOptions::default()
    };
    assert!(matches!(
        convert(&g, &opts, &mut |_, _| {}),
        Err(ImportError::InvalidOption { .. })
    ));
}

#[test]
fn missing_or_misshapen_tensors() {
    let mut b = base();
    b.remove_tensor("blk.1.ffn_up.weight");
    let e = convert_err(&b);
    assert!(matches!(e, ImportError::MissingTensor { ref name } if name == "blk.1.ffn_up.weight"));
    assert!(e.to_string().contains("blk.1.ffn_up.weight"));

    // Transposed: [out, in] written as GGUF dims instead of [in, out].
    let mut b = base();
    b.tensor(
        "blk.0.attn_k.weight",
        &[32, 64],
        gt::F32,
        vec![0; 32 * 64 * 4],
    );
    match convert_err(&b) {
        ImportError::ShapeMismatch {
            name,
            expected,
            expected_dims,
            found_dims,
        } => {
            assert_eq!(name, "blk.0.attn_k.weight");
            assert_eq!(
                (expected, expected_dims, found_dims),
                (vec![32, 64], vec![64, 32], vec![32, 64])
            );
        }
        e => panic!("{e}"),
    }
    let mut b = base();
    b.tensor("output_norm.weight", &[63], gt::F32, vec![0; 63 * 4]);
    assert!(matches!(convert_err(&b), ImportError::ShapeMismatch { .. }));
    let mut b = base();
    b.tensor("output.weight", &[64, 41], gt::F32, vec![0; 64 * 41 * 4]);
    assert!(
        matches!(convert_err(&b), ImportError::ShapeMismatch { ref name, .. } if name == "output.weight")
    );
}

#[test]
fn unsupported_tensor_types_name_the_tensor() {
    let mut b = base();
    // Q2_K (no TVL dtype): 256-element blocks of 84 bytes; ffn_up is [in 64, out 96]:
    // not a whole block per row, so use an extra tensor instead.
    b.tensor("extra.weight", &[256, 2], gt::Q2_K, vec![0; 168]);
    let e = convert_err(&b);
    assert!(
        matches!(e, ImportError::UnsupportedTensorType { ref name, ggml_type: GgmlType::Other(10) } if name == "extra.weight"),
        "{e}"
    );
    assert!(e.to_string().contains("Q2_K"));
}

#[test]
fn extra_tensors_are_kept() {
    let mut b = base();
    b.tensor("rope_freqs.weight", &[8], gt::F32, vec![0; 32])
        .tensor("extra.bias", &[4, 2, 2], gt::F32, vec![0; 64]);
    let g = GgufFile::from_bytes(b.build()).unwrap();
    let conv = convert(&g, &ConvertOptions::default(), &mut |_, _| {}).unwrap();
    let mut out = Vec::new();
    conv.writer.write_to(&mut out).unwrap();
    let tvl = TvlFile::from_bytes(&out).unwrap();
    assert_eq!(tvl.tensor("rope_freqs.weight").unwrap().shape(), [8]);
    assert_eq!(tvl.tensor("extra.bias").unwrap().shape(), [2, 2, 4]);
}

#[test]
fn convert_file_errors_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.gguf");
    let mut b = base();
    b.remove_tensor("token_embd.weight");
    std::fs::write(&input, b.build()).unwrap();
    let out = dir.path().join("out.tvl");
    let e = vtc_import::convert_file(&input, &out, &ConvertOptions::default(), &mut |_, _| {});
    assert!(matches!(e, Err(ImportError::MissingTensor { .. })));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // An unwritable destination is an Io error naming the path; no temp file remains.
    let e = vtc_import::convert_file(
        &input,
        &dir.path().join("no/such/dir/out.tvl"),
        &ConvertOptions::default(),
        &mut |_, _| {},
    );
    assert!(matches!(e, Err(ImportError::MissingTensor { .. })));
    std::fs::write(&input, base().build()).unwrap();
    let e = vtc_import::convert_file(
        &input,
        &dir.path().join("no/such/dir/out.tvl"),
        &ConvertOptions::default(),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(e, ImportError::Io { .. }), "{e}");
    assert!(e.to_string().contains("no/such/dir"));
    // And a good conversion replaces an existing file atomically.
    std::fs::write(&out, b"old").unwrap();
    let r =
        vtc_import::convert_file(&input, &out, &ConvertOptions::default(), &mut |_, _| {}).unwrap();
    assert_eq!(std::fs::metadata(&out).unwrap().len(), r.bytes_written);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

/// The tiny Llama's keys under another architecture's name.
fn as_arch(name: &str) -> GgufBuilder {
    let mut b = base();
    b.str("general.architecture", name)
        .rename_prefix("llama.", &format!("{name}."));
    b
}

#[test]
fn architectures_become_block_flags_and_their_tensors_are_required() {
    use tvl_format::{Arch, RopeStyle, block_flags};
    let c = config(&base());
    assert_eq!((c.arch, c.block_flags), (Arch::Llama as u32, 0));
    assert_eq!(c.rope_style, RopeStyle::Interleaved as u32);
    for (name, arch, flags, first_missing) in [
        (
            "qwen2",
            Arch::Qwen2,
            block_flags::QKV_BIAS,
            "blk.0.attn_q.bias",
        ),
        (
            "qwen3",
            Arch::Qwen3,
            block_flags::QK_NORM,
            "blk.0.attn_q_norm.weight",
        ),
        (
            "gemma3",
            Arch::Gemma3,
            block_flags::QK_NORM
                | block_flags::POST_ATTN_NORM
                | block_flags::POST_FFN_NORM
                | block_flags::GELU,
            "blk.0.attn_q_norm.weight",
        ),
    ] {
        let b = as_arch(name);
        let c = config(&b);
        assert_eq!((c.arch, c.block_flags), (arch as u32, flags), "{name}");
        assert_eq!(c.rope_style, RopeStyle::HalfSplit as u32, "{name}");
        // The tiny Llama lacks what the architecture adds: the table asks for it.
        assert!(
            matches!(convert_err(&b), ImportError::MissingTensor { ref name, .. } if name == first_missing),
            "{name}"
        );
    }
    // A Llama with RoPE frequency divisors is Llama 3's scaled RoPE.
    let mut b = base();
    b.tensor("rope_freqs.weight", &[8], gt::F32, vec![0; 32]);
    assert_eq!(config(&b).block_flags, block_flags::ROPE_FREQS);
    let mut b = base();
    b.tensor("rope_freqs.weight", &[7], gt::F32, vec![0; 28]);
    assert!(
        matches!(convert_err(&b), ImportError::ShapeMismatch { ref name, .. } if name == "rope_freqs.weight")
    );
}

#[test]
fn gemma3_scales_and_sliding_window() {
    let b = as_arch("gemma3");
    let c = config(&b);
    assert_eq!(c.embed_scale, 8.0, "sqrt(dim 64)");
    assert_eq!(c.attn_scale, 0.25, "1 / sqrt(head_dim 16)");
    assert_eq!(
        (c.sliding_window, c.swa_pattern, c.rope_theta_local),
        (0, 0, 0.0)
    );
    let mut b = as_arch("gemma3");
    b.u32("gemma3.attention.sliding_window", 512);
    let c = config(&b);
    assert_eq!(
        (c.sliding_window, c.swa_pattern, c.rope_theta_local),
        (512, 6, 10000.0)
    );
    b.f32("gemma3.rope.freq_base_swa", 5000.0)
        .u32("gemma3.attention.sliding_window_pattern", 4);
    let c = config(&b);
    assert_eq!((c.swa_pattern, c.rope_theta_local), (4, 5000.0));
}

#[test]
fn what_the_graph_cannot_run_is_refused() {
    let unsupported = |b: &GgufBuilder, what_has: &str| match convert_err(b) {
        ImportError::Unsupported { what, .. } => assert!(what.contains(what_has), "{what}"),
        other => panic!("{what_has}: {other}"),
    };
    let mut b = as_arch("gemma3");
    b.u32("gemma3.attention.sliding_window", 512).raw(
        "gemma3.attention.sliding_window_pattern",
        vt::ARRAY,
        {
            let mut v = vt::BOOL.to_le_bytes().to_vec();
            v.extend(2u64.to_le_bytes());
            v.extend([1, 0]);
            v
        },
    );
    unsupported(&b, "sliding_window_pattern");
    let mut b = as_arch("gemma3");
    b.f32("gemma3.final_logit_softcapping", 30.0);
    unsupported(&b, "final_logit_softcapping");
    let mut b = as_arch("gemma3");
    b.str("gemma3.rope.scaling.type", "linear");
    unsupported(&b, "rope.scaling.type");
    let mut b = base();
    b.u32("llama.attention.key_length", 16)
        .u32("llama.rope.dimension_count", 8);
    unsupported(&b, "partial rotary");
    let b = as_arch("mistral3");
    unsupported(&b, "general.architecture");
}
