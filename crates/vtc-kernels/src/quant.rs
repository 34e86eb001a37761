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
//! Row `r` of a block-tiled matrix then gives, with each 32-element input block's
//! integer dot product `isum` computed exactly (`i32`), starting from `y = 0.0` and
//! taking the input blocks in order (a 256-element K-type block is 8 of them, its
//! sub-block `k = b % 8`, with `d_w` and `m_w` / `dmin_w` the weight block's fields):
//!
//! ```text
//! Q8_0:  isum = Σ_j w_j * q_j                 y = fma(isum, d_w * d, y)
//! Q4_0:  isum = Σ_j nib_j * q_j - 8 * sum     y = fma(isum, d_w * d, y)
//! Q4_1:  isum = Σ_j nib_j * q_j               y = fma(m_w, s, fma(isum, d_w * d, y))
//! Q5_0:  isum = Σ_j q5_j * q_j - 16 * sum     y = fma(isum, d_w * d, y)
//! Q5_1:  isum = Σ_j q5_j * q_j                y = fma(m_w, s, fma(isum, d_w * d, y))
//! Q4_K,  isum = sc_k * Σ_j u_j * q_j          y = fma(isum, d_w * d, y)
//! Q5_K:  msum = -(mn_k * sum)                 y = fma(msum, dmin_w * d, y)
//! Q6_K:  isum = sc_2k * Σ_{j<16} u_j * q_j + sc_2k+1 * Σ_{j>=16} u_j * q_j
//!                                             y = fma(isum, d_w * d, y)
//! ```
//!
//! in f32, where `fma(a, b, c)` is `a * b + c` rounded once (IEEE fused multiply-add),
//! the products `d_w * d` and `dmin_w * d` are rounded, `u_j` is the K type's quant
//! (`Q6_K`: its 6 bits minus 32) and `sc`, `mn` its sub-block scales and minimums
//! (`tvl_format::quant::k_quant`). (Every `isum` and `msum` converts to f32 exactly:
//! the largest, `Q6_K`'s, is at most `2 * 128 * 16 * 32 * 127 < 2^24` in magnitude.)
//! The integer part is exact whatever
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
use tvl_format::BlockGeometry;
use tvl_format::quant::{BLOCK, BlockType, k_quant, nibble, q5};

use crate::{Matrix, QuantSlice};

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
    /// The integer sums of each half block (16 elements): `hsum[2b] + hsum[2b + 1] ==
    /// sum[b]`, for kernels that take a half block's sum (`Q6_K`'s offset of 32).
    pub(crate) hsum: Vec<i32>,
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
        self.hsum.resize(2 * nb, 0);
    }

    /// Fill [`hsum`](Self::hsum) from the quantized values: the last step of every
    /// backend's quantization (exact integers, so the same on all of them).
    pub(crate) fn fill_half_sums(&mut self) {
        for (h, q) in self.hsum.iter_mut().zip(self.qs.chunks_exact(BLOCK / 2)) {
            *h = q.iter().map(|&v| v as i32).sum();
        }
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

/// A block type as a type parameter of the ISA kernels: they branch on `K::T` with
/// exhaustive `match`es (folded at compile time), so a new [`BlockType`] fails to
/// compile until every kernel handles it.
pub(crate) trait Kind: Copy {
    /// The block type.
    const T: BlockType;
}

macro_rules! kinds {
    ($($name:ident => $t:ident),* $(,)?) => {$(
        #[doc = concat!("[`BlockType::", stringify!($t), "`] as a [`Kind`].")]
        #[derive(Clone, Copy)]
        #[allow(dead_code, non_camel_case_types)]
        pub(crate) struct $name;
        impl Kind for $name {
            const T: BlockType = BlockType::$t;
        }
    )*};
}
kinds!(
    KQ8_0 => Q8_0,
    KQ4_0 => Q4_0,
    KQ4_1 => Q4_1,
    KQ5_0 => Q5_0,
    KQ5_1 => Q5_1,
    KQ4_K => Q4_K,
    KQ5_K => Q5_K,
    KQ6_K => Q6_K,
);

/// `$kernel::<$dot, K>($args)` (or `$kernel::<$dot, K, $width>`) with `K` the [`Kind`]
/// of the block type `$kind`: the one mapping from a matrix's block type to the
/// kernels' type parameter (exhaustive: no block type goes down another type's path).
macro_rules! by_kind {
    ($kind:expr, $kernel:ident::<$dot:ty $(, $width:ty)?>($($args:expr),* $(,)?)) => {
        match $kind {
            BlockType::Q8_0 => $kernel::<$dot, $crate::quant::KQ8_0 $(, $width)?>($($args),*),
            BlockType::Q4_0 => $kernel::<$dot, $crate::quant::KQ4_0 $(, $width)?>($($args),*),
            BlockType::Q4_1 => $kernel::<$dot, $crate::quant::KQ4_1 $(, $width)?>($($args),*),
            BlockType::Q5_0 => $kernel::<$dot, $crate::quant::KQ5_0 $(, $width)?>($($args),*),
            BlockType::Q5_1 => $kernel::<$dot, $crate::quant::KQ5_1 $(, $width)?>($($args),*),
            BlockType::Q4_K => $kernel::<$dot, $crate::quant::KQ4_K $(, $width)?>($($args),*),
            BlockType::Q5_K => $kernel::<$dot, $crate::quant::KQ5_K $(, $width)?>($($args),*),
            BlockType::Q6_K => $kernel::<$dot, $crate::quant::KQ6_K $(, $width)?>($($args),*),
        }
    };
}
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(unused_imports)
)]
pub(crate) use by_kind;

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
    let Matrix::Quant(m) = w else {
        panic!(
            "matvec_q8 needs a block-quantized matrix, got {}",
            w.dtype()
        );
    };
    let (q, g) = (m.data(), *m.geometry());
    assert_eq!(x.len(), g.cols, "matvec_q8: x length");
    assert_eq!(y.len(), g.rows, "matvec_q8: y length");
    QuantArgs { q, g }
}

