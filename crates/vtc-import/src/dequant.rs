//! Dequantization of ggml tensors to f32, exactly as ggml does it.
//!
//! The plain types widen (F16, BF16) or copy (F32). A block type (`Q8_0`, `Q4_0`,
//! `Q4_1`, `Q5_0`, `Q5_1`, `Q4_K`, `Q5_K`, `Q6_K`) has the same blocks as its TVL
//! dtype, so each GGUF block is split into its quant bytes and f16 fields
//! ([`BlockType::split_gguf`]) and dequantized by TVL's one definition
//! ([`tvl_format::quant::dequantize_block`]): every f16 field converted to f32 first,
//! each product and sum rounded in f32 (no fused multiply-add), as in ggml's reference
//! `dequantize_row_*` and gguf-py's `gguf.quants`.

use half::{bf16, f16};
use tvl_format::BlockType;
use tvl_format::quant::{MAX_BLOCK_BYTES, dequantize_block};

use crate::gguf::GgmlType;

/// Errors of dequantization.
#[derive(Debug, thiserror::Error)]
pub enum DequantError {
    /// This crate cannot dequantize the type.
    #[error("cannot dequantize ggml type {0}")]
    Unsupported(GgmlType),
    /// Source bytes and destination length disagree.
    #[error(
        "{ggml_type}: {src_bytes} source bytes do not hold exactly {dst_len} elements \
         (whole blocks of {block} elements, {block_bytes} bytes each)"
    )]
    SizeMismatch {
        /// The type.
        ggml_type: GgmlType,
        /// Bytes given.
        src_bytes: usize,
        /// Elements asked for.
        dst_len: usize,
        /// Elements per block.
        block: usize,
        /// Bytes per block.
        block_bytes: usize,
    },
}

/// Whether [`dequantize`] handles this type.
pub fn is_supported(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) || ty.block_type().is_some()
}

/// Dequantize `src` (whole blocks of `ty`) into `dst`, whose length is the number of
/// elements.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), DequantError> {
    if !is_supported(ty) {
        return Err(DequantError::Unsupported(ty));
    }
    let block = ty.block_size() as usize;
    let block_bytes = ty.block_bytes() as usize;
    let ok = dst.len().is_multiple_of(block)
        && (dst.len() / block)
            .checked_mul(block_bytes)
            .is_some_and(|n| n == src.len());
    if !ok {
        return Err(DequantError::SizeMismatch {
            ggml_type: ty,
            src_bytes: src.len(),
            dst_len: dst.len(),
            block,
            block_bytes,
        });
    }
    match (ty, ty.block_type()) {
        (_, Some(kind)) => blocks(kind, src, dst),
        (GgmlType::F32, None) => f32_row(src, dst),
        (GgmlType::F16, None) => f16_row(src, dst),
        (GgmlType::BF16, None) => bf16_row(src, dst),
        (_, None) => return Err(DequantError::Unsupported(ty)),
    }
    Ok(())
}

/// Dequantize `n` elements of `ty` from `src` into a new vector.
pub fn dequantize_to_vec(ty: GgmlType, src: &[u8], n: usize) -> Result<Vec<f32>, DequantError> {
    if !is_supported(ty) {
        return Err(DequantError::Unsupported(ty));
    }
    // Check the sizes before allocating, so a bogus `n` cannot allocate.
    let block = ty.block_size() as usize;
    let block_bytes = ty.block_bytes() as usize;
    if !n.is_multiple_of(block) || (n / block).checked_mul(block_bytes) != Some(src.len()) {
        return Err(DequantError::SizeMismatch {
            ggml_type: ty,
            src_bytes: src.len(),
            dst_len: n,
            block,
            block_bytes,
        });
    }
    let mut out = vec![0.0; n];
    dequantize(ty, src, &mut out)?;
    Ok(out)
}

fn f32_row(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    }
}

fn f16_row(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = f16::from_le_bytes([s[0], s[1]]).to_f32();
    }
}

fn bf16_row(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = bf16::from_le_bytes([s[0], s[1]]).to_f32();
    }
}

