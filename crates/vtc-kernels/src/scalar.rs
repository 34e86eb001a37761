//! The scalar reference backend: plain Rust, no intrinsics, runs everywhere.
//!
//! [`Scalar`] is one more implementation of the SIMD abstraction ([`Simd`]): a
//! "vector" of 4 f32 lanes held in an array, every lane operation spelled out, fused
//! multiply-adds by [`f32::mul_add`] (one rounding, on every target). The generic
//! kernels instantiated over it run the canonical order of the crate docs (16 partial
//! sums, fused multiply-adds, halving, the one `exp` polynomial), so Scalar gives the
//! same bits as `avx2`, `avx512` and `neon` for every kernel, and a whole model gives
//! the same logits on every backend. The quantized products go through the plain-Rust
//! canonical product of the `quant` module.

use half::f16;

use crate::quant::{self, QuantKernels};
use crate::simd::{Simd, simd_backend};
use crate::{Matrix, Q8Vec};

/// The scalar reference backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scalar;

simd_backend!(Scalar, "scalar", acc = 4);

/// Lanes of [`Scalar`]'s array vector: as NEON, so `ACC = 16 / 4 = 4` accumulators.
const L: usize = 4;

/// `f(a[i], b[i])` lane-wise.
#[inline(always)]
fn zip(a: [f32; L], b: [f32; L], f: impl Fn(f32, f32) -> f32) -> [f32; L] {
    std::array::from_fn(|i| f(a[i], b[i]))
}

impl Simd for Scalar {
    type V = [f32; L];
    const LANES: usize = L;

    #[inline(always)]
    fn splat(self, x: f32) -> [f32; L] {
        [x; L]
    }

    #[inline(always)]
    unsafe fn loadu(self, p: *const f32) -> [f32; L] {
        // SAFETY: the caller guarantees `p` is readable for LANES floats; the unaligned
        // read has no alignment requirement.
        unsafe { p.cast::<[f32; L]>().read_unaligned() }
    }

    #[inline(always)]
    unsafe fn storeu(self, p: *mut f32, v: [f32; L]) {
        // SAFETY: the caller guarantees `p` is writable for LANES floats; the unaligned
        // write has no alignment requirement.
        unsafe { p.cast::<[f32; L]>().write_unaligned(v) }
    }

    #[inline(always)]
    unsafe fn load_f16(self, p: *const u16) -> [f32; L] {
        // SAFETY: the caller guarantees `p` is readable for LANES u16.
        let h = unsafe { p.cast::<[u16; L]>().read_unaligned() };
        h.map(|b| f16::from_bits(b).to_f32())
    }

    #[inline(always)]
    unsafe fn load_dup(self, p: *const f32) -> [f32; L] {
        // SAFETY: the caller guarantees `p` is readable for LANES / 2 = 2 floats.
        let (a, b) = unsafe { (p.read_unaligned(), p.add(1).read_unaligned()) };
        [a, a, b, b]
    }

    #[inline(always)]
    fn swap_pairs(self, v: [f32; L]) -> [f32; L] {
        [v[1], v[0], v[3], v[2]]
    }

    #[inline(always)]
    fn add(self, a: [f32; L], b: [f32; L]) -> [f32; L] {
        zip(a, b, |x, y| x + y)
    }

    #[inline(always)]
    fn sub(self, a: [f32; L], b: [f32; L]) -> [f32; L] {
        zip(a, b, |x, y| x - y)
    }

    #[inline(always)]
    fn mul(self, a: [f32; L], b: [f32; L]) -> [f32; L] {
        zip(a, b, |x, y| x * y)
    }

    #[inline(always)]
    fn div(self, a: [f32; L], b: [f32; L]) -> [f32; L] {
        zip(a, b, |x, y| x / y)
    }

    #[inline(always)]
    fn fma(self, a: [f32; L], b: [f32; L], c: [f32; L]) -> [f32; L] {
        std::array::from_fn(|i| a[i].mul_add(b[i], c[i]))
    }

    /// x86's `maxps` rule: `a` if `a > b`, else `b` (so `b` when either is NaN).
    #[inline(always)]
    fn max(self, a: [f32; L], b: [f32; L]) -> [f32; L] {
        zip(a, b, |x, y| if x > y { x } else { y })
    }

    /// x86's `minps` rule: `a` if `a < b`, else `b` (so `b` when either is NaN).
    #[inline(always)]
    fn min(self, a: [f32; L], b: [f32; L]) -> [f32; L] {
        zip(a, b, |x, y| if x < y { x } else { y })
    }

    #[inline(always)]
    fn round(self, v: [f32; L]) -> [f32; L] {
        v.map(f32::round_ties_even)
    }

    #[inline(always)]
    fn pow2i(self, n: [f32; L]) -> [f32; L] {
        // `n` in -126..=127: the biased exponent `n + 127` is in 1..=254, a normal float
        // with a zero mantissa. (Other lanes are unspecified; the cast saturates.)
        n.map(|n| f32::from_bits(((n as i32 + 127) as u32 & 0xff) << 23))
    }

    #[inline(always)]
    fn reduce_sum(self, v: [f32; L]) -> f32 {
        (v[0] + v[2]) + (v[1] + v[3])
    }

    #[inline(always)]
    fn reduce_max(self, v: [f32; L]) -> f32 {
        let m = |x: f32, y: f32| if x > y { x } else { y };
        m(m(v[0], v[2]), m(v[1], v[3]))
    }

    #[inline(always)]
    fn prefetch(self, _p: *const u8) {}
}

impl QuantKernels for Scalar {
    fn quantize_q8(self, x: &[f32], out: &mut Q8Vec) {
        quant::quantize_ref(x, out);
    }

    fn matvec_q8(self, w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
        let a = quant::check(w, x, y);
        quant::matvec_ref(&a, x, y);
    }
}
