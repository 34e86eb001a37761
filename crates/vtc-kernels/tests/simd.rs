//! Every backend this CPU and build can run (`scalar` everywhere, `avx2`, `avx512` on
//! x86-64, `neon` on aarch64) against **the canonical order, bit for bit**: [`canon`]
//! re-implements, in plain Rust with `f32::mul_add` and without the crate's SIMD
//! abstraction, the sequence of IEEE operations every backend promises (crate docs,
//! "Reduction order and determinism"): dot products in 16 partial sums by fused
//! multiply-add, combined by halving; one fixed `exp`; plain operations for the
//! element-wise parts. Every kernel of every backend must equal it exactly, so the
//! backends equal each other on every ISA (this file also runs under qemu on aarch64).
//! How close that order is to the exact values is `tests/reference.rs`'s business
//! (naive `f64` references, worst-case bounds).
//!
//! Lengths: 0, 1, 3, 31, 32, 33, 63, 64, 65, 127, 576, 768, 1536, 2048, 49152, random
//! data (proptest picks shapes and seeds), tile heights 1..=8 with row counts that are
//! not multiples of them, f32 and f16 weights.

use half::f16;
use half::slice::HalfFloatSliceExt;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tvl_format::DType;
use vtc_kernels::{Backend, KNOWN_BACKENDS, KernelError, RopeStyle, available, by_name, detect};

mod common;
use common::{Dist, Rng, SUB, Tiled, any_dist};

const LENS: &[usize] = &[
    0, 1, 3, 31, 32, 33, 63, 64, 65, 127, 576, 768, 1536, 2048, 49152,
];

/// Every backend this CPU and build can run, Scalar first.
fn backends() -> Vec<&'static dyn Backend> {
    let v = available();
    assert_eq!(v[0].name(), "scalar", "available() lists Scalar first");
    v
}

