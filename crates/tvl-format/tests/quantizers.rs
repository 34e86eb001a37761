//! The block quantizers against llama.cpp's reference rules: as implemented by gguf-py
//! (`tests/data/llamacpp-quant-blocks.json`, written by `scripts/quant_fixture.py`) and
//! as llama.cpp's own C code computes them for all eight block types
//! (`tests/data/llamacpp-quant-kblocks.json`, written by `scripts/quant-fixture-k.sh`):
//! same scale, minimum and quant bytes for every block, ties and degenerate blocks
//! included; dequantization inverts the byte layout; and quantizing then dequantizing
//! stays within each type's error bound, finite on awkward inputs.

use half::f16;
use tvl_format::DType;
use tvl_format::QuantData;
use tvl_format::quant::{
    BLOCK, BlockType, SUPER_BLOCK, dequantize_block, has_quantizer, quantize_block,
};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn quantizers_match_llama_cpp_bit_for_bit() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/llamacpp-quant-blocks.json"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let blocks: Vec<Vec<f32>> = j["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            b.as_array()
                .unwrap()
                .iter()
                .map(|v| f32::from_bits(v.as_u64().unwrap() as u32))
                .collect()
        })
        .collect();
    assert!(blocks.len() > 100);
    for (dtype, key) in [
        (DType::Q8_0, "q8_0"),
        (DType::Q4_0, "q4_0"),
        (DType::Q4_1, "q4_1"),
    ] {
        let want = j[key].as_array().unwrap();
        assert_eq!(want.len(), blocks.len());
        let f = dtype.scale_fields();
        for (i, (x, w)) in blocks.iter().zip(want).enumerate() {
            let w = hex(w.as_str().unwrap());
            assert_eq!(w.len(), 2 * f + dtype.block_bytes());
            let mut q = vec![0u8; dtype.block_bytes()];
            let (d, m) = quantize_block(dtype, x, &mut q);
            assert_eq!(d.to_le_bytes(), [w[0], w[1]], "{key} block {i}: d");
            if f == 2 {
                assert_eq!(m.to_le_bytes(), [w[2], w[3]], "{key} block {i}: m");
            }
            assert_eq!(q, &w[2 * f..], "{key} block {i}: quants");
            // The GGUF block's value of each element (ggml's formulas) is what
            // dequantize_block gives.
            let mut out = [0.0f32; BLOCK];
            let mw = if f == 2 {
                f16::from_le_bytes([w[2], w[3]])
            } else {
                f16::ZERO
            };
            dequantize_block(dtype, &q, f16::from_le_bytes([w[0], w[1]]), mw, &mut out);
            for (k, &v) in out.iter().enumerate() {
                let nib = if k < 16 { q[k] & 15 } else { q[k - 16] >> 4 };
                let d = f16::from_le_bytes([w[0], w[1]]).to_f32();
                let want = match dtype {
                    DType::Q8_0 => q[k] as i8 as f32 * d,
                    DType::Q4_0 => (nib as f32 - 8.0) * d,
                    _ => nib as f32 * d + mw.to_f32(),
                };
                assert_eq!(v.to_bits(), want.to_bits(), "{key} block {i} element {k}");
            }
        }
    }
}

/// The fixture's key of each block type.
fn key(kind: BlockType) -> &'static str {
    match kind {
        BlockType::Q8_0 => "q8_0",
        BlockType::Q4_0 => "q4_0",
        BlockType::Q4_1 => "q4_1",
        BlockType::Q5_0 => "q5_0",
        BlockType::Q5_1 => "q5_1",
        BlockType::Q4_K => "q4_k",
        BlockType::Q5_K => "q5_k",
        BlockType::Q6_K => "q6_k",
    }
}

