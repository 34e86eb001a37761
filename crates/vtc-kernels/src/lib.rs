//! VTC compute kernels.
//!
//! [`Backend`] is the narrow seam between the transformer graph and the hardware: every
//! operation the forward pass needs, over plain `f32` slices and over weight matrices
//! in a TVL layout ([`Matrix`]: a row-tiled [`FloatMatrix`] or a block-tiled
//! [`QuantMatrix`], each with its own geometry). [`Scalar`] is the reference that every
//! other backend is tested against. A backend is a value chosen once at start-up
//! ([`select`], [`detect`]); the hot loops inside a backend contain no dispatch.
//!
//! # Backends
//!
//! | name | type | where | lanes |
//! |---|---|---|---|
//! | `scalar` | [`Scalar`] | everywhere | 4 (plain-Rust arrays) |
//! | `avx2` | [`arch::x86_64::Avx2`] | x86-64 with AVX2, FMA, F16C (run-time check) | 8 |
//! | `avx512` | [`arch::x86_64::Avx512`] | x86-64 with AVX-512F (run-time check) | 16 |
//! | `neon` | `arch::aarch64::Neon` | every aarch64 build (compile time) | 4 |
//!
//! Every backend is one generic body per kernel over a small SIMD trait, instantiated
//! per ISA inside `#[target_feature]` trampolines (the `pulp` pattern); [`Scalar`] is
//! the same body over plain-Rust 4-lane arrays.
//!
//! # Reduction order and determinism
//!
//! Reduction order is part of each kernel's contract, so results never depend on how
//! rows are split across threads ([`Matrix::tiles`]), and every backend, [`Scalar`]
//! included, follows one *canonical order* whatever its width: [`LANES`] = 16 partial
//! sums (element `i` into partial `i % 16`) each updated by a fused multiply-add,
//! combined by halving (`p[l] + p[l + 8]`, then `+4`, `+2`, `+1`); one fixed `exp`
//! polynomial; the same plain operations in the same order for the element-wise
//! kernels. So `scalar`, `avx2`, `avx512` and `neon` give the same bits as each other
//! for every kernel, on any machine, and a whole model gives the same logits and the
//! same greedy tokens on every backend and at every thread count.
//!
//! Against the exact value, an `n`-term dot product (matvec row, attention score)
//! stays within `γ(k) Σ|w_i x_i|`, with `γ(k) = k u / (1 - k u)`, `u = 2^-24` and
//! `k = ceil(n / 16) + 4`; attention values within `γ(n + 1) Σ_t |p_t v_t|`; `exp`
//! within 2 ulp on normal results (`tests/reference.rs` checks every bound against a
//! naive `f64` reference).
//!
//! # Quantized products
//!
//! Block-quantized matrices (`Q8_0`, `Q4_0`, `Q4_1`) multiply an input quantized to
//! int8 per 32-element block ([`Q8Vec`], filled by [`Backend::quantize_q8`]) with
//! exact integer dot products per block (`maddubs`/`madd` on AVX2, `vpdpbusd` on
//! AVX-512 VNNI, `sdot` on NEON with the dot-product extension) and combine the
//! blocks in one fixed float order, so all backends, Scalar included, agree bit for
//! bit. The contract is spelled out in the `quant` module source.
#![deny(missing_docs)]

pub mod arch;
mod matrix;
mod pool;
pub mod probe;
mod quant;
mod scalar;
mod simd;
mod threaded;

pub use matrix::{FloatMatrix, FloatSlice, Matrix, QuantMatrix, QuantSlice, WeightSlice};
pub use quant::Q8Vec;
pub use scalar::Scalar;
pub use threaded::Threaded;
pub use tvl_format::RopeStyle;

use std::sync::OnceLock;

/// Number of interleaved partial sums in every dot product, on every backend (the
/// canonical order of the crate docs).
pub const LANES: usize = simd::PARTIALS;

