//! Quantized products: every backend's `quantize_q8` and `matvec_q8` against the
//! canonical arithmetic (bit for bit, via Scalar) and against an f64 evaluation of the
//! same formula (so the integer parts are checked independently), over awkward
//! shapes, tile sizes, thread-style splits and extreme values.

mod common;

use common::{Dist, QMat, Rng};
use half::f16;
use tvl_format::quant::{BLOCK, BlockType, k_quant, nibble, q5};
use tvl_format::{DType, QuantData};
use vtc_kernels::{Backend, Matrix, Q8Vec, QuantSlice, Scalar, WeightSlice};

/// Every block type.
fn qtypes() -> [DType; 8] {
    BlockType::ALL.map(BlockType::dtype)
}

/// The shapes `(rows, cols)` of `shapes` whose columns are whole blocks of `dtype`.
fn whole(dtype: DType, shapes: &[(usize, usize)]) -> Vec<(usize, usize)> {
    shapes
        .iter()
        .copied()
        .filter(|&(_, c)| c.is_multiple_of(dtype.block_elems()))
        .collect()
}

/// Shapes for the products: ragged tiles (9, 17, 33 rows), one block, one super-block,
/// 0 rows and 0 columns, SmolLM2's and Gemma 3's widths.
const SHAPES: [(usize, usize); 12] = [
    (1, 32),
    (8, 64),
    (9, 96),
    (33, 576),
    (64, 1536),
    (0, 64),
    (9, 0),
    (1, 256),
    (9, 512),
    (17, 768),
    (0, 256),
    (16, 640),
];

/// Every backend this machine runs, plus the plain-NEON path where SDOT is present.
fn backends() -> Vec<Box<dyn Backend>> {
    #[allow(unused_mut)]
    let mut v: Vec<Box<dyn Backend>> = vtc_kernels::available()
        .into_iter()
        .map(|b| Box::new(b) as Box<dyn Backend>)
        .collect();
    #[cfg(target_arch = "aarch64")]
    v.push(Box::new(vtc_kernels::arch::aarch64::Neon::without_dotprod()));
    v
}

fn same_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert_eq!(a.to_bits(), b.to_bits(), "{what}: element {i}: {a} vs {b}");
    }
}

impl QMat {
    /// f64 evaluation of the canonical formula: exact products of the integer parts
    /// (each weight's exact value, from the format's definition of the type, not
    /// through our dequantizer), then the float combination in f64, and the magnitude
    /// sum of the terms the canonical order rounds, for the error bound.
    fn reference(&self, x: &Q8Vec) -> Vec<(f64, f64)> {
        let (rows, cols) = (self.g.rows, self.g.cols);
        let kind = self.data.dtype.block_type().unwrap();
        let (el, bb, f) = (kind.elems(), kind.quant_bytes(), kind.fields());
        let nbw = cols / el;
        (0..rows)
            .map(|r| {
                let (mut y, mut mag) = (0.0f64, 0.0f64);
                for b in 0..cols / BLOCK {
                    let wb = r * nbw + b * BLOCK / el;
                    let q = &self.data.quants[wb * bb..(wb + 1) * bb];
                    let d = self.data.scales[wb * f].to_f64();
                    let m = if f == 2 {
                        self.data.scales[wb * f + 1].to_f64()
                    } else {
                        0.0
                    };
                    // (scale part, minimum part) of each weight, exactly.
                    let parts = |j: usize| -> (f64, f64) {
                        let e = (b * BLOCK) % el + j;
                        match kind {
                            BlockType::Q8_0 => (q[e] as i8 as f64 * d, 0.0),
                            BlockType::Q4_0 => ((nibble(q, e) as f64 - 8.0) * d, 0.0),
                            BlockType::Q4_1 => (nibble(q, e) as f64 * d, m),
                            BlockType::Q5_0 => ((q5(q, e) as f64 - 16.0) * d, 0.0),
                            BlockType::Q5_1 => (q5(q, e) as f64 * d, m),
                            BlockType::Q4_K | BlockType::Q5_K => {
                                let (v, sc, mn) = k_quant(kind, q, e);
                                (d * sc as f64 * v as f64, -m * mn as f64)
                            }
                            BlockType::Q6_K => {
                                let (v, sc, _) = k_quant(kind, q, e);
                                (d * sc as f64 * v as f64, 0.0)
                            }
                        }
                    };
                    let (mut t, mut tm) = (0.0f64, 0.0f64);
                    for j in 0..BLOCK {
                        let xv = x.qs()[b * BLOCK + j] as f64 * x.scales()[b] as f64;
                        let (a, mm) = parts(j);
                        t += a * xv;
                        tm += mm * xv;
                    }
                    y += t + tm;
                    mag += t.abs() + tm.abs();
                }
                (y, mag)
            })
            .collect()
    }
}

