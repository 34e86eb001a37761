//! Every kernel of every backend this CPU and build can run, against a naive `f64`
//! reference written here, over awkward lengths (0, 1, odd tails, chunk and lane edges,
//! model sizes); plus the layout, thread-partitioning, determinism and constructor
//! contracts.
//!
//! # Which backends
//!
//! [`backends`] asks [`vtc_kernels::by_name`] for every name in [`KNOWN_BACKENDS`] and
//! keeps those this CPU supports, so a SIMD backend is covered by every test here as
//! soon as it is registered there.
//!
//! # Error bounds
//!
//! With `u = 2^-24` (the f32 unit roundoff) and `γ(k) = k u / (1 - k u)`, each bound
//! is the classical worst-case bound for the reduction order the crate fixes on every
//! backend (see the crate docs: [`LANES`] = 16 partial sums by fused multiply-add,
//! combined by halving; `tests/simd.rs` checks every backend against that order bit
//! for bit), so a failure is a bug, never bad luck on random data:
//!
//! - dot products of `n` terms (matvec rows, attention scores): at most
//!   `m = ceil(n / LANES)` terms per partial, one rounding per fused multiply-add, four
//!   levels of halving, so `|err| <= γ(m + 4) * Σ|w_i x_i|` (`+ 1` rounding for the
//!   attention scale).
//! - attention values: `n` sequential multiply-adds per output element,
//!   `|err| <= γ(n + 1) * Σ_t |p_t v_t|`.
//! - rmsnorm: the sum of squares has relative error `γ(m + 4)`, halved by the square
//!   root, plus a handful of roundings: `|err| <= (γ(m + 4) / 2 + γ(8)) * |ref|`.
//! - softmax: `x - max` loses `u |x - max|` in the exponent, `exp` a few ulps, the sum
//!   `γ(n)`: `|err| <= ((|x - max| + 8) u + γ(n)) * ref`; the outputs sum to 1 within
//!   `γ(n) + 4u`.
//! - rope: each output is `a*c ± b*s`, `|err| <= γ(2) * (|a c| + |b s|)`.
//! - swiglu: a few roundings and one `exp`: `|err| <= γ(16) * |ref|`.
//! - geglu: the same on `z = g (k1 + k2 g^2)`, whose own few roundings move the
//!   sigmoid by at most `|z| γ(4)` relative: `|err| <= (γ(16) + |z| γ(4)) * |ref|`.
//! - add: correctly rounded, so bit-exact.
//!
//! Every bound also allows a few multiples of the smallest subnormal (underflow), and
//! every comparison fails on NaN. Because long sums make a relative bound loose, every
//! dot-based kernel is also checked bit-exactly on small-integer data, where each f32
//! operation is exact; that catches indexing bugs (a dropped, doubled or misplaced
//! element) at any length.

use half::f16;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tvl_format::DType;
use vtc_kernels::{
    Backend, KNOWN_BACKENDS, KernelError, LANES, Matrix, RopeStyle, Scalar, WeightSlice, by_name,
    select,
};

/// Lengths every kernel is tried at: empty, tiny, around the 8-lane and the f32/f16
/// chunk (32/64 elements) edges, and model sizes.
mod common;
use common::{Dist, Rng, SUB, Tiled, U, any_dist, any_float_dtype, gamma};

const LENS: &[usize] = &[0, 1, 3, 31, 32, 33, 63, 64, 65, 127, 576, 768, 1536, 2048];

/// [`LENS`] plus a vocabulary-sized length, for the 1-D operations.
const LENS_1D: &[usize] = &[
    0, 1, 3, 31, 32, 33, 63, 64, 65, 127, 576, 768, 1536, 2048, 49152,
];

const TILE_ROWS: &[usize] = &[1, 2, 3, 4, 5, 6, 7, 8];

/// Every backend this CPU and build can run, the reference first.
fn backends() -> Vec<&'static dyn Backend> {
    let mut out: Vec<&'static dyn Backend> = vec![&Scalar];
    for name in KNOWN_BACKENDS {
        match by_name(name) {
            Ok(b) if b.name() != "scalar" => out.push(b),
            Ok(_) | Err(KernelError::Unsupported(_)) => {}
            Err(e) => panic!("KNOWN_BACKENDS lists {name:?} but by_name fails: {e}"),
        }
    }
    out
}

/// The list above, printed (`cargo test -- --nocapture`) so a CI log shows what ran.
#[test]
fn backends_under_test() {
    let names: Vec<_> = backends().iter().map(|b| b.name()).collect();
    eprintln!("backends under test: {names:?}");
    assert_eq!(names[0], "scalar");
}

/// Worst-case error of an `n`-term dot product, relative to `Σ|w_i x_i|`.
fn dot_bound(n: usize) -> f64 {
    gamma(n.div_ceil(LANES) + 4)
}

/// `Ok` if `got` is within `tol` of `want` (and not NaN), else a message.
fn close(what: impl FnOnce() -> String, got: f32, want: f64, tol: f64) -> Result<(), String> {
    let err = (f64::from(got) - want).abs();
    if err <= tol || (got.is_infinite() && f64::from(got) == want) {
        Ok(())
    } else {
        Err(format!(
            "{}: got {got:e}, want {want:e}, |err| {err:e} > bound {tol:e}",
            what()
        ))
    }
}

/// `Ok` if the two slices hold identical bits.
fn same_bits(what: &str, a: &[f32], b: &[f32]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{what}: lengths {} vs {}", a.len(), b.len()));
    }
    match a
        .iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits())
    {
        None => Ok(()),
        Some(i) => Err(format!("{what}: element {i}: {:e} vs {:e}", a[i], b[i])),
    }
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

// ---------------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------------

