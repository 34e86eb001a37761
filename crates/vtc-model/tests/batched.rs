//! Batched prompt processing ([`Session::prefill`], [`Session::score`]) gives bit for bit
//! the logits of running the tokens one at a time, and leaves the KV cache as they do:
//! every dtype, every backend, 1-4 threads, batch sizes and prompt lengths around the
//! chunk boundaries.

mod common;

use tvl_loader::TvlFile;
use vtc_import::convert::OutDType;
use vtc_kernels::{Backend, Threaded};
use vtc_model::{Model, Session};

/// A prompt of `n` ids spread over the vocabulary.
fn ids(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 37 + 11) % vocab) as u32).collect()
}

/// The logits after each token, run one at a time with `forward`.
fn one_by_one<B: Backend>(model: &Model<'_>, be: B, ids: &[u32]) -> Vec<Vec<f32>> {
    let mut s = Session::new(model, be, ids.len()).unwrap();
    ids.iter()
        .map(|&t| s.forward(t).unwrap().to_vec())
        .collect()
}

fn check_backend<B: Backend>(model: &Model<'_>, be: B, want: &[Vec<f32>], ids: &[u32], what: &str) {
    let max = ids.len();
    let mut s = Session::new(model, be, max).unwrap();
    for batch in [1, 5, 16, 64] {
        s.set_batch_size(batch);
        for n in [1, 2, 5, 16, 17, 33, max - 1] {
            s.reset();
            let got = s.prefill(&ids[..n]).unwrap().to_vec();
            assert!(
                got == want[n - 1],
                "{what}: prefill of {n} in batches of {batch}"
            );
            // The cache holds the prompt: the next token decodes as one by one.
            let next = s.forward(ids[n]).unwrap();
            assert!(
                *next == want[n][..],
                "{what}: token after a prefill of {n} (batch {batch})"
            );
        }
        s.reset();
        let mut seen = 0;
        s.score(&ids[..max], &mut |i, logits| {
            assert_eq!(i, seen, "{what}: score order");
            assert!(
                *logits == want[i][..],
                "{what}: score of token {i} (batch {batch})"
            );
            seen += 1;
        })
        .unwrap();
        assert_eq!(seen, max, "{what}: scored tokens");
    }
}

#[test]
fn synthetic_batched_prefill_matches_token_by_token() {
    for dtype in [
        OutDType::F32,
        OutDType::F16,
        OutDType::Q8_0,
        OutDType::Q4_0,
        OutDType::Q4_1,
    ] {
        let file = TvlFile::open(common::synthetic_tvl(dtype)).unwrap();
        let model = Model::load(&file).unwrap();
        let c = model.config();
        let ids = ids(c.context_len, c.vocab_size);
        for be in vtc_kernels::available() {
            // Backends differ from each other by rounding, so each is checked against
            // its own token-by-token logits (their agreement is other tests' business).
            let want = one_by_one(&model, be, &ids);
            let what = format!("{dtype} {}", be.name());
            check_backend(&model, be, &want, &ids, &what);
            for threads in 2..=4 {
                let t = Threaded::new(be, threads).unwrap();
                check_backend(&model, &t, &want, &ids, &format!("{what} x{threads}"));
            }
        }
    }
}

/// A context long enough that the attention heads of a token are split over the
/// threads (`Threaded` splits a `for_each_chunk` buffer of 2048 floats or more; here
/// 8 heads of 8 dims: from position 248 on). Decode, prefill and scoring give the
/// bits of the 1-thread backend for 2-4 threads.
#[test]
fn synthetic_long_context_attention_is_bit_identical_for_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in [OutDType::F32, OutDType::Q4_1] {
        let spec = vtc_import::synthetic::SyntheticSpec {
            dim: 64,
            hidden_dim: 176,
            n_layers: 2,
            n_heads: 8,
            n_kv_heads: 2,
            vocab_size: 256,
            context_len: 320,
            dtype,
            tile_rows: 8,
            seed: 7,
        };
        let path = dir.path().join(format!("long.{dtype}.tvl"));
        vtc_import::synthetic::write_synthetic(&spec, &path).unwrap();
        let file = TvlFile::open(&path).unwrap();
        let model = Model::load(&file).unwrap();
        let c = model.config();
        assert!(c.n_heads * (c.head_dim + c.context_len) >= 2048 + 64 * c.n_heads);
        let ids = ids(c.context_len, c.vocab_size);
        for be in vtc_kernels::available() {
            let want = one_by_one(&model, be, &ids);
            for threads in 2..=4 {
                let t = Threaded::new(be, threads).unwrap();
                let what = format!("{dtype} {} x{threads}", be.name());
                assert!(one_by_one(&model, &t, &ids) == want, "{what}: decode");
                check_backend(&model, &t, &want, &ids, &what);
            }
        }
    }
}

#[test]
fn synthetic_batched_runs_check_their_input() {
    let file = TvlFile::open(common::synthetic_tvl(OutDType::Q4_1)).unwrap();
    let model = Model::load(&file).unwrap();
    let vocab = model.config().vocab_size;
    let mut s = Session::new(&model, vtc_kernels::Scalar, 8).unwrap();
    assert!(matches!(
        s.prefill(&[]),
        Err(vtc_model::ModelError::EmptyPrompt)
    ));
    let bad = [1, vocab as u32, 2];
    assert!(matches!(
        s.prefill(&bad),
        Err(vtc_model::ModelError::TokenOutOfRange { token, .. }) if token == vocab as u32
    ));
    assert!(matches!(
        s.score(&bad, &mut |_, _| {}),
        Err(vtc_model::ModelError::TokenOutOfRange { .. })
    ));
    assert_eq!(s.pos(), 0, "a refused batch runs nothing");
    assert!(matches!(
        s.prefill(&[1; 9]),
        Err(vtc_model::ModelError::ContextFull { max_seq: 8 })
    ));
    s.prefill(&[1; 6]).unwrap();
    assert!(matches!(
        s.prefill(&[1; 3]),
        Err(vtc_model::ModelError::ContextFull { max_seq: 8 })
    ));
    assert_eq!(s.pos(), 6);
}

/// A context so long that a batch's attention runs in several parallel regions (the
/// scores of 8 heads over 8192 positions fill the scratch budget at 63 rows, so a
/// batch of 64 is split 63 + 1): prefill gives the bits of token-by-token decoding.
#[test]
fn synthetic_attention_in_several_regions_matches_token_by_token() {
    let dir = tempfile::tempdir().unwrap();
    let spec = vtc_import::synthetic::SyntheticSpec {
        dim: 64,
        hidden_dim: 96,
        n_layers: 1,
        n_heads: 8,
        n_kv_heads: 4,
        vocab_size: 128,
        context_len: 8192,
        dtype: OutDType::Q8_0,
        tile_rows: 8,
        seed: 11,
    };
    let path = dir.path().join("regions.tvl");
    vtc_import::synthetic::write_synthetic(&spec, &path).unwrap();
    let file = TvlFile::open(&path).unwrap();
    let model = Model::load(&file).unwrap();
    let c = model.config();
    let scratch = vtc_model::Scratch::new(c, model.weights(), 64, c.context_len);
    assert_eq!(scratch.att_rows, 63, "the batch must need two regions");
    let ids = ids(150, c.vocab_size);
    for be in vtc_kernels::available() {
        let want = one_by_one(&model, be, &ids);
        let t = Threaded::new(be, 2).unwrap();
        let mut s = Session::new(&model, &t, c.context_len).unwrap();
        let got = s.prefill(&ids).unwrap();
        assert!(*got == want[149][..], "{}: prefill of 150", be.name());
    }
}