/// The canonical rounding of a row stays within this of the f64 value of the same
/// formula: per block at most 3 roundings (the scale product, the fused multiply-add
/// of the term and, for Q4_1, the one of the `m * s` term) over `nb` blocks, relative
/// to the magnitude sum (plus the `m * s` parts).
fn bound(nb: usize, mag: f64) -> f64 {
    common::gamma(nb + 4) * mag * 2.0 + 1e-30
}

#[test]
fn quantize_matches_scalar_and_the_rules() {
    let mut rng = Rng(11);
    for len in [0usize, 32, 64, 96, 576, 1536] {
        for dist in [Dist::Unit, Dist::Wide, Dist::Int] {
            let x = rng.vec(len, dist);
            let mut want = Q8Vec::new(0);
            Scalar.quantize_q8(&x, &mut want);
            assert_eq!(want.len(), len);
            for (b, xs) in x.chunks(BLOCK).enumerate() {
                let d = want.scales()[b];
                let amax = xs.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                assert_eq!(d, amax / 127.0, "block {b}: d");
                let qs = &want.qs()[b * BLOCK..(b + 1) * BLOCK];
                assert_eq!(want.sums()[b], qs.iter().map(|&q| q as i32).sum::<i32>());
                for (&q, &v) in qs.iter().zip(xs) {
                    assert_ne!(q, i8::MIN);
                    assert!(
                        (q as f32 * d - v).abs() <= 0.5 * d * (1.0 + 1e-5),
                        "{v} -> {q}"
                    );
                }
            }
            for be in backends() {
                let mut got = Q8Vec::new(64);
                be.quantize_q8(&x, &mut got);
                assert_eq!(got.qs(), want.qs(), "{} qs len {len}", be.name());
                same_bits(&format!("{} d", be.name()), got.scales(), want.scales());
                assert_eq!(got.sums(), want.sums(), "{} sums", be.name());
            }
        }
    }
}

#[test]
fn quantize_rounds_ties_to_even_and_handles_zero_and_tiny_blocks() {
    // amax 127 -> d = 1, id = 1: the halves are exact ties.
    let mut x = vec![0.0f32; 96];
    x[0] = 127.0;
    x[1] = 0.5;
    x[2] = 1.5;
    x[3] = -2.5;
    x[4] = -0.5;
    // Block 1 stays all zero; block 2 is subnormal-tiny (d would not be normal).
    for v in &mut x[64..96] {
        *v = 1e-40;
    }
    for be in backends() {
        let mut q = Q8Vec::new(96);
        be.quantize_q8(&x, &mut q);
        assert_eq!(&q.qs()[..5], &[127, 0, 2, -2, 0], "{}", be.name());
        assert_eq!(q.scales(), &[1.0, 0.0, 0.0], "{}", be.name());
        assert!(q.qs()[32..].iter().all(|&v| v == 0), "{}", be.name());
    }
}