/// `(Σ w_i x_i, Σ |w_i x_i|)` in f64.
fn ref_dot(w: &[f32], x: &[f32]) -> (f64, f64) {
    w.iter().zip(x).fold((0.0, 0.0), |(s, a), (&w, &x)| {
        let p = f64::from(w) * f64::from(x);
        (s + p, a + p.abs())
    })
}

/// A copy of `v` starting `misalign` floats past a 128-byte boundary (so kernels are
/// exercised, and their determinism checked, at every alignment).
struct Placed {
    buf: Vec<f32>,
    start: usize,
    len: usize,
}

impl Placed {
    fn new(v: &[f32], misalign: usize) -> Self {
        let mut buf = vec![0.0f32; v.len() + 32 + misalign];
        let to_line = buf.as_ptr().align_offset(128);
        let start = to_line + misalign;
        buf[start..start + v.len()].copy_from_slice(v);
        Self {
            buf,
            start,
            len: v.len(),
        }
    }
    fn get(&self) -> &[f32] {
        &self.buf[self.start..self.start + self.len]
    }
    fn get_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

// ---------------------------------------------------------------------------------
// matvec
// ---------------------------------------------------------------------------------

fn check_matvec(b: &dyn Backend, t: &Tiled, x: &[f32]) -> Result<(), String> {
    let mut y = vec![f32::NAN; t.rows];
    b.matvec(&t.matrix(), x, &mut y);
    let rel = dot_bound(t.cols);
    for (r, &got) in y.iter().enumerate() {
        let (want, mag) = ref_dot(t.row(r), x);
        let tol = rel * mag + (t.cols + 1) as f64 * SUB;
        close(
            || format!("{} matvec {} row {r}", b.name(), t.describe()),
            got,
            want,
            tol,
        )?;
    }
    Ok(())
}

/// Every (rows, cols) pair of [`LENS`] with every tile height and both dtypes.
#[test]
fn matvec_matches_f64_reference_on_all_lengths() {
    let mut rng = Rng(1);
    for b in backends() {
        for dtype in [DType::F32, DType::F16] {
            for &tile_rows in TILE_ROWS {
                for &rows in LENS {
                    for &cols in LENS {
                        // Squares beyond the model's largest shape add time, not coverage.
                        if rows * cols > 2048 * 768 {
                            continue;
                        }
                        let t = Tiled::new(rows, cols, tile_rows, dtype, &mut rng, Dist::Unit);
                        let x = rng.vec(cols, Dist::Unit);
                        check_matvec(b, &t, &x).unwrap();
                    }
                }
            }
        }
    }
}

/// Small integers make every product and partial sum exact in f32, so the result must
/// be exact: any misplaced, dropped or doubled weight shows, whatever the length.
#[test]
fn matvec_is_exact_on_small_integers() {
    let mut rng = Rng(2);
    for b in backends() {
        for dtype in [DType::F32, DType::F16] {
            for &tile_rows in TILE_ROWS {
                for &(rows, cols) in &[
                    (1, 1),
                    (3, 33),
                    (5, 65),
                    (7, 127),
                    (9, 2048),
                    (13, 576),
                    (17, 31),
                    (2, 64),
                    (31, 1536),
                ] {
                    let t = Tiled::new(rows, cols, tile_rows, dtype, &mut rng, Dist::Int);
                    let x = rng.vec(cols, Dist::Int);
                    let mut y = vec![f32::NAN; rows];
                    b.matvec(&t.matrix(), &x, &mut y);
                    for (r, &got) in y.iter().enumerate() {
                        let (want, _) = ref_dot(t.row(r), &x);
                        assert_eq!(
                            f64::from(got),
                            want,
                            "{} matvec {} row {r}",
                            b.name(),
                            t.describe()
                        );
                    }
                }
            }
        }
    }
}

/// Splitting a matrix into tile ranges, as thread partitioning does, gives each row
/// the same bits as the whole matvec.
fn check_partitions(b: &dyn Backend, t: &Tiled, x: &[f32]) -> Result<(), String> {
    let m = t.matrix();
    let n_tiles = m.n_tiles();
    let mut full = vec![f32::NAN; t.rows];
    b.matvec(&m, x, &mut full);
    for parts in 1..=5usize {
        for per in [n_tiles.div_ceil(parts).max(1), 1 + parts % 3] {
            let mut y = vec![f32::NAN; t.rows];
            let mut first = 0;
            while first < n_tiles {
                let sub = m.tiles(first, per);
                let r0 = first * t.tile_rows;
                let Matrix::Float(sf) = sub else {
                    return Err("float sub-matrix lost its tile geometry".into());
                };
                let sg = *sf.geometry();
                let elems = sub.data().nbytes() / sub.dtype().size();
                if sub.cols() != t.cols || elems != sg.total_elems().unwrap() {
                    return Err(format!(
                        "tiles({first}, {per}) of {}: bad sub-matrix",
                        t.describe()
                    ));
                }
                b.matvec(&sub, x, &mut y[r0..r0 + sub.rows()]);
                first += per;
            }
            same_bits(
                &format!("{} {} in pieces of {per} tiles", b.name(), t.describe()),
                &y,
                &full,
            )?;
        }
    }
    Ok(())
}

/// A batched product gives each of its `n` inputs the bits of that input's own
/// matvec, on the backend alone and split over 2 threads.
fn check_matmul(b: &dyn Backend, t: &Tiled, xs: &[f32], n: usize) -> Result<(), String> {
    let m = t.matrix();
    let (rows, cols) = (t.rows, t.cols);
    let mut want = vec![f32::NAN; n * rows];
    for i in 0..n {
        b.matvec(
            &m,
            &xs[i * cols..(i + 1) * cols],
            &mut want[i * rows..(i + 1) * rows],
        );
    }
    let what = format!("{} {} batch {n}", b.name(), t.describe());
    let mut y = vec![f32::NAN; n * rows];
    b.matmul(&m, &xs[..n * cols], &mut y);
    same_bits(&what, &y, &want)?;
    let threaded = vtc_kernels::Threaded::new(b, 2).map_err(|e| e.to_string())?;
    let mut y = vec![f32::NAN; n * rows];
    threaded.matmul(&m, &xs[..n * cols], &mut y);
    same_bits(&format!("{what} x2"), &y, &want)
}

#[test]
fn matmul_rows_are_matvec_bit_for_bit() {
    let mut rng = Rng(4);
    for b in backends() {
        for dtype in [DType::F32, DType::F16] {
            for &tile_rows in &[1, 3, 4, 5] {
                for &(rows, cols) in &[(1, 33), (7, 65), (29, 576), (9, 127), (13, 0)] {
                    let t = Tiled::new(rows, cols, tile_rows, dtype, &mut rng, Dist::Wide);
                    let xs = rng.vec(5 * cols, Dist::Wide);
                    for n in 0..=5 {
                        check_matmul(b, &t, &xs, n).unwrap();
                    }
                }
            }
        }
    }
}

/// Matrices past the GEMM's 256 KiB row block (several blocks, the next one fetched
/// ahead, a ragged last block) and batches that are not a multiple of its register
/// block of inputs; split over 2 threads into several runs of tiles.
#[test]
fn matmul_over_several_row_blocks_is_matvec_bit_for_bit() {
    let mut rng = Rng(5);
    for b in backends() {
        for dtype in [DType::F32, DType::F16] {
            for &tile_rows in &[3, 4] {
                let t = Tiled::new(601, 257, tile_rows, dtype, &mut rng, Dist::Wide);
                let xs = rng.vec(17 * 257, Dist::Wide);
                for n in [2, 4, 7, 9, 17] {
                    check_matmul(b, &t, &xs, n).unwrap();
                }
            }
        }
    }
}

#[test]
fn matvec_sub_tiles_are_bit_identical_to_the_whole() {
    let mut rng = Rng(3);
    for b in backends() {
        for dtype in [DType::F32, DType::F16] {
            for &tile_rows in TILE_ROWS {
                for &(rows, cols) in &[(1, 33), (7, 65), (29, 576), (33, 127), (64, 2048), (13, 0)]
                {
                    let t = Tiled::new(rows, cols, tile_rows, dtype, &mut rng, Dist::Wide);
                    let x = rng.vec(cols, Dist::Wide);
                    check_partitions(b, &t, &x).unwrap();
                }
            }
        }
    }
}

#[test]
fn matrix_tiles_clip_to_the_matrix() {
    let mut rng = Rng(4);
    let t = Tiled::new(10, 40, 4, DType::F32, &mut rng, Dist::Unit);
    let m = t.matrix();
    let Matrix::Float(f) = m else {
        panic!("a float matrix has a tile geometry");
    };
    let g = *f.geometry();
    assert_eq!((g.n_tiles(), m.n_tiles()), (3, 3));
    assert_eq!(m.tiles(0, 3).rows(), 10);
    assert_eq!(m.tiles(0, usize::MAX).rows(), 10);
    assert_eq!(m.tiles(2, 1).rows(), 2);
    assert_eq!(m.tiles(2, 1).data().nbytes(), g.tile_elems() * 4);
    assert_eq!(m.tiles(1, 1).rows(), 4);
    assert_eq!(m.tiles(3, 1).rows(), 0);
    assert_eq!(m.tiles(usize::MAX, usize::MAX).rows(), 0);
    assert_eq!(m.tiles(3, 5).data().nbytes(), 0);
    // A zero-row sub-matrix multiplies into an empty output.
    let x = vec![1.0; 40];
    for b in backends() {
        b.matvec(&m.tiles(3, 1), &x, &mut []);
    }
}

#[test]
fn row_into_equals_the_logical_row() {
    let mut rng = Rng(5);
    for dtype in [DType::F32, DType::F16] {
        for &tile_rows in TILE_ROWS {
            for &(rows, cols) in &[
                (1, 1),
                (3, 31),
                (5, 33),
                (9, 64),
                (7, 65),
                (11, 127),
                (3, 768),
            ] {
                let t = Tiled::new(rows, cols, tile_rows, dtype, &mut rng, Dist::Wide);
                let m = t.matrix();
                let mut out = vec![f32::NAN; cols];
                for r in 0..rows {
                    m.row_into(r, &mut out);
                    same_bits(&format!("row {r} of {}", t.describe()), &out, t.row(r)).unwrap();
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "out of")]
fn row_into_past_the_last_row_panics() {
    let t = Tiled::new(3, 8, 4, DType::F32, &mut Rng(6), Dist::Unit);
    t.matrix().row_into(3, &mut [0.0; 8]);
}

/// f16 weights at the edges of the format (largest finite, subnormals, signed zeros)
/// widen exactly.
#[test]
fn matvec_f16_extreme_weights() {
    let specials = [
        f16::MAX,
        f16::MIN,
        f16::MIN_POSITIVE,
        f16::from_bits(1),
        f16::from_bits(0x8001),
        f16::NEG_ZERO,
        f16::ONE,
        f16::from_f32(-0.333),
    ];
    let cols = 67;
    let rows = specials.len();
    let mut logical: Vec<f32> = (0..rows * cols)
        .map(|i| specials[(i / cols + i) % rows].to_f32())
        .collect();
    let t = Tiled::from_logical(rows, cols, 4, DType::F16, &mut logical);
    let x = Rng(7).vec(cols, Dist::Unit);
    for b in backends() {
        check_matvec(b, &t, &x).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random shapes, including row counts that are not multiples of the tile height.
    #[test]
    fn matvec_random_shapes(
        rows in prop_oneof![prop::sample::select(LENS), 0usize..40],
        cols in prop::sample::select(LENS),
        tile_rows in prop::sample::select(TILE_ROWS),
        dtype in any_float_dtype(),
        dist in any_dist(),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let t = Tiled::new(rows, cols, tile_rows, dtype, &mut rng, dist);
        let x = rng.vec(cols, dist);
        let batch = rng.vec(3 * cols, dist);
        for b in backends() {
            check_matvec(b, &t, &x).map_err(fail)?;
            check_partitions(b, &t, &x).map_err(fail)?;
            check_matmul(b, &t, &batch, 3).map_err(fail)?;
        }
    }
}

// ---------------------------------------------------------------------------------
// rmsnorm
// ---------------------------------------------------------------------------------

fn check_rmsnorm(b: &dyn Backend, x: &[f32], w: &[f32], eps: f32) -> Result<(), String> {
    let n = x.len();
    let mut out = vec![f32::NAN; n];
    b.rmsnorm(&mut out, x, w, eps);
    if n == 0 {
        return Ok(());
    }
    let ss: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / n as f64;
    let inv = 1.0 / (ss + f64::from(eps)).sqrt();
    let rel = dot_bound(n) / 2.0 + gamma(8);
    for (i, &got) in out.iter().enumerate() {
        let want = f64::from(x[i]) * inv * f64::from(w[i]);
        close(
            || format!("{} rmsnorm n={n} eps={eps:e} [{i}]", b.name()),
            got,
            want,
            rel * want.abs() + 4.0 * SUB,
        )?;
    }
    Ok(())
}

#[test]
fn rmsnorm_is_exact_on_a_constant_magnitude_input() {
    // x = ±2 everywhere, eps = 0: mean square 4 exactly, so out = ±w exactly. A dropped
    // or doubled element changes the mean square and shows.
    let mut rng = Rng(8);
    for b in backends() {
        for &n in LENS_1D.iter().filter(|&&n| n > 0) {
            let x: Vec<f32> = (0..n)
                .map(|i| if i % 3 == 1 { -2.0 } else { 2.0 })
                .collect();
            let w = rng.vec(n, Dist::Wide);
            let mut out = vec![f32::NAN; n];
            b.rmsnorm(&mut out, &x, &w, 0.0);
            let want: Vec<f32> = w.iter().zip(&x).map(|(&w, &x)| w * x.signum()).collect();
            same_bits(&format!("{} rmsnorm n={n}", b.name()), &out, &want).unwrap();
        }
    }
}

#[test]
fn rmsnorm_all_lengths_and_zero_input() {
    let mut rng = Rng(9);
    for b in backends() {
        for &n in LENS_1D {
            let x = rng.vec(n, Dist::Unit);
            let w = rng.vec(n, Dist::Unit);
            check_rmsnorm(b, &x, &w, 1e-5).unwrap();
            // All zeros: the epsilon keeps it finite, the output is zero.
            let mut out = vec![f32::NAN; n];
            b.rmsnorm(&mut out, &vec![0.0; n], &w, 1e-6);
            assert!(
                out.iter().all(|&v| v == 0.0),
                "{} rmsnorm of zeros",
                b.name()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn rmsnorm_random(
        n in prop::sample::select(LENS_1D),
        dist in any_dist(),
        eps in prop::sample::select(&[1e-5f32, 1e-6, 1e-2][..]),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let x = rng.vec(n, dist);
        let w = rng.vec(n, Dist::Unit);
        for b in backends() {
            check_rmsnorm(b, &x, &w, eps).map_err(fail)?;
        }
    }
}

// ---------------------------------------------------------------------------------
// softmax
// ---------------------------------------------------------------------------------

fn check_softmax(b: &dyn Backend, x: &[f32]) -> Result<(), String> {
    let n = x.len();
    let mut p = x.to_vec();
    b.softmax(&mut p);
    if n == 0 {
        return Ok(());
    }
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = x
        .iter()
        .map(|&v| (f64::from(v) - f64::from(max)).exp())
        .collect();
    let sum: f64 = e.iter().sum();
    for i in 0..n {
        let want = e[i] / sum;
        let spread = (f64::from(x[i]) - f64::from(max)).abs();
        let rel = (spread.min(1e6) + 8.0) * U + gamma(n);
        close(
            || {
                format!(
                    "{} softmax n={n} [{i}] (x={:e}, max={max:e})",
                    b.name(),
                    x[i]
                )
            },
            p[i],
            want,
            rel * want + 2.0 * f64::from(f32::MIN_POSITIVE),
        )?;
    }
    let total: f64 = p.iter().map(|&v| f64::from(v)).sum();
    let tol = gamma(n) + 4.0 * U;
    if (total - 1.0).abs() > tol {
        return Err(format!(
            "{} softmax n={n}: sums to {total} (bound {tol:e})",
            b.name()
        ));
    }
    Ok(())
}

#[test]
fn softmax_all_lengths() {
    let mut rng = Rng(10);
    for b in backends() {
        for &n in LENS_1D {
            let x: Vec<f32> = rng.vec(n, Dist::Unit).iter().map(|v| v * 12.0).collect();
            check_softmax(b, &x).unwrap();
        }
    }
}

#[test]
fn softmax_edge_values() {
    let inf = f32::INFINITY;
    for b in backends() {
        // Empty: left alone, no panic.
        b.softmax(&mut []);

        // One element: exactly 1.
        for v in [0.0, -1e30, 1e30, f32::MAX, -f32::MAX] {
            let mut x = [v];
            b.softmax(&mut x);
            assert_eq!(x, [1.0], "{} softmax([{v}])", b.name());
        }

        // Equal values: all outputs identical, 1/n to the last bit or so.
        for &n in LENS_1D.iter().filter(|&&n| n > 0) {
            let mut x = vec![1e4f32; n];
            b.softmax(&mut x);
            assert!(
                x.iter().all(|&v| v.to_bits() == x[0].to_bits()),
                "{} uniform",
                b.name()
            );
            let want = 1.0 / n as f64;
            assert!(
                (f64::from(x[0]) - want).abs() <= 2.0 * U * want,
                "{} uniform n={n}",
                b.name()
            );
        }

        // Huge values: max subtraction keeps them finite.
        let mut x = [f32::MAX, f32::MAX, 0.0, -f32::MAX];
        b.softmax(&mut x);
        assert_eq!(x, [0.5, 0.5, 0.0, 0.0], "{} softmax of extremes", b.name());
        for x in [
            vec![1e30f32, 1e30, 1e30 * (1.0 - f32::EPSILON)],
            vec![1e4, 1e4 + 1.0, 1e4 - 1.0, -1e4],
            vec![88.0, 89.0, 90.0, -88.0, -104.0, -150.0],
            vec![-1e30, -1e30 - 1e24],
        ] {
            check_softmax(b, &x).unwrap();
        }

        // Masked (-inf) positions get exactly 0; the rest is the softmax of the others.
        let mut x = vec![-inf, 1.0, -inf, 2.0, -inf, 0.5];
        b.softmax(&mut x);
        assert_eq!([x[0], x[2], x[4]], [0.0; 3], "{} masked", b.name());
        check_softmax(b, &[1.0, 2.0, 0.5]).unwrap();
        let mut unmasked = [1.0, 2.0, 0.5];
        b.softmax(&mut unmasked);
        same_bits("masked vs unmasked", &[x[1], x[3], x[5]], &unmasked).unwrap();

        // Causal mask over a long row: one finite score, the rest -inf.
        let mut x = vec![-inf; 1024];
        x[0] = -3.0;
        b.softmax(&mut x);
        assert_eq!(x[0], 1.0, "{} single unmasked", b.name());
        assert!(
            x[1..].iter().all(|&v| v == 0.0),
            "{} single unmasked",
            b.name()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn softmax_random(
        n in prop::sample::select(LENS_1D),
        scale in prop::sample::select(&[1.0f32, 30.0, 1000.0][..]),
        masked in 0.0f64..0.9,
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let mut x: Vec<f32> = rng.vec(n, Dist::Unit).iter().map(|v| v * scale).collect();
        // Mask a fraction of the positions, keeping at least one finite.
        for v in x.iter_mut().skip(1) {
            if rng.unit() < masked {
                *v = f32::NEG_INFINITY;
            }
        }
        for b in backends() {
            check_softmax(b, &x).map_err(fail)?;
        }
    }
}

// ---------------------------------------------------------------------------------
// rope
// ---------------------------------------------------------------------------------

/// cos/sin tables for position `pos` with the usual inverse-frequency schedule,
/// computed in f64 and rounded: the kernel's inputs, whatever produced them.
fn rope_tables(head_dim: usize, pos: f64, base: f64) -> (Vec<f32>, Vec<f32>) {
    (0..head_dim / 2)
        .map(|i| {
            let theta = pos * base.powf(-2.0 * i as f64 / head_dim as f64);
            (theta.cos() as f32, theta.sin() as f32)
        })
        .unzip()
}

fn check_rope(
    b: &dyn Backend,
    x: &[f32],
    head_dim: usize,
    cos: &[f32],
    sin: &[f32],
    style: RopeStyle,
) -> Result<(), String> {
    let mut y = x.to_vec();
    b.rope(&mut y, head_dim, cos, sin, style);
    let half = head_dim / 2;
    for (h, head) in x.chunks_exact(head_dim).enumerate() {
        for i in 0..half {
            let (ia, ib) = match style {
                RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                RopeStyle::HalfSplit => (i, i + half),
            };
            let (a, bb) = (f64::from(head[ia]), f64::from(head[ib]));
            let (c, s) = (f64::from(cos[i]), f64::from(sin[i]));
            let (wa, wb) = (a * c - bb * s, a * s + bb * c);
            let tol_a = gamma(2) * ((a * c).abs() + (bb * s).abs()) + 4.0 * SUB;
            let tol_b = gamma(2) * ((a * s).abs() + (bb * c).abs()) + 4.0 * SUB;
            let what = |k: usize| {
                move || {
                    format!(
                        "{} rope {style:?} d={head_dim} head {h} pair {i} elem {k}",
                        b.name()
                    )
                }
            };
            close(what(ia), y[h * head_dim + ia], wa, tol_a)?;
            close(what(ib), y[h * head_dim + ib], wb, tol_b)?;
        }
    }
    Ok(())
}

const HEAD_DIMS: &[usize] = &[2, 4, 6, 8, 16, 32, 48, 64, 96, 128];

#[test]
fn rope_identity_angle_is_exact() {
    let mut rng = Rng(11);
    for b in backends() {
        for style in [RopeStyle::Interleaved, RopeStyle::HalfSplit] {
            for &d in HEAD_DIMS {
                let x = rng.vec(d * 9, Dist::Wide);
                let (cos, sin) = rope_tables(d, 0.0, 10000.0);
                let mut y = x.clone();
                b.rope(&mut y, d, &cos, &sin, style);
                same_bits(&format!("{} rope pos 0", b.name()), &y, &x).unwrap();
            }
        }
    }
}

#[test]
fn rope_large_inputs_and_empty() {
    let mut rng = Rng(12);
    for b in backends() {
        for style in [RopeStyle::Interleaved, RopeStyle::HalfSplit] {
            // 49152 = 768 heads of 64.
            let x = rng.vec(49152, Dist::Unit);
            let (cos, sin) = rope_tables(64, 12345.0, 10000.0);
            check_rope(b, &x, 64, &cos, &sin, style).unwrap();
            b.rope(&mut [], 64, &cos, &sin, style);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn rope_random(
        head_dim in prop::sample::select(HEAD_DIMS),
        n_heads in prop_oneof![0usize..16, Just(32usize)],
        pos in 0u32..100_000,
        base in prop::sample::select(&[10000.0f64, 100000.0, 500000.0][..]),
        interleaved in any::<bool>(),
        dist in any_dist(),
        seed in any::<u64>(),
    ) {
        let style = if interleaved { RopeStyle::Interleaved } else { RopeStyle::HalfSplit };
        let mut rng = Rng(seed);
        let x = rng.vec(head_dim * n_heads, dist);
        let (cos, sin) = rope_tables(head_dim, f64::from(pos), base);
        for b in backends() {
            check_rope(b, &x, head_dim, &cos, &sin, style).map_err(fail)?;
        }
    }
}

// ---------------------------------------------------------------------------------
// swiglu and add
// ---------------------------------------------------------------------------------

fn check_swiglu(b: &dyn Backend, gate: &[f32], up: &[f32]) -> Result<(), String> {
    let mut g = gate.to_vec();
    b.swiglu(&mut g, up);
    for (i, &got) in g.iter().enumerate() {
        let (x, u) = (f64::from(gate[i]), f64::from(up[i]));
        let want = x / (1.0 + (-x).exp()) * u;
        // Past exp's range (gate < -88) the true value is below 1e-36 |up|; allow a
        // backend to flush it.
        let floor = 1e-30 * u.abs() + 4.0 * SUB;
        close(
            || format!("{} swiglu [{i}] gate {x:e} up {u:e}", b.name()),
            got,
            want,
            gamma(16) * want.abs() + floor,
        )?;
    }
    Ok(())
}

fn check_geglu(b: &dyn Backend, gate: &[f32], up: &[f32]) -> Result<(), String> {
    let mut g = gate.to_vec();
    b.geglu(&mut g, up);
    let c = (2.0 / std::f64::consts::PI).sqrt();
    for (i, &got) in g.iter().enumerate() {
        let (x, u) = (f64::from(gate[i]), f64::from(up[i]));
        // 0.5 x (1 + tanh(z / 2)) written as x / (1 + e^-z): no cancellation for x < 0.
        let z = 2.0 * c * (x + 0.044715 * x * x * x);
        let want = x / (1.0 + (-z).exp()) * u;
        // Past exp's range the true value is below 1e-36 |g up|: allow a flush to 0.
        let floor = 1e-30 * (x * u).abs() + 4.0 * SUB;
        close(
            || format!("{} geglu [{i}] gate {x:e} up {u:e}", b.name()),
            got,
            want,
            (gamma(16) + z.abs().min(1e6) * gamma(4)) * want.abs() + floor,
        )?;
    }
    Ok(())
}

#[test]
fn geglu_all_lengths_and_extremes() {
    let mut rng = Rng(17);
    for b in backends() {
        for &n in LENS_1D {
            let gate: Vec<f32> = rng.vec(n, Dist::Unit).iter().map(|v| v * 8.0).collect();
            let up = rng.vec(n, Dist::Wide);
            check_geglu(b, &gate, &up).unwrap();
        }
        let gate = [
            0.0f32, -0.0, 1e-30, -1e-30, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 5.0, -5.0, 10.0, -10.0,
            12.0, -12.0, 100.0, -100.0, 1e4, -1e4,
        ];
        let up: Vec<f32> = (0..gate.len())
            .map(|i| if i % 4 == 3 { -1.5 } else { 2.0 })
            .collect();
        check_geglu(b, &gate, &up).unwrap();
    }
}

#[test]
fn swiglu_all_lengths_and_extremes() {
    let mut rng = Rng(13);
    for b in backends() {
        for &n in LENS_1D {
            let gate: Vec<f32> = rng.vec(n, Dist::Unit).iter().map(|v| v * 20.0).collect();
            let up = rng.vec(n, Dist::Wide);
            check_swiglu(b, &gate, &up).unwrap();
        }
        let gate = [
            0.0f32, -0.0, 1e-30, -1e-30, 1.0, -1.0, 15.0, -15.0, 30.0, -30.0, 80.0, -80.0, 88.0,
            -88.0, 89.0, -89.0, 100.0, -100.0, 1e4, -1e4, 1e30, -1e30,
        ];
        let up: Vec<f32> = (0..gate.len())
            .map(|i| if i % 4 == 3 { -1.5 } else { 2.0 })
            .collect();
        check_swiglu(b, &gate, &up).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn swiglu_random(
        n in prop::sample::select(LENS_1D),
        dist in any_dist(),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let gate = rng.vec(n, dist);
        let up = rng.vec(n, Dist::Unit);
        for b in backends() {
            check_swiglu(b, &gate, &up).map_err(fail)?;
        }
    }

    /// f32 addition is correctly rounded, and rounding the exact f64 sum of two f32s
    /// to f32 gives that same value, so every backend must match bit for bit.
    #[test]
    fn add_is_bit_exact(
        n in prop::sample::select(LENS_1D),
        dist in any_dist(),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let y0 = rng.vec(n, dist);
        let x = rng.vec(n, dist);
        let want: Vec<f32> =
            y0.iter().zip(&x).map(|(&a, &b)| (f64::from(a) + f64::from(b)) as f32).collect();
        for b in backends() {
            let mut y = y0.clone();
            b.add(&mut y, &x);
            same_bits(&format!("{} add n={n}", b.name()), &y, &want).map_err(fail)?;
        }
    }
}

// ---------------------------------------------------------------------------------
// attention
// ---------------------------------------------------------------------------------

/// Value in the gaps between heads of a strided cache: if a kernel reads past the
/// head size into them, the result is off by orders of magnitude.
const GAP: f32 = 1e20;

/// `n` rows of `d` values at `stride`, gaps filled with [`GAP`], plus a slack tail.
fn strided(rng: &mut Rng, n: usize, d: usize, stride: usize, dist: Dist) -> Vec<f32> {
    let len = if n == 0 { 0 } else { (n - 1) * stride + d };
    let mut v = vec![GAP; len];
    for t in 0..n {
        for k in 0..d {
            v[t * stride + k] = rng.sample(dist);
        }
    }
    v
}

/// Softmax-like weights: positive, summing to about 1.
fn probs(rng: &mut Rng, n: usize) -> Vec<f32> {
    let raw: Vec<f32> = (0..n).map(|_| rng.range(0.0, 1.0)).collect();
    let sum: f32 = raw.iter().sum();
    raw.iter().map(|v| v / sum).collect()
}

fn check_attention(
    b: &dyn Backend,
    q: &[f32],
    kv: &[f32],
    p: &[f32],
    stride: usize,
    scale: f32,
    exact: bool,
) -> Result<(), String> {
    let (n, d) = (p.len(), q.len());
    let mut scores = vec![f32::NAN; n];
    b.attn_scores(q, kv, stride, scale, &mut scores);
    for (t, &got) in scores.iter().enumerate() {
        let (dot, mag) = ref_dot(q, &kv[t * stride..t * stride + d]);
        let s = f64::from(scale);
        let tol = if exact {
            0.0
        } else {
            gamma(d.div_ceil(LANES) + 5) * mag * s.abs() + (d + 1) as f64 * SUB
        };
        close(
            || format!("{} attn_scores d={d} n={n} stride={stride} [{t}]", b.name()),
            got,
            dot * s,
            tol,
        )?;
    }
    let mut out = vec![f32::NAN; d];
    b.attn_values(p, kv, stride, &mut out);
    for (k, &got) in out.iter().enumerate() {
        let (want, mag) = (0..n).fold((0.0, 0.0), |(s, a), t| {
            let v = f64::from(p[t]) * f64::from(kv[t * stride + k]);
            (s + v, a + v.abs())
        });
        let tol = if exact {
            0.0
        } else {
            gamma(n + 1) * mag + (n + 1) as f64 * SUB
        };
        close(
            || format!("{} attn_values d={d} n={n} stride={stride} [{k}]", b.name()),
            got,
            want,
            tol,
        )?;
    }
    Ok(())
}

#[test]
fn attention_all_head_sizes_with_strides() {
    let mut rng = Rng(14);
    for b in backends() {
        for &d in LENS {
            for &n in &[0usize, 1, 3, 33, 200] {
                for extra in [0, 1, 64] {
                    let stride = d + extra;
                    let q = rng.vec(d, Dist::Unit);
                    let kv = strided(&mut rng, n, d, stride, Dist::Unit);
                    let p = probs(&mut rng, n);
                    check_attention(b, &q, &kv, &p, stride, 0.125, false).unwrap();
                }
            }
        }
    }
}

/// Small integers (and a power-of-two scale) make both kernels exact.
#[test]
fn attention_is_exact_on_small_integers() {
    let mut rng = Rng(15);
    for b in backends() {
        for &(d, n, stride) in &[
            (1, 1, 1),
            (33, 7, 40),
            (64, 1024, 192),
            (65, 31, 65),
            (127, 65, 200),
            (2048, 3, 2049),
        ] {
            let q = rng.vec(d, Dist::Int);
            let kv = strided(&mut rng, n, d, stride, Dist::Int);
            let p = rng.vec(n, Dist::Int);
            check_attention(b, &q, &kv, &p, stride, 0.25, true).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn attention_random(
        d in prop::sample::select(&[1usize, 3, 31, 32, 33, 63, 64, 65, 127, 128][..]),
        n in prop::sample::select(&[0usize, 1, 2, 31, 64, 65, 127, 512, 1024][..]),
        extra in prop::sample::select(&[0usize, 1, 3, 32, 64, 128][..]),
        dist in any_dist(),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let stride = d + extra;
        let q = rng.vec(d, dist);
        let kv = strided(&mut rng, n, d, stride, dist);
        let p = probs(&mut rng, n);
        let scale = 1.0 / (d as f32).sqrt();
        for b in backends() {
            check_attention(b, &q, &kv, &p, stride, scale, false).map_err(fail)?;
        }
    }
}

// ---------------------------------------------------------------------------------
// Determinism
// ---------------------------------------------------------------------------------

/// Every kernel, run twice and at different buffer alignments, gives identical bits.
#[test]
fn every_kernel_is_deterministic_across_calls_and_alignments() {
    let mut rng = Rng(16);
    let t32 = Tiled::new(67, 1000, 4, DType::F32, &mut rng, Dist::Wide);
    let t16 = Tiled::new(67, 1000, 4, DType::F16, &mut rng, Dist::Wide);
    let x = rng.vec(1000, Dist::Wide);
    let w = rng.vec(1000, Dist::Unit);
    let up = rng.vec(1000, Dist::Unit);
    let (cos, sin) = rope_tables(40, 777.0, 10000.0);
    let kv = strided(&mut rng, 300, 40, 120, Dist::Unit);
    let q = rng.vec(40, Dist::Unit);
    let p = probs(&mut rng, 300);
    for b in backends() {
        // One run per alignment (0, 1, 3 and 17 floats past a 128-byte line).
        let run = |mis: usize| -> Vec<Vec<f32>> {
            let xs = Placed::new(&x, mis);
            let mut res = Vec::new();
            for t in [&t32, &t16] {
                let mut y = Placed::new(&vec![0.0; 67], mis);
                b.matvec(&t.matrix(), xs.get(), y.get_mut());
                res.push(y.get().to_vec());
            }
            let mut o = Placed::new(&x, mis);
            b.rmsnorm(o.get_mut(), xs.get(), &w, 1e-5);
            res.push(o.get().to_vec());
            let mut s = Placed::new(&x, mis);
            b.softmax(s.get_mut());
            res.push(s.get().to_vec());
            for style in [RopeStyle::Interleaved, RopeStyle::HalfSplit] {
                let mut r = Placed::new(&x, mis);
                b.rope(r.get_mut(), 40, &cos, &sin, style);
                res.push(r.get().to_vec());
            }
            let mut g = Placed::new(&x, mis);
            b.swiglu(g.get_mut(), &up);
            res.push(g.get().to_vec());
            let mut a = Placed::new(&x, mis);
            b.add(a.get_mut(), &up);
            res.push(a.get().to_vec());
            let kvp = Placed::new(&kv, mis);
            let qp = Placed::new(&q, mis);
            let mut sc = Placed::new(&[0.0; 300], mis);
            b.attn_scores(qp.get(), kvp.get(), 120, 0.3, sc.get_mut());
            res.push(sc.get().to_vec());
            let mut av = Placed::new(&[0.0; 40], mis);
            b.attn_values(&p, kvp.get(), 120, av.get_mut());
            res.push(av.get().to_vec());
            res
        };
        let first = run(0);
        for mis in [0, 1, 3, 17] {
            for (k, (a, bb)) in first.iter().zip(run(mis)).enumerate() {
                same_bits(
                    &format!("{} kernel #{k} at misalignment {mis}", b.name()),
                    a,
                    &bb,
                )
                .unwrap();
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Constructors and selection
// ---------------------------------------------------------------------------------

#[test]
fn matrix_new_rejects_wrong_sizes() {
    let buf = vec![0.0f32; 1024];
    // 2x3 f32 with tile rows 4: one tile of 4 rows x one 32-float chunk.
    for got in [0, 5, 127, 129] {
        match Matrix::new(WeightSlice::F32(&buf[..got]), 2, 3, 4) {
            Err(KernelError::MatrixSize {
                rows: 2,
                cols: 3,
                tile_rows: 4,
                want: 128,
                got: g,
            }) => assert_eq!(g, got),
            other => panic!("expected MatrixSize for {got} elements, got {other:?}"),
        }
    }
    assert!(Matrix::new(WeightSlice::F32(&buf[..128]), 2, 3, 4).is_ok());
    // f16: chunks of 64 elements.
    let h = vec![f16::ZERO; 1024];
    assert!(matches!(
        Matrix::new(WeightSlice::F16(&h[..128]), 2, 3, 4),
        Err(KernelError::MatrixSize {
            want: 256,
            got: 128,
            ..
        })
    ));
    assert!(Matrix::new(WeightSlice::F16(&h[..256]), 2, 3, 4).is_ok());
    // Empty shapes need no elements, and multiply to zeros / nothing.
    let m = Matrix::new(WeightSlice::F32(&[]), 3, 0, 4).unwrap();
    for b in backends() {
        let mut y = [f32::NAN; 3];
        b.matvec(&m, &[], &mut y);
        assert_eq!(y, [0.0; 3], "{} 3x0 matvec", b.name());
    }
    assert!(Matrix::new(WeightSlice::F32(&[]), 0, 7, 2).is_ok());
    assert!(matches!(
        Matrix::new(WeightSlice::F32(&buf[..1]), 0, 7, 2),
        Err(KernelError::MatrixSize {
            want: 0,
            got: 1,
            ..
        })
    ));
    // Invalid geometry.
    assert!(matches!(
        Matrix::new(WeightSlice::F32(&buf), 4, 4, 0),
        Err(KernelError::Geometry { tile_rows: 0, .. })
    ));
    assert!(matches!(
        Matrix::new(WeightSlice::F32(&buf), usize::MAX, usize::MAX, 4),
        Err(KernelError::Geometry { .. })
    ));
    assert!(matches!(
        Matrix::new(WeightSlice::F16(&h), usize::MAX / 2, 65, 1),
        Err(KernelError::Geometry { .. })
    ));
}

#[test]
fn backend_selection() {
    match select(Some("nope")) {
        Err(KernelError::UnknownBackend(name)) => assert_eq!(name, "nope"),
        Err(e) => panic!("expected UnknownBackend, got {e}"),
        Ok(b) => panic!("expected UnknownBackend, got backend {}", b.name()),
    }
    let msg = by_name("")
        .err()
        .expect("empty name is unknown")
        .to_string();
    assert!(msg.contains("scalar"), "error lists the known names: {msg}");
    assert_eq!(select(Some("scalar")).unwrap().name(), "scalar");
    assert_eq!(by_name("scalar").unwrap().name(), "scalar");
    for name in KNOWN_BACKENDS {
        match by_name(name) {
            Ok(b) => assert_eq!(b.name(), *name),
            Err(KernelError::Unsupported(n)) => assert_eq!(n, *name),
            Err(e) => panic!("{name}: {e}"),
        }
    }
    // The detected default is one of the runnable backends.
    let names: Vec<_> = backends().iter().map(|b| b.name()).collect();
    assert!(names.contains(&vtc_kernels::detect().name()));
}