/// GGUF blocks of `kind`, each split into quant bytes and fields and dequantized by
/// TVL's definition.
fn blocks(kind: BlockType, src: &[u8], dst: &mut [f32]) {
    let mut quants = [0u8; MAX_BLOCK_BYTES];
    let quants = &mut quants[..kind.quant_bytes()];
    for (y, raw) in dst
        .chunks_exact_mut(kind.elems())
        .zip(src.chunks_exact(kind.gguf_bytes()))
    {
        let (d, m) = kind.split_gguf(raw, quants);
        dequantize_block(kind.dtype(), quants, d, m, y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn f32_f16_bf16_are_exact() {
        let xs = [0.0f32, -1.5, 3.25, f32::INFINITY, 65504.0, 6.1e-5];
        let src: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut out = [0.0; 6];
        dequantize(GgmlType::F32, &src, &mut out).unwrap();
        assert_eq!(out.map(f32::to_bits), xs.map(f32::to_bits));

        let src: Vec<u8> = xs.iter().flat_map(|&x| h(x)).collect();
        dequantize(GgmlType::F16, &src, &mut out).unwrap();
        for (o, x) in out.iter().zip(xs) {
            assert_eq!(*o, f16::from_f32(x).to_f32());
        }
        // A subnormal half: smallest positive is 2^-24.
        let mut one = [0.0];
        dequantize(GgmlType::F16, &[1, 0], &mut one).unwrap();
        assert_eq!(one[0], 2f32.powi(-24));

        // bf16 is the top half of an f32.
        let src: Vec<u8> = xs
            .iter()
            .flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes())
            .collect();
        dequantize(GgmlType::BF16, &src, &mut out).unwrap();
        for (o, x) in out.iter().zip(xs) {
            assert_eq!(o.to_bits(), x.to_bits() & 0xFFFF_0000);
        }
    }

    #[test]
    fn q8_0_block() {
        let mut b = h(0.5).to_vec();
        b.extend((0..32).map(|j| (j as i8 - 16) as u8));
        b.extend(h(-2.0));
        b.extend([0x80u8; 32]); // -128
        let mut out = [0.0; 64];
        dequantize(GgmlType::Q8_0, &b, &mut out).unwrap();
        for j in 0..32 {
            assert_eq!(out[j], (j as f32 - 16.0) * 0.5);
            assert_eq!(out[32 + j], 256.0);
        }
    }

    #[test]
    fn q4_0_block_nibble_order() {
        let mut b = h(0.25).to_vec();
        // low nibble j, high nibble 15 - j
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut out = [0.0; 32];
        dequantize(GgmlType::Q4_0, &b, &mut out).unwrap();
        for j in 0..16 {
            assert_eq!(out[j], (j as f32 - 8.0) * 0.25, "low nibble {j}");
            assert_eq!(
                out[16 + j],
                ((15 - j) as f32 - 8.0) * 0.25,
                "high nibble {j}"
            );
        }
    }

    #[test]
    fn q4_1_block_formula() {
        let (d, m) = (0.1f32, -0.7f32);
        let mut b = h(d).to_vec();
        b.extend(h(m));
        b.extend((0..16u8).map(|j| (j % 16) | ((j / 2) << 4)));
        let mut out = [0.0; 32];
        dequantize(GgmlType::Q4_1, &b, &mut out).unwrap();
        let (d, m) = (f16::from_f32(d).to_f32(), f16::from_f32(m).to_f32());
        for j in 0..16u8 {
            // Two roundings: the product, then the sum.
            let p = (j as f32) * d;
            assert_eq!(out[j as usize].to_bits(), (p + m).to_bits());
            assert_eq!(out[16 + j as usize], ((j / 2) as f32) * d + m);
        }
    }

    #[test]
    fn size_checks() {
        let mut out = [0.0; 32];
        assert!(matches!(
            dequantize(GgmlType::Q4_1, &[0; 19], &mut out),
            Err(DequantError::SizeMismatch { .. })
        ));
        assert!(matches!(
            dequantize(GgmlType::Q8_0, &[0; 34], &mut out[..31]),
            Err(DequantError::SizeMismatch { .. })
        ));
        assert!(matches!(
            dequantize(GgmlType::Other(10), &[], &mut []),
            Err(DequantError::Unsupported(GgmlType::Other(10)))
        ));
        assert!(dequantize_to_vec(GgmlType::Q4_0, &[0; 18], usize::MAX).is_err());
        assert_eq!(
            dequantize_to_vec(GgmlType::F32, &[], 0).unwrap(),
            Vec::<f32>::new()
        );
    }
}
