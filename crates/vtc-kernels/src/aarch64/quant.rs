//! Quantized products on NEON: each block's exact integer dot product by SDOT (the
//! dot-product extension, detected at run time) or by widening multiplies (`smull` /
//! `smlal`, then pairwise adds), then the canonical float combination (see
//! `crate::quant`) for 8 rows at once (two vectors of 4 rows), so both paths match
//! Scalar bit for bit.

use core::arch::aarch64::*;

use tvl_format::DType;
use tvl_format::quant::BLOCK;

use super::Neon;
use crate::Matrix;
use crate::quant::{self, Q8Vec, QuantArgs, QuantKernels, block_scale};
use crate::simd::Simd;

/// Rows per tile of the fast path.
const R: usize = 8;

/// An exact dot product of 32 signed bytes (`w0 | w1`) with 32 signed bytes
/// (`x0 | x1`) into 4 i32 lanes.
trait Dot: Copy {
    /// # Safety
    /// The CPU must support the instructions of the implementation.
    unsafe fn dot(w0: int8x16_t, w1: int8x16_t, x0: int8x16_t, x1: int8x16_t) -> int32x4_t;
}

/// Plain NEON: products widened to i16 (|w| <= 128, |x| <= 127: two products fit),
/// then pairwise widened to i32.
#[derive(Clone, Copy)]
struct Widen;

impl Dot for Widen {
    #[inline(always)]
    unsafe fn dot(w0: int8x16_t, w1: int8x16_t, x0: int8x16_t, x1: int8x16_t) -> int32x4_t {
        // SAFETY: NEON (baseline on this build).
        unsafe {
            let p0 = vmlal_high_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(x0)), w0, x0);
            let p1 = vmlal_high_s8(vmull_s8(vget_low_s8(w1), vget_low_s8(x1)), w1, x1);
            vpadalq_s16(vpaddlq_s16(p0), p1)
        }
    }
}

/// SDOT: 4 products summed into each i32 lane.
#[derive(Clone, Copy)]
struct Sdot;

/// `acc + sdot(a, b)`.
///
/// # Safety
/// The CPU must have the dot-product extension.
#[inline(always)]
unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut r = acc;
    // SAFETY: SDOT only reads and writes these three vector registers; the caller
    // guarantees the CPU has it. Inline asm because the `vdotq_s32` intrinsic is not
    // stable on every toolchain this crate builds with.
    unsafe {
        core::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) r,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
    r
}

impl Dot for Sdot {
    #[inline(always)]
    unsafe fn dot(w0: int8x16_t, w1: int8x16_t, x0: int8x16_t, x1: int8x16_t) -> int32x4_t {
        // SAFETY: dotprod is the caller's contract.
        unsafe { sdot(sdot(vdupq_n_s32(0), w0, x0), w1, x1) }
    }
}

/// 4 f16 values at `p` widened exactly to f32: the NEON backend's own `load_f16`
/// (FCVTL), which the float kernels use too.
///
/// # Safety
/// `p` readable for 4 u16.
#[inline(always)]
unsafe fn load_f16x4(p: *const u16) -> float32x4_t {
    // SAFETY: `p` readable for 4 halves (caller); NEON is the build's baseline.
    unsafe { Neon::without_dotprod().load_f16(p) }
}

/// Sums of 4 vectors' lanes: lane `r` of the result is the sum of `v[r]`.
///
/// # Safety
/// NEON.
#[inline(always)]
unsafe fn reduce4(v: &[int32x4_t]) -> int32x4_t {
    // SAFETY: NEON (baseline). Integer adds are exact in any order.
    unsafe { vpaddq_s32(vpaddq_s32(v[0], v[1]), vpaddq_s32(v[2], v[3])) }
}