#[test]
fn quantizers_match_llama_cpp_c_code_bit_for_bit_for_every_type() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/llamacpp-quant-kblocks.json"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rows = j["rows"].as_array().unwrap();
    assert!(rows.len() >= 30);
    let (mut super_blocks, mut checked) = (0, [0usize; 8]);
    for (r, row) in rows.iter().enumerate() {
        let case = row["case"].as_str().unwrap();
        let x: Vec<f32> = hex(row["x"].as_str().unwrap())
            .chunks_exact(4)
            .map(|b| f32::from_bits(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
            .collect();
        assert!(
            !x.is_empty() && x.len().is_multiple_of(SUPER_BLOCK),
            "row {r}"
        );
        super_blocks += x.len() / SUPER_BLOCK;
        for (t, kind) in BlockType::ALL.into_iter().enumerate() {
            let dtype = kind.dtype();
            assert!(has_quantizer(dtype));
            let want = hex(row[key(kind)].as_str().unwrap());
            assert_eq!(want.len(), x.len() / kind.elems() * kind.gguf_bytes());
            let mut q = vec![0u8; kind.quant_bytes()];
            let mut got = vec![0u8; kind.gguf_bytes()];
            for (b, (xs, w)) in x
                .chunks_exact(kind.elems())
                .zip(want.chunks_exact(kind.gguf_bytes()))
                .enumerate()
            {
                let (d, m) = quantize_block(dtype, xs, &mut q);
                kind.join_gguf(&q, d, m, &mut got);
                assert_eq!(
                    got, w,
                    "{kind:?}, row {r} ({case}), block {b}: ours vs llama.cpp's"
                );
                // The ggml block split is what we wrote.
                let mut q2 = vec![0u8; kind.quant_bytes()];
                assert_eq!(kind.split_gguf(w, &mut q2), (d, m));
                assert_eq!(q2, q);
                checked[t] += 1;
            }
        }
    }
    assert!(super_blocks >= 40, "{super_blocks} super-blocks");
    assert!(checked.iter().all(|&n| n >= 40), "{checked:?}");
}

/// `scripts/quant_fixture_k.c`'s generator: splitmix64.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `bulk_block` of `scripts/quant_fixture_k.c`: super-block `sb` of the bulk set.
fn bulk_block(rng: &mut SplitMix, sb: usize, x: &mut [f32; SUPER_BLOCK]) {
    for (i, v) in x.iter_mut().enumerate() {
        let r = rng.next();
        let mut a = if sb % 4 == 3 {
            (r & 0xFFFF) as i32 - 32768
        } else {
            (r & 0xFFFF) as i32
                + ((r >> 16) & 0xFFFF) as i32
                + ((r >> 32) & 0xFFFF) as i32
                + (r >> 48) as i32
                - 131070
        };
        if sb % 8 == 5 && i == sb % SUPER_BLOCK {
            a *= 64;
        }
        if sb % 16 == 9 && i / 32 == (sb / 16) % 8 {
            a = 0;
        }
        // Exact: at most 24 significant bits, a power-of-two scale, no subnormals.
        *v = a as f32 * 2.0f32.powi(-(12 + (sb % 16) as i32));
    }
}

#[test]
fn quantizers_match_llama_cpp_c_code_on_thousands_of_super_blocks() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/llamacpp-quant-kblocks.json"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let bulk = &j["bulk"];
    let n = bulk["super_blocks"].as_u64().unwrap() as usize;
    assert!(n >= 4096);
    let mut rng = SplitMix(bulk["seed"].as_u64().unwrap());
    let mut hashes = [0xCBF2_9CE4_8422_2325u64; 8];
    let mut x = [0.0f32; SUPER_BLOCK];
    let mut raw = vec![0u8; 256];
    let mut q = vec![0u8; 256];
    for sb in 0..n {
        bulk_block(&mut rng, sb, &mut x);
        for (h, kind) in hashes.iter_mut().zip(BlockType::ALL) {
            let (qb, gb) = (kind.quant_bytes(), kind.gguf_bytes());
            for xs in x.chunks_exact(kind.elems()) {
                let (d, m) = quantize_block(kind.dtype(), xs, &mut q[..qb]);
                kind.join_gguf(&q[..qb], d, m, &mut raw[..gb]);
                for &b in &raw[..gb] {
                    *h = (*h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
                }
            }
        }
    }
    for (h, kind) in hashes.iter().zip(BlockType::ALL) {
        let want = u64::from_str_radix(bulk[key(kind)].as_str().unwrap(), 16).unwrap();
        assert_eq!(
            *h, want,
            "{kind:?}: FNV-1a of {n} super-blocks, ours vs llama.cpp's"
        );
    }
}

/// A deterministic generator (xorshift64*) of uniform and normal f32s.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

/// Quantize one block and dequantize it back.
fn round_trip(kind: BlockType, x: &[f32]) -> (Vec<f32>, f16, f16) {
    let mut q = vec![0u8; kind.quant_bytes()];
    let (d, m) = quantize_block(kind.dtype(), x, &mut q);
    let mut y = vec![0.0f32; kind.elems()];
    dequantize_block(kind.dtype(), &q, d, m, &mut y);
    (y, d, m)
}

/// The largest error quantizing then dequantizing may make on block `x`, from the
/// block's rounded fields: a bound every quantizer's rules guarantee, plus a margin for
/// the f16 rounding of the fields where the quants were chosen before it (the 32-element
/// types) and f32 rounding.
///
/// - `Q8_0`: half a step, `|d| / 2` (every `x / d` lies in `[-127, 127]`).
/// - `Q4_0` / `Q5_0`: the extreme maps to `-8` / `-16`, the opposite side is clipped at
///   `7` / `15` steps, so one step `|d|` there (half a step elsewhere).
/// - `Q4_1` / `Q5_1`: half a step `d / 2` (`(x - min) / d` lies in `[0, 15]` / `[0, 31]`).
/// - `Q4_K` / `Q5_K`: each sub-block's step is `d * sc` with the nearest quant of
///   `(x + dmin * mn) / (d * sc)` clamped to `[0, nmax]`: the least-squares fit may clip
///   the ends of a sub-block's range, so the bound is the distance to the reachable
///   interval `[-dmin mn, d sc nmax - dmin mn]` plus half a step; taken from the block's
///   own fields, it checks that the quants are the nearest in the grid the fields
///   define. Separately the grid must cover the data: error below 1/4 of the
///   sub-block's range for random data (checked by the caller).
/// - `Q6_K`: as the K types with the grid `d * sc * [-32, 31]`.
fn check_block(kind: BlockType, x: &[f32], y: &[f32], d: f16, m: f16, q: &[u8], what: &str) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let margin = match kind {
        // The quants were chosen with the unrounded f32 fields: each field's f16
        // rounding (relative 2^-11, absolute 2^-25 among subnormals) times at most 127
        // steps.
        BlockType::Q8_0 | BlockType::Q4_0 | BlockType::Q4_1 | BlockType::Q5_0 | BlockType::Q5_1 => {
            amax * 2.0f32.powi(-10) + 2.0f32.powi(-17)
        }
        // The K types requantize with the stored fields: f32 rounding only.
        BlockType::Q4_K | BlockType::Q5_K | BlockType::Q6_K => amax * 2.0f32.powi(-18) + 1e-37,
    };
    let (d32, m32) = (d.to_f32(), m.to_f32());
    for (j, (&a, &b)) in x.iter().zip(y).enumerate() {
        assert!(b.is_finite(), "{what}: element {j} is {b}");
        let bound = match kind {
            BlockType::Q8_0 | BlockType::Q4_1 | BlockType::Q5_1 => 0.5 * d32.abs(),
            BlockType::Q4_0 | BlockType::Q5_0 => d32.abs(),
            BlockType::Q4_K | BlockType::Q5_K | BlockType::Q6_K => {
                let (_, sc, mn) = tvl_format::quant::k_quant(kind, q, j);
                let step = d32 * sc as f32;
                let (lo, hi) = match kind {
                    BlockType::Q6_K => (-32.0 * step, 31.0 * step),
                    _ => {
                        let nmax = if kind == BlockType::Q4_K { 15.0 } else { 31.0 };
                        (-m32 * mn as f32, step * nmax - m32 * mn as f32)
                    }
                };
                let (lo, hi) = (lo.min(hi), lo.max(hi));
                let outside = (lo - a).max(a - hi).max(0.0);
                outside + 0.5 * step.abs()
            }
        };
        assert!(
            (a - b).abs() <= bound * (1.0 + 1e-5) + margin,
            "{what}: element {j}: {a} -> {b}, bound {bound} (d {d32}, m {m32})"
        );
    }
}

