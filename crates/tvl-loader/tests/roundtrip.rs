//! Property: any set of tensors written by `TvlWriter` opens again (from memory and
//! from a file) with equal elements, 128-aligned offsets and aligned slices; row-tiled
//! tensors hold each element at `TileGeometry::index` and zeros in their padding;
//! block-quantized tensors hold each block's quants and scales where `BlockGeometry`
//! says, and zeros everywhere else.

use half::f16;
use proptest::prelude::*;
use tvl_format::{
    ALIGN, DType, Layout, ModelConfig, QuantData, TensorData, TvlWriter, tensor_nbytes,
};
use tvl_loader::{TensorView, TvlFile};

#[derive(Clone, Debug)]
struct Spec {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    /// Row-tiled with this many rows per tile (only used for 2-D float tensors).
    tile_rows: Option<usize>,
    seed: u64,
}

impl Spec {
    fn layout(&self) -> (Layout, usize) {
        match self.tile_rows {
            Some(r) if self.dtype.is_quantized() => (Layout::BlockTiled, r),
            Some(r) if self.shape.len() == 2 && self.dtype.is_float() => (Layout::RowTiled, r),
            _ => (Layout::Plain, 0),
        }
    }

    fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Deterministic pseudo-random elements (any bit pattern, NaNs included).
    fn data(&self) -> TensorData {
        let mut s = self.seed;
        let mut next = move || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let n = self.numel();
        match self.dtype {
            DType::F32 => TensorData::F32((0..n).map(|_| f32::from_bits(next() as u32)).collect()),
            DType::F16 => TensorData::F16((0..n).map(|_| f16::from_bits(next() as u16)).collect()),
            DType::U8 => TensorData::U8((0..n).map(|_| next() as u8).collect()),
            DType::U32 => TensorData::U32((0..n).map(|_| next() as u32).collect()),
            q => TensorData::Quant(QuantData {
                dtype: q,
                quants: (0..n / 32 * q.block_bytes())
                    .map(|_| next() as u8)
                    .collect(),
                scales: (0..n / 32 * q.scale_fields())
                    .map(|_| f16::from_bits(next() as u16))
                    .collect(),
            }),
        }
    }
}

fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(31),
        Just(33),
        Just(127),
        1usize..=40
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    let shape = prop_oneof![
        3 => proptest::collection::vec(dim(), 1..=2),
        1 => proptest::collection::vec(0usize..=5, 3..=4),
    ];
    let dtype = prop::sample::select(vec![
        DType::F32,
        DType::F16,
        DType::U8,
        DType::U32,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
    ]);
    (
        "[a-zA-Z0-9_.é漢]{0,12}",
        dtype,
        shape,
        proptest::option::weighted(0.6, 1usize..=8),
        any::<u64>(),
        (dim(), 0usize..=3, 1usize..=9),
    )
        .prop_map(|(name, dtype, shape, tile_rows, seed, (rows, blocks, r))| {
            if dtype.is_quantized() {
                // Block types: always a [rows, 32 * blocks] block-tiled matrix.
                Spec {
                    name,
                    dtype,
                    shape: vec![rows, 32 * blocks],
                    tile_rows: Some(r),
                    seed,
                }
            } else {
                Spec {
                    name,
                    dtype,
                    shape,
                    tile_rows,
                    seed,
                }
            }
        })
}

fn specs() -> impl Strategy<Value = Vec<Spec>> {
    proptest::collection::vec(spec(), 0..8).prop_map(|mut v| {
        // Unique names: prefix the position.
        for (i, s) in v.iter_mut().enumerate() {
            s.name = format!("{i}.{}", s.name);
        }
        v
    })
}

fn write(specs: &[Spec]) -> Vec<u8> {
    let mut w = TvlWriter::new(ModelConfig {
        arch: 1,
        dim: 7,
        rope_theta: 10000.0,
        ..ModelConfig::default()
    });
    for s in specs {
        let (layout, tile_rows) = s.layout();
        w.add(&s.name, &s.shape, layout, tile_rows, s.data())
            .unwrap();
    }
    let mut out = Vec::new();
    let n = w.write_to(&mut out).unwrap();
    assert_eq!(n as usize, out.len());
    out
}

