//! Architectures as data, against llama.cpp (an independent implementation) on small
//! random-weight GGUFs written by `scripts/synthetic_arch_gguf.py`: Qwen2 (QKV biases,
//! half-split RoPE), Qwen3 (QK-norm, a head size that is not `dim / n_heads`), and
//! Llama with Llama 3's RoPE frequency divisors (`rope_freqs.weight`). Each is
//! converted to TVL (f32), teacher-forced along llama.cpp's path, and every logit at
//! every position must be within 2e-3 of llama.cpp's (b11312, f32 KV cache; the
//! script's variants show what the tolerance catches: without the divisors, the
//! biases or the norms the logits move by 1.5-6). Every backend and the 2-thread
//! pool must give the same bits, decoding token by token and batched.

mod common;

use std::path::PathBuf;

use tvl_format::{Arch, RopeStyle, block_flags};
use tvl_loader::TvlFile;
use vtc_import::convert::{ConvertOptions, OutDType};
use vtc_kernels::Backend;
use vtc_model::{Model, Session};

const TOLERANCE: f64 = 2e-3;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// One case of a `*-llamacpp.json` file: the fed tokens and llama.cpp's logits after
/// each.
struct Case {
    name: String,
    tokens: Vec<u32>,
    logits: Vec<Vec<f64>>,
}

fn cases(file: &str) -> Vec<Case> {
    let j = common::read_json(data(file));
    assert_eq!(
        j["kv_cache"], "f32",
        "{file}: the reference must use an f32 KV cache"
    );
    j["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let logits = common::f64_rows(&c["logits"]);
            let tokens = common::ids(&c["tokens"]);
            assert_eq!(tokens.len(), logits.len());
            Case {
                name: c["name"].as_str().unwrap().to_string(),
                tokens,
                logits,
            }
        })
        .collect()
}

/// The GGUF converted to an f32 TVL file in the test's temporary directory.
fn convert(gguf: &str) -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{}-{gguf}.tvl", std::process::id()));
    let opts = ConvertOptions {
        dtype: OutDType::F32,
        ..ConvertOptions::default()
    };
    vtc_import::convert::convert_file(&data(gguf), &out, &opts, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("converting {gguf}: {e}"));
    out
}

/// Logits after every token, decoded one at a time.
fn decode(model: &Model<'_>, be: &dyn Backend, tokens: &[u32]) -> Vec<f32> {
    let mut s = Session::new(model, be, tokens.len()).unwrap();
    tokens
        .iter()
        .flat_map(|&t| s.forward(t).unwrap().to_vec())
        .collect()
}

/// Logits after every token, in batches of 16 (three and a bit passes for 48).
fn batched(model: &Model<'_>, be: &dyn Backend, tokens: &[u32]) -> Vec<f32> {
    let mut s = Session::new(model, be, tokens.len()).unwrap();
    s.set_batch_size(16);
    let mut out = Vec::new();
    s.score(tokens, &mut |_, l| out.extend_from_slice(l))
        .unwrap();
    out
}

fn check(gguf: &str, reference: &str, arch: Arch, flags: u32) {
    let path = convert(gguf);
    let file = TvlFile::open(&path).unwrap();
    let c = file.config();
    assert_eq!((c.arch, c.block_flags), (arch as u32, flags), "{gguf}");
    let want_style = match arch {
        Arch::Llama => RopeStyle::Interleaved,
        _ => RopeStyle::HalfSplit,
    };
    assert_eq!(c.rope_style, want_style as u32, "{gguf}");
    let model = Model::load(&file).unwrap();
    let vocab = model.config().vocab_size;
    for case in cases(reference) {
        let mut first: Option<Vec<f32>> = None;
        for be in common::backends_and_pool() {
            for (how, got) in [
                ("decode", decode(&model, &*be, &case.tokens)),
                ("batched", batched(&model, &*be, &case.tokens)),
            ] {
                let mut worst = (0.0f64, 0);
                for (p, (row, want)) in got.chunks_exact(vocab).zip(&case.logits).enumerate() {
                    assert_eq!(row.len(), want.len());
                    for (a, b) in row.iter().zip(want) {
                        let d = (f64::from(*a) - b).abs();
                        if d > worst.0 {
                            worst = (d, p);
                        }
                    }
                }
                eprintln!(
                    "{gguf} {} {} {how}: max |ours - llama.cpp| {:.2e} (position {})",
                    case.name,
                    be.name(),
                    worst.0,
                    worst.1
                );
                assert!(
                    worst.0 <= TOLERANCE,
                    "{gguf} {} on {} ({how}): {:.3e} at position {} exceeds {TOLERANCE}",
                    case.name,
                    be.name(),
                    worst.0,
                    worst.1
                );
                match &first {
                    None => first = Some(got),
                    Some(f) => assert!(
                        f.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{gguf} {}: {} ({how}) differs in bits from the first backend",
                        case.name,
                        be.name()
                    ),
                }
            }
        }
    }
}

#[test]
fn synthetic_qwen2_biases_match_llama_cpp() {
    check(
        "qwen2-tiny.gguf",
        "qwen2-tiny-llamacpp.json",
        Arch::Qwen2,
        block_flags::QKV_BIAS,
    );
}

#[test]
fn synthetic_qwen3_qk_norm_match_llama_cpp() {
    check(
        "qwen3-tiny.gguf",
        "qwen3-tiny-llamacpp.json",
        Arch::Qwen3,
        block_flags::QK_NORM,
    );
}

#[test]
fn synthetic_llama3_rope_frequency_divisors_match_llama_cpp() {
    check(
        "llama3-tiny.gguf",
        "llama3-tiny-llamacpp.json",
        Arch::Llama,
        block_flags::ROPE_FREQS,
    );
}

/// The divisors stored in the file are Llama 3's recipe applied to the parameters the
/// script recorded (`vtc.llama3.*`), as the spec (section 4) defines it.
#[test]
fn synthetic_llama3_divisors_follow_the_spec_recipe() {
    let g = vtc_import::GgufFile::open(data("llama3-tiny.gguf")).unwrap();
    let num = |k: &str| {
        let v = g.get(k).unwrap_or_else(|| panic!("{k}"));
        v.as_f32().unwrap_or_else(|| panic!("{k}: {v}")) as f64
    };
    let (factor, lo, hi, orig) = (
        num("vtc.llama3.factor"),
        num("vtc.llama3.low_freq_factor"),
        num("vtc.llama3.high_freq_factor"),
        num("vtc.llama3.original_context_length"),
    );
    let theta = num("llama.rope.freq_base");
    let path = convert("llama3-tiny.gguf");
    let file = TvlFile::open(&path).unwrap();
    let hd = file.config().head_dim as usize;
    let stored = file.tensor("rope_freqs.weight").unwrap();
    let stored = stored.as_f32().unwrap();
    assert_eq!(stored.len(), hd / 2);
    let mut scaled = 0;
    for (i, &f) in stored.iter().enumerate() {
        let w = theta.powf(-2.0 * i as f64 / hd as f64);
        let lambda = 2.0 * std::f64::consts::PI / w;
        let want = if lambda < orig / hi {
            1.0
        } else if lambda > orig / lo {
            factor
        } else {
            let s = (orig / lambda - lo) / (hi - lo);
            1.0 / ((1.0 - s) / factor + s)
        };
        assert!(
            (f as f64 - want).abs() < 1e-5 * want,
            "pair {i}: {f} vs {want}"
        );
        scaled += usize::from(f != 1.0);
    }
    assert!(scaled > 0 && scaled < hd / 2, "{stored:?}");
}