/// The canonical product for 8-row tiles.
///
/// # Safety
/// NEON and whatever `D` needs; `a.g.tile_rows == 8`; `x` and `y` checked by
/// `quant::check`.
#[inline(always)]
unsafe fn matvec8<D: Dot, const KIND: u32>(a: &QuantArgs<'_>, x: &Q8Vec, y: &mut [f32]) {
    let (q, g) = (&a.q, &a.g);
    let nb = g.blocks_per_row();
    let bb = g.block_bytes();
    let f = g.fields();
    for (t, yt) in y.chunks_mut(R).enumerate() {
        // SAFETY: tile `t < n_tiles`: its quants (`R * nb * bb` bytes from
        // `t * tile_quant_bytes`) and scales (`R * nb * f` values from
        // `t * tile_scales`) lie inside the slices (`Matrix::new` checked their
        // lengths); block `b < nb` of `x` is 32 bytes at `32 b`.
        unsafe {
            let qt = q.quants.as_ptr().add(t * g.tile_quant_bytes());
            let st = q.scales.as_ptr().add(t * g.tile_scales()).cast::<u16>();
            let mut acc = [vdupq_n_f32(0.0); 2];
            for b in 0..nb {
                let xp = x.qs.as_ptr().add(b * BLOCK);
                let (x0, x1) = (vld1q_s8(xp), vld1q_s8(xp.add(16)));
                let qb = qt.add(b * R * bb);
                let mut v = [vdupq_n_s32(0); R];
                for (r, vr) in v.iter_mut().enumerate() {
                    let p = qb.add(r * bb);
                    let (w0, w1) = if KIND == DType::Q8_0 as u32 {
                        (vld1q_s8(p.cast()), vld1q_s8(p.add(16).cast()))
                    } else {
                        let raw = vld1q_u8(p);
                        (
                            vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0x0F))),
                            vreinterpretq_s8_u8(vshrq_n_u8::<4>(raw)),
                        )
                    };
                    *vr = D::dot(w0, w1, x0, x1);
                }
                let mut isum = [reduce4(&v[..4]), reduce4(&v[4..])];
                if KIND == DType::Q4_0 as u32 {
                    let c = vdupq_n_s32(8 * x.sum[b]);
                    isum = isum.map(|i| vsubq_s32(i, c));
                }
                let sb = st.add(b * f * R);
                let dx = vdupq_n_f32(x.d[b]);
                for h in 0..2 {
                    let dw = load_f16x4(sb.add(4 * h));
                    let mut term = vmulq_f32(vcvtq_f32_s32(isum[h]), vmulq_f32(dw, dx));
                    if KIND == DType::Q4_1 as u32 {
                        let mw = load_f16x4(sb.add(R + 4 * h));
                        term = vaddq_f32(term, vmulq_f32(mw, vdupq_n_f32(x.s[b])));
                    }
                    acc[h] = vaddq_f32(acc[h], term);
                }
            }
            let mut out = [0.0f32; R];
            vst1q_f32(out.as_mut_ptr(), acc[0]);
            vst1q_f32(out.as_mut_ptr().add(4), acc[1]);
            yt.copy_from_slice(&out[..yt.len()]);
        }
    }
}

/// Dispatch on the dtype and tile size.
///
/// # Safety
/// NEON and whatever `D` needs.
#[inline(always)]
unsafe fn matvec_q8<D: Dot>(w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
    let a = quant::check(w, x, y);
    if a.g.tile_rows != R {
        return quant::matvec_ref(&a, x, y);
    }
    // SAFETY: tile_rows == 8 and shapes checked; features are the caller's contract.
    unsafe { quant::by_dtype!(a.q.dtype, matvec8::<D>(&a, x, y)) }
}

impl QuantKernels for Neon {
    fn quantize_q8(self, x: &[f32], out: &mut Q8Vec) {
        out.set_len(x.len());
        for (b, xs) in x.chunks_exact(BLOCK).enumerate() {
            // SAFETY: NEON (baseline on this build); `xs` holds 32 floats and
            // `out.qs` 32 bytes at `32 b`.
            unsafe {
                let p = xs.as_ptr();
                let v = [0, 4, 8, 12, 16, 20, 24, 28].map(|i| vld1q_f32(p.add(i)));
                let mut m = vabsq_f32(v[0]);
                for vi in &v[1..] {
                    m = vmaxq_f32(m, vabsq_f32(*vi));
                }
                let (d, id) = block_scale(vmaxvq_f32(m));
                let idv = vdupq_n_f32(id);
                // FCVTNS: round to nearest, ties to even.
                let i = v.map(|vi| vcvtnq_s32_f32(vmulq_f32(vi, idv)));
                let mut sum = vdupq_n_s32(0);
                for ii in &i {
                    sum = vaddq_s32(sum, *ii);
                }
                // Narrow (values are within -127..=127: no saturation).
                let h = [0, 2, 4, 6].map(|k| vcombine_s16(vqmovn_s32(i[k]), vqmovn_s32(i[k + 1])));
                let lo = vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1]));
                let hi = vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3]));
                let dst = out.qs.as_mut_ptr().add(b * BLOCK);
                vst1q_s8(dst, lo);
                vst1q_s8(dst.add(16), hi);
                let total = vaddvq_s32(sum);
                out.d[b] = d;
                out.sum[b] = total;
                out.s[b] = d * total as f32;
            }
        }
    }

    fn matvec_q8(self, w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
        #[target_feature(enable = "neon,dotprod")]
        fn with_sdot(w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
            // SAFETY: NEON and dotprod are enabled on this function.
            unsafe { matvec_q8::<Sdot>(w, x, y) }
        }
        if self.dotprod {
            // SAFETY: a `Neon` with `dotprod` set exists only when the CPU has the
            // dot-product extension (`Neon::new`, `Neon::get`).
            unsafe { with_sdot(w, x, y) }
        } else {
            // SAFETY: NEON is the baseline of this build.
            unsafe { matvec_q8::<Widen>(w, x, y) }
        }
    }
}
