//! aarch64 backend: [`Neon`] (4 lanes). NEON is part of the aarch64 baseline, so it is
//! chosen at compile time; the file only implements the crate's SIMD trait and
//! instantiates the generic kernels.

mod neon;
mod quant;

pub use neon::Neon;
