//! x86-64 backends: [`Avx2`] (8 lanes) and [`Avx512`] (16 lanes). Each file only
//! implements the crate's SIMD trait and instantiates the generic kernels; both
//! follow the canonical order, so they give the same bits.

mod avx2;
mod avx512;
mod quant;

pub use avx2::Avx2;
pub use avx512::Avx512;

use core::arch::x86_64::*;

/// The bandwidth probe's sum compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn read_sum_avx2(buf: &[f32]) -> f32 {
    // Prefetch 512 bytes ahead, as the matvec kernels do: the probe must measure the
    // best streaming rate the core reaches, or kernels would read "faster than memory".
    const AHEAD: usize = 512 / 4;
    let mut chunks = buf.chunks_exact(32);
    let mut acc = [_mm256_setzero_ps(); 4];
    for c in &mut chunks {
        // SAFETY: `c` holds 32 floats, so the four 8-float loads are in bounds; AVX2 is
        // enabled on this function. Prefetch is a hint valid for any address (computed
        // with wrapping arithmetic).
        unsafe {
            let p = c.as_ptr();
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(AHEAD).cast());
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(AHEAD + 16).cast());
            for (j, a) in acc.iter_mut().enumerate() {
                *a = _mm256_add_ps(*a, _mm256_loadu_ps(p.add(8 * j)));
            }
        }
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    // SAFETY: AVX2 (hence AVX) is enabled on this function.
    unsafe { hsum256(v) + chunks.remainder().iter().sum::<f32>() }
}

/// Sum of the 8 lanes of `v` by halving: `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 +
/// l7))`, the canonical order (and [`hsum`](crate::hsum)'s).
///
/// # Safety
/// The CPU must support AVX.
#[inline(always)]
unsafe fn hsum256(v: __m256) -> f32 {
    // SAFETY: the caller guarantees AVX (SSE is part of the x86-64 baseline).
    unsafe {
        let a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let b = _mm_add_ps(a, _mm_movehl_ps(a, a));
        _mm_cvtss_f32(_mm_add_ss(b, _mm_shuffle_ps::<0b01>(b, b)))
    }
}

/// Largest of the 8 lanes of `v`.
///
/// # Safety
/// The CPU must support AVX.
#[inline(always)]
unsafe fn hmax256(v: __m256) -> f32 {
    // SAFETY: the caller guarantees AVX (SSE is part of the x86-64 baseline).
    unsafe {
        let a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let b = _mm_max_ps(a, _mm_movehl_ps(a, a));
        _mm_cvtss_f32(_mm_max_ss(b, _mm_shuffle_ps::<0b01>(b, b)))
    }
}
