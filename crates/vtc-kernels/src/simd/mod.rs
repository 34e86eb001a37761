//! The SIMD abstraction every vector backend is written against.
//!
//! [`Simd`] is a capability token plus a vector type: a value of an implementing type
//! (`Avx2`, `Avx512`, `Neon`) exists only once its constructor has proved that the CPU
//! runs the instructions behind the trait methods. The kernels in [`kernels`] are
//! written once over the trait, `#[inline(always)]` all the way down; each ISA module
//! implements the trait and instantiates the kernels with [`simd_backend!`], which
//! wraps every `Backend` method in a `#[target_feature]` trampoline so that the whole
//! generic body is compiled for that ISA, with no dispatch inside.
//!
//! # The canonical order
//!
//! All SIMD backends compute every result with the same sequence of IEEE operations,
//! whatever their vector width, so they agree bit for bit (on every ISA):
//!
//! - A dot product of `n` terms accumulates in [`PARTIALS`] = 16 partial sums, element
//!   `i` into partial `i % 16`, each by a fused multiply-add in increasing `i`
//!   (weights of a tiled matrix: `i` is the column; padding contributes exact zeros).
//!   The 16 partials are then combined by halving: `p[l] += p[l + 8]`, then
//!   `p[l] += p[l + 4]`, `p[l] += p[l + 2]`, `p[0] + p[1]`. A width-`W` backend holds
//!   `16 / W` accumulator vectors (accumulator `j` = partials `j*W .. (j+1)*W`) and
//!   reduces them by halving across accumulators, then within the vector.
//! - `exp` is one fixed polynomial with fused multiply-adds ([`kernels`]), so every
//!   backend rounds it the same way.
//! - Element-wise operations use the same plain operations in the same order on every
//!   backend (no contraction to FMA), except where documented per kernel.
//!
//! [`Scalar`] is one more implementation of the trait, in plain Rust (4-lane arrays,
//! `f32::mul_add`), so it computes the same sequence of operations and gives the same
//! bits as every SIMD backend.
//!
//! [`Scalar`]: crate::Scalar

pub(crate) mod kernels;

/// Partial sums of every SIMD dot product (see the module docs).
pub(crate) const PARTIALS: usize = 16;

/// Widest vector of any implementation, in f32 lanes.
pub(crate) const MAX_LANES: usize = 16;

/// One SIMD instruction set: a proof token (`Copy`, zero-sized) and its f32 vector.
///
/// Every method is `#[inline(always)]` in the implementations: they are meant to be
/// inlined into a `#[target_feature]` trampoline (see [`simd_backend!`]), where the
/// intrinsics they wrap compile to single instructions.
///
/// NaN inputs: [`Simd::max`] and [`Simd::min`] follow the host instruction, so the
/// SIMD backends agree with each other only on non-NaN inputs there.
pub(crate) trait Simd: Copy + Send + Sync + 'static {
    /// `LANES` f32 values.
    type V: Copy;
    /// f32 lanes per vector; a power of two, at most [`MAX_LANES`], dividing
    /// [`PARTIALS`].
    const LANES: usize;

    /// All lanes `x`.
    fn splat(self, x: f32) -> Self::V;

    /// Load `LANES` floats from `p` (any alignment).
    ///
    /// # Safety
    /// `p` must be valid for reads of `LANES` f32.
    unsafe fn loadu(self, p: *const f32) -> Self::V;

    /// Store `LANES` floats to `p` (any alignment).
    ///
    /// # Safety
    /// `p` must be valid for writes of `LANES` f32.
    unsafe fn storeu(self, p: *mut f32, v: Self::V);

    /// Load the first `n` lanes from `p`; the other lanes are `fill`.
    ///
    /// # Safety
    /// `n < LANES` and `p` must be valid for reads of `n` f32.
    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, n: usize, fill: f32) -> Self::V {
        let mut buf = [fill; MAX_LANES];
        // SAFETY: the caller guarantees `n` readable floats at `p` and `n < LANES
        // <= MAX_LANES`, so the copy stays inside both.
        unsafe { core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n) };
        // SAFETY: `buf` holds MAX_LANES >= LANES floats.
        unsafe { self.loadu(buf.as_ptr()) }
    }

    /// Store the first `n` lanes of `v` to `p`.
    ///
    /// # Safety
    /// `n < LANES` and `p` must be valid for writes of `n` f32.
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, n: usize, v: Self::V) {
        let mut buf = [0.0f32; MAX_LANES];
        // SAFETY: `buf` holds MAX_LANES >= LANES floats.
        unsafe { self.storeu(buf.as_mut_ptr(), v) };
        // SAFETY: the caller guarantees `n` writable floats at `p`, and `n < LANES`.
        unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), p, n) };
    }

    /// Load `LANES` IEEE half-precision values from `p` and widen them exactly to f32.
    ///
    /// # Safety
    /// `p` must be valid for reads of `LANES` u16.
    unsafe fn load_f16(self, p: *const u16) -> Self::V;

    /// Load `LANES / 2` floats from `p`, each duplicated: `[p0, p0, p1, p1, ...]`.
    ///
    /// # Safety
    /// `p` must be valid for reads of `LANES / 2` f32.
    unsafe fn load_dup(self, p: *const f32) -> Self::V;

    /// Swap the lanes of each pair: `[v1, v0, v3, v2, ...]`.
    fn swap_pairs(self, v: Self::V) -> Self::V;

    /// `a + b`.
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a - b`.
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a * b`.
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a / b` (correctly rounded).
    fn div(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c` with a single rounding.
    fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Lane-wise maximum (see the trait docs for NaN).
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise minimum (see the trait docs for NaN).
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
    /// Round to the nearest integer, ties to even.
    fn round(self, v: Self::V) -> Self::V;
    /// `2^n` for lanes holding integers `n` in `-126..=127` (other lanes: unspecified).
    fn pow2i(self, n: Self::V) -> Self::V;
    /// Sum of the lanes by halving: lane `l` += lane `l + LANES/2`, recursively, so an
    /// 8-lane vector sums as `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))`.
    fn reduce_sum(self, v: Self::V) -> f32;
    /// Largest lane (any order: max is exact).
    fn reduce_max(self, v: Self::V) -> f32;
    /// Hint that the cache line holding `p` will be read soon. Never faults.
    fn prefetch(self, p: *const u8);
}

