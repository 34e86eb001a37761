//! Integer products with block-quantized weights: the int8 activation type
//! ([`Q8Vec`]) and the canonical arithmetic every backend reproduces bit for bit.
//!
//! # The canonical quantized product
//!
//! An input vector `x` (length a multiple of 32) is quantized once per product, per
//! 32-element block `b`:
//!
//! ```text
//! amax = max |x_j|            d = amax / 127            (d := 0 if d is not normal)
//! id   = 1 / d  (0 if d = 0)  q_j = round_ties_even(x_j * id)   (an i8, |q_j| <= 127)
//! sum  = Σ q_j  (exact)       s = d * sum
//! ```
//!
//! Row `r` of a block-tiled matrix then gives, with each block's integer dot product
//! `isum` computed exactly (`i32`), starting from `y = 0.0` and taking the blocks in
//! order:
//!
//! ```text
//! Q8_0:  isum = Σ_j w_j * q_j                 y = fma(isum, d_w * d, y)
//! Q4_0:  isum = Σ_j nib_j * q_j - 8 * sum     y = fma(isum, d_w * d, y)
//! Q4_1:  isum = Σ_j nib_j * q_j               y = fma(m_w, s, fma(isum, d_w * d, y))
//! ```
//!
//! in f32, where `fma(a, b, c)` is `a * b + c` rounded once (IEEE fused multiply-add)
//! and the product `d_w * d` is rounded. (`isum` converts to f32 exactly: it is at most
//! `32 * 128 * 127 < 2^24` in magnitude.) The integer part is exact whatever
//! instructions compute it (`maddubs`, `vpdpbusd`, `sdot`, scalar), and the float part
//! is the same sequence of IEEE operations per row, so every backend (scalar, AVX2,
//! AVX-512, NEON with or without SDOT) returns the same bits; a SIMD backend computes
//! several rows in the lanes of one vector, never reordering a row's own operations.
//! The fused form is the one every target of these kernels has in hardware (FMA3,
//! AVX-512, AArch64 `fmla`), and it takes a block's float part per row from five
//! rounded operations to three for Q4_1 (from three to two for Q8_0 and Q4_0): that
//! part competes with the integer work for the same vector pipes. The scalar backend
//! gets it from `f32::mul_add`. Non-finite inputs give unspecified (but memory-safe)
//! results.

use half::f16;
use tvl_format::quant::{BLOCK, nibble};
use tvl_format::{BlockGeometry, DType};

use crate::{Geometry, Matrix, QuantSlice, WeightSlice};

/// An activation vector quantized to int8 in blocks of 32, with per-block scale `d`,
/// integer sum and `s = d * sum`: the input of
/// [`Backend::matvec_q8`](crate::Backend::matvec_q8). Allocated once, refilled by
/// [`Backend::quantize_q8`](crate::Backend::quantize_q8) for every product input.
#[derive(Clone, Debug, Default)]
pub struct Q8Vec {
    pub(crate) qs: Vec<i8>,
    pub(crate) d: Vec<f32>,
    pub(crate) sum: Vec<i32>,
    pub(crate) s: Vec<f32>,
}

impl Q8Vec {
    /// Room for a vector of `len` elements (`len % 32 == 0`, else it panics).
    pub fn new(len: usize) -> Self {
        let mut v = Self::default();
        v.set_len(len);
        v
    }

    /// Elements.
    pub fn len(&self) -> usize {
        self.qs.len()
    }

    /// Whether it holds no elements.
    pub fn is_empty(&self) -> bool {
        self.qs.is_empty()
    }

    /// The int8 values.
    pub fn qs(&self) -> &[i8] {
        &self.qs
    }

    /// The per-block scales `d`.
    pub fn scales(&self) -> &[f32] {
        &self.d
    }

    /// The per-block integer sums.
    pub fn sums(&self) -> &[i32] {
        &self.sum
    }

    /// Resize for `len` elements (no allocation when it already has room).
    pub(crate) fn set_len(&mut self, len: usize) {
        assert!(
            len.is_multiple_of(BLOCK),
            "quantize_q8: length {len} is not whole blocks"
        );
        let nb = len / BLOCK;
        self.qs.resize(len, 0);
        self.d.resize(nb, 0.0);
        self.sum.resize(nb, 0);
        self.s.resize(nb, 0.0);
    }
}

/// The quantized kernels of one SIMD backend (implemented per ISA; the
/// `simd_backend!` macro forwards the `Backend` methods here).
pub(crate) trait QuantKernels: Copy {
    /// [`Backend::quantize_q8`](crate::Backend::quantize_q8).
    fn quantize_q8(self, x: &[f32], out: &mut Q8Vec);
    /// [`Backend::matvec_q8`](crate::Backend::matvec_q8).
    fn matvec_q8(self, w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]);
    /// [`Backend::matmul_q8`](crate::Backend::matmul_q8); by default one
    /// [`QuantKernels::matvec_q8`] per input.
    fn matmul_q8(self, w: &Matrix<'_>, x: &[Q8Vec], y: &mut [f32]) {
        each_input(x, y, w.rows(), |xt, yt| self.matvec_q8(w, xt, yt));
    }
}

/// `Y = X Wᵀ` one input at a time: `matvec(x[t], row t of y)` for every input, where
/// `y` holds `x.len()` rows of `m` outputs. The batched products that have no tiled
/// kernel (every default, and tile heights an ISA's kernel does not handle) all go
/// through here.
pub(crate) fn each_input(
    x: &[Q8Vec],
    y: &mut [f32],
    m: usize,
    mut matvec: impl FnMut(&Q8Vec, &mut [f32]),
) {
    assert_eq!(y.len(), x.len() * m, "matmul_q8: y length");
    for (t, xt) in x.iter().enumerate() {
        matvec(xt, &mut y[t * m..(t + 1) * m]);
    }
}

