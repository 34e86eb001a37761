//! The synthetic GQA model (2 layers, 4 heads / 2 kv heads, untied output) against its
//! float64 reference logits, through GGUF -> TVL -> forward.

mod common;

use tvl_loader::TvlFile;
use vtc_import::convert::OutDType;
use vtc_kernels::Backend;
use vtc_model::{Model, Session};

/// Every backend this CPU runs (scalar, avx2, avx512 or neon).
fn backends() -> Vec<&'static dyn Backend> {
    let all = vtc_kernels::available();
    assert!(all.len() >= 2 || cfg!(not(any(target_arch = "x86_64", target_arch = "aarch64"))));
    all
}

#[test]
fn synthetic_f32_matches_the_float64_reference_on_every_backend() {
    let file = TvlFile::open(common::synthetic_tvl(OutDType::F32)).unwrap();
    let model = Model::load(&file).unwrap();
    assert_eq!(model.config().n_kv_heads, 2);
    assert!(!model.config().tied_output);
    let (tokens, logits) = common::reference("logits");
    let (_, neox) = common::reference("logits_neox");
    for be in backends() {
        let err = common::max_err(&model, be, &tokens, &logits);
        eprintln!(
            "synthetic f32 on {}: max |logit error| = {err:.3e}",
            be.name()
        );
        assert!(err < 1e-4, "{}: max logit error {err}", be.name());
        // The NeoX pairing gives different logits: the test tells the conventions apart.
        assert!(common::max_err(&model, be, &tokens, &neox) > 1e-2);
    }
}

#[test]
fn synthetic_f16_is_close_to_the_reference_on_every_backend() {
    let file = TvlFile::open(common::synthetic_tvl(OutDType::F16)).unwrap();
    let model = Model::load(&file).unwrap();
    let (tokens, logits) = common::reference("logits");
    for be in backends() {
        let err = common::max_err(&model, be, &tokens, &logits);
        eprintln!(
            "synthetic f16 on {}: max |logit error| = {err:.3e}",
            be.name()
        );
        assert!(err < 2e-2, "{}: max logit error {err}", be.name());
    }
}

/// Every backend computes in the canonical order: the float models' logits are the same
/// bits on all of them.
#[test]
fn synthetic_float_logits_are_bit_identical_across_backends() {
    let (tokens, _) = common::reference("logits");
    for dtype in [OutDType::F32, OutDType::F16] {
        let file = TvlFile::open(common::synthetic_tvl(dtype)).unwrap();
        let model = Model::load(&file).unwrap();
        let run = |be: &dyn Backend| {
            let mut s = Session::new(&model, be, tokens.len()).unwrap();
            tokens
                .iter()
                .flat_map(|&t| s.forward(t).unwrap().to_vec())
                .map(f32::to_bits)
                .collect::<Vec<_>>()
        };
        let want = run(&vtc_kernels::Scalar);
        for be in backends() {
            assert!(
                run(be) == want,
                "{dtype} on {}: logits differ from scalar's",
                be.name()
            );
        }
    }
}

#[test]
fn synthetic_logits_are_bit_identical_across_runs() {
    let file = TvlFile::open(common::synthetic_tvl(OutDType::F32)).unwrap();
    let model = Model::load(&file).unwrap();
    let (tokens, _) = common::reference("logits");
    for be in backends() {
        let run = || {
            let mut s = Session::new(&model, be, tokens.len()).unwrap();
            tokens
                .iter()
                .map(|&t| s.forward(t).unwrap().to_vec())
                .collect::<Vec<_>>()
        };
        let (a, b) = (run(), run());
        let bits = |v: &Vec<Vec<f32>>| v.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b), "{}", be.name());
    }
}

#[test]
fn synthetic_session_limits_are_typed_errors() {
    let file = TvlFile::open(common::synthetic_tvl(OutDType::F32)).unwrap();
    let model = Model::load(&file).unwrap();
    let mut s = Session::new(&model, vtc_kernels::Scalar, 2).unwrap();
    assert!(matches!(
        s.forward(256),
        Err(vtc_model::ModelError::TokenOutOfRange { .. })
    ));
    s.forward(1).unwrap();
    s.forward(2).unwrap();
    assert!(matches!(
        s.forward(3),
        Err(vtc_model::ModelError::ContextFull { .. })
    ));
    assert!(matches!(
        Session::new(&model, vtc_kernels::Scalar, 65),
        Err(vtc_model::ModelError::ContextTooLong { .. })
    ));
    let mut s = Session::new(&model, vtc_kernels::Scalar, 8).unwrap();
    let opts = vtc_model::GenerateOptions {
        max_tokens: 8,
        ..Default::default()
    };
    assert!(matches!(
        s.generate(&[1, 2], opts),
        Err(vtc_model::ModelError::ContextTooLong { .. })
    ));
    assert!(matches!(
        s.generate(&[], opts),
        Err(vtc_model::ModelError::EmptyPrompt)
    ));
}

#[test]
fn synthetic_quantized_models_are_close_and_agree_across_backends() {
    let (tokens, logits) = common::reference("logits");
    // Looser for 4 bits: the reference is the unquantized model.
    for (dtype, tol) in [
        (OutDType::Q8_0, 0.05),
        (OutDType::Q4_0, 0.5),
        (OutDType::Q4_1, 0.5),
    ] {
        let file = TvlFile::open(common::synthetic_tvl(dtype)).unwrap();
        let model = Model::load(&file).unwrap();
        let mut runs: Vec<(String, Vec<u32>)> = Vec::new();
        #[allow(unused_mut)]
        let mut all: Vec<Box<dyn Backend>> = backends()
            .into_iter()
            .map(|b| Box::new(b) as Box<dyn Backend>)
            .collect();
        // The plain-NEON integer path beside SDOT: same bits required.
        #[cfg(target_arch = "aarch64")]
        all.push(Box::new(vtc_kernels::arch::aarch64::Neon::without_dotprod()));
        for be in &all {
            let err = common::max_err(&model, be.as_ref(), &tokens, &logits);
            eprintln!(
                "synthetic {dtype} on {}: max |logit error| = {err:.3e}",
                be.name()
            );
            assert!(err < tol, "{dtype} on {}: max logit error {err}", be.name());
            let mut s = Session::new(&model, be.as_ref(), tokens.len()).unwrap();
            let bits = tokens
                .iter()
                .flat_map(|&t| s.forward(t).unwrap().to_vec())
                .map(f32::to_bits)
                .collect();
            runs.push((be.name().to_string(), bits));
        }
        for (name, bits) in runs.iter().skip(1) {
            assert!(
                *bits == runs[0].1,
                "{dtype}: {name} logits differ from {}'s",
                runs[0].0
            );
        }
    }
}

#[test]
fn synthetic_logits_are_bit_identical_for_any_thread_count() {
    let (tokens, _) = common::reference("logits");
    for dtype in [OutDType::F32, OutDType::Q4_1] {
        let file = TvlFile::open(common::synthetic_tvl(dtype)).unwrap();
        let model = Model::load(&file).unwrap();
        let run = |be: &dyn Backend| {
            let mut s = Session::new(&model, be, tokens.len()).unwrap();
            tokens
                .iter()
                .flat_map(|&t| s.forward(t).unwrap().to_vec())
                .map(f32::to_bits)
                .collect::<Vec<_>>()
        };
        for be in backends() {
            let want = run(be);
            for threads in 1..=4 {
                let t = vtc_kernels::Threaded::new(be, threads).unwrap();
                assert!(run(&t) == want, "{dtype} {} x{threads}", be.name());
            }
        }
    }
}
