//! Quantized products on NEON, one `BlockTiled` tile of 8 rows at a time.
//!
//! In a tile, block column `b` holds the quant bytes of the 8 rows interleaved 4 bytes
//! (`LANE`) at a time: group `g` is 32 bytes, bytes `4g..4g + 4` of rows 0..8 in
//! order. Loaded as two 16-byte vectors, a group is rows 0..4 and rows 4..8 with one
//! row per 32-bit lane. A `Q8_0` block is 8 groups (group `g`: elements `4g..4g + 4`);
//! a 4-bit block is 4 groups whose low nibbles are elements `4g..4g + 4` and high
//! nibbles elements `16 + 4g..16 + 4g + 4` (GGUF order). Either way a block is 8
//! *terms*: term `i` pairs 4 weight bytes of every row with inputs `4i..4i + 4`.
//!
//! Each term is a 4-byte dot product per 32-bit lane against those 4 inputs (the same
//! in every lane), so it adds into each row's own lane and the block's 8 exact integer
//! sums build up in two `int32x4_t` (rows 0..4, rows 4..8), with no horizontal
//! reduction. The dot products are SDOT (the dot-product extension, detected at run
//! time; its by-element form reads the 4 inputs from lane `i % 4` of the block's input
//! vectors) or, in plain NEON, widening multiplies (`smull` / `smlal`) then pairwise
//! adds, which never cross a lane's 4 bytes and so never mix rows. The canonical float
//! combination (see `crate::quant`) then runs on the two vectors of 4 rows, so both
//! paths match Scalar bit for bit.

use core::arch::aarch64::*;

use tvl_format::quant::{BLOCK, BlockType};

use super::Neon;
use crate::Matrix;
use crate::quant::{self, Kind, Q8Vec, QuantArgs, QuantKernels, block_scale};
use crate::simd::Simd;

/// Rows per tile of the fast path.
const R: usize = 8;

/// The weights of one block of a tile as its 8 terms: `w[i]` is term `i`'s 4 bytes of
/// rows 0..4 (`w[i][0]`) and of rows 4..8 (`w[i][1]`), one row per 32-bit lane.
type Terms = [[int8x16_t; 2]; 8];

/// The exact integer dot products of one block of a tile's 8 rows with the block's
/// inputs.
trait Dot: Copy {
    /// Rows 0..4 and rows 4..8 of `Σ_i Σ_k w[i]_k * x[4i + k]` (each row in its own
    /// lane), where `x0 | x1` are the block's 32 inputs (|x| <= 127, as every
    /// `quantize_q8` produces) and the weights are the quants of a `K` block: any
    /// i8 for `Q8_0`, nibbles 0..=15 otherwise.
    ///
    /// # Safety
    /// The CPU must support the instructions of the implementation.
    unsafe fn block<K: Kind>(w: &Terms, x0: int8x16_t, x1: int8x16_t) -> [int32x4_t; 2];
}

/// Plain NEON: each term's inputs broadcast to every lane, products widened to i16
/// (`smull` / `smlal`), then pairwise adds (which pair neighbours inside a lane's 4
/// bytes, so inside one row) widening to i32.
#[derive(Clone, Copy)]
struct Widen;

