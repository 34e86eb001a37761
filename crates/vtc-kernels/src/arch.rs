//! The SIMD backends per target architecture: the only file with `cfg(target_arch)`
//! gates. x86-64 backends are detected at run time (each constructor proves its
//! features); NEON, part of the aarch64 baseline, is chosen at compile time.

use crate::Backend;

#[cfg(target_arch = "x86_64")]
#[path = "x86_64/mod.rs"]
pub mod x86_64;

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
#[path = "aarch64/mod.rs"]
pub mod aarch64;

/// The SIMD backend called `name`, if this build has it and this CPU runs it.
pub(crate) fn simd(name: &str) -> Option<&'static dyn Backend> {
    match name {
        #[cfg(target_arch = "x86_64")]
        "avx512" => x86_64::Avx512::get().map(|b| b as &'static dyn Backend),
        #[cfg(target_arch = "x86_64")]
        "avx2" => x86_64::Avx2::get().map(|b| b as &'static dyn Backend),
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        "neon" => Some(aarch64::Neon::get()),
        _ => None,
    }
}

/// [`crate::probe::read_sum`] on the widest vector unit available.
pub(crate) fn read_sum(buf: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was just detected on this CPU.
        return unsafe { x86_64::read_sum_avx2(buf) };
    }
    crate::probe::read_sum_body(buf)
}