fn check_view(s: &Spec, t: TensorView<'_>) -> Result<(), TestCaseError> {
    let (layout, tile_rows) = s.layout();
    prop_assert_eq!(t.name(), s.name.as_str());
    prop_assert_eq!(t.dtype(), s.dtype);
    prop_assert_eq!(t.layout(), layout);
    prop_assert_eq!(t.tile_rows(), tile_rows);
    prop_assert_eq!(t.shape(), s.shape.as_slice());
    prop_assert_eq!(t.numel(), s.numel());
    prop_assert_eq!(
        Some(t.nbytes()),
        tensor_nbytes(s.dtype, layout, &s.shape, tile_rows)
    );
    prop_assert_eq!(t.offset() % ALIGN as u64, 0);
    prop_assert_eq!(t.bytes().as_ptr() as usize % ALIGN, 0);

    if let TensorData::Quant(q) = s.data() {
        return check_quant(s, t, &q);
    }
    // The typed accessor of its dtype works and covers exactly the bytes.
    let es = s.dtype.size();
    let typed_len = match s.dtype {
        DType::F32 => t.as_f32().map(<[f32]>::len),
        DType::F16 => t.as_f16().map(<[f16]>::len),
        DType::U8 => t.as_u8().map(<[u8]>::len),
        DType::U32 => t.as_u32().map(<[u32]>::len),
        q => panic!("{q} handled by check_quant"),
    };
    prop_assert_eq!(typed_len.ok(), Some(t.nbytes() / es));

    let data = s.data();
    let logical = data.as_bytes();
    match t.geometry() {
        None => {
            prop_assert_eq!(layout, Layout::Plain);
            prop_assert_eq!(t.bytes(), logical);
            prop_assert_eq!(
                t.line_utilization(),
                tvl_format::line_utilization(t.nbytes())
            );
        }
        Some(g) => {
            prop_assert_eq!(layout, Layout::RowTiled);
            let (rows, cols) = (s.shape[0], s.shape[1]);
            let mut used = vec![false; t.nbytes() / es];
            for r in 0..rows {
                for c in 0..cols {
                    let i = g.index(r, c);
                    let l = r * cols + c;
                    prop_assert_eq!(
                        &t.bytes()[i * es..(i + 1) * es],
                        &logical[l * es..(l + 1) * es]
                    );
                    used[i] = true;
                }
            }
            for (i, _) in used.iter().enumerate().filter(|(_, u)| !**u) {
                prop_assert!(
                    t.bytes()[i * es..(i + 1) * es].iter().all(|&b| b == 0),
                    "padding element {} of {} is not zero",
                    i,
                    s.name
                );
            }
            prop_assert_eq!(t.line_utilization(), g.line_utilization());
        }
    }
    Ok(())
}

fn check_quant(s: &Spec, t: TensorView<'_>, q: &QuantData) -> Result<(), TestCaseError> {
    let g = t.block_geometry().expect("block geometry");
    prop_assert!(t.geometry().is_none());
    let v = t.as_quant().unwrap();
    prop_assert_eq!(v.geometry, g);
    prop_assert_eq!(
        (g.rows, g.cols, g.tile_rows),
        (s.shape[0], s.shape[1], t.tile_rows())
    );
    let (bb, f, nb) = (g.block_bytes(), g.fields(), g.blocks_per_row());
    let s0 = g.scales_offset().unwrap();
    prop_assert_eq!(v.quants.as_ptr() as usize, t.bytes().as_ptr() as usize);
    prop_assert_eq!(v.scales.as_ptr() as usize, t.bytes().as_ptr() as usize + s0);
    let mut used = vec![false; t.nbytes()];
    for r in 0..g.rows {
        for b in 0..nb {
            let i = r * nb + b;
            let block = g.block_quants(v.quants, r, b);
            prop_assert_eq!(&block[..bb], &q.quants[i * bb..(i + 1) * bb]);
            (0..bb).for_each(|k| used[g.quant_index(r, b, k)] = true);
            for k in 0..f {
                let at = g.scale_index(r, b, k);
                prop_assert_eq!(v.scales[at].to_bits(), q.scales[i * f + k].to_bits());
                used[s0 + 2 * at] = true;
                used[s0 + 2 * at + 1] = true;
            }
        }
    }
    for (i, _) in used.iter().enumerate().filter(|(_, u)| !**u) {
        prop_assert_eq!(
            t.bytes()[i],
            0,
            "padding byte {} of {} is not zero",
            i,
            &s.name
        );
    }
    prop_assert_eq!(t.line_utilization(), g.line_utilization());
    Ok(())
}

