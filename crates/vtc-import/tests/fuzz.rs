//! Random mutations and truncations of the synthetic GGUF never panic in parse +
//! convert + write (they either convert or give a typed error).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::OnceLock;

use proptest::prelude::*;
use vtc_import::{ConvertOptions, GgufFile, OutDType, convert};

/// Refuses any single allocation above 256 MiB (the inputs are at most 0.5 MB), so a
/// hostile size that slips through aborts loudly ("memory allocation of N bytes
/// failed") instead of exhausting the machine.
struct Capped;

const CAP: usize = 256 << 20;

// SAFETY: forwards to the system allocator; a refused request returns null, which
// `GlobalAlloc` allows.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > CAP {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > CAP {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Capped = Capped;

/// The synthetic model's bytes and the length of its header and tables.
fn original() -> &'static (Vec<u8>, usize) {
    static ORIGINAL: OnceLock<(Vec<u8>, usize)> = OnceLock::new();
    ORIGINAL.get_or_init(|| {
        let path = common::golden_dir().join("synthetic-gqa/model.f32.gguf");
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("cannot read golden model {}: {e}", path.display()));
        let header = GgufFile::from_bytes(bytes.clone()).unwrap().data_offset() as usize;
        (bytes, header)
    })
}

#[derive(Clone, Debug)]
enum Mutation {
    /// Overwrite one byte.
    Byte(usize, u8),
    /// Overwrite eight bytes (hits u64 counts and lengths with wild values).
    Word(usize, u64),
    /// Overwrite eight bytes with a small number (plausible but wrong lengths).
    Small(usize, u8),
}

fn mutation(header: usize) -> impl Strategy<Value = Mutation> {
    // Most mutations land in the header and tables, where the parsing happens.
    let pos = prop_oneof![4 => 0..header, 1 => 0..usize::MAX];
    prop_oneof![
        (pos.clone(), any::<u8>()).prop_map(|(p, b)| Mutation::Byte(p, b)),
        (pos.clone(), any::<u64>()).prop_map(|(p, w)| Mutation::Word(p, w)),
        (pos, any::<u8>()).prop_map(|(p, w)| Mutation::Small(p, w)),
    ]
}

fn apply(bytes: &mut [u8], m: &Mutation) {
    let len = bytes.len();
    let mut put = |p: usize, v: &[u8]| {
        let p = p % len;
        for (i, b) in v.iter().enumerate() {
            if let Some(slot) = bytes.get_mut(p + i) {
                *slot = *b;
            }
        }
    };
    match *m {
        Mutation::Byte(p, b) => put(p, &[b]),
        Mutation::Word(p, w) => put(p, &w.to_le_bytes()),
        Mutation::Small(p, w) => put(p, &u64::from(w).to_le_bytes()),
    }
}

/// Parse, convert and write; any error is fine, a panic fails the test.
fn exercise(bytes: Vec<u8>, dtype: OutDType) {
    let Ok(g) = GgufFile::from_bytes(bytes) else {
        return;
    };
    // Metadata accessors on whatever was parsed.
    for (k, v) in g.metadata() {
        let _ = (g.get(k), v.to_string(), v.as_u64(), v.as_f32());
    }
    for t in g.tensors() {
        assert!(g.tensor_data(t).len() as u64 == t.nbytes);
    }
    let opts = ConvertOptions {
        dtype,
        tile_rows: 4,
        block_tile_rows: 8,
    };
    if let Ok(conv) = convert(&g, &opts, &mut |_, _| {}) {
        let mut out = Vec::new();
        conv.writer
            .write_to(&mut out)
            .expect("a converted model writes");
        tvl_loader::TvlFile::from_bytes(&out).expect("the loader accepts what was written");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_synthetic_gguf_never_panics(
        muts in prop::collection::vec(mutation(original().1), 1..4),
        truncate in prop::option::weighted(0.3, any::<prop::sample::Index>()),
        dtype in prop::sample::select(OutDType::ALL.to_vec()),
    ) {
        let (orig, _) = original();
        let mut bytes = orig.clone();
        for m in &muts {
            apply(&mut bytes, m);
        }
        if let Some(ix) = truncate {
            bytes.truncate(ix.index(bytes.len() + 1));
        }
        exercise(bytes, dtype);
    }

    #[test]
    fn random_bytes_after_a_valid_preamble_never_panic(
        tail in prop::collection::vec(any::<u8>(), 0..512),
        n_tensors in 0u64..4,
        n_kv in 0u64..8,
    ) {
        let mut b = common::preamble(3, n_tensors, n_kv);
        b.extend(tail);
        exercise(b, OutDType::F32);
    }
}

/// Hyperparameter and tokenizer keys of the tiny model, set to random values.
const KEYS: [&str; 14] = [
    "llama.context_length",
    "llama.embedding_length",
    "llama.feed_forward_length",
    "llama.block_count",
    "llama.attention.head_count",
    "llama.attention.head_count_kv",
    "llama.rope.dimension_count",
    "llama.vocab_size",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.add_bos_token",
    "llama.rope.freq_base",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_hyperparameters_never_panic(
        edits in prop::collection::vec((0..KEYS.len(), 0u32..5, any::<u32>()), 1..4),
        ty in prop::sample::select(vec![common::gt::F32, common::gt::Q4_1, common::gt::F16]),
    ) {
        let mut b = common::tiny_llama(ty, 5, true);
        for &(k, kind, v) in &edits {
            let key = KEYS[k];
            match kind {
                0 => { b.u32(key, v % 200); }
                1 => { b.u32(key, v); }
                2 => { b.f32(key, f32::from_bits(v)); }
                3 => { b.str(key, "x"); }
                _ => { b.remove(key); }
            }
        }
        exercise(b.build(), OutDType::F32);
    }
}

#[test]
fn every_truncation_of_the_header_is_an_error() {
    let (orig, header) = original();
    for len in 0..*header {
        assert!(
            GgufFile::from_bytes(orig[..len].to_vec()).is_err(),
            "cut at {len}"
        );
    }
}
