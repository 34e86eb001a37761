//! Perplexity against the float64 reference of `scripts/perplexity_reference.py`, stored in
//! `tests/data/perplexity-reference.json`: the synthetic GQA model on every backend, and
//! SmolLM2-135M-Instruct (f32 TVL) on the default backend.

mod common;

use std::path::PathBuf;

use tvl_loader::TvlFile;
use vtc_import::convert::OutDType;
use vtc_kernels::Backend;
use vtc_model::{Model, ModelError, PerplexityReport, perplexity, perplexity_ids};

/// Relative error allowed between our perplexity and the float64 reference (0.1%).
const TOLERANCE: f64 = 1e-3;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A reference case: its window length, ids and expected figures.
struct Case {
    ctx: usize,
    ids: Vec<u32>,
    perplexity: f64,
    nll_sum: f64,
    tokens_scored: usize,
    windows: usize,
    json: serde_json::Value,
}

fn case(name: &str) -> Case {
    let j = common::read_json(data("perplexity-reference.json"));
    let c = &j["cases"][name];
    assert!(c.is_object(), "no case {name} in perplexity-reference.json");
    Case {
        ctx: c["ctx"].as_u64().unwrap() as usize,
        ids: c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect(),
        perplexity: c["perplexity"].as_f64().unwrap(),
        nll_sum: c["nll_sum"].as_f64().unwrap(),
        tokens_scored: c["tokens_scored"].as_u64().unwrap() as usize,
        windows: c["windows"].as_u64().unwrap() as usize,
        json: c.clone(),
    }
}

fn english() -> String {
    std::fs::read_to_string(data("english.txt")).unwrap()
}

/// Run `case` and compare; returns the relative perplexity error.
fn check(model: &Model<'_>, be: &dyn Backend, case: &Case, what: &str) -> f64 {
    let t = std::time::Instant::now();
    let r: PerplexityReport = perplexity(model, be, &case.ids, case.ctx, &mut |_, _| {}).unwrap();
    let rel = (r.perplexity - case.perplexity).abs() / case.perplexity;
    eprintln!(
        "{what} on {}: perplexity {:.6} vs float64 {:.6}: relative error {rel:.3e} \
         (nll_sum {:.6} vs {:.6}; {} tokens scored in {:.1} s)",
        be.name(),
        r.perplexity,
        case.perplexity,
        r.nll_sum,
        case.nll_sum,
        r.tokens_scored,
        t.elapsed().as_secs_f64()
    );
    assert_eq!(r.tokens_scored, case.tokens_scored, "{what}");
    assert_eq!(r.windows, case.windows, "{what}");
    assert_eq!(r.ctx, case.ctx);
    assert!(
        rel < TOLERANCE,
        "{what} on {}: perplexity {} vs reference {} (relative error {rel:.3e})",
        be.name(),
        r.perplexity,
        case.perplexity
    );
    rel
}

#[test]
fn synthetic_perplexity_matches_the_float64_reference_on_every_backend() {
    let file = TvlFile::open(common::synthetic_tvl(OutDType::F32)).unwrap();
    let model = Model::load(&file).unwrap();
    let case = case("synthetic-gqa");
    // The reference ids are our tokenizer's for a byte range of english.txt: check they
    // still are, so the reference applies.
    let range = &case.json["text_bytes"];
    let (a, b) = (
        range[0].as_u64().unwrap() as usize,
        range[1].as_u64().unwrap() as usize,
    );
    let ids = perplexity_ids(model.tokenizer(), &english()[a..b]).unwrap();
    assert_eq!(
        ids, case.ids,
        "tokenization of english.txt[{a}..{b}] changed"
    );
    // Several windows and a partial last one.
    assert!(case.windows >= 3 && case.ids.len() % case.ctx >= 2);
    let backends = vtc_kernels::available();
    assert!(!backends.is_empty());
    for be in backends {
        check(&model, be, &case, "synthetic-gqa f32");
    }
}