impl Dot for Widen {
    #[inline(always)]
    unsafe fn block<K: Kind>(w: &Terms, x0: int8x16_t, x1: int8x16_t) -> [int32x4_t; 2] {
        // SAFETY: NEON (baseline on this build); the intrinsics only touch registers.
        // Every i16 sum stays within i16 (bounds below), so the integer result is exact.
        unsafe {
            let (a, b) = (vreinterpretq_s32_s8(x0), vreinterpretq_s32_s8(x1));
            // x[i]: inputs 4i..4i + 4 in every 32-bit lane.
            let x = [
                vreinterpretq_s8_s32(vdupq_laneq_s32::<0>(a)),
                vreinterpretq_s8_s32(vdupq_laneq_s32::<1>(a)),
                vreinterpretq_s8_s32(vdupq_laneq_s32::<2>(a)),
                vreinterpretq_s8_s32(vdupq_laneq_s32::<3>(a)),
                vreinterpretq_s8_s32(vdupq_laneq_s32::<0>(b)),
                vreinterpretq_s8_s32(vdupq_laneq_s32::<1>(b)),
                vreinterpretq_s8_s32(vdupq_laneq_s32::<2>(b)),
                vreinterpretq_s8_s32(vdupq_laneq_s32::<3>(b)),
            ];
            // Of a half's 4 rows r0, r1, r2, r3, `smull` of the low 8 bytes gives the i16
            // products of r0 (lanes 0..4) and r1 (lanes 4..8), of the high 8 bytes
            // those of r2 and r3.
            let mut out = [vdupq_n_s32(0); 2];
            for (h, o) in out.iter_mut().enumerate() {
                if K::T == BlockType::Q8_0 {
                    // |w| <= 128, |x| <= 127: a product is at most 16256 in magnitude,
                    // two 32512 <= i16::MAX. So two terms per i16 lane, then widen:
                    // `sadalp` adds byte pairs 0+1 and 2+3 of each row into i32.
                    let mut acc = [vdupq_n_s32(0); 2];
                    for i in (0..8).step_by(2) {
                        let (w0, w1) = (w[i][h], w[i + 1][h]);
                        let lo = vmull_s8(vget_low_s8(w0), vget_low_s8(x[i]));
                        let lo = vmlal_s8(lo, vget_low_s8(w1), vget_low_s8(x[i + 1]));
                        let hi = vmlal_high_s8(vmull_high_s8(w0, x[i]), w1, x[i + 1]);
                        // [r0, r0, r1, r1] and [r2, r2, r3, r3].
                        acc[0] = vpadalq_s16(acc[0], lo);
                        acc[1] = vpadalq_s16(acc[1], hi);
                    }
                    *o = vpaddq_s32(acc[0], acc[1]);
                } else {
                    // Nibbles 0..=15, |x| <= 127: a product is at most 1905 in
                    // magnitude, the 8 terms 15240, a pair of bytes after `addp`
                    // 30480 <= i16::MAX. So all 8 terms in i16, then one pairwise add
                    // in i16 and one widening to i32.
                    let mut lo = vmull_s8(vget_low_s8(w[0][h]), vget_low_s8(x[0]));
                    let mut hi = vmull_high_s8(w[0][h], x[0]);
                    for i in 1..8 {
                        lo = vmlal_s8(lo, vget_low_s8(w[i][h]), vget_low_s8(x[i]));
                        hi = vmlal_high_s8(hi, w[i][h], x[i]);
                    }
                    // [r0, r0, r1, r1, r2, r2, r3, r3] -> [r0, r1, r2, r3].
                    *o = vpaddlq_s16(vpaddq_s16(lo, hi));
                }
            }
            out
        }
    }
}

/// SDOT: each lane's 4 products summed into that lane's i32, the 4 inputs taken from
/// one 32-bit lane of an input vector (by-element form).
#[derive(Clone, Copy)]
struct Sdot;

