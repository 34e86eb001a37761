//! NEON (Advanced SIMD): 4 f32 lanes, 4 accumulator vectors per dot product.
//!
//! This module is only compiled when the build enables NEON (`cfg(target_feature =
//! "neon")`, every aarch64 target by default), so there is nothing to detect: the
//! feature check is done at compile time. Rust still asks for `unsafe` around NEON
//! intrinsics and the `#[target_feature]` trampolines; the build configuration is what
//! makes each such block sound.

use core::arch::aarch64::*;

use crate::simd::{Simd, simd_backend};

/// The NEON backend: 4 f32 lanes. Always available on aarch64.
///
/// Quantized products use the SDOT instruction when the CPU has the dot-product
/// extension (detected at run time), plain NEON widening multiplies otherwise; both
/// give the same bits.
#[derive(Clone, Copy, Debug)]
pub struct Neon {
    /// The CPU has the dot-product extension (`dotprod`, SDOT) and it is used.
    pub(crate) dotprod: bool,
}

impl Neon {
    /// The backend: NEON is mandatory on aarch64, so this is always `Some`. It uses
    /// SDOT if this CPU has it.
    pub fn new() -> Option<Self> {
        Some(Self {
            dotprod: std::arch::is_aarch64_feature_detected!("dotprod"),
        })
    }

    /// The backend with SDOT disabled even where the CPU has it: the plain-NEON
    /// quantized path, for comparison and tests.
    pub fn without_dotprod() -> Self {
        Self { dotprod: false }
    }

    /// Whether quantized products use SDOT.
    pub fn uses_dotprod(&self) -> bool {
        self.dotprod
    }

    /// The `'static` instance.
    pub(crate) fn get() -> &'static Self {
        static WITH: Neon = Neon { dotprod: true };
        static WITHOUT: Neon = Neon { dotprod: false };
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            &WITH
        } else {
            &WITHOUT
        }
    }
}

simd_backend!(Neon, "neon", acc = 4, target_feature = "neon");

// SAFETY, for every `unsafe` block below: this module is compiled only with NEON
// enabled for the whole build (see `arch.rs`), the only feature these intrinsics need;
// pointer validity is the caller's contract of the method.
impl Simd for Neon {
    type V = float32x4_t;
    const LANES: usize = 4;

    #[inline(always)]
    fn splat(self, x: f32) -> float32x4_t {
        // SAFETY: NEON is enabled for this build (see the impl).
        unsafe { vdupq_n_f32(x) }
    }

    #[inline(always)]
    unsafe fn loadu(self, p: *const f32) -> float32x4_t {
        // SAFETY: NEON; `p` readable for 4 floats (caller), no alignment needed.
        unsafe { vld1q_f32(p) }
    }

    #[inline(always)]
    unsafe fn storeu(self, p: *mut f32, v: float32x4_t) {
        // SAFETY: `p` writable for 4 floats (caller).
        unsafe { vst1q_f32(p, v) }
    }

    #[inline(always)]
    unsafe fn load_f16(self, p: *const u16) -> float32x4_t {
        // SAFETY: `p` readable for 4 halves (caller).
        let h = unsafe { vld1_u16(p) };
        let r: float32x4_t;
        // SAFETY: FCVTL (half to single precision, base ARMv8 Advanced SIMD) only reads
        // and writes the two vector registers. Inline asm because `vcvt_f32_f16` takes
        // `float16x4_t`, built on the `f16` type that stable Rust does not have yet.
        unsafe {
            core::arch::asm!(
                "fcvtl {out:v}.4s, {inp:v}.4h",
                out = lateout(vreg) r,
                inp = in(vreg) h,
                options(pure, nomem, nostack, preserves_flags),
            )
        };
        r
    }

    #[inline(always)]
    unsafe fn load_dup(self, p: *const f32) -> float32x4_t {
        // SAFETY: `p` readable for 2 floats (caller).
        let d = unsafe { vld1_f32(p) };
        // SAFETY: NEON is enabled for this build (see the impl).
        unsafe { vcombine_f32(vzip1_f32(d, d), vzip2_f32(d, d)) }
    }

    #[inline(always)]
    fn swap_pairs(self, v: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is enabled for this build (see the impl).
        unsafe { vrev64q_f32(v) }
    }

    #[inline(always)]
    fn add(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is enabled for this build (see the impl).
        unsafe { vaddq_f32(a, b) }
    }

    #[inline(always)]
    fn sub(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is enabled for this build (see the impl).
        unsafe { vsubq_f32(a, b) }
    }

    #[inline(always)]
    fn mul(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is enabled for this build (see the impl).
        unsafe { vmulq_f32(a, b) }
    }

    #[inline(always)]
    fn div(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is enabled for this build (see the impl).
        unsafe { vdivq_f32(a, b) }
    }

    #[inline(always)]
    fn fma(self, a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is enabled for this build (see the impl).
        unsafe { vfmaq_f32(c, a, b) }
    }

    #[inline(always)]
    fn max(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is enabled for this build (see the impl).
        unsafe { vmaxq_f32(a, b) }
    }

    #[inline(always)]
    fn min(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is enabled for this build (see the impl).
        unsafe { vminq_f32(a, b) }
    }

    #[inline(always)]
    fn round(self, v: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is enabled for this build (see the impl).
        unsafe { vrndnq_f32(v) }
    }

    #[inline(always)]
    fn pow2i(self, n: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is enabled for this build (see the impl).
        unsafe {
            let e = vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127));
            vreinterpretq_f32_s32(vshlq_n_s32::<23>(e))
        }
    }

    #[inline(always)]
    fn reduce_sum(self, v: float32x4_t) -> f32 {
        // Halving: [l0 + l2, l1 + l3], then their sum.
        // SAFETY: NEON is enabled for this build (see the impl).
        unsafe {
            let h = vadd_f32(vget_low_f32(v), vget_high_f32(v));
            vget_lane_f32::<0>(vpadd_f32(h, h))
        }
    }

    #[inline(always)]
    fn reduce_max(self, v: float32x4_t) -> f32 {
        // SAFETY: NEON is enabled for this build (see the impl).
        unsafe { vmaxvq_f32(v) }
    }

    #[inline(always)]
    fn prefetch(self, _p: *const u8) {}
}
