//! Several sequences in one pass ([`Slots`]): every slot's logits are bit for bit those
//! of a [`Session`] running its tokens alone, whatever runs beside it (other slots,
//! idle slots, slots reusing a prefix), for every dtype, backend and thread count.

mod common;

use tvl_loader::TvlFile;
use vtc_import::convert::OutDType;
use vtc_kernels::{Backend, Threaded};
use vtc_model::{Model, ModelError, Run, Session, Slots};

/// Sequence `k`: `n` ids spread over the vocabulary, different for every `k`.
fn seq(k: usize, n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * (31 + 2 * k) + 7 * k + 3) % vocab) as u32)
        .collect()
}

/// The logits after each token of `ids`, run alone, one at a time.
fn alone<B: Backend>(model: &Model<'_>, be: B, ids: &[u32]) -> Vec<Vec<f32>> {
    let mut s = Session::new(model, be, model.config().context_len).unwrap();
    ids.iter()
        .map(|&t| s.forward(t).unwrap().to_vec())
        .collect()
}

/// Four sequences with prompts of 1, 5, 17 and 40 tokens are prefilled into slots
/// 3, 0, 2, 1 and then decoded together, each step running a changing subset of them
/// (slot `s` sits out steps where `(step + s) % 3 == 0`); then slot 2 keeps its
/// first 9 positions and reads its sequence on from there (prefix reuse), beside
/// another slot. Every logit vector equals the sequence's alone-run.
fn check<B: Backend + Copy>(model: &Model<'_>, be: B, what: &str) {
    let c = model.config();
    let len = 60.min(c.context_len);
    let seqs: Vec<Vec<u32>> = (0..4).map(|k| seq(k, len, c.vocab_size)).collect();
    let want: Vec<Vec<Vec<f32>>> = seqs.iter().map(|s| alone(model, be, s)).collect();
    let prompt = [1, 5, 17, 40];
    let slot_of = [3, 0, 2, 1];
    let mut slots = Slots::new(model, be, 5, c.context_len).unwrap();
    let mut next = [0usize; 4];
    for k in 0..4 {
        let p = prompt[k];
        let got = slots.prefill(slot_of[k], &seqs[k][..p]).unwrap();
        assert!(*got == want[k][p - 1][..], "{what}: prefill of seq {k}");
        next[k] = p;
        assert_eq!(slots.pos(slot_of[k]), p);
    }
    for step in 0..18 {
        let active: Vec<usize> = (0..4)
            .filter(|&k| (step + slot_of[k]) % 3 != 0 && next[k] < len)
            .collect();
        let rows: Vec<(usize, u32)> = active
            .iter()
            .map(|&k| (slot_of[k], seqs[k][next[k]]))
            .collect();
        slots.step(&rows).unwrap();
        for (i, &k) in active.iter().enumerate() {
            assert!(
                *slots.logits(i) == want[k][next[k]][..],
                "{what}: step {step}, seq {k} at position {}",
                next[k]
            );
            next[k] += 1;
        }
    }
    // Prefix reuse: slot 2 keeps 9 positions of sequence 2 and reads it on from there.
    slots.truncate(2, 9);
    assert_eq!(slots.pos(2), 9);
    let got = slots.prefill(2, &seqs[2][9..12]).unwrap();
    assert!(*got == want[2][11][..], "{what}: prefill after truncate");
    slots
        .step(&[(2, seqs[2][12]), (0, seqs[1][next[1]])])
        .unwrap();
    assert!(
        *slots.logits(0) == want[2][12][..],
        "{what}: step after truncate"
    );
    assert!(
        *slots.logits(1) == want[1][next[1]][..],
        "{what}: neighbour of a truncated slot"
    );
    next[1] += 1;
    // A mixed pass, as a server step runs it: slot 4 joins with a prompt chunk of 7
    // tokens beside slot 0's decode token, then a chunk without logits (a prompt's
    // inner chunk) beside slot 0 again, then the prompt's last chunk alone.
    let four = seq(9, 20, c.vocab_size);
    let want4 = alone(model, be, &four);
    slots
        .run(&[
            Run {
                slot: 4,
                tokens: &four[..7],
                logits: true,
            },
            Run {
                slot: 0,
                tokens: &seqs[1][next[1]..next[1] + 1],
                logits: true,
            },
        ])
        .unwrap();
    assert!(*slots.logits(0) == want4[6][..], "{what}: mixed run, chunk");
    assert!(
        *slots.logits(1) == want[1][next[1]][..],
        "{what}: mixed run, decode"
    );
    next[1] += 1;
    slots
        .run(&[
            Run {
                slot: 0,
                tokens: &seqs[1][next[1]..next[1] + 1],
                logits: true,
            },
            Run {
                slot: 4,
                tokens: &four[7..15],
                logits: false,
            },
        ])
        .unwrap();
    assert!(
        *slots.logits(0) == want[1][next[1]][..],
        "{what}: beside a logit-less chunk"
    );
    let got = slots.prefill(4, &four[15..]).unwrap();
    assert!(*got == want4[19][..], "{what}: after a logit-less chunk");
}

