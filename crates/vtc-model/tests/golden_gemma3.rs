//! Gemma 3 270M (the real model, Q4_K_M GGUF fetched through pip) against llama.cpp
//! b11312 on five prompts, one of 678 tokens so the 512-token sliding window of the
//! local layers matters (`data/gemma3-llamacpp-*.json`, written by
//! `scripts/gemma3_logits_reference.py`). Teacher-forced along llama.cpp's greedy
//! path:
//! - the file converted losslessly (`--dtype keep`: Q8_0, Q5_0, Q4_K, Q6_K): our top-1
//!   equals llama.cpp's wherever llama.cpp's top1 - top2 margin exceeds 1.0 (both
//!   multiply int8-quantized activations, in different orders);
//! - dequantized to f32 (`--dtype f32`; llama.cpp ran its own f32 dequantization): our
//!   logits of llama.cpp's top-8 tokens within 2e-2 of llama.cpp's at every position;
//! - our tokenizer encodes each prompt to llama.cpp's ids.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use tvl_format::{Arch, block_flags};
use tvl_loader::TvlFile;
use vtc_import::convert::{ConvertOptions, OutDType};
use vtc_kernels::Backend;
use vtc_model::{Model, Session};

/// One prompt of a reference file: llama.cpp's fed tokens and, after each, its top-8
/// `(id, logit)` and top1 - top2 margin.
struct Case {
    name: String,
    text: String,
    n_prompt: usize,
    tokens: Vec<u32>,
    top: Vec<Vec<(u32, f64)>>,
    margin: Vec<f64>,
}

fn cases(file: &str) -> Vec<Case> {
    let j = common::read_json(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(file),
    );
    j["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            text: c["text"].as_str().unwrap().to_string(),
            n_prompt: c["n_prompt"].as_u64().unwrap() as usize,
            tokens: common::ids(&c["tokens"]),
            top: c["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| {
                    row.as_array()
                        .unwrap()
                        .iter()
                        .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap()))
                        .collect()
                })
                .collect(),
            margin: c["margin"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_f64().unwrap())
                .collect(),
        })
        .collect()
}

/// Gemma 3 270M converted to TVL in `dtype` (once per test binary and dtype).
fn gemma3(dtype: OutDType) -> PathBuf {
    static KEEP: OnceLock<PathBuf> = OnceLock::new();
    static F32: OnceLock<PathBuf> = OnceLock::new();
    let cell = match dtype {
        OutDType::Keep => &KEEP,
        OutDType::F32 => &F32,
        other => panic!("no cell for {other}"),
    };
    cell.get_or_init(|| {
        // One file per dtype, converted anew by each run (the f32 one is 1.1 GB).
        let out =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("gemma3-270m.{dtype}.tvl"));
        let opts = ConvertOptions {
            dtype,
            ..ConvertOptions::default()
        };
        vtc_import::convert::convert_file(&common::gemma3_gguf(), &out, &opts, &mut |_, _| {})
            .expect("converting Gemma 3 270M");
        out
    })
    .clone()
}

/// Our logits after every token of `tokens`, in batched passes.
fn score(model: &Model<'_>, be: &dyn Backend, tokens: &[u32], each: &mut dyn FnMut(usize, &[f32])) {
    let mut s = Session::new(model, be, tokens.len()).unwrap();
    s.score(tokens, each).unwrap();
}

fn argmax(l: &[f32]) -> u32 {
    vtc_model::argmax(l)
}

#[test]
fn config_is_gemma3() {
    let path = gemma3(OutDType::Keep);
    let file = TvlFile::open(&path).unwrap();
    let c = file.config();
    assert_eq!(c.arch, Arch::Gemma3 as u32);
    assert_eq!(
        c.block_flags,
        block_flags::QK_NORM
            | block_flags::POST_ATTN_NORM
            | block_flags::POST_FFN_NORM
            | block_flags::GELU
    );
    assert_eq!(
        (c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim),
        (640, 18, 4, 1, 256)
    );
    assert_eq!((c.sliding_window, c.swa_pattern), (512, 6));
    assert_eq!((c.rope_theta, c.rope_theta_local), (1e6, 1e4));
    assert_eq!(c.embed_scale, 640f32.sqrt());
    assert_eq!(c.attn_scale, 1.0 / 16.0);
    assert_eq!(c.tied_output, 1);
    let model = Model::load(&file).unwrap();
    let local: Vec<usize> = (0..18).filter(|&l| !model.config().is_local(l)).collect();
    assert_eq!(local, [5, 11, 17], "the global layers");
}

#[test]
fn tokenizer_encodes_the_prompts_as_llama_cpp() {
    let path = gemma3(OutDType::Keep);
    let file = TvlFile::open(&path).unwrap();
    let model = Model::load(&file).unwrap();
    for case in cases("gemma3-llamacpp-q4_k_m.json") {
        let ids = model.tokenizer().encode_prompt(&case.text).unwrap();
        assert_eq!(ids, case.tokens[..case.n_prompt], "{}", case.name);
    }
}

#[test]
fn q4_k_m_top1_equals_llama_cpp_where_its_margin_exceeds_one() {
    let path = gemma3(OutDType::Keep);
    let file = TvlFile::open(&path).unwrap();
    let model = Model::load(&file).unwrap();
    let be = vtc_kernels::detect();
    let (mut confident, mut agree_all, mut total) = (0, 0, 0);
    for case in cases("gemma3-llamacpp-q4_k_m.json") {
        assert!(
            case.tokens.len() > 600 || case.name != "long",
            "{}",
            case.name
        );
        let mut bad = Vec::new();
        score(&model, &be, &case.tokens, &mut |p, l| {
            let (ours, theirs) = (argmax(l), case.top[p][0].0);
            total += 1;
            agree_all += usize::from(ours == theirs);
            if case.margin[p] > 1.0 {
                confident += 1;
                if ours != theirs {
                    bad.push((p, ours, theirs, case.margin[p]));
                }
            }
        });
        assert!(
            bad.is_empty(),
            "{}: top-1 differs at (pos, ours, llama.cpp, margin) {bad:?}",
            case.name
        );
    }
    eprintln!(
        "Gemma 3 Q4_K_M: top-1 = llama.cpp's at all {confident} positions with margin > 1; at {agree_all} of all {total}"
    );
    assert!(confident > 300, "{confident}");
}

#[test]
fn f32_logits_within_2e_2_of_llama_cpp() {
    let path = gemma3(OutDType::F32);
    let file = TvlFile::open(&path).unwrap();
    let model = Model::load(&file).unwrap();
    let be = vtc_kernels::detect();
    let mut worst = (0.0f64, String::new());
    for case in cases("gemma3-llamacpp-f32.json") {
        score(&model, &be, &case.tokens, &mut |p, l| {
            for &(id, want) in &case.top[p] {
                let d = (f64::from(l[id as usize]) - want).abs();
                if d > worst.0 {
                    worst = (d, format!("{} position {p} token {id}", case.name));
                }
            }
        });
    }
    eprintln!(
        "Gemma 3 f32: max |ours - llama.cpp| over the top-8 logits {:.3e} ({})",
        worst.0, worst.1
    );
    assert!(worst.0 <= 2e-2, "{:.3e} at {}", worst.0, worst.1);
}