/// Errors of matrix construction and backend selection.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A weight slice does not hold the elements its geometry needs.
    #[error("matrix {rows}x{cols} (tile rows {tile_rows}) needs {want} elements, got {got}")]
    MatrixSize {
        /// Logical rows.
        rows: usize,
        /// Logical columns.
        cols: usize,
        /// Rows per tile.
        tile_rows: usize,
        /// Elements needed.
        want: usize,
        /// Elements given.
        got: usize,
    },
    /// The geometry is invalid (zero tile rows, or the size overflows).
    #[error("invalid matrix geometry {rows}x{cols} with tile rows {tile_rows}")]
    Geometry {
        /// Logical rows.
        rows: usize,
        /// Logical columns.
        cols: usize,
        /// Rows per tile.
        tile_rows: usize,
    },
    /// No backend has this name.
    #[error("unknown backend {0:?} (known: {known})", known = KNOWN_BACKENDS.join(", "))]
    UnknownBackend(String),
    /// The backend exists but this CPU or build cannot run it.
    #[error("backend {0:?} is not supported on this CPU or build")]
    Unsupported(String),
    /// The thread pool could not be built.
    #[error("thread pool: {0}")]
    Threads(String),
}

/// Names accepted by [`by_name`] and by the `VTC_BACKEND` variable, on every
/// architecture: a backend this CPU or build cannot run gives
/// [`KernelError::Unsupported`].
pub const KNOWN_BACKENDS: &[&str] = &["scalar", "avx2", "avx512", "neon"];

/// The SIMD backends, fastest first: the order [`detect`] tries them in.
const PREFERENCE: &[&str] = &["avx512", "avx2", "neon"];

/// The operations of one transformer forward pass.
///
/// Contract for every method: slice lengths must agree as documented; a mismatch is a
/// caller bug and panics (the model checks all shapes once, at load). Implementations
/// must be deterministic: the same inputs give the same bits.
pub trait Backend: Send + Sync {
    /// Short name (`scalar`, `avx2`, ...).
    fn name(&self) -> &'static str;

    /// `y = W x` for a row-tiled float matrix: `x.len() == w.cols()`,
    /// `y.len() == w.rows()`. (A block-quantized `W` takes [`Backend::matvec_q8`].)
    fn matvec(&self, w: &Matrix<'_>, x: &[f32], y: &mut [f32]);

    /// Quantize `x` (length a multiple of 32) into `out` for [`Backend::matvec_q8`], by
    /// the canonical rules of the crate's quantized-product contract (every backend
    /// gives the same bits). `out` is resized as needed.
    fn quantize_q8(&self, x: &[f32], out: &mut Q8Vec);

    /// `y = W x` for a block-quantized matrix and a quantized input:
    /// `x.len() == w.cols()`, `y.len() == w.rows()`. Bit-identical on every backend
    /// (see "Quantized products" in the crate docs).
    fn matvec_q8(&self, w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]);