#[test]
fn quantize_then_dequantize_stays_within_each_types_bound() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    for kind in BlockType::ALL {
        let n = kind.elems();
        let (mut sum_sq_err, mut sum_sq) = (0.0f64, 0.0f64);
        for trial in 0..200 {
            let scale = [1.0f32, 1e-3, 40.0][trial % 3];
            let x: Vec<f32> = (0..n)
                .map(|_| {
                    if trial % 2 == 0 {
                        rng.normal() * scale
                    } else {
                        (rng.uniform() as f32 * 2.0 - 1.0) * scale
                    }
                })
                .collect();
            let mut q = vec![0u8; kind.quant_bytes()];
            let (d, m) = quantize_block(kind.dtype(), &x, &mut q);
            let mut y = vec![0.0f32; n];
            dequantize_block(kind.dtype(), &q, d, m, &mut y);
            check_block(kind, &x, &y, d, m, &q, &format!("{kind:?} trial {trial}"));
            // The grid covers the data: per sub-block of 32, no element is off by more
            // than a quarter of the sub-block's range (a clipped fit stays close).
            for (xs, ys) in x.chunks(32).zip(y.chunks(32)) {
                let (lo, hi) = xs
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
                for (a, b) in xs.iter().zip(ys) {
                    assert!((a - b).abs() <= 0.25 * (hi - lo), "{kind:?} trial {trial}");
                }
            }
            if scale == 1.0 {
                for (a, b) in x.iter().zip(&y) {
                    sum_sq_err += f64::from(a - b).powi(2);
                    sum_sq += f64::from(*a).powi(2);
                }
            }
        }
        // Relative RMS error on unit-scale data, against each type's bits: about
        // 2^-bits of the range. Loose ceilings that a broken quantizer exceeds.
        let rel = (sum_sq_err / sum_sq).sqrt();
        let ceiling = match kind {
            BlockType::Q8_0 => 0.01,
            BlockType::Q6_K => 0.03,
            BlockType::Q5_0 | BlockType::Q5_1 | BlockType::Q5_K => 0.06,
            BlockType::Q4_0 | BlockType::Q4_1 | BlockType::Q4_K => 0.12,
        };
        assert!(rel < ceiling, "{kind:?}: relative RMS error {rel}");
    }
}