/// Identical bits (NaN matches NaN).
fn same_bits(what: &str, got: &[f32], want: &[f32]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len(), "{}: lengths", what);
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        if a.to_bits() != b.to_bits() && !(a.is_nan() && b.is_nan()) {
            return Err(TestCaseError::fail(format!(
                "{what}: element {i}: got {a:e} ({:#010x}), want {b:e} ({:#010x})",
                a.to_bits(),
                b.to_bits()
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The canonical order, in plain Rust
// ---------------------------------------------------------------------------------

mod canon {
    /// Partial sums of a dot product.
    const P: usize = 16;

    /// Halving: `p[l] += p[l + 8]`, `+4`, `+2`, `+1`.
    fn reduce(mut p: [f32; P]) -> f32 {
        let mut h = P / 2;
        while h > 0 {
            for l in 0..h {
                p[l] += p[l + h];
            }
            h /= 2;
        }
        p[0]
    }

    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut p = [0.0f32; P];
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            p[i % P] = x.mul_add(y, p[i % P]);
        }
        reduce(p)
    }

    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 355.0 / 512.0;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const POLY: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_6e-1,
        0.5,
    ];

    fn pow2(n: f32) -> f32 {
        f32::from_bits(((n as i32 + 127) << 23) as u32)
    }

    pub fn exp(x: f32) -> f32 {
        if x.is_nan() {
            return x;
        }
        let x = x.clamp(-104.0, 88.8);
        let n = (x * LOG2E).round_ties_even();
        let r = n.mul_add(-LN2_HI, x);
        let r = n.mul_add(-LN2_LO, r);
        let mut y = POLY[0];
        for c in &POLY[1..] {
            y = y.mul_add(r, *c);
        }
        let y = y.mul_add(r * r, r) + 1.0;
        let n1 = (n * 0.5).round_ties_even();
        y * pow2(n1) * pow2(n - n1)
    }

    pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
        if x.is_empty() {
            return vec![];
        }
        let ss = dot(x, x) / x.len() as f32;
        let inv = 1.0 / (ss + eps).sqrt();
        x.iter().zip(w).map(|(&v, &g)| v * inv * g).collect()
    }

    pub fn softmax(x: &[f32]) -> Vec<f32> {
        if x.is_empty() {
            return vec![];
        }
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = x.iter().map(|&v| exp(v - max)).collect();
        let mut p = [0.0f32; P];
        for (i, &v) in e.iter().enumerate() {
            p[i % P] += v;
        }
        let inv = 1.0 / reduce(p);
        e.iter().map(|&v| v * inv).collect()
    }

    pub fn swiglu(g: f32, u: f32) -> f32 {
        g / (1.0 + exp(-g)) * u
    }

    /// tanh GELU as `g / (1 + exp(-z)) * u`, `z = g (K1 + K2 g^2)`.
    pub fn geglu(g: f32, u: f32) -> f32 {
        let z = g * (g * g).mul_add(0.071_354_814, 1.595_769_2);
        g / (1.0 + exp(-z)) * u
    }

    pub fn attn_values(p: &[f32], v: &[f32], stride: usize, d: usize) -> Vec<f32> {
        (0..d)
            .map(|k| {
                p.iter()
                    .enumerate()
                    .fold(0.0f32, |acc, (t, &pt)| pt.mul_add(v[t * stride + k], acc))
            })
            .collect()
    }

    /// Pair `i` of each head (`(2i, 2i + 1)` interleaved, `(i, i + half)` half-split)
    /// rotated by `cos[i]`, `sin[i]`, with plain (unfused) operations.
    pub fn rope(
        x: &[f32],
        head_dim: usize,
        cos: &[f32],
        sin: &[f32],
        style: super::RopeStyle,
    ) -> Vec<f32> {
        let half = head_dim / 2;
        let mut out = x.to_vec();
        for head in out.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (a, b) = match style {
                    super::RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                    super::RopeStyle::HalfSplit => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos[i] - x1 * sin[i];
                head[b] = x0 * sin[i] + x1 * cos[i];
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------
// matvec
// ---------------------------------------------------------------------------------

/// One matrix through every backend: canonical bits, the same bits again, and the same
/// bits when split into tile ranges.
fn check_matvec(t: &Tiled, x: &[f32]) -> Result<(), TestCaseError> {
    let m = t.matrix();
    let want: Vec<f32> = (0..t.rows).map(|r| canon::dot(t.row(r), x)).collect();
    for b in backends() {
        let what = format!("{} matvec {}", b.name(), t.describe());
        let mut y = vec![f32::NAN; t.rows];
        b.matvec(&m, x, &mut y);
        same_bits(&format!("{what} vs canonical"), &y, &want)?;
        let mut again = vec![f32::NAN; t.rows];
        b.matvec(&m, x, &mut again);
        same_bits(&format!("{what} second run"), &again, &y)?;
        // Thread-style split: tile ranges of a few sizes.
        let n_tiles = m.n_tiles();
        for per in [1, 2, 3, n_tiles.div_ceil(2).max(1)] {
            let mut split = vec![f32::NAN; t.rows];
            let mut first = 0;
            while first < n_tiles {
                let sub = m.tiles(first, per);
                let r0 = first * t.tile_rows;
                b.matvec(&sub, x, &mut split[r0..r0 + sub.rows()]);
                first += per;
            }
            same_bits(&format!("{what} in pieces of {per} tiles"), &split, &y)?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matvec_is_canonical(
        rows in prop_oneof![0usize..40, prop::sample::select(&[64usize, 97, 576][..])],
        cols in prop::sample::select(LENS),
        tile_rows in 1usize..=8,
        f16w in any::<bool>(),
        dist in any_dist(),
        seed in any::<u64>(),
    ) {
        // Keep the largest cases to a few million weights.
        let rows = if cols >= 2048 { rows.min(40) } else { rows };
        let mut rng = Rng(seed);
        let dtype = if f16w { DType::F16 } else { DType::F32 };
        let t = Tiled::from_vec(rows, cols, tile_rows, dtype, rng.vec(rows * cols, dist));
        let x = rng.vec(cols, dist);
        check_matvec(&t, &x)?;
    }
}

/// Every tile height 1..=8 with row counts around it, every length, both dtypes: the
/// exhaustive sweep behind the random one above.
#[test]
fn matvec_every_tile_height_and_length() {
    let mut rng = Rng(21);
    for dtype in [DType::F32, DType::F16] {
        for tile_rows in 1..=8 {
            for rows in [1, tile_rows - 1, tile_rows + 1, 3 * tile_rows + 2] {
                for &cols in LENS {
                    let t = Tiled::from_vec(
                        rows,
                        cols,
                        tile_rows,
                        dtype,
                        rng.vec(rows * cols, Dist::Wide),
                    );
                    let x = rng.vec(cols, Dist::Wide);
                    check_matvec(&t, &x).unwrap();
                }
            }
        }
    }
}

/// The vocabulary projection of the real model: 49152 x 576 with tile height 4.
#[test]
fn matvec_model_sized() {
    let mut rng = Rng(22);
    for dtype in [DType::F32, DType::F16] {
        let t = Tiled::from_vec(49152, 576, 4, dtype, rng.vec(49152 * 576, Dist::Unit));
        let x = rng.vec(576, Dist::Unit);
        check_matvec(&t, &x).unwrap();
    }
}

// ---------------------------------------------------------------------------------
// The vector kernels
// ---------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn rmsnorm_is_canonical(
        n in prop::sample::select(LENS),
        dist in any_dist(),
        eps in prop::sample::select(&[1e-5f32, 1e-6, 1e-2][..]),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let x = rng.vec(n, dist);
        let w = rng.vec(n, Dist::Unit);
        let want = canon::rmsnorm(&x, &w, eps);
        for b in backends() {
            let mut out = vec![f32::NAN; n];
            b.rmsnorm(&mut out, &x, &w, eps);
            let what = format!("{} rmsnorm n={n}", b.name());
            same_bits(&what, &out, &want)?;
        }
    }

    #[test]
    fn softmax_is_canonical(
        n in prop::sample::select(LENS),
        scale in prop::sample::select(&[1.0f32, 30.0, 1000.0][..]),
        masked in 0.0f64..0.9,
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let mut x: Vec<f32> = rng.vec(n, Dist::Unit).iter().map(|v| v * scale).collect();
        for v in x.iter_mut().skip(1) {
            if rng.unit() < masked {
                *v = f32::NEG_INFINITY;
            }
        }
        let want = canon::softmax(&x);
        for b in backends() {
            let mut p = x.clone();
            b.softmax(&mut p);
            let what = format!("{} softmax n={n}", b.name());
            same_bits(&what, &p, &want)?;
        }
    }

    #[test]
    fn swiglu_is_canonical(
        n in prop::sample::select(LENS),
        gscale in prop::sample::select(&[1.0f32, 20.0, 120.0][..]),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let gate: Vec<f32> = rng.vec(n, Dist::Unit).iter().map(|v| v * gscale).collect();
        let up = rng.vec(n, Dist::Wide);
        let want: Vec<f32> = gate.iter().zip(&up).map(|(&g, &u)| canon::swiglu(g, u)).collect();
        for b in backends() {
            let mut g = gate.clone();
            b.swiglu(&mut g, &up);
            let what = format!("{} swiglu n={n}", b.name());
            same_bits(&what, &g, &want)?;
        }
    }

    #[test]
    fn geglu_is_canonical(
        n in prop::sample::select(LENS),
        gscale in prop::sample::select(&[1.0f32, 6.0, 120.0][..]),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let gate: Vec<f32> = rng.vec(n, Dist::Unit).iter().map(|v| v * gscale).collect();
        let up = rng.vec(n, Dist::Wide);
        let want: Vec<f32> = gate.iter().zip(&up).map(|(&g, &u)| canon::geglu(g, u)).collect();
        for b in backends() {
            let mut g = gate.clone();
            b.geglu(&mut g, &up);
            let what = format!("{} geglu n={n}", b.name());
            same_bits(&what, &g, &want)?;
        }
    }

    #[test]
    fn attention_is_canonical(
        d in prop::sample::select(&[1usize, 3, 31, 32, 33, 63, 64, 65, 127, 128, 576][..]),
        n in prop::sample::select(&[0usize, 1, 2, 31, 64, 65, 127, 512, 1024][..]),
        extra in prop::sample::select(&[0usize, 1, 3, 32, 64][..]),
        dist in any_dist(),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let stride = d + extra;
        let len = if n == 0 { 0 } else { (n - 1) * stride + d };
        let kv = rng.vec(len, dist);
        let q = rng.vec(d, dist);
        let p: Vec<f32> = (0..n).map(|_| rng.unit() as f32).collect();
        let scale = 1.0 / (d as f32).sqrt();

        let want_s: Vec<f32> =
            (0..n).map(|t| canon::dot(&q, &kv[t * stride..t * stride + d]) * scale).collect();
        let want_v = canon::attn_values(&p, &kv, stride, d);
        for b in backends() {
            let mut s = vec![f32::NAN; n];
            b.attn_scores(&q, &kv, stride, scale, &mut s);
            let what = format!("{} attn_scores d={d} n={n} stride={stride}", b.name());
            same_bits(&what, &s, &want_s)?;

            let mut v = vec![f32::NAN; d];
            b.attn_values(&p, &kv, stride, &mut v);
            let what = format!("{} attn_values d={d} n={n} stride={stride}", b.name());
            same_bits(&what, &v, &want_v)?;
        }
    }

    /// RoPE is `x0 c - x1 s`, `x0 s + x1 c` without fused operations, and addition is
    /// correctly rounded: both must equal the plain formulas bit for bit.
    #[test]
    fn rope_and_add_equal_scalar(
        head_dim in prop::sample::select(&[2usize, 4, 6, 8, 14, 16, 18, 32, 34, 48, 64, 96, 128][..]),
        n_heads in 0usize..13,
        pos in 0u32..100_000,
        n in prop::sample::select(LENS),
        dist in any_dist(),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let x = rng.vec(head_dim * n_heads, dist);
        let (cos, sin): (Vec<f32>, Vec<f32>) = (0..head_dim / 2)
            .map(|i| {
                let th = f64::from(pos) * 10000f64.powf(-2.0 * i as f64 / head_dim as f64);
                (th.cos() as f32, th.sin() as f32)
            })
            .unzip();
        let y0 = rng.vec(n, dist);
        let dx = rng.vec(n, dist);
        for style in [RopeStyle::Interleaved, RopeStyle::HalfSplit] {
            let want = canon::rope(&x, head_dim, &cos, &sin, style);
            for b in backends() {
                let mut got = x.clone();
                b.rope(&mut got, head_dim, &cos, &sin, style);
                same_bits(&format!("{} rope {style:?} d={head_dim}", b.name()), &got, &want)?;
            }
        }
        let want: Vec<f32> = y0.iter().zip(&dx).map(|(a, b)| a + b).collect();
        for b in backends() {
            let mut got = y0.clone();
            b.add(&mut got, &dx);
            same_bits(&format!("{} add n={n}", b.name()), &got, &want)?;
        }
    }
}

/// `exp` over its whole range, through swiglu (`gate / (1 + exp(-gate)) * 1`) and
/// softmax of a pair (`[x, 0]`, whose first output is `exp(x) / (exp(x) + 1)`), at the
/// clamp edges, the overflow and underflow thresholds, and specials.
#[test]
fn exp_edges_are_canonical() {
    let mut gate: Vec<f32> = (-2300..=2300).map(|i| i as f32 * 0.05).collect();
    gate.extend([
        0.0,
        -0.0,
        f32::MIN_POSITIVE,
        1e-30,
        -1e-30,
        88.72,
        -88.72,
        88.73,
        -88.73,
        88.8,
        -88.8,
        103.9,
        -103.9,
        104.0,
        -104.0,
        104.1,
        -104.1,
        87.33,
        -87.33,
        f32::MAX,
        -f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ]);
    let ones = vec![1.0f32; gate.len()];
    let want: Vec<f32> = gate.iter().map(|&g| canon::swiglu(g, 1.0)).collect();
    for b in backends() {
        let mut g = gate.clone();
        b.swiglu(&mut g, &ones);
        same_bits(&format!("{} swiglu sweep", b.name()), &g, &want).unwrap();
        for &v in &gate {
            let mut pair = [v, 0.0];
            b.softmax(&mut pair);
            same_bits(
                &format!("{} softmax([{v}, 0])", b.name()),
                &pair,
                &canon::softmax(&[v, 0.0]),
            )
            .unwrap();
        }
    }
}

/// The canonical `exp` (which every SIMD backend equals bit for bit, tested above) is
/// within 2 ulp of the correctly rounded value wherever the result is normal, and
/// within 1 subnormal ulp plus 2 ulp relative below; 0 below -104, inf above
/// ln(f32::MAX).
#[test]
fn canonical_exp_is_accurate() {
    let mut rng = Rng(23);
    let mut xs: Vec<f32> = (0..200_000)
        .map(|_| (rng.unit() * 208.0 - 104.0) as f32)
        .collect();
    xs.extend((-1000..=1000).map(|i| i as f32 * 1e-3));
    let mut worst = 0.0f64;
    for &x in &xs {
        let got = canon::exp(x);
        let exact = f64::from(x).exp();
        let rounded = exact as f32;
        if rounded.is_infinite() {
            assert!(got.is_infinite(), "exp({x}) = {got}, want inf");
            continue;
        }
        let ulp = if rounded.abs() >= f32::MIN_POSITIVE {
            f64::from(f32::from_bits(rounded.to_bits() + 1) - rounded)
        } else {
            SUB
        };
        let err = (f64::from(got) - exact).abs() / ulp;
        worst = worst.max(if rounded.abs() >= f32::MIN_POSITIVE {
            err
        } else {
            0.0
        });
        assert!(
            err <= 2.0 || (rounded.abs() < f32::MIN_POSITIVE && err <= 3.0),
            "exp({x:e}) = {got:e}, exact {exact:e}: {err} ulp"
        );
    }
    eprintln!("canonical exp: worst error {worst:.3} ulp on normal results");
    assert_eq!(canon::exp(-104.0), 0.0);
    assert_eq!(canon::exp(f32::NEG_INFINITY), 0.0);
    assert_eq!(canon::exp(88.8), f32::INFINITY);
    assert_eq!(canon::exp(0.0), 1.0);
}

/// f16 weights widen exactly in registers: every one of the 63488 finite halves (and
/// infinities), as a one-hot row against x = 1.
#[test]
fn every_f16_weight_widens_exactly() {
    let halves: Vec<f16> = (0..=u16::MAX)
        .map(f16::from_bits)
        .filter(|h| !h.is_nan())
        .collect();
    // 64 columns: each row holds one half in a rotating column, zeros elsewhere.
    let cols = 64;
    let rows = halves.len();
    let mut logical = vec![0.0f32; rows * cols];
    for (r, h) in halves.iter().enumerate() {
        logical[r * cols + r % cols] = h.to_f32();
    }
    let t = Tiled::from_vec(rows, cols, 4, DType::F16, logical);
    let x = vec![1.0f32; cols];
    let mut want = vec![0.0f32; rows];
    halves.convert_to_f32_slice(&mut want);
    for b in backends() {
        let mut y = vec![f32::NAN; rows];
        b.matvec(&t.matrix(), &x, &mut y);
        // `0 * 1 + (-0)` sums to +0 in any order: compare values, signs of zero aside.
        let y: Vec<f32> = y.iter().map(|&v| if v == 0.0 { 0.0 } else { v }).collect();
        let want: Vec<f32> = want
            .iter()
            .map(|&v| if v == 0.0 { 0.0 } else { v })
            .collect();
        same_bits(&format!("{} f16 widening", b.name()), &y, &want).unwrap();
    }
}

// ---------------------------------------------------------------------------------
// Selection
// ---------------------------------------------------------------------------------

/// What this CPU and build should run, by name.
fn expected_runnable(name: &str) -> bool {
    match name {
        "scalar" => true,
        #[cfg(target_arch = "x86_64")]
        "avx2" => {
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
        }
        #[cfg(target_arch = "x86_64")]
        "avx512" => {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        "neon" => true,
        _ => false,
    }
}

#[test]
fn selection_follows_the_cpu() {
    assert_eq!(KNOWN_BACKENDS, &["scalar", "avx2", "avx512", "neon"]);
    for &name in KNOWN_BACKENDS {
        match by_name(name) {
            Ok(b) => {
                assert!(expected_runnable(name), "{name} runs but should not");
                assert_eq!(b.name(), name);
            }
            Err(KernelError::Unsupported(n)) => {
                assert!(!expected_runnable(name), "{name} should run here");
                assert_eq!(n, name);
            }
            Err(e) => panic!("{name}: {e}"),
        }
        eprintln!("{name}: runnable here = {}", expected_runnable(name));
    }
    #[cfg(target_arch = "x86_64")]
    {
        assert!(matches!(by_name("neon"), Err(KernelError::Unsupported(_))));
        assert_eq!(
            vtc_kernels::arch::x86_64::Avx2::new().is_some(),
            expected_runnable("avx2")
        );
        assert_eq!(
            vtc_kernels::arch::x86_64::Avx512::new().is_some(),
            expected_runnable("avx512")
        );
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    {
        assert!(vtc_kernels::arch::aarch64::Neon::new().is_some());
        assert_eq!(by_name("neon").unwrap().name(), "neon");
        assert!(matches!(by_name("avx2"), Err(KernelError::Unsupported(_))));
        assert!(matches!(
            by_name("avx512"),
            Err(KernelError::Unsupported(_))
        ));
    }
    assert!(matches!(
        by_name("AVX2"),
        Err(KernelError::UnknownBackend(_))
    ));

    // available(): Scalar first, then every runnable SIMD backend in KNOWN order.
    let names: Vec<_> = available().iter().map(|b| b.name()).collect();
    let want: Vec<_> = KNOWN_BACKENDS
        .iter()
        .copied()
        .filter(|n| expected_runnable(n))
        .collect();
    assert_eq!(names, want);

    // detect(): the best runnable backend, the same value on every call.
    let best = ["avx512", "avx2", "neon"]
        .into_iter()
        .find(|n| expected_runnable(n))
        .unwrap_or("scalar");
    assert_eq!(detect().name(), best);
    assert!(std::ptr::addr_eq(detect(), detect()));
}