#[test]
fn synthetic_slots_match_sessions_alone() {
    for dtype in [OutDType::F32, OutDType::F16, OutDType::Q8_0, OutDType::Q4_1] {
        let file = TvlFile::open(common::synthetic_tvl(dtype)).unwrap();
        let model = Model::load(&file).unwrap();
        for be in vtc_kernels::available() {
            check(&model, be, &format!("{dtype} {}", be.name()));
            for threads in [2, 3] {
                let t = Threaded::new(be, threads).unwrap();
                check(&model, &t, &format!("{dtype} {} x{threads}", be.name()));
            }
        }
    }
}

#[test]
fn runs_check_their_input() {
    let file = TvlFile::open(common::synthetic_tvl(OutDType::F32)).unwrap();
    let model = Model::load(&file).unwrap();
    let mut s = Slots::new(&model, vtc_kernels::detect(), 2, 64).unwrap();
    let cap = s.capacity();
    assert_eq!(cap, vtc_model::BATCH);
    let many = vec![1u32; cap - 1];
    let run = |slot, tokens, logits| Run {
        slot,
        tokens,
        logits,
    };
    assert!(matches!(
        s.run(&[run(0, &many, true), run(1, &[1, 2], true)]),
        Err(ModelError::PassTooLarge { rows, capacity }) if rows == cap + 1 && capacity == cap
    ));
    assert!(matches!(
        s.run(&[run(0, &[], true)]),
        Err(ModelError::EmptyPrompt)
    ));
    assert!(matches!(s.run(&[]), Err(ModelError::EmptyPrompt)));
    assert!(matches!(
        s.run(&[run(1, &[1, 2], false), run(1, &[3], true)]),
        Err(ModelError::Slot { slot: 1, .. })
    ));
    assert_eq!((s.pos(0), s.pos(1)), (0, 0), "nothing ran");
    s.run(&[run(0, &many, false)]).unwrap();
    assert_eq!(s.pos(0), cap - 1);
    s.run(&[run(1, &[1, 2], false), run(0, &[3], true)])
        .unwrap();
    assert_eq!((s.pos(0), s.pos(1)), (cap, 2));
    assert_eq!(s.logits(0).len(), model.config().vocab_size);
    assert!(matches!(
        s.run(&[run(1, &[1], true), run(0, &[3], true)]),
        Err(ModelError::ContextFull { .. })
    ));
    assert_eq!((s.pos(0), s.pos(1)), (cap, 2), "nothing ran");
}

#[test]
fn slots_check_their_input() {
    let file = TvlFile::open(common::synthetic_tvl(OutDType::Q4_1)).unwrap();
    let model = Model::load(&file).unwrap();
    let vocab = model.config().vocab_size as u32;
    assert!(matches!(
        Slots::new(&model, vtc_kernels::Scalar, 2, 0),
        Err(ModelError::ContextTooLong { .. })
    ));
    let mut s = Slots::new(&model, vtc_kernels::Scalar, 2, 4).unwrap();
    assert!(matches!(
        s.prefill(2, &[1]),
        Err(ModelError::Slot {
            slot: 2,
            slots: 2,
            ..
        })
    ));
    assert!(matches!(s.prefill(0, &[]), Err(ModelError::EmptyPrompt)));
    assert!(matches!(
        s.prefill(0, &[1, vocab]),
        Err(ModelError::TokenOutOfRange { .. })
    ));
    assert!(matches!(
        s.prefill(0, &[1, 2, 3, 4, 5]),
        Err(ModelError::ContextFull { max_seq: 4 })
    ));
    assert_eq!(s.pos(0), 0, "a rejected prefill runs nothing");
    s.prefill(0, &[1, 2, 3]).unwrap();
    assert!(matches!(
        s.step(&[(0, 4), (0, 5)]),
        Err(ModelError::Slot { slot: 0, .. })
    ));
    assert!(matches!(
        s.step(&[(1, 4), (5, 5)]),
        Err(ModelError::Slot { slot: 5, .. })
    ));
    assert!(matches!(
        s.step(&[(1, vocab)]),
        Err(ModelError::TokenOutOfRange { .. })
    ));
    assert!(matches!(s.step(&[]), Err(ModelError::EmptyPrompt)));
    assert_eq!((s.pos(0), s.pos(1)), (3, 0), "rejected steps run nothing");
    s.step(&[(0, 4), (1, 4)]).unwrap();
    assert!(matches!(
        s.step(&[(1, 5), (0, 5)]),
        Err(ModelError::ContextFull { max_seq: 4 })
    ));
    assert_eq!((s.pos(0), s.pos(1)), (4, 1));
}