#[test]
fn awkward_blocks_never_panic_or_give_nan() {
    let mut rng = Rng(7);
    for kind in BlockType::ALL {
        let n = kind.elems();
        let mut cases: Vec<(&str, Vec<f32>)> = vec![
            ("zero", vec![0.0; n]),
            ("negative zero", vec![-0.0; n]),
            ("constant", vec![0.75; n]),
            ("constant negative", vec![-1e3; n]),
            (
                "one element",
                (0..n).map(|j| if j == 5 { 3.0 } else { 0.0 }).collect(),
            ),
            (
                "huge range",
                (0..n)
                    .map(|j| if j % 7 == 0 { 3e4 } else { rng.normal() * 1e-6 })
                    .collect(),
            ),
            (
                "magnitudes 1e-30 .. 1e4",
                (0..n)
                    .map(|j| rng.normal() * 10f32.powi((j % 35) as i32 - 30))
                    .collect(),
            ),
            (
                "subnormal",
                (0..n).map(|j| (j as f32 - 100.0) * 1e-42).collect(),
            ),
            ("tiny", (0..n).map(|_| rng.normal() * 1e-20).collect()),
            ("min positive", vec![f32::MIN_POSITIVE; n]),
            (
                "alternating",
                (0..n)
                    .map(|j| if j % 2 == 0 { 1.0 } else { -1.0 })
                    .collect(),
            ),
        ];
        cases.push((
            "outlier",
            (0..n)
                .map(|j| if j == n - 1 { -500.0 } else { rng.normal() })
                .collect(),
        ));
        for (what, x) in cases {
            let (y, d, m) = round_trip(kind, &x);
            assert!(
                d.is_finite() && m.is_finite(),
                "{kind:?} {what}: d {d} m {m}"
            );
            let mut q = vec![0u8; kind.quant_bytes()];
            quantize_block(kind.dtype(), &x, &mut q);
            check_block(kind, &x, &y, d, m, &q, &format!("{kind:?} {what}"));
            if what.starts_with("zero") || what == "negative zero" {
                assert!(y.iter().all(|&v| v == 0.0), "{kind:?} {what}");
            }
        }
    }
}

#[test]
fn matrices_quantize_for_every_type() {
    let mut rng = Rng(99);
    for kind in BlockType::ALL {
        let (rows, cols) = (3, 2 * SUPER_BLOCK);
        let x: Vec<f32> = (0..rows * cols).map(|_| rng.normal()).collect();
        let q = QuantData::quantize(kind.dtype(), &x, rows, cols).unwrap();
        assert_eq!(
            q.quants.len(),
            rows * cols / kind.elems() * kind.quant_bytes()
        );
        assert_eq!(q.scales.len(), rows * cols / kind.elems() * kind.fields());
        let y = q.dequantize();
        for (b, (xs, ys)) in x
            .chunks(kind.elems())
            .zip(y.chunks(kind.elems()))
            .enumerate()
        {
            let (want, _, _) = round_trip(kind, xs);
            assert_eq!(ys, &want[..], "{kind:?} block {b}");
        }
        // Not whole blocks.
        assert!(QuantData::quantize(kind.dtype(), &x[..cols - 1], 1, cols - 1).is_none());
    }
}