/// `$kernel::<$dot, K>($args)` with `K` the block kind of `$dtype` (`DType as u32`;
/// Q8_0, Q4_0, else Q4_1): the one mapping from a matrix's dtype to the const
/// parameter of the ISA kernels.
macro_rules! by_dtype {
    ($dtype:expr, $kernel:ident::<$dot:ty>($($args:expr),* $(,)?)) => {
        match $dtype {
            DType::Q8_0 => $kernel::<$dot, { DType::Q8_0 as u32 }>($($args),*),
            DType::Q4_0 => $kernel::<$dot, { DType::Q4_0 as u32 }>($($args),*),
            _ => $kernel::<$dot, { DType::Q4_1 as u32 }>($($args),*),
        }
    };
}
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(unused_imports)
)]
pub(crate) use by_dtype;

/// `d` and `1 / d` of a block whose largest magnitude is `amax` (canonical).
#[inline(always)]
pub(crate) fn block_scale(amax: f32) -> (f32, f32) {
    let d = amax / 127.0;
    if d.is_normal() {
        (d, 1.0 / d)
    } else {
        (0.0, 0.0)
    }
}

/// The canonical quantization of `x` into `out`, plain Rust.
pub(crate) fn quantize_ref(x: &[f32], out: &mut Q8Vec) {
    out.set_len(x.len());
    for (b, xs) in x.chunks_exact(BLOCK).enumerate() {
        let amax = xs.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let (d, id) = block_scale(amax);
        let mut sum = 0i32;
        for (q, &v) in out.qs[b * BLOCK..(b + 1) * BLOCK].iter_mut().zip(xs) {
            *q = (v * id).round_ties_even() as i8;
            sum += *q as i32;
        }
        out.d[b] = d;
        out.sum[b] = sum;
        out.s[b] = d * sum as f32;
    }
}

/// The parts of a quantized product after its checks.
pub(crate) struct QuantArgs<'a> {
    pub q: QuantSlice<'a>,
    pub g: BlockGeometry,
}

/// Check the shapes of `y = W x` for a quantized `W` (panics on a caller bug, as every
/// `Backend` method does).
pub(crate) fn check<'a>(w: &Matrix<'a>, x: &Q8Vec, y: &[f32]) -> QuantArgs<'a> {
    let (WeightSlice::Quant(q), Geometry::Blocked(g)) = (w.data(), *w.geometry()) else {
        panic!(
            "matvec_q8 needs a block-quantized matrix, got {}",
            w.dtype()
        );
    };
    assert_eq!(x.len(), g.cols, "matvec_q8: x length");
    assert_eq!(y.len(), g.rows, "matvec_q8: y length");
    QuantArgs { q, g }
}

/// Check the shapes of `Y = X Wᵀ` for a quantized `W` and the inputs `x` (for the
/// tiled batch kernels, which only x86-64 has so far).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn check_batch<'a>(w: &Matrix<'a>, x: &[Q8Vec], y: &[f32]) -> QuantArgs<'a> {
    let (WeightSlice::Quant(q), Geometry::Blocked(g)) = (w.data(), *w.geometry()) else {
        panic!(
            "matmul_q8 needs a block-quantized matrix, got {}",
            w.dtype()
        );
    };
    assert!(x.iter().all(|xt| xt.len() == g.cols), "matmul_q8: x length");
    assert_eq!(y.len(), x.len() * g.rows, "matmul_q8: y length");
    QuantArgs { q, g }
}

/// Exact integer dot product of block `b` of a row (quant bytes `wq`) with `x`.
#[inline(always)]
fn block_isum(dtype: DType, wq: &[u8], x: &Q8Vec, b: usize) -> i32 {
    let xs = &x.qs[b * BLOCK..(b + 1) * BLOCK];
    match dtype {
        DType::Q8_0 => wq[..BLOCK]
            .iter()
            .zip(xs)
            .map(|(&w, &q)| (w as i8) as i32 * q as i32)
            .sum(),
        DType::Q4_0 | DType::Q4_1 => {
            let dot: i32 = (0..BLOCK)
                .map(|j| nibble(wq, j) as i32 * xs[j] as i32)
                .sum();
            if dtype == DType::Q4_0 {
                dot - 8 * x.sum[b]
            } else {
                dot
            }
        }
        other => unreachable!("not a block type: {other}"),
    }
}

/// A row's sum `y` after block `b` (canonical float part).
#[inline(always)]
fn block_step(dtype: DType, y: f32, isum: i32, dw: f16, mw: f16, x: &Q8Vec, b: usize) -> f32 {
    let y = (isum as f32).mul_add(dw.to_f32() * x.d[b], y);
    if dtype == DType::Q4_1 {
        mw.to_f32().mul_add(x.s[b], y)
    } else {
        y
    }
}

/// Rows `rows` of the canonical product, plain Rust (the scalar backend, and the
/// SIMD backends' path for tile sizes they have no fast path for).
pub(crate) fn matvec_ref(a: &QuantArgs<'_>, x: &Q8Vec, y: &mut [f32]) {
    let QuantArgs { q, g } = a;
    for (row, out) in y.iter_mut().enumerate() {
        let mut acc = 0.0f32;
        for b in 0..g.blocks_per_row() {
            let isum = block_isum(q.dtype, &g.block_quants(q.quants, row, b), x, b);
            let (dw, mw) = g.block_fields(q.scales, row, b);
            acc = block_step(q.dtype, acc, isum, dw, mw, x, b);
        }
        *out = acc;
    }
}