    /// Several products of one input: `y = W x` for every `(W, y)` of `products`,
    /// each computed exactly as [`Backend::matvec`] (a float `W`, reading `x`) or
    /// [`Backend::matvec_q8`] (a block-quantized `W`, reading `xq`, which
    /// [`Backend::quantize_q8`] filled from `x`) computes it. A token's query, key and
    /// value projections read one input, as do its gate and up projections; a backend
    /// overrides this to run them together ([`Threaded`]: one fork for all of them).
    /// The default runs them one after another.
    fn matvecs(&self, x: &[f32], xq: &Q8Vec, products: &mut [(&Matrix<'_>, &mut [f32])]) {
        for (w, y) in products.iter_mut() {
            product(self, w, x, xq, y);
        }
    }

    /// `Y = X Wᵀ` for a float matrix and `n` inputs stored one after another (a
    /// batch of tokens): `x.len() == n * w.cols()`, `y.len() == n * w.rows()`, and row
    /// `t` of `y` is bit for bit [`Backend::matvec`] of row `t` of `x`. A backend
    /// overrides it to read each weight once for several inputs; the default runs one
    /// `matvec` per input.
    fn matmul(&self, w: &Matrix<'_>, x: &[f32], y: &mut [f32]) {
        let (k, m) = (w.cols(), w.rows());
        for t in 0..batch_len(w, x.len(), y.len(), "matmul") {
            self.matvec(w, &x[t * k..(t + 1) * k], &mut y[t * m..(t + 1) * m]);
        }
    }

    /// `Y = X Wᵀ` for a block-quantized matrix and the inputs `x` (each of length
    /// `w.cols()`, filled by [`Backend::quantize_q8`]): `y.len() == x.len() * w.rows()`,
    /// and row `t` of `y` is bit for bit [`Backend::matvec_q8`] of `x[t]`. The default
    /// runs one `matvec_q8` per input.
    fn matmul_q8(&self, w: &Matrix<'_>, x: &[Q8Vec], y: &mut [f32]) {
        quant::each_input(x, y, w.rows(), |xt, yt| self.matvec_q8(w, xt, yt));
    }

    /// `out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]`; all three of one length.
    fn rmsnorm(&self, out: &mut [f32], x: &[f32], weight: &[f32], eps: f32);

    /// In-place softmax (max-subtracted). An empty slice is left alone.
    fn softmax(&self, x: &mut [f32]);

    /// Rotate every head of `x` (`x.len()` a multiple of `head_dim`) by the angles whose
    /// cosines and sines are `cos[i]`, `sin[i]` for pair `i` (`head_dim / 2` of each).
    fn rope(&self, x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], style: RopeStyle);

    /// `gate[i] = silu(gate[i]) * up[i]`, `silu(g) = g / (1 + exp(-g))`.
    fn swiglu(&self, gate: &mut [f32], up: &[f32]);

    /// `gate[i] = gelu(gate[i]) * up[i]` with GELU's tanh approximation,
    /// `gelu(g) = 0.5 g (1 + tanh(sqrt(2 / pi) (g + 0.044715 g^3)))` (Gemma's
    /// feed-forward).
    fn geglu(&self, gate: &mut [f32], up: &[f32]);

    /// Attention scores: `out[t] = scale * dot(q, keys[t * stride ..][.. q.len()])` for
    /// every `t < out.len()`.
    fn attn_scores(&self, q: &[f32], keys: &[f32], stride: usize, scale: f32, out: &mut [f32]);

    /// Attention output: `out = sum_t probs[t] * values[t * stride ..][.. out.len()]`.
    fn attn_values(&self, probs: &[f32], values: &[f32], stride: usize, out: &mut [f32]);

    /// `y[i] += x[i]`.
    fn add(&self, y: &mut [f32], x: &[f32]);

    /// `f(i, chunk)` for every chunk `i` of `chunk_len` floats of `buf` (`chunk_len > 0`,
    /// `buf.len()` a multiple of it): independent pieces of work, such as one
    /// attention head each, that write only their own chunk. [`Threaded`] spreads
    /// the chunks over its threads; every chunk is computed by the same `f` whatever
    /// the split, so the results do not depend on the thread count. The default runs
    /// them in order on the calling thread.
    fn for_each_chunk(
        &self,
        buf: &mut [f32],
        chunk_len: usize,
        f: &(dyn Fn(usize, &mut [f32]) + Sync),
    ) {
        for (i, c) in chunks(buf, chunk_len).enumerate() {
            f(i, c);
        }
    }

    /// Threads the matrix-vector products run on (1 unless the backend is
    /// [`Threaded`]).
    fn threads(&self) -> usize {
        1
    }
}

macro_rules! forward_backend {
    ($($ptr:ty),*) => {$(
        impl<B: Backend + ?Sized> Backend for $ptr {
            fn name(&self) -> &'static str { (**self).name() }
            fn matvec(&self, w: &Matrix<'_>, x: &[f32], y: &mut [f32]) { (**self).matvec(w, x, y) }
            fn quantize_q8(&self, x: &[f32], out: &mut Q8Vec) { (**self).quantize_q8(x, out) }
            fn matvec_q8(&self, w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
                (**self).matvec_q8(w, x, y)
            }
            fn matvecs(&self, x: &[f32], xq: &Q8Vec, products: &mut [(&Matrix<'_>, &mut [f32])]) {
                (**self).matvecs(x, xq, products)
            }
            fn matmul(&self, w: &Matrix<'_>, x: &[f32], y: &mut [f32]) { (**self).matmul(w, x, y) }
            fn matmul_q8(&self, w: &Matrix<'_>, x: &[Q8Vec], y: &mut [f32]) {
                (**self).matmul_q8(w, x, y)
            }
            fn rmsnorm(&self, out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
                (**self).rmsnorm(out, x, weight, eps)
            }
            fn softmax(&self, x: &mut [f32]) { (**self).softmax(x) }
            fn rope(&self, x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], style: RopeStyle) {
                (**self).rope(x, head_dim, cos, sin, style)
            }
            fn swiglu(&self, gate: &mut [f32], up: &[f32]) { (**self).swiglu(gate, up) }
            fn geglu(&self, gate: &mut [f32], up: &[f32]) { (**self).geglu(gate, up) }
            fn attn_scores(&self, q: &[f32], keys: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
                (**self).attn_scores(q, keys, stride, scale, out)
            }
            fn attn_values(&self, probs: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
                (**self).attn_values(probs, values, stride, out)
            }
            fn add(&self, y: &mut [f32], x: &[f32]) { (**self).add(y, x) }
            fn for_each_chunk(
                &self,
                buf: &mut [f32],
                chunk_len: usize,
                f: &(dyn Fn(usize, &mut [f32]) + Sync),
            ) {
                (**self).for_each_chunk(buf, chunk_len, f)
            }
            fn threads(&self) -> usize { (**self).threads() }
        }
    )*};
}
forward_backend!(&B, Box<B>, std::sync::Arc<B>);

/// `y = W x` by [`Backend::matvec_q8`] with `xq` for a block-quantized `W`, by
/// [`Backend::matvec`] with `x` for a float one.
#[inline]
pub(crate) fn product<B: Backend + ?Sized>(
    be: &B,
    w: &Matrix<'_>,
    x: &[f32],
    xq: &Q8Vec,
    y: &mut [f32],
) {
    if w.is_quantized() {
        be.matvec_q8(w, xq, y);
    } else {
        be.matvec(w, x, y);
    }
}

/// `buf` as chunks of `chunk_len` floats, after checking the contract of
/// [`Backend::for_each_chunk`].
pub(crate) fn chunks(buf: &mut [f32], chunk_len: usize) -> std::slice::ChunksExactMut<'_, f32> {
    assert!(chunk_len > 0, "for_each_chunk: chunk length 0");
    assert!(
        buf.len().is_multiple_of(chunk_len),
        "for_each_chunk: {} floats are not whole chunks of {chunk_len}",
        buf.len()
    );
    buf.chunks_exact_mut(chunk_len)
}

/// The number of inputs of a float `Y = X Wᵀ` with `x_len` and `y_len` floats, after
/// checking that both hold that many (a caller bug panics, as for every `Backend`
/// method).
pub(crate) fn batch_len(w: &Matrix<'_>, x_len: usize, y_len: usize, op: &str) -> usize {
    let (k, m) = (w.cols(), w.rows());
    let n = match (k, m) {
        (0, 0) => 0,
        (0, m) => y_len / m,
        (k, _) => x_len / k,
    };
    assert_eq!(
        x_len,
        n * k,
        "{op}: x length is not a whole number of inputs"
    );
    assert_eq!(y_len, n * m, "{op}: y length");
    n
}

/// The backend called `name` (one of [`KNOWN_BACKENDS`]), if this CPU and build can
/// run it: [`KernelError::Unsupported`] if not, [`KernelError::UnknownBackend`] for any
/// other name.
pub fn by_name(name: &str) -> Result<&'static dyn Backend, KernelError> {
    if name == "scalar" {
        return Ok(&Scalar);
    }
    match arch::simd(name) {
        Some(b) => Ok(b),
        None if KNOWN_BACKENDS.contains(&name) => Err(KernelError::Unsupported(name.into())),
        None => Err(KernelError::UnknownBackend(name.into())),
    }
}

/// The fastest backend this CPU supports (`avx512` > `avx2` > `scalar` on x86-64,
/// `neon` on aarch64). Detected on the first call, then cached.
pub fn detect() -> &'static dyn Backend {
    static BEST: OnceLock<&'static dyn Backend> = OnceLock::new();
    *BEST.get_or_init(|| {
        PREFERENCE
            .iter()
            .find_map(|name| arch::simd(name))
            .unwrap_or(&Scalar)
    })
}

/// Every backend this CPU and build can run, in [`KNOWN_BACKENDS`] order (Scalar
/// first): what tests and benches loop over.
pub fn available() -> Vec<&'static dyn Backend> {
    KNOWN_BACKENDS
        .iter()
        .filter_map(|name| by_name(name).ok())
        .collect()
}

/// The backend to use: `name` if given, else the `VTC_BACKEND` environment variable if
/// set and non-empty, else [`detect`].
pub fn select(name: Option<&str>) -> Result<&'static dyn Backend, KernelError> {
    match name {
        Some(n) => by_name(n),
        None => match std::env::var("VTC_BACKEND") {
            Ok(n) if !n.is_empty() => by_name(&n),
            _ => Ok(detect()),
        },
    }
}
