//! VTC compute kernels.
//!
//! [`Backend`] is the narrow seam between the transformer graph and the hardware: every
//! operation the forward pass needs, over plain `f32` slices and over weight matrices
//! in the TVL row-tiled layout ([`Matrix`]). [`Scalar`] is the reference that every
//! other backend is tested against. A backend is a value chosen once at start-up
//! ([`select`]); the hot loops inside a backend contain no dispatch.
//!
//! Reduction order is part of each kernel's contract: dot products accumulate in
//! [`LANES`] interleaved partial sums (element `i` goes to lane `i % LANES`, per
//! 128-byte chunk for matrices), combined by [`hsum`]. That makes results independent
//! of how rows are split across threads, and gives SIMD backends an order they can
//! reproduce.
#![deny(missing_docs)]

mod matrix;
mod scalar;

pub use matrix::{Matrix, WeightSlice};
pub use scalar::{Scalar, hsum};
pub use tvl_format::RopeStyle;

/// Number of interleaved partial sums in every dot product.
pub const LANES: usize = 8;

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
}

/// Names accepted by [`by_name`] and by the `VTC_BACKEND` variable.
pub const KNOWN_BACKENDS: &[&str] = &["scalar"];

/// The operations of one transformer forward pass.
///
/// Contract for every method: slice lengths must agree as documented; a mismatch is a
/// caller bug and panics (the model checks all shapes once, at load). Implementations
/// must be deterministic: the same inputs give the same bits.
pub trait Backend: Send + Sync {
    /// Short name (`scalar`, `avx2`, ...).
    fn name(&self) -> &'static str;

    /// `y = W x` for a row-tiled matrix: `x.len() == w.cols()`, `y.len() == w.rows()`.
    fn matvec(&self, w: &Matrix<'_>, x: &[f32], y: &mut [f32]);

    /// `out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]`; all three of one length.
    fn rmsnorm(&self, out: &mut [f32], x: &[f32], weight: &[f32], eps: f32);

    /// In-place softmax (max-subtracted). An empty slice is left alone.
    fn softmax(&self, x: &mut [f32]);

    /// Rotate every head of `x` (`x.len()` a multiple of `head_dim`) by the angles whose
    /// cosines and sines are `cos[i]`, `sin[i]` for pair `i` (`head_dim / 2` of each).
    fn rope(&self, x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], style: RopeStyle);

    /// `gate[i] = silu(gate[i]) * up[i]`, `silu(g) = g / (1 + exp(-g))`.
    fn swiglu(&self, gate: &mut [f32], up: &[f32]);

    /// Attention scores: `out[t] = scale * dot(q, keys[t * stride ..][.. q.len()])` for
    /// every `t < out.len()`.
    fn attn_scores(&self, q: &[f32], keys: &[f32], stride: usize, scale: f32, out: &mut [f32]);

    /// Attention output: `out = sum_t probs[t] * values[t * stride ..][.. out.len()]`.
    fn attn_values(&self, probs: &[f32], values: &[f32], stride: usize, out: &mut [f32]);

    /// `y[i] += x[i]`.
    fn add(&self, y: &mut [f32], x: &[f32]);
}

macro_rules! forward_backend {
    ($($ptr:ty),*) => {$(
        impl<B: Backend + ?Sized> Backend for $ptr {
            fn name(&self) -> &'static str { (**self).name() }
            fn matvec(&self, w: &Matrix<'_>, x: &[f32], y: &mut [f32]) { (**self).matvec(w, x, y) }
            fn rmsnorm(&self, out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
                (**self).rmsnorm(out, x, weight, eps)
            }
            fn softmax(&self, x: &mut [f32]) { (**self).softmax(x) }
            fn rope(&self, x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], style: RopeStyle) {
                (**self).rope(x, head_dim, cos, sin, style)
            }
            fn swiglu(&self, gate: &mut [f32], up: &[f32]) { (**self).swiglu(gate, up) }
            fn attn_scores(&self, q: &[f32], keys: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
                (**self).attn_scores(q, keys, stride, scale, out)
            }
            fn attn_values(&self, probs: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
                (**self).attn_values(probs, values, stride, out)
            }
            fn add(&self, y: &mut [f32], x: &[f32]) { (**self).add(y, x) }
        }
    )*};
}
forward_backend!(&B, Box<B>, std::sync::Arc<B>);

/// The backend called `name`, if this CPU and build can run it.
pub fn by_name(name: &str) -> Result<&'static dyn Backend, KernelError> {
    match name {
        "scalar" => Ok(&Scalar),
        _ => Err(KernelError::UnknownBackend(name.to_string())),
    }
}

/// The fastest backend this CPU supports.
pub fn detect() -> &'static dyn Backend {
    &Scalar
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
