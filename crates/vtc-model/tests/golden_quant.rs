//! Quantized SmolLM2-135M-Instruct (the lossless Q4_1 conversion, and a Q8_0 one
//! requantized from it) against the float64 reference, teacher-forced: the top-1 token
//! must equal the reference's wherever the reference margin exceeds 1.0 and at >= 90%
//! of all steps. The quantized products are bit-identical on every backend (the kernel
//! tests check that against Scalar); the whole model's logits are bit-identical across
//! the SIMD backends, which also share one order for the float kernels.

mod common;

use vtc_import::convert::OutDType;
use vtc_model::{Model, Session, argmax};

fn check(dtype: OutDType) {
    let path = common::smollm2(dtype);
    let file = tvl_loader::TvlFile::open(&path).unwrap();
    let model = Model::load(&file).unwrap();
    let cases = common::smollm2_cases();
    // Every backend's logits at every step, flattened, to compare bit for bit.
    let mut first: Option<(&str, Vec<u32>)> = None;
    for be in vtc_kernels::available() {
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
        match &first {
            _ if be.name() == "scalar" => {}
            None => first = Some((be.name(), bits)),
            Some((name, want)) => assert!(
                *want == bits,
                "{dtype}: {} logits differ from {name}'s",
                be.name()
            ),
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