fn check_file(specs: &[Spec], bytes: &[u8], file: &TvlFile) -> Result<(), TestCaseError> {
    prop_assert_eq!(file.len(), specs.len());
    prop_assert_eq!(file.is_empty(), specs.is_empty());
    prop_assert_eq!(file.file_len(), bytes.len() as u64);
    prop_assert_eq!(file.as_bytes(), bytes);
    prop_assert_eq!(file.config().dim, 7);
    prop_assert_eq!(file.header().tensor_count as usize, specs.len());
    prop_assert_eq!(file.tensors().len(), specs.len());
    let mut prev_end = file.header().data_offset;
    for (s, t) in specs.iter().zip(file.tensors()) {
        check_view(s, t)?;
        let by_name = file.get(&s.name).expect("get by name");
        prop_assert_eq!(by_name.index(), t.index());
        prop_assert_eq!(file.tensor_at(t.index()).map(|v| v.name()), Some(t.name()));
        prop_assert_eq!(t.ndim(), s.shape.len());
        prop_assert_eq!(by_name.bytes().as_ptr(), t.bytes().as_ptr());
        // The gap before each tensor is zero padding.
        let gap = &bytes[prev_end as usize..t.offset() as usize];
        prop_assert!(gap.iter().all(|&b| b == 0));
        prev_end = t.offset() + t.nbytes() as u64;
    }
    prop_assert!(bytes[prev_end as usize..].iter().all(|&b| b == 0));
    prop_assert!(file.tensor_at(specs.len()).is_none());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn written_tensors_read_back_equal(specs in specs()) {
        let bytes = write(&specs);
        let file = TvlFile::from_bytes(&bytes).unwrap();
        check_file(&specs, &bytes, &file)?;

        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, &bytes).unwrap();
        let file = TvlFile::open(f.path()).unwrap();
        check_file(&specs, &bytes, &file)?;
    }
}

#[test]
fn write_file_then_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.tvl");
    let mut w = TvlWriter::new(ModelConfig::default());
    let m: Vec<f32> = (0..6 * 40).map(|i| i as f32).collect();
    w.add_tiled("m", 6, 40, 4, TensorData::F32(m.clone()))
        .unwrap();
    w.add_plain("empty", &[0], TensorData::U32(vec![])).unwrap();
    w.add_plain("after_empty", &[2], TensorData::U32(vec![7, 8]))
        .unwrap();
    let n = w.write_file(&path).unwrap();
    let file = TvlFile::open(&path).unwrap();
    assert_eq!(file.file_len(), n);
    // Prefaulted (and, where the limit allows, locked) mappings hold the same bytes.
    let opts = tvl_loader::OpenOptions {
        populate: true,
        lock: false,
    };
    let pre = TvlFile::open_with(&path, &opts).unwrap();
    assert_eq!(pre.as_bytes(), file.as_bytes());
    let locked = tvl_loader::OpenOptions {
        populate: true,
        lock: true,
    };
    match TvlFile::open_with(&path, &locked) {
        Ok(l) => assert_eq!(l.as_bytes(), file.as_bytes()),
        // RLIMIT_MEMLOCK too small: a typed I/O error naming the file.
        Err(e) => assert!(matches!(e, tvl_loader::LoadError::Io { .. }), "{e:?}"),
    }
    let t = file.tensor("m").unwrap();
    let g = t.geometry().unwrap();
    let tiled = t.as_f32().unwrap();
    for r in 0..6 {
        for c in 0..40 {
            assert_eq!(tiled[g.index(r, c)], m[r * 40 + c]);
        }
    }
    // An empty tensor occupies no bytes: the next one may start at the same offset.
    let (e, a) = (
        file.tensor("empty").unwrap(),
        file.tensor("after_empty").unwrap(),
    );
    assert_eq!(e.nbytes(), 0);
    assert_eq!(e.offset(), a.offset());
    assert_eq!(a.as_u32().unwrap(), &[7, 8]);
    assert!(format!("{file:?}").contains("tensors: 3"));
    assert!(format!("{t:?}").contains("\"m\""));
}

#[test]
fn checksums_are_written_and_catch_a_flipped_byte() {
    let mut w = TvlWriter::new(ModelConfig::default());
    let m: Vec<f32> = (0..9 * 40).map(|i| i as f32).collect();
    w.add_tiled("m", 9, 40, 4, TensorData::F32(m)).unwrap();
    w.add_plain("v", &[5], TensorData::U32(vec![1, 2, 3, 4, 5]))
        .unwrap();
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    let file = TvlFile::from_bytes(&bytes).unwrap();
    for t in file.tensors() {
        assert_eq!(t.stored_checksum(), Some(tvl_format::checksum(t.bytes())));
        assert_eq!(t.verify(), Some(true), "{}", t.name());
    }
    // Flip one byte of m's padding: open still succeeds (no data is read), verify fails
    // for m only.
    let m_at = file.tensor("m").unwrap().offset() as usize;
    let m_len = file.tensor("m").unwrap().nbytes();
    let mut bad = bytes.clone();
    bad[m_at + m_len - 1] ^= 0x40;
    let file = TvlFile::from_bytes(&bad).unwrap();
    assert_eq!(file.tensor("m").unwrap().verify(), Some(false));
    assert_eq!(file.tensor("v").unwrap().verify(), Some(true));
    // A record without a checksum (0, as older writers stored) is not verifiable.
    let mut none = bytes.clone();
    for i in 0..2 {
        let at = 256 + 128 * i + 112;
        none[at..at + 8].fill(0);
    }
    let file = TvlFile::from_bytes(&none).unwrap();
    assert!(file.tensors().all(|t| t.verify().is_none()));
}
