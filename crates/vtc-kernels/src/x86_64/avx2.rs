//! AVX2 + FMA + F16C: 8 f32 lanes, 2 accumulator vectors per dot product.

use core::arch::x86_64::*;

use super::{hmax256, hsum256};
use crate::simd::{Simd, simd_backend};

/// The AVX2 backend (with FMA and F16C): 8 f32 lanes.
///
/// A value is proof that the CPU runs AVX2, FMA and F16C: [`Avx2::new`] is the only
/// way to get one.
#[derive(Clone, Copy, Debug)]
pub struct Avx2 {
    _private: (),
}

impl Avx2 {
    /// The backend, if this CPU has AVX2, FMA and F16C.
    pub fn new() -> Option<Self> {
        let ok = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        ok.then_some(Self { _private: () })
    }

    /// A `'static` instance, if this CPU can run it.
    pub(crate) fn get() -> Option<&'static Self> {
        static INSTANCE: Avx2 = Avx2 { _private: () };
        Self::new().map(|_| &INSTANCE)
    }
}

simd_backend!(Avx2, "avx2", acc = 2, target_feature = "avx2,fma,f16c");

/// Lanes `0..n` set: the mask of a partial load or store.
///
/// # Safety
/// The CPU must support AVX2.
#[inline(always)]
unsafe fn first_lanes(n: usize) -> __m256i {
    // SAFETY: the caller guarantees AVX2.
    unsafe {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
}

// SAFETY, for every `unsafe` block below: `self` is an `Avx2`, which exists only after
// `Avx2::new` checked that the CPU has AVX2, FMA and F16C, the features of every
// intrinsic used here; pointer validity is the caller's contract of the method.
impl Simd for Avx2 {
    type V = __m256;
    const LANES: usize = 8;

    #[inline(always)]
    fn splat(self, x: f32) -> __m256 {
        // SAFETY: AVX (see the impl).
        unsafe { _mm256_set1_ps(x) }
    }

    #[inline(always)]
    unsafe fn loadu(self, p: *const f32) -> __m256 {
        // SAFETY: AVX; `p` readable for 8 floats (caller).
        unsafe { _mm256_loadu_ps(p) }
    }

    #[inline(always)]
    unsafe fn storeu(self, p: *mut f32, v: __m256) {
        // SAFETY: AVX; `p` writable for 8 floats (caller).
        unsafe { _mm256_storeu_ps(p, v) }
    }

    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, n: usize, fill: f32) -> __m256 {
        // SAFETY: AVX2; the masked load touches only lanes `0..n`, readable (caller).
        unsafe {
            let mask = first_lanes(n);
            let v = _mm256_maskload_ps(p, mask);
            _mm256_blendv_ps(_mm256_set1_ps(fill), v, _mm256_castsi256_ps(mask))
        }
    }

    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, n: usize, v: __m256) {
        // SAFETY: AVX2; the masked store touches only lanes `0..n`, writable (caller).
        unsafe { _mm256_maskstore_ps(p, first_lanes(n), v) }
    }

    #[inline(always)]
    unsafe fn load_f16(self, p: *const u16) -> __m256 {
        // SAFETY: F16C; `p` readable for 8 halves (caller).
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }

    #[inline(always)]
    unsafe fn load_dup(self, p: *const f32) -> __m256 {
        // SAFETY: AVX2; `p` readable for 4 floats (caller).
        unsafe {
            let lo = _mm256_castps128_ps256(_mm_loadu_ps(p));
            _mm256_permutevar8x32_ps(lo, _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3))
        }
    }

    #[inline(always)]
    fn swap_pairs(self, v: __m256) -> __m256 {
        // SAFETY: AVX (see the impl).
        unsafe { _mm256_permute_ps::<0b10_11_00_01>(v) }
    }

    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX (see the impl).
        unsafe { _mm256_add_ps(a, b) }
    }

    #[inline(always)]
    fn sub(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX (see the impl).
        unsafe { _mm256_sub_ps(a, b) }
    }

    #[inline(always)]
    fn mul(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX (see the impl).
        unsafe { _mm256_mul_ps(a, b) }
    }

    #[inline(always)]
    fn div(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX (see the impl).
        unsafe { _mm256_div_ps(a, b) }
    }

    #[inline(always)]
    fn fma(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: FMA (see the impl).
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }

    #[inline(always)]
    fn max(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX (see the impl).
        unsafe { _mm256_max_ps(a, b) }
    }

    #[inline(always)]
    fn min(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX (see the impl).
        unsafe { _mm256_min_ps(a, b) }
    }

    #[inline(always)]
    fn round(self, v: __m256) -> __m256 {
        // SAFETY: AVX (see the impl).
        unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v) }
    }

    #[inline(always)]
    fn pow2i(self, n: __m256) -> __m256 {
        // SAFETY: AVX2 (see the impl).
        unsafe {
            let e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e))
        }
    }

    #[inline(always)]
    fn reduce_sum(self, v: __m256) -> f32 {
        // SAFETY: AVX (see the impl).
        unsafe { hsum256(v) }
    }

    #[inline(always)]
    fn reduce_max(self, v: __m256) -> f32 {
        // SAFETY: AVX (see the impl).
        unsafe { hmax256(v) }
    }

    #[inline(always)]
    fn prefetch(self, p: *const u8) {
        // SAFETY: SSE (baseline); a prefetch never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
    }
}