/// Implement [`Backend`](crate::Backend) for a [`Simd`] type by instantiating the
/// generic kernels with `ACC` accumulator vectors (`ACC * LANES == PARTIALS`).
///
/// Each method calls a `#[target_feature(enable = ...)]` trampoline, so the whole
/// inlined kernel is compiled for those features; the type's constructor must prove
/// them (at run time on x86-64, by the build configuration for NEON). Without
/// `target_feature` (the portable [`Scalar`](crate::Scalar)), the trampolines are plain
/// functions compiled for the build's baseline.
macro_rules! simd_backend {
    ($ty:ident, $name:literal, acc = $acc:literal $(, target_feature = $feat:literal)?) => {
        impl $crate::Backend for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            fn matvec(&self, w: &$crate::Matrix<'_>, x: &[f32], y: &mut [f32]) {
                $(#[target_feature(enable = $feat)])?
                fn imp(s: $ty, w: &$crate::Matrix<'_>, x: &[f32], y: &mut [f32]) {
                    $crate::simd::kernels::matvec::<$ty, $acc>(s, w, x, y)
                }
                // SAFETY: `self` is a value of the backend type, which only its constructor
                // creates, once the CPU is known to have every feature in `$feat` (with no
                // features, `imp` is a safe function and the block is a no-op).
                #[allow(unused_unsafe)]
                unsafe { imp(*self, w, x, y) }
            }

            fn matmul(&self, w: &$crate::Matrix<'_>, x: &[f32], y: &mut [f32]) {
                $(#[target_feature(enable = $feat)])?
                fn imp(s: $ty, w: &$crate::Matrix<'_>, x: &[f32], y: &mut [f32]) {
                    $crate::simd::kernels::matmul::<$ty, $acc>(s, w, x, y)
                }
                // SAFETY: `self` is a value of the backend type, which only its constructor
                // creates, once the CPU is known to have every feature in `$feat` (with no
                // features, `imp` is a safe function and the block is a no-op).
                #[allow(unused_unsafe)]
                unsafe { imp(*self, w, x, y) }
            }

            fn quantize_q8(&self, x: &[f32], out: &mut $crate::Q8Vec) {
                $crate::quant::QuantKernels::quantize_q8(*self, x, out);
                out.fill_half_sums();
            }

            fn matvec_q8(&self, w: &$crate::Matrix<'_>, x: &$crate::Q8Vec, y: &mut [f32]) {
                $crate::quant::QuantKernels::matvec_q8(*self, w, x, y)
            }

            fn matmul_q8(&self, w: &$crate::Matrix<'_>, x: &[$crate::Q8Vec], y: &mut [f32]) {
                $crate::quant::QuantKernels::matmul_q8(*self, w, x, y)
            }

            fn rmsnorm(&self, out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
                $(#[target_feature(enable = $feat)])?
                fn imp(s: $ty, out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
                    $crate::simd::kernels::rmsnorm::<$ty, $acc>(s, out, x, weight, eps)
                }
                // SAFETY: `self` is a value of the backend type, which only its constructor
                // creates, once the CPU is known to have every feature in `$feat` (with no
                // features, `imp` is a safe function and the block is a no-op).
                #[allow(unused_unsafe)]
                unsafe { imp(*self, out, x, weight, eps) }
            }

            fn softmax(&self, x: &mut [f32]) {
                $(#[target_feature(enable = $feat)])?
                fn imp(s: $ty, x: &mut [f32]) {
                    $crate::simd::kernels::softmax::<$ty, $acc>(s, x)
                }
                // SAFETY: `self` is a value of the backend type, which only its constructor
                // creates, once the CPU is known to have every feature in `$feat` (with no
                // features, `imp` is a safe function and the block is a no-op).
                #[allow(unused_unsafe)]
                unsafe { imp(*self, x) }
            }

            fn rope(
                &self,
                x: &mut [f32],
                head_dim: usize,
                cos: &[f32],
                sin: &[f32],
                style: $crate::RopeStyle,
            ) {
                $(#[target_feature(enable = $feat)])?
                fn imp(
                    s: $ty,
                    x: &mut [f32],
                    head_dim: usize,
                    cos: &[f32],
                    sin: &[f32],
                    style: $crate::RopeStyle,
                ) {
                    $crate::simd::kernels::rope(s, x, head_dim, cos, sin, style)
                }
                // SAFETY: `self` is a value of the backend type, which only its constructor
                // creates, once the CPU is known to have every feature in `$feat` (with no
                // features, `imp` is a safe function and the block is a no-op).
                #[allow(unused_unsafe)]
                unsafe { imp(*self, x, head_dim, cos, sin, style) }
            }

            fn swiglu(&self, gate: &mut [f32], up: &[f32]) {
                $(#[target_feature(enable = $feat)])?
                fn imp(s: $ty, gate: &mut [f32], up: &[f32]) {
                    $crate::simd::kernels::swiglu(s, gate, up)
                }
                // SAFETY: `self` is a value of the backend type, which only its constructor
                // creates, once the CPU is known to have every feature in `$feat` (with no
                // features, `imp` is a safe function and the block is a no-op).
                #[allow(unused_unsafe)]
                unsafe { imp(*self, gate, up) }
            }

            fn geglu(&self, gate: &mut [f32], up: &[f32]) {
                $(#[target_feature(enable = $feat)])?
                fn imp(s: $ty, gate: &mut [f32], up: &[f32]) {
                    $crate::simd::kernels::geglu(s, gate, up)
                }
                // SAFETY: `self` is a value of the backend type, which only its constructor
                // creates, once the CPU is known to have every feature in `$feat` (with no
                // features, `imp` is a safe function and the block is a no-op).
                #[allow(unused_unsafe)]
                unsafe { imp(*self, gate, up) }
            }

            fn attn_scores(
                &self,
                q: &[f32],
                keys: &[f32],
                stride: usize,
                scale: f32,
                out: &mut [f32],
            ) {
                $(#[target_feature(enable = $feat)])?
                fn imp(
                    s: $ty,
                    q: &[f32],
                    keys: &[f32],
                    stride: usize,
                    scale: f32,
                    out: &mut [f32],
                ) {
                    $crate::simd::kernels::attn_scores::<$ty, $acc>(s, q, keys, stride, scale, out)
                }
                // SAFETY: `self` is a value of the backend type, which only its constructor
                // creates, once the CPU is known to have every feature in `$feat` (with no
                // features, `imp` is a safe function and the block is a no-op).
                #[allow(unused_unsafe)]
                unsafe { imp(*self, q, keys, stride, scale, out) }
            }

            fn attn_values(&self, probs: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
                $(#[target_feature(enable = $feat)])?
                fn imp(s: $ty, probs: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
                    $crate::simd::kernels::attn_values(s, probs, values, stride, out)
                }
                // SAFETY: `self` is a value of the backend type, which only its constructor
                // creates, once the CPU is known to have every feature in `$feat` (with no
                // features, `imp` is a safe function and the block is a no-op).
                #[allow(unused_unsafe)]
                unsafe { imp(*self, probs, values, stride, out) }
            }

            fn add(&self, y: &mut [f32], x: &[f32]) {
                $(#[target_feature(enable = $feat)])?
                fn imp(s: $ty, y: &mut [f32], x: &[f32]) {
                    $crate::simd::kernels::add(s, y, x)
                }
                // SAFETY: `self` is a value of the backend type, which only its constructor
                // creates, once the CPU is known to have every feature in `$feat` (with no
                // features, `imp` is a safe function and the block is a no-op).
                #[allow(unused_unsafe)]
                unsafe { imp(*self, y, x) }
            }
        }
    };
}
pub(crate) use simd_backend;
