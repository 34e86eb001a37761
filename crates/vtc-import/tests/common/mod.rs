//! Test helpers: reference dequantizers written independently of the crate, and (from
//! `vtc-testdata`, shared with the other suites and the fuzz workspace) the GGUF writer,
//! the deterministic PRNG, the tiny Llama and the golden-data locator.
#![allow(dead_code)]

use half::f16;
// Each test binary uses some of these (as with `dead_code` above).
#[allow(unused_imports)]
pub use vtc_testdata::gguf::*;
#[allow(unused_imports)]
pub use vtc_testdata::{Rng, golden_dir};

fn h(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Element `j` of a ggml tensor, straight from the block formulas (independent of the
/// crate's implementation).
pub fn ref_element(ty: u32, b: &[u8], j: usize) -> f32 {
    let (blk, k) = (j / 32, j % 32);
    let nib = |qs: &[u8]| -> u8 {
        if k < 16 {
            qs[k] & 0x0F
        } else {
            qs[k - 16] >> 4
        }
    };
    match ty {
        gt::F32 => f32::from_le_bytes(b[4 * j..4 * j + 4].try_into().unwrap()),
        gt::F16 => h(b, 2 * j),
        gt::BF16 => f32::from_bits((u16::from_le_bytes([b[2 * j], b[2 * j + 1]]) as u32) << 16),
        gt::Q8_0 => {
            let x = &b[34 * blk..34 * blk + 34];
            f32::from(x[2 + k] as i8) * h(x, 0)
        }
        gt::Q4_0 => {
            let x = &b[18 * blk..18 * blk + 18];
            f32::from(nib(&x[2..]) as i8 - 8) * h(x, 0)
        }
        gt::Q4_1 => {
            let x = &b[20 * blk..20 * blk + 20];
            f32::from(nib(&x[4..])) * h(x, 0) + h(x, 2)
        }
        _ => panic!("no reference for type {ty}"),
    }
}