#[test]
fn matvec_q8_is_bit_identical_everywhere_and_right() {
    let mut rng = Rng(12);
    for dtype in qtypes() {
        for (rows, cols) in whole(dtype, &SHAPES) {
            for tile_rows in [8, 4, 1, 3] {
                let m = QMat::random(dtype, rows, cols, tile_rows, &mut rng, Dist::Unit);
                let xs = rng.vec(cols, Dist::Wide);
                let mut x = Q8Vec::new(cols);
                Scalar.quantize_q8(&xs, &mut x);
                let mat = m.matrix();
                let mut want = vec![f32::NAN; rows];
                Scalar.matvec_q8(&mat, &x, &mut want);
                let what = format!("{dtype} {rows}x{cols} R={tile_rows}");
                for (r, (&y, (exact, mag))) in want.iter().zip(m.reference(&x)).enumerate() {
                    let err = (y as f64 - exact).abs();
                    let b = bound(cols / BLOCK, mag);
                    assert!(
                        err <= b,
                        "{what} row {r}: {y} vs {exact} (err {err:e} > {b:e})"
                    );
                }
                for be in backends() {
                    let mut y = vec![f32::NAN; rows];
                    be.matvec_q8(&mat, &x, &mut y);
                    same_bits(&format!("{} {what}", be.name()), &y, &want);
                    // Thread-style splits into tile ranges give the same bits.
                    for per in [1, 2, 3] {
                        let mut split = vec![f32::NAN; rows];
                        let mut first = 0;
                        while first < mat.n_tiles() {
                            let sub = mat.tiles(first, per);
                            let r0 = first * tile_rows;
                            be.matvec_q8(&sub, &x, &mut split[r0..r0 + sub.rows()]);
                            first += per;
                        }
                        same_bits(&format!("{} {what} split {per}", be.name()), &split, &want);
                    }
                }
            }
        }
    }
}

