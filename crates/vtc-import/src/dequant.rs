//! Dequantization of ggml blocks to f32, exactly as ggml does it.
//!
//! Each f16 scale is converted to f32 first; an element is then `q * d` (Q8_0, Q4_0)
//! or `q * d + m` (Q4_1), each operation rounded in f32 (no fused multiply-add, as in
//! ggml's reference `dequantize_row_*` and gguf-py's `gguf.quants`). In a 4-bit
//! block, the low nibbles of `qs[0..16]` are elements 0..16 and the high nibbles are
//! elements 16..32.

use half::{bf16, f16};

use crate::gguf::GgmlType;

/// Elements per block of the quantized types handled here.
pub const QK: usize = 32;

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
    matches!(
        ty,
        GgmlType::F32
            | GgmlType::F16
            | GgmlType::BF16
            | GgmlType::Q8_0
            | GgmlType::Q4_0
            | GgmlType::Q4_1
    )
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
    match ty {
        GgmlType::F32 => f32_row(src, dst),
        GgmlType::F16 => f16_row(src, dst),
        GgmlType::BF16 => bf16_row(src, dst),
        GgmlType::Q8_0 => q8_0_row(src, dst),
        GgmlType::Q4_0 => q4_0_row(src, dst),
        GgmlType::Q4_1 => q4_1_row(src, dst),
        GgmlType::Other(_) => unreachable!("checked by is_supported"),
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

#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
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

/// Q8_0 block: `f16 d`, `i8 qs[32]`; element j = `qs[j] * d`.
fn q8_0_row(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(QK).zip(src.chunks_exact(34)) {
        let d = f16_at(b, 0);
        for (y, &q) in y.iter_mut().zip(&b[2..34]) {
            *y = (q as i8) as f32 * d;
        }
    }
}

/// Q4_0 block: `f16 d`, `u8 qs[16]`; element j = `(nibble_j - 8) * d`.
fn q4_0_row(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(QK).zip(src.chunks_exact(18)) {
        let d = f16_at(b, 0);
        let (lo, hi) = y.split_at_mut(QK / 2);
        for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b[2..18]) {
            *l = ((q & 0x0F) as i32 - 8) as f32 * d;
            *h = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// Q4_1 block: `f16 d`, `f16 m`, `u8 qs[16]`; element j = `nibble_j * d + m`.
fn q4_1_row(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(QK).zip(src.chunks_exact(20)) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let (lo, hi) = y.split_at_mut(QK / 2);
        for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b[4..20]) {
            *l = (q & 0x0F) as f32 * d + m;
            *h = (q >> 4) as f32 * d + m;
        }
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
            dequantize(GgmlType::Other(14), &[], &mut []),
            Err(DequantError::Unsupported(GgmlType::Other(14)))
        ));
        assert!(dequantize_to_vec(GgmlType::Q4_0, &[0; 18], usize::MAX).is_err());
        assert_eq!(
            dequantize_to_vec(GgmlType::F32, &[], 0).unwrap(),
            Vec::<f32>::new()
        );
    }
}
