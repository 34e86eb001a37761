//! Corrupting a valid file (flipping bits, overwriting fields, truncating) never makes
//! the loader or any view panic: it either refuses the file with an error or gives
//! views that are all in bounds.

mod common;

use std::sync::LazyLock;

use half::f16;
use proptest::prelude::*;
use proptest::sample::Index;
use tvl_format::{ModelConfig, TensorData, TvlWriter};
use tvl_loader::{LoadError, TvlFile};

/// A valid file with every dtype and layout, an empty tensor and ragged tiles.
static BASE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut w = TvlWriter::new(ModelConfig::default());
    w.add_plain("v", &[33], TensorData::F32(vec![1.5; 33]))
        .unwrap();
    w.add_tiled("w32", 5, 33, 4, TensorData::F32(vec![2.0; 165]))
        .unwrap();
    w.add_tiled("w16", 3, 70, 2, TensorData::F16(vec![f16::ONE; 210]))
        .unwrap();
    w.add_plain("empty", &[0, 3], TensorData::U8(vec![]))
        .unwrap();
    w.add_plain("tok", &[2, 3, 4], TensorData::U8(vec![7; 24]))
        .unwrap();
    w.add_plain("off", &[5], TensorData::U32(vec![0, 1, 2, 3, 4]))
        .unwrap();
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    out
});

fn metadata_len() -> usize {
    common::header(&BASE).data_offset as usize
}

#[derive(Clone, Debug)]
enum Mutation {
    /// XOR a byte anywhere.
    Flip(Index, u8),
    /// XOR a byte of the header, config or table.
    FlipMeta(Index, u8),
    /// Overwrite an aligned 4-byte word of the metadata with an interesting value.
    Word(Index, u32),
    /// Overwrite an aligned 8-byte word of the metadata.
    Quad(Index, u64),
    /// Cut the file.
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let word = prop_oneof![
        prop::sample::select(vec![
            0u32,
            1,
            2,
            3,
            4,
            5,
            63,
            64,
            127,
            128,
            129,
            256,
            0x8000_0000,
            u32::MAX - 1,
            u32::MAX
        ]),
        any::<u32>(),
    ];
    let quad = prop_oneof![
        prop::sample::select(vec![0u64, 128, 256, 768, 1 << 32, u64::MAX - 127, u64::MAX]),
        any::<u64>(),
    ];
    prop_oneof![
        2 => (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        3 => (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::FlipMeta(i, x)),
        3 => (any::<Index>(), word).prop_map(|(i, w)| Mutation::Word(i, w)),
        2 => (any::<Index>(), quad).prop_map(|(i, q)| Mutation::Quad(i, q)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(b: &mut Vec<u8>, m: &Mutation) {
    let meta = metadata_len().min(b.len());
    match *m {
        Mutation::Flip(i, x) if !b.is_empty() => {
            let i = i.index(b.len());
            b[i] ^= x;
        }
        Mutation::FlipMeta(i, x) if meta > 0 => b[i.index(meta)] ^= x,
        Mutation::Word(i, w) if meta >= 4 => {
            let p = i.index(meta / 4) * 4;
            b[p..p + 4].copy_from_slice(&w.to_le_bytes());
        }
        Mutation::Quad(i, q) if meta >= 8 => {
            let p = i.index(meta / 8) * 8;
            b[p..p + 8].copy_from_slice(&q.to_le_bytes());
        }
        Mutation::Truncate(i) => {
            let n = i.index(b.len() + 1);
            b.truncate(n);
        }
        _ => {}
    }
}

fn load_and_touch(b: &[u8]) {
    if let Ok(file) = TvlFile::from_bytes(b) {
        common::touch_all(&file);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn corrupted_files_never_panic(muts in proptest::collection::vec(mutation(), 1..6)) {
        let mut b = BASE.clone();
        for m in &muts {
            apply(&mut b, m);
        }
        load_and_touch(&b);
        // The file path agrees with the in-memory path.
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, &b).unwrap();
        let (mem, disk) = (TvlFile::from_bytes(&b), TvlFile::open(f.path()));
        prop_assert_eq!(format!("{:?}", mem.err()), format!("{:?}", disk.as_ref().err()));
        if let Ok(file) = disk {
            common::touch_all(&file);
        }
    }
}

#[test]
fn base_file_is_valid() {
    let file = TvlFile::from_bytes(&BASE).unwrap();
    assert_eq!(file.len(), 6);
    common::touch_all(&file);
}

#[test]
fn every_prefix_is_refused_as_truncated() {
    for n in 0..BASE.len() {
        let e = TvlFile::from_bytes(&BASE[..n]).unwrap_err();
        assert!(
            matches!(e, LoadError::Truncated { actual, .. } if actual == n as u64),
            "prefix of {n} bytes: {e:?}"
        );
    }
}

#[test]
fn every_single_bit_flip_of_the_metadata_is_safe() {
    let mut b = BASE.clone();
    for i in 0..metadata_len() {
        for bit in 0..8 {
            b[i] ^= 1 << bit;
            load_and_touch(&b);
            b[i] ^= 1 << bit;
        }
    }
}