#[test]
fn matmul_q8_rows_are_matvec_q8_bit_for_bit() {
    let mut rng = Rng(13);
    for dtype in qtypes() {
        for (rows, cols) in whole(dtype, &SHAPES) {
            for tile_rows in [8, 4, 3] {
                let m = QMat::random(dtype, rows, cols, tile_rows, &mut rng, Dist::Unit);
                let mat = m.matrix();
                for n in [0, 1, 2, 3, 4, 5, 9] {
                    let xs: Vec<Q8Vec> = (0..n)
                        .map(|_| {
                            let mut x = Q8Vec::new(cols);
                            Scalar.quantize_q8(&rng.vec(cols, Dist::Wide), &mut x);
                            x
                        })
                        .collect();
                    let mut want = vec![f32::NAN; n * rows];
                    for (t, x) in xs.iter().enumerate() {
                        Scalar.matvec_q8(&mat, x, &mut want[t * rows..(t + 1) * rows]);
                    }
                    let what = format!("{dtype} {rows}x{cols} R={tile_rows} n={n}");
                    for be in backends() {
                        let mut y = vec![f32::NAN; n * rows];
                        be.matmul_q8(&mat, &xs, &mut y);
                        same_bits(&format!("{} {what}", be.name()), &y, &want);
                        for threads in [2, 3] {
                            let t = vtc_kernels::Threaded::new(&be, threads).unwrap();
                            let mut y = vec![f32::NAN; n * rows];
                            t.matmul_q8(&mat, &xs, &mut y);
                            same_bits(&format!("{} x{threads} {what}", be.name()), &y, &want);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn extreme_quants_do_not_saturate() {
    // Q8_0 weights of -128 (GGUF files may hold them) against activations of -127:
    // every pair product is 16256, the block dot 520192, far past i16.
    let (rows, cols) = (8, 64);
    let n = rows * cols / BLOCK;
    let data = QuantData {
        dtype: DType::Q8_0,
        quants: vec![0x80; rows * cols],
        scales: vec![f16::ONE; n],
    };
    let m = QMat::from_data(data, rows, cols, 8);
    let mut x = Q8Vec::new(cols);
    Scalar.quantize_q8(&vec![-1.0f32; cols], &mut x);
    assert!(x.qs().iter().all(|&q| q == -127));
    let d = x.scales()[0];
    let want = (2.0 * (32.0 * 128.0 * 127.0) as f32 * d) as f64;
    for be in backends() {
        let mut y = vec![0.0; rows];
        be.matvec_q8(&m.matrix(), &x, &mut y);
        for &v in &y {
            assert!(
                (v as f64 - want).abs() <= want * 1e-6,
                "{}: {v} vs {want}",
                be.name()
            );
        }
    }
    // 4-bit weights of 15 against +127 and -127.
    for dtype in [DType::Q4_0, DType::Q4_1] {
        let data = QuantData {
            dtype,
            quants: vec![0xFF; rows * cols / 2],
            scales: vec![f16::ONE; n * dtype.scale_fields()],
        };
        let m = QMat::from_data(data, rows, cols, 8);
        for sign in [1.0f32, -1.0] {
            Scalar.quantize_q8(&vec![sign; cols], &mut x);
            let mut want = vec![0.0; rows];
            Scalar.matvec_q8(&m.matrix(), &x, &mut want);
            for (r, (exact, _)) in m.reference(&x).into_iter().enumerate() {
                assert!((want[r] as f64 - exact).abs() <= exact.abs() * 1e-6);
            }
            for be in backends() {
                let mut y = vec![0.0; rows];
                be.matvec_q8(&m.matrix(), &x, &mut y);
                same_bits(&format!("{} {dtype} sign {sign}", be.name()), &y, &want);
                // The batched kernel, with the extreme input in every register slot.
                let batch = vec![x.clone(); 5];
                let mut y = vec![0.0; 5 * rows];
                be.matmul_q8(&m.matrix(), &batch, &mut y);
                for (t, yt) in y.chunks_exact(rows).enumerate() {
                    same_bits(
                        &format!("{} {dtype} sign {sign} batch {t}", be.name()),
                        yt,
                        &want,
                    );
                }
            }
        }
    }
}

/// A block of `kind` whose every product is at its largest: all quant bits set for
/// the types with unsigned quants (scales and minimums 63), and for `Q6_K` quants of
/// -32 under scales of -128 (its largest integer sum, just under 2^24).
fn extreme_block(kind: BlockType) -> Vec<u8> {
    match kind {
        BlockType::Q6_K => (0..208).map(|i| if i < 192 { 0 } else { 0x80 }).collect(),
        _ => vec![0xFF; kind.quant_bytes()],
    }
}

#[test]
fn extreme_5_bit_and_k_quants_do_not_overflow() {
    for kind in [
        BlockType::Q5_0,
        BlockType::Q5_1,
        BlockType::Q4_K,
        BlockType::Q5_K,
        BlockType::Q6_K,
    ] {
        let dtype = kind.dtype();
        let (rows, cols) = (8, 2 * kind.elems());
        let n = rows * cols / kind.elems();
        let data = QuantData {
            dtype,
            quants: extreme_block(kind).repeat(n),
            scales: vec![f16::ONE; n * kind.fields()],
        };
        let m = QMat::from_data(data, rows, cols, 8);
        for sign in [1.0f32, -1.0] {
            let mut x = Q8Vec::new(cols);
            Scalar.quantize_q8(&vec![sign; cols], &mut x);
            let mut want = vec![0.0; rows];
            Scalar.matvec_q8(&m.matrix(), &x, &mut want);
            for (r, (exact, _)) in m.reference(&x).into_iter().enumerate() {
                assert!(
                    (want[r] as f64 - exact).abs() <= exact.abs() * 1e-6,
                    "{dtype} sign {sign} row {r}: {} vs {exact}",
                    want[r]
                );
            }
            for be in backends() {
                let mut y = vec![0.0; rows];
                be.matvec_q8(&m.matrix(), &x, &mut y);
                same_bits(&format!("{} {dtype} sign {sign}", be.name()), &y, &want);
                let batch = vec![x.clone(); 5];
                let mut y = vec![0.0; 5 * rows];
                be.matmul_q8(&m.matrix(), &batch, &mut y);
                for (t, yt) in y.chunks_exact(rows).enumerate() {
                    same_bits(
                        &format!("{} {dtype} sign {sign} batch {t}", be.name()),
                        yt,
                        &want,
                    );
                }
            }
        }
    }
}

#[test]
fn row_into_dequantizes_like_the_format() {
    let mut rng = Rng(13);
    for dtype in qtypes() {
        let cols = 3 * dtype.block_elems();
        let m = QMat::random(dtype, 11, cols, 8, &mut rng, Dist::Wide);
        let all = m.data.dequantize();
        let mat = m.matrix();
        let mut row = vec![0.0; cols];
        for r in 0..11 {
            mat.row_into(r, &mut row);
            same_bits(
                &format!("{dtype} row {r}"),
                &row,
                &all[r * cols..(r + 1) * cols],
            );
        }
    }
}

#[test]
fn quantized_matrix_sizes_are_checked() {
    let mut rng = Rng(14);
    let m = QMat::random(DType::Q4_1, 9, 64, 8, &mut rng, Dist::Unit);
    let q = |quants: &[u8], scales: &[f16]| {
        Matrix::new(
            WeightSlice::Quant(QuantSlice {
                dtype: DType::Q4_1,
                quants: &quants.to_vec().leak()[..],
                scales: &scales.to_vec().leak()[..],
            }),
            9,
            64,
            8,
        )
    };
    assert!(q(&m.quants, &m.scales).is_ok());
    assert!(q(&m.quants[1..], &m.scales).is_err());
    assert!(q(&m.quants, &m.scales[1..]).is_err());
    let bad_cols = Matrix::new(
        WeightSlice::Quant(QuantSlice {
            dtype: DType::Q4_1,
            quants: &m.quants,
            scales: &m.scales,
        }),
        9,
        63,
        8,
    );
    assert!(bad_cols.is_err());
}

#[test]
#[should_panic(expected = "matvec_q8")]
fn float_matvec_of_a_quantized_matrix_is_refused() {
    let mut rng = Rng(15);
    let m = QMat::random(DType::Q8_0, 8, 32, 8, &mut rng, Dist::Unit);
    let mut y = vec![0.0; 8];
    Scalar.matvec(&m.matrix(), &[0.0; 32], &mut y);
}

#[test]
fn quantizing_a_partial_block_is_refused_by_every_backend() {
    for be in backends() {
        for len in [1, 31, 33, 63] {
            let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                be.quantize_q8(&vec![1.0; len], &mut Q8Vec::default());
            }));
            let msg = got.expect_err("a partial block must panic");
            let msg = msg
                .downcast_ref::<String>()
                .map(String::as_str)
                .unwrap_or_default();
            assert!(
                msg.contains("quantize_q8: length") && msg.contains("not whole blocks"),
                "{}: len {len}: {msg}",
                be.name()
            );
        }
    }
}

/// Both NEON dot products by name, on 8-row tiles (the NEON fast path of every block
/// type): SDOT where the CPU has it (qemu's default CPU does, as does every ARMv8.2
/// core with the dot-product extension) and plain NEON always, each bit for bit
/// against the reference on random and extreme blocks, inputs of both signs.
#[cfg(target_arch = "aarch64")]
#[test]
fn neon_sdot_and_plain_paths_match_the_reference() {
    use vtc_kernels::arch::aarch64::Neon;
    let detected = std::arch::is_aarch64_feature_detected!("dotprod");
    let sdot = Neon::new().unwrap();
    assert_eq!(sdot.uses_dotprod(), detected);
    let plain = Neon::without_dotprod();
    assert!(!plain.uses_dotprod());
    let mut paths = vec![("plain", plain)];
    if detected {
        paths.push(("sdot", sdot));
    } else {
        eprintln!("this CPU has no dotprod: only the plain-NEON path runs");
    }
    let mut rng = Rng(16);
    for kind in BlockType::ALL {
        let dtype = kind.dtype();
        for (rows, cols) in [(8usize, 256usize), (9, 512), (17, 768)] {
            let n = rows * cols / kind.elems();
            let extreme = QuantData {
                dtype,
                quants: match kind {
                    BlockType::Q8_0 => vec![0x80; n * kind.quant_bytes()],
                    _ => extreme_block(kind).repeat(n),
                },
                scales: vec![f16::ONE; n * kind.fields()],
            };
            let mats = [
                QMat::random(dtype, rows, cols, 8, &mut rng, Dist::Unit),
                QMat::from_data(extreme, rows, cols, 8),
            ];
            for (m, what) in mats.iter().zip(["random", "extreme"]) {
                let mat = m.matrix();
                for xs in [rng.vec(cols, Dist::Wide), vec![1.0; cols], vec![-1.0; cols]] {
                    let mut x = Q8Vec::new(cols);
                    Scalar.quantize_q8(&xs, &mut x);
                    let mut want = vec![f32::NAN; mat.rows()];
                    Scalar.matvec_q8(&mat, &x, &mut want);
                    for (name, be) in &paths {
                        let mut y = vec![f32::NAN; mat.rows()];
                        be.matvec_q8(&mat, &x, &mut y);
                        same_bits(
                            &format!("neon {name} {dtype} {what} {rows}x{cols}"),
                            &y,
                            &want,
                        );
                    }
                }
            }
        }
    }
}