/// `acc + sdot(w, x[L])`: each i32 lane of `acc` plus the dot product of that lane's 4
/// bytes of `w` with the 4 bytes of lane `L` of `x` (all products exact, |w|, |x| <=
/// 128: no overflow).
///
/// # Safety
/// The CPU must have the dot-product extension.
#[inline(always)]
unsafe fn sdot_lane<const L: usize>(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let mut r = acc;
    // SAFETY: SDOT only reads and writes these three vector registers (`L < 4` is the
    // encoding's own bound, checked by the assembler); the caller guarantees the CPU
    // has it. Inline asm because the `vdotq_laneq_s32` intrinsic is not stable on
    // every toolchain this crate builds with.
    unsafe {
        core::arch::asm!(
            "sdot {acc:v}.4s, {w:v}.16b, {x:v}.4b[{l}]",
            acc = inout(vreg) r,
            w = in(vreg) w,
            x = in(vreg) x,
            l = const L,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
    r
}

/// Terms `L` (inputs: lane `L` of `x0`) and `L + 4` (lane `L` of `x1`) of a block,
/// for both halves, added to `acc`: [rows 0..4 and rows 4..8 of terms 0..4, rows 0..4
/// and rows 4..8 of terms 4..8] (four independent chains).
///
/// # Safety
/// The CPU must have the dot-product extension.
#[inline(always)]
unsafe fn sdot_terms<const L: usize>(
    acc: [int32x4_t; 4],
    w: &Terms,
    x0: int8x16_t,
    x1: int8x16_t,
) -> [int32x4_t; 4] {
    // SAFETY: dotprod is the caller's contract.
    unsafe {
        [
            sdot_lane::<L>(acc[0], w[L][0], x0),
            sdot_lane::<L>(acc[1], w[L][1], x0),
            sdot_lane::<L>(acc[2], w[L + 4][0], x1),
            sdot_lane::<L>(acc[3], w[L + 4][1], x1),
        ]
    }
}

impl Dot for Sdot {
    #[inline(always)]
    unsafe fn block<K: Kind>(w: &Terms, x0: int8x16_t, x1: int8x16_t) -> [int32x4_t; 2] {
        // SAFETY: dotprod is the caller's contract; the rest is NEON (baseline) on
        // registers. Integer adds are exact in any order.
        unsafe {
            let acc = [vdupq_n_s32(0); 4];
            let acc = sdot_terms::<0>(acc, w, x0, x1);
            let acc = sdot_terms::<1>(acc, w, x0, x1);
            let acc = sdot_terms::<2>(acc, w, x0, x1);
            let acc = sdot_terms::<3>(acc, w, x0, x1);
            [vaddq_s32(acc[0], acc[2]), vaddq_s32(acc[1], acc[3])]
        }
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

/// The terms of the `K` block whose interleaved quants (8 groups of 32 bytes for
/// `Q8_0`, 4 for the 4-bit types) start at `qb`: a `Q8_0` group is one term, a 4-bit
/// group two (term `g` its low nibbles, term `g + 4` its high nibbles).
///
/// # Safety
/// NEON; `qb` readable for `8 * block_bytes` bytes.
#[inline(always)]
unsafe fn load_terms<K: Kind>(qb: *const u8) -> Terms {
    // SAFETY: NEON (baseline); every load is inside the `8 * block_bytes` bytes at
    // `qb` (caller): 16-byte loads at `32 g` and `32 g + 16` for `g < 8` (`Q8_0`,
    // 256 bytes) or `g < 4` (4-bit, 128 bytes).
    unsafe {
        let mut w = [[vdupq_n_s8(0); 2]; 8];
        if K::T == BlockType::Q8_0 {
            for (g, wg) in w.iter_mut().enumerate() {
                let p = qb.add(32 * g).cast::<i8>();
                *wg = [vld1q_s8(p), vld1q_s8(p.add(16))];
            }
        } else {
            let m = vdupq_n_u8(0x0F);
            for g in 0..4 {
                let p = qb.add(32 * g);
                let raw = [vld1q_u8(p), vld1q_u8(p.add(16))];
                w[g] = raw.map(|v| vreinterpretq_s8_u8(vandq_u8(v, m)));
                w[g + 4] = raw.map(|v| vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)));
            }
        }
        w
    }
}

/// The canonical product for 8-row tiles.
///
/// # Safety
/// NEON and whatever `D` needs; `a.g.tile_rows == 8`; `x` and `y` checked by
/// `quant::check`.
#[inline(always)]
unsafe fn matvec8<D: Dot, K: Kind>(a: &QuantArgs<'_>, x: &Q8Vec, y: &mut [f32]) {
    let (q, g) = (&a.q, &a.g);
    let nb = g.blocks_per_row();
    let bb = g.block_bytes();
    let f = g.fields();
    for (t, yt) in y.chunks_mut(R).enumerate() {
        // SAFETY: tile `t < n_tiles`: its quants (`R * nb * bb` bytes from
        // `t * tile_quant_bytes`, block `b` the `R * bb` bytes from `b * R * bb`) and
        // scales (`R * nb * f` values from `t * tile_scales`) lie inside the slices
        // (`Matrix::new` checked their lengths); block `b < nb` of `x` is 32 bytes at
        // `32 b`.
        unsafe {
            let qt = q.quants.as_ptr().add(t * g.tile_quant_bytes());
            let st = q.scales.as_ptr().add(t * g.tile_scales()).cast::<u16>();
            let mut acc = [vdupq_n_f32(0.0); 2];
            for b in 0..nb {
                let xp = x.qs.as_ptr().add(b * BLOCK);
                let (x0, x1) = (vld1q_s8(xp), vld1q_s8(xp.add(16)));
                let w = load_terms::<K>(qt.add(b * R * bb));
                let mut isum = D::block::<K>(&w, x0, x1);
                if K::T == BlockType::Q4_0 {
                    let c = vdupq_n_s32(8 * x.sum[b]);
                    isum = isum.map(|i| vsubq_s32(i, c));
                }
                let sb = st.add(b * f * R);
                let dx = vdupq_n_f32(x.d[b]);
                for h in 0..2 {
                    // `vfmaq_f32(a, b, c)` is `a + b * c` rounded once.
                    let dw = load_f16x4(sb.add(4 * h));
                    acc[h] = vfmaq_f32(acc[h], vcvtq_f32_s32(isum[h]), vmulq_f32(dw, dx));
                    if K::T == BlockType::Q4_1 {
                        let mw = load_f16x4(sb.add(R + 4 * h));
                        acc[h] = vfmaq_f32(acc[h], mw, vdupq_n_f32(x.s[b]));
                    }
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
    let kind = a.g.kind();
    if a.g.tile_rows != R || !has_fast_path(kind) {
        return quant::matvec_ref(&a, x, y);
    }
    // SAFETY: tile_rows == 8 and shapes checked; features are the caller's contract.
    unsafe { quant::by_kind!(kind, matvec8::<D>(&a, x, y)) }
}

/// Whether the NEON kernels have a fast path for `kind` (the others take the
/// canonical plain-Rust path, with the same bits).
fn has_fast_path(kind: BlockType) -> bool {
    match kind {
        BlockType::Q8_0 | BlockType::Q4_0 | BlockType::Q4_1 => true,
        BlockType::Q5_0 | BlockType::Q5_1 | BlockType::Q4_K | BlockType::Q5_K | BlockType::Q6_K => {
            false
        }
    }
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