#[test]
fn synthetic_windows_run_from_an_empty_cache() {
    let file = TvlFile::open(common::synthetic_tvl(OutDType::F32)).unwrap();
    let model = Model::load(&file).unwrap();
    let ids = &case("synthetic-gqa").ids;
    let be = &vtc_kernels::Scalar;
    let run = |ids: &[u32], ctx| perplexity(&model, be, ids, ctx, &mut |_, _| {}).unwrap();
    // Windows are independent: the whole run is the sum of its windows run alone.
    let whole = run(&ids[..64 * 3 + 10], 64);
    let parts: f64 = [0..64, 64..128, 128..192, 192..202]
        .into_iter()
        .map(|w| run(&ids[w], 64).nll_sum)
        .sum();
    assert_eq!((whole.windows, whole.tokens_scored), (4, 3 * 63 + 9));
    assert!(
        (whole.nll_sum - parts).abs() <= 1e-9 * parts,
        "{whole:?} vs {parts}"
    );
    // A single trailing token is not scored.
    assert_eq!(run(&ids[..129], 64).tokens_scored, 2 * 63);
    // Progress counts every scored token.
    let mut last = (0, 0);
    perplexity(&model, be, &ids[..100], 64, &mut |d, t| last = (d, t)).unwrap();
    assert_eq!(last, (63 + 35, 63 + 35));
}

#[test]
fn synthetic_perplexity_rejects_bad_input_with_typed_errors() {
    let file = TvlFile::open(common::synthetic_tvl(OutDType::F32)).unwrap();
    let model = Model::load(&file).unwrap();
    let be = &vtc_kernels::Scalar;
    let ids = [1u32, 5, 9, 200, 17];
    for ctx in [0, 1, 65] {
        assert!(
            matches!(
                perplexity(&model, be, &ids, ctx, &mut |_, _| {}),
                Err(ModelError::PerplexityWindow { max: 64, .. })
            ),
            "ctx {ctx}"
        );
    }
    for few in [&ids[..0], &ids[..1]] {
        assert!(matches!(
            perplexity(&model, be, few, 64, &mut |_, _| {}),
            Err(ModelError::TooFewTokens { .. })
        ));
    }
    // An id outside the vocabulary, even as the last (scored, never run) token.
    assert!(matches!(
        perplexity(&model, be, &[1, 2, 256], 64, &mut |_, _| {}),
        Err(ModelError::TokenOutOfRange { token: 256, .. })
    ));
    // Two tokens are enough; ctx may equal the model's context length.
    let r = perplexity(&model, be, &ids[..2], 64, &mut |_, _| {}).unwrap();
    assert_eq!((r.tokens_scored, r.windows), (1, 1));
    assert!(r.perplexity.is_finite() && r.perplexity > 1.0);
}

#[test]
fn smollm2_f32_perplexity_matches_the_float64_reference() {
    let file = TvlFile::open(common::smollm2(OutDType::F32)).unwrap();
    let model = Model::load(&file).unwrap();
    // The whole text tokenizes to the reference's ids (checked in full; cheap).
    let full = case("smollm2-ctx512");
    let ids = perplexity_ids(model.tokenizer(), &english()).unwrap();
    assert_eq!(ids, full.ids, "tokenization of english.txt changed");
    // Scoring runs on a prefix (2 windows of 256) to keep the test short; `vtc
    // perplexity` on the whole text is measured against `smollm2-ctx512` by hand.
    let prefix = case("smollm2-ctx256-prefix512");
    assert_eq!(prefix.ids[..], full.ids[..prefix.ids.len()]);
    let be = vtc_kernels::select(None).unwrap();
    check(
        &model,
        be,
        &prefix,
        "smollm2 f32 (first 512 tokens, ctx 256)",
    );
}

/// Quantized SmolLM2 on the same prefix: the lossless Q4_1 conversion (same weights as
/// the reference, int8 activations) within 1% of the float64 perplexity, Q8_0 (weights
/// requantized) within 2%.
#[test]
fn smollm2_quantized_perplexity_is_within_the_issue_bounds() {
    let prefix = case("smollm2-ctx256-prefix512");
    let be = vtc_kernels::select(None).unwrap();
    for (dtype, bound) in [(OutDType::Q4_1, 0.01), (OutDType::Q8_0, 0.02)] {
        let file = TvlFile::open(common::smollm2(dtype)).unwrap();
        let model = Model::load(&file).unwrap();
        let r = perplexity(&model, be, &prefix.ids, prefix.ctx, &mut |_, _| {}).unwrap();
        let rel = (r.perplexity - prefix.perplexity).abs() / prefix.perplexity;
        eprintln!(
            "smollm2 {dtype} on {}: perplexity {:.4} vs float64 {:.4} ({:+.3}%)",
            be.name(),
            r.perplexity,
            prefix.perplexity,
            100.0 * (r.perplexity / prefix.perplexity - 1.0)
        );
        assert_eq!(r.tokens_scored, prefix.tokens_scored);
        assert!(rel < bound, "{dtype}: relative error {rel:.4} >= {bound}");
    }
}
