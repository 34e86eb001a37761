//! AVX-512F (with AVX2, FMA, F16C for the 256-bit halves): 16 f32 lanes, one
//! accumulator vector per dot product; tails by masked loads and stores.

use core::arch::x86_64::*;

use super::{hmax256, hsum256};
use crate::simd::{Simd, simd_backend};

/// The AVX-512 backend: 16 f32 lanes.
///
/// A value is proof that the CPU runs AVX-512F, AVX2, FMA and F16C: [`Avx512::new`] is
/// the only way to get one.
#[derive(Clone, Copy, Debug)]
pub struct Avx512 {
    _private: (),
}

impl Avx512 {
    /// The backend, if this CPU has AVX-512F, AVX2, FMA and F16C.
    pub fn new() -> Option<Self> {
        let ok = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        ok.then_some(Self { _private: () })
    }

    /// A `'static` instance, if this CPU can run it.
    pub(crate) fn get() -> Option<&'static Self> {
        static INSTANCE: Avx512 = Avx512 { _private: () };
        Self::new().map(|_| &INSTANCE)
    }
}

simd_backend!(
    Avx512,
    "avx512",
    acc = 1,
    target_feature = "avx512f,avx2,fma,f16c"
);

/// Lanes `0..n` set, for `n < 16`.
#[inline(always)]
fn first_lanes(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

// SAFETY, for every `unsafe` block below: `self` is an `Avx512`, which exists only
// after `Avx512::new` checked that the CPU has AVX-512F, AVX2, FMA and F16C, the
// features of every intrinsic used here; pointer validity is the caller's contract of
// the method.
impl Simd for Avx512 {
    type V = __m512;
    const LANES: usize = 16;

    #[inline(always)]
    fn splat(self, x: f32) -> __m512 {
        // SAFETY: AVX-512F (see the impl).
        unsafe { _mm512_set1_ps(x) }
    }

    #[inline(always)]
    unsafe fn loadu(self, p: *const f32) -> __m512 {
        // SAFETY: AVX-512F; `p` readable for 16 floats (caller).
        unsafe { _mm512_loadu_ps(p) }
    }

    #[inline(always)]
    unsafe fn storeu(self, p: *mut f32, v: __m512) {
        // SAFETY: AVX-512F; `p` writable for 16 floats (caller).
        unsafe { _mm512_storeu_ps(p, v) }
    }

    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, n: usize, fill: f32) -> __m512 {
        // SAFETY: AVX-512F; the masked load touches only lanes `0..n`, readable
        // (caller), and masked-off lanes never fault.
        unsafe { _mm512_mask_loadu_ps(_mm512_set1_ps(fill), first_lanes(n), p) }
    }

    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, n: usize, v: __m512) {
        // SAFETY: AVX-512F; the masked store touches only lanes `0..n`, writable
        // (caller).
        unsafe { _mm512_mask_storeu_ps(p, first_lanes(n), v) }
    }

    #[inline(always)]
    unsafe fn load_f16(self, p: *const u16) -> __m512 {
        // SAFETY: AVX-512F; `p` readable for 16 halves (caller).
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }

    #[inline(always)]
    unsafe fn load_dup(self, p: *const f32) -> __m512 {
        // SAFETY: AVX-512F; `p` readable for 8 floats (caller).
        unsafe {
            let lo = _mm512_castps256_ps512(_mm256_loadu_ps(p));
            let idx = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
            _mm512_permutexvar_ps(idx, lo)
        }
    }

    #[inline(always)]
    fn swap_pairs(self, v: __m512) -> __m512 {
        // SAFETY: AVX-512F (see the impl).
        unsafe { _mm512_permute_ps::<0b10_11_00_01>(v) }
    }

    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F (see the impl).
        unsafe { _mm512_add_ps(a, b) }
    }

    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F (see the impl).
        unsafe { _mm512_sub_ps(a, b) }
    }

    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F (see the impl).
        unsafe { _mm512_mul_ps(a, b) }
    }

    #[inline(always)]
    fn div(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F (see the impl).
        unsafe { _mm512_div_ps(a, b) }
    }

    #[inline(always)]
    fn fma(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: AVX-512F (see the impl).
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }

    #[inline(always)]
    fn max(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F (see the impl).
        unsafe { _mm512_max_ps(a, b) }
    }

    #[inline(always)]
    fn min(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F (see the impl).
        unsafe { _mm512_min_ps(a, b) }
    }

    #[inline(always)]
    fn round(self, v: __m512) -> __m512 {
        // SAFETY: AVX-512F (see the impl).
        unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v) }
    }

    #[inline(always)]
    fn pow2i(self, n: __m512) -> __m512 {
        // SAFETY: AVX-512F (see the impl).
        unsafe {
            let e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
            _mm512_castsi512_ps(_mm512_slli_epi32::<23>(e))
        }
    }

    #[inline(always)]
    fn reduce_sum(self, v: __m512) -> f32 {
        // SAFETY: AVX-512F and AVX (see the impl).
        unsafe {
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            hsum256(_mm256_add_ps(_mm512_castps512_ps256(v), hi))
        }
    }

    #[inline(always)]
    fn reduce_max(self, v: __m512) -> f32 {
        // SAFETY: AVX-512F and AVX (see the impl).
        unsafe {
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            hmax256(_mm256_max_ps(_mm512_castps512_ps256(v), hi))
        }
    }

    #[inline(always)]
    fn prefetch(self, p: *const u8) {
        // SAFETY: SSE (baseline); a prefetch never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
    }
}