/// Check the shapes of `Y = X Wᵀ` for a quantized `W` and the inputs `x` (for the
/// tiled batch kernels, which only x86-64 has so far).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn check_batch<'a>(w: &Matrix<'a>, x: &[Q8Vec], y: &[f32]) -> QuantArgs<'a> {
    let Matrix::Quant(m) = w else {
        panic!(
            "matmul_q8 needs a block-quantized matrix, got {}",
            w.dtype()
        );
    };
    let (q, g) = (m.data(), *m.geometry());
    assert!(x.iter().all(|xt| xt.len() == g.cols), "matmul_q8: x length");
    assert_eq!(y.len(), x.len() * g.rows, "matmul_q8: y length");
    QuantArgs { q, g }
}

/// The integer parts of input block `xb` against sub-block `k` (the `k`-th 32
/// elements) of a weight block with quant bytes `wq`: `(isum, msum)` of the canonical
/// product (`msum` is 0 but for the K types with minimums).
#[inline(always)]
fn sub_block_sums(kind: BlockType, wq: &[u8], k: usize, x: &Q8Vec, xb: usize) -> (i32, i32) {
    let xs = &x.qs[xb * BLOCK..(xb + 1) * BLOCK];
    let dot = |w: &dyn Fn(usize) -> i32| -> i32 { (0..BLOCK).map(|j| w(j) * xs[j] as i32).sum() };
    match kind {
        BlockType::Q8_0 => (dot(&|j| (wq[j] as i8) as i32), 0),
        BlockType::Q4_0 => (dot(&|j| nibble(wq, j) as i32) - 8 * x.sum[xb], 0),
        BlockType::Q4_1 => (dot(&|j| nibble(wq, j) as i32), 0),
        BlockType::Q5_0 => (dot(&|j| q5(wq, j) as i32) - 16 * x.sum[xb], 0),
        BlockType::Q5_1 => (dot(&|j| q5(wq, j) as i32), 0),
        BlockType::Q4_K | BlockType::Q5_K => {
            let (_, sc, mn) = k_quant(kind, wq, 32 * k);
            let isum = dot(&|j| k_quant(kind, wq, 32 * k + j).0);
            (sc * isum, -(mn * x.sum[xb]))
        }
        BlockType::Q6_K => {
            let half = |h: usize| -> i32 {
                let sc = k_quant(kind, wq, 32 * k + 16 * h).1;
                let part: i32 = (16 * h..16 * h + 16)
                    .map(|j| k_quant(kind, wq, 32 * k + j).0 * xs[j] as i32)
                    .sum();
                sc * part
            };
            (half(0) + half(1), 0)
        }
    }
}

/// A row's sum `y` after input block `xb` (canonical float part), given its integer
/// parts and the weight block's fields `dw`, `mw`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn sub_block_step(
    kind: BlockType,
    y: f32,
    (isum, msum): (i32, i32),
    dw: f16,
    mw: f16,
    x: &Q8Vec,
    xb: usize,
) -> f32 {
    let y = (isum as f32).mul_add(dw.to_f32() * x.d[xb], y);
    match kind {
        BlockType::Q4_1 | BlockType::Q5_1 => mw.to_f32().mul_add(x.s[xb], y),
        BlockType::Q4_K | BlockType::Q5_K => (msum as f32).mul_add(mw.to_f32() * x.d[xb], y),
        BlockType::Q8_0 | BlockType::Q4_0 | BlockType::Q5_0 | BlockType::Q6_K => y,
    }
}

/// Rows `rows` of the canonical product, plain Rust (the scalar backend, and the
/// SIMD backends' path for tile sizes they have no fast path for).
pub(crate) fn matvec_ref(a: &QuantArgs<'_>, x: &Q8Vec, y: &mut [f32]) {
    let QuantArgs { q, g } = a;
    let kind = g.kind();
    let per = kind.elems() / BLOCK;
    for (row, out) in y.iter_mut().enumerate() {
        let mut acc = 0.0f32;
        for b in 0..g.blocks_per_row() {
            let wq = g.block_quants(q.quants, row, b);
            let (dw, mw) = g.block_fields(q.scales, row, b);
            for k in 0..per {
                let sums = sub_block_sums(kind, &wq, k, x, b * per + k);
                acc = sub_block_step(kind, acc, sums, dw, mw, x, b * per + k);
            }
        }
        *out = acc;
    }
}
