//! Quantized SmolLM2-135M-Instruct (the lossless Q4_1 conversion, and a Q8_0 one
//! requantized from it) against the float64 reference, teacher-forced: the top-1 token
//! must equal the reference's wherever the reference margin exceeds 1.0 and at >= 90%
//! of all steps. Every backend (Scalar included) and the threaded pool compute every
//! kernel in one canonical order, so the whole model's logits at every step and its
//! greedy continuations must be the same bits on all of them.

mod common;

use vtc_import::convert::OutDType;
use vtc_kernels::Backend;
use vtc_model::{GenerateOptions, Model, SamplerConfig, Session, argmax};

/// 24 greedy tokens after each prompt.
fn greedy(model: &Model<'_>, be: &dyn Backend, prompts: &[Vec<u32>]) -> Vec<Vec<u32>> {
    prompts
        .iter()
        .map(|p| {
            let mut s = Session::new(model, be, p.len() + 24).unwrap();
            let opts = GenerateOptions {
                max_tokens: 24,
                sampler: SamplerConfig {
                    temperature: 0.0,
                    ..Default::default()
                },
                stop_at_eos: false,
            };
            s.generate(p, opts)
                .unwrap()
                .map(|g| g.unwrap().id)
                .collect()
        })
        .collect()
}

fn check(dtype: OutDType) {
    let path = common::smollm2(dtype);
    let file = tvl_loader::TvlFile::open(&path).unwrap();
    let model = Model::load(&file).unwrap();
    let cases = common::smollm2_cases();
    // Every backend's logits at every step, flattened, to compare bit for bit.
    let mut first: Option<(String, Vec<u32>, Vec<Vec<u32>>)> = None;
    // The held-out prompt whose greedy text once differed between Scalar and SIMD.
    let mut prompts: Vec<Vec<u32>> = cases.iter().map(|c| c.prompt_ids.clone()).collect();
    prompts.push(
        model
            .tokenizer()
            .encode_prompt("Photosynthesis is the process")
            .unwrap(),
    );
    for be in common::backends_and_pool() {
        let be = be.as_ref();
        let (mut agree, mut total, mut worst) = (0usize, 0usize, 0.0f64);
        let mut bits = Vec::new();
        for (k, c) in cases.iter().enumerate() {
            let (prompt, gen_ids, steps) = (&c.prompt_ids, &c.gen_ids, &c.steps);
            let mut s = Session::new(&model, be, prompt.len() + gen_ids.len()).unwrap();
            let mut logits = s.prefill(prompt).unwrap().to_vec();
            for (i, (top5, margin)) in steps.iter().enumerate() {
                bits.extend(logits.iter().map(|v| v.to_bits()));
                for &(id, want) in top5 {
                    worst = worst.max((logits[id as usize] as f64 - want).abs());
                }
                let top1 = argmax(&logits);
                total += 1;
                if top1 == gen_ids[i] {
                    agree += 1;
                } else {
                    assert!(
                        *margin <= 1.0,
                        "{dtype} on {}: prompt {k} step {i}: top-1 {top1}, reference {} \
                         with margin {margin}",
                        be.name(),
                        gen_ids[i]
                    );
                }
                logits = s.forward(gen_ids[i]).unwrap().to_vec();
            }
        }
        eprintln!(
            "smollm2 {dtype} on {}: top-1 agrees at {agree}/{total} teacher-forced steps; \
             max |logit error| over the reference top-5 {worst:.3}",
            be.name()
        );
        assert!(
            agree * 10 >= total * 9,
            "{dtype} on {}: top-1 agrees at only {agree}/{total} steps",
            be.name()
        );
        // A gross error (a wrong block, a wrong scale) moves logits by far more.
        assert!(worst < 2.0, "{dtype}: logit error {worst}");
        let ids = greedy(&model, be, &prompts);
        let name = format!("{} x{}", be.name(), be.threads());
        match &first {
            None => first = Some((name, bits, ids)),
            Some((first_name, want, want_ids)) => {
                assert!(
                    *want == bits,
                    "{dtype}: {name} logits differ from {first_name}'s"
                );
                assert_eq!(
                    ids, *want_ids,
                    "{dtype}: {name} greedy ids differ from {first_name}'s"
                );
            }
        }
    }
}

#[test]
fn q4_1_lossless_conversion_matches_the_reference() {
    check(OutDType::Q4_1);
}

#[test]
fn q8_0_conversion_matches_the_reference() {
    check(OutDType::Q8_0);
}
