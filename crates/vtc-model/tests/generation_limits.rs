//! Generation limits as a property: for any session size, tokens already held, prompt
//! length and `max_tokens`, `generate` either refuses up front with
//! `ModelError::ContextTooLong` (exactly when the prompt plus the new tokens do not fit)
//! or runs to the end without any error, never past the session's KV cache.

mod common;

use proptest::prelude::*;
use tvl_loader::TvlFile;
use vtc_import::convert::OutDType;
use vtc_model::{GenerateOptions, Model, ModelError, SamplerConfig, Session, StopReason};

fn file() -> &'static TvlFile {
    static FILE: std::sync::OnceLock<TvlFile> = std::sync::OnceLock::new();
    FILE.get_or_init(|| TvlFile::open(common::synthetic_tvl(OutDType::F32)).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn generation_fits_the_context_or_is_refused(
        max_seq in 1usize..=64,
        held in 0usize..8,
        prompt in proptest::collection::vec(0u32..256, 0..12),
        max_tokens in 0usize..16,
        stop_at_eos in any::<bool>(),
    ) {
        let model = Model::load(file()).unwrap();
        let ctx = model.config().context_len;
        prop_assert_eq!(ctx, 64);
        let mut s = Session::new(&model, vtc_kernels::Scalar, max_seq).unwrap();
        let held = held.min(max_seq);
        for t in 0..held {
            s.forward(t as u32 + 3).unwrap();
        }
        let opts = GenerateOptions {
            max_tokens,
            sampler: SamplerConfig { temperature: 0.0, ..SamplerConfig::default() },
            stop_at_eos,
        };
        // The last generated token is never fed back, hence the + 1.
        let fits = held + prompt.len() + max_tokens <= max_seq + 1;
        match s.generate(&prompt, opts) {
            Err(ModelError::EmptyPrompt) => prop_assert!(prompt.is_empty()),
            Err(ModelError::ContextTooLong { requested, max }) => {
                prop_assert!(!fits && !prompt.is_empty());
                prop_assert_eq!(max, max_seq);
                prop_assert_eq!(requested, held + prompt.len() + max_tokens - 1);
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
            Ok(mut g) => {
                prop_assert!(fits && !prompt.is_empty());
                let mut n = 0;
                for step in g.by_ref() {
                    step.unwrap();
                    n += 1;
                }
                prop_assert!(n <= max_tokens);
                if n < max_tokens {
                    prop_assert_eq!(g.stop_reason(), Some(StopReason::EndOfSequence));
                }
                let _ = g.finish();
                prop_assert!(s.pos() <= max_seq);
            }
        }
        // A session larger than the model's context is refused as well.
        let too_long = Session::new(&model, vtc_kernels::Scalar, ctx + 1 + max_seq);
        prop_assert!(
            matches!(too_long, Err(ModelError::ContextTooLong { requested, max })
                if requested == ctx + 1 + max_seq && max == ctx),
            "session beyond the context was not refused"
        );
    }
}
