//! Quantized products on NEON, one `BlockTiled` tile of 8 rows at a time.
//!
//! In a tile, block column `b` holds the quant bytes of the 8 rows interleaved 4 bytes
//! (`LANE`) at a time: group `g` is 32 bytes, bytes `4g..4g + 4` of rows 0..8 in
//! order. Loaded as two 16-byte vectors, a group is rows 0..4 and rows 4..8 with one
//! row per 32-bit lane, and every run of a block's quant bytes (a `Q5` block's `qh`,
//! a K type's packed scales, its `qh`, its nibbles) is a run of whole groups. Each
//! 32-element input block is 8 *terms*: term `i` pairs 4 weight bytes of every row
//! (its elements `4i..4i + 4`, unpacked to one signed byte each) with inputs
//! `4i..4i + 4`:
//!
//! - `Q8_0`: group `i`; the 4-bit types (`Q4_0`, `Q4_1`): the low nibbles of group
//!   `i` for `i < 4`, the high nibbles of group `i - 4` otherwise (GGUF order);
//! - `Q5_0`, `Q5_1`: the same nibbles from the groups after `qh` (group 0), with bit
//!   `4i + k` of the row's `qh` word as the 5th bit of the lane's byte `k` (a table
//!   lookup of the word's byte `i / 2`, then a bit test per byte);
//! - `Q4_K`, `Q5_K`: sub-blocks `2c` and `2c + 1` are the low and high nibbles of the
//!   8 groups `8c..8c + 8` of `qs`, `Q5_K`'s 5th bit of sub-block `s` bit `s` of each
//!   byte of the 8 `qh` groups; the 6-bit scale and minimum of a sub-block are shifts
//!   and masks of the 3 scale groups, per lane (ggml's `get_scale_min_k4` for 8 rows);
//! - `Q6_K`: sub-block `s = 4h + k` takes nibble `k / 2` of `ql` groups `16h + 8 (k %
//!   2) + i`, bits `2k..2k + 2` of `qh` groups `8h + i` above it, minus 32 (a signed
//!   weight, so no offset to undo), and its two int8 scales (one per 16 elements) from
//!   the bytes of the scale groups, sign-extended per lane.
//!
//! Each term is a 4-byte dot product per 32-bit lane against those 4 inputs (the same
//! in every lane), so it adds into each row's own lane and a block's 8 exact integer
//! sums build up in two `int32x4_t` (rows 0..4, rows 4..8), with no horizontal
//! reduction. The dot products are SDOT (the dot-product extension, detected at run
//! time; its by-element form reads the 4 inputs from lane `i % 4` of the block's input
//! vectors) or, in plain NEON, widening multiplies (`smull` / `smlal`) then pairwise
//! adds, which never cross a lane's 4 bytes and so never mix rows. The canonical
//! integer parts (`sc * isum`, `-(mn * sum)`, `Q6_K`'s two scaled halves) are integer
//! multiplies per lane and the canonical float combination (see `crate::quant`) runs
//! on the two vectors of 4 rows, so both paths match Scalar bit for bit.
//!
//! Fast path: tiles of 8 rows (what the converter writes), every block type. Other
//! tile sizes take the plain-Rust canonical path. The batched product is one
//! `matvec_q8` per input.

use core::arch::aarch64::*;

use tvl_format::quant::{BLOCK, BlockType};

use super::Neon;
use crate::Matrix;
use crate::quant::{self, Kind, Q8Vec, QuantArgs, QuantKernels, block_scale};
use crate::simd::Simd;

/// Rows per tile of the fast path.
const R: usize = 8;

/// The weights of one 32-element block of a tile as its 8 terms: `w[i]` is term `i`'s
/// 4 bytes of rows 0..4 (`w[i][0]`) and of rows 4..8 (`w[i][1]`), one row per 32-bit
/// lane, each byte one element's signed weight.
type Terms = [[int8x16_t; 2]; 8];

/// The largest magnitude of a `kind` weight as the kernels multiply it (the unpacked
/// quant: `Q8_0`'s i8, the unsigned 4- and 5-bit quants, `Q6_K`'s 6 bits minus 32),
/// which bounds how many products add up in i16 without overflow.
const fn weight_max(kind: BlockType) -> i32 {
    match kind {
        BlockType::Q8_0 => 128,
        BlockType::Q4_0 | BlockType::Q4_1 | BlockType::Q4_K => 15,
        BlockType::Q5_0 | BlockType::Q5_1 | BlockType::Q5_K => 31,
        BlockType::Q6_K => 32,
    }
}

/// The exact integer dot products of one 32-element block of a tile's 8 rows with the
/// block's inputs.
trait Dot: Copy {
    /// Of the block's two halves (terms 0..4: inputs 0..16 in `x0`; terms 4..8: inputs
    /// 16..32 in `x1`), rows 0..4 and rows 4..8 of `Σ_i Σ_k w[i]_k * x[4i + k]` (each
    /// row in its own lane), where the inputs have |x| <= 127 (as every `quantize_q8`
    /// produces) and the weights are unpacked `K` quants (|w| <= `weight_max(K::T)`).
    ///
    /// # Safety
    /// The CPU must support the instructions of the implementation.
    unsafe fn halves<K: Kind>(w: &Terms, x0: int8x16_t, x1: int8x16_t) -> [[int32x4_t; 2]; 2];

    /// The sum of the two [`halves`](Dot::halves): rows 0..4 and rows 4..8 of the
    /// whole block's dot product.
    ///
    /// # Safety
    /// As [`Dot::halves`].
    unsafe fn block<K: Kind>(w: &Terms, x0: int8x16_t, x1: int8x16_t) -> [int32x4_t; 2];
}

/// Plain NEON: each term's inputs broadcast to every lane, products widened to i16
/// (`smull` / `smlal`), then pairwise adds (which pair neighbours inside a lane's 4
/// bytes, so inside one row) widening to i32.
#[derive(Clone, Copy)]
struct Widen;

/// `x[i]`: inputs `4i..4i + 4` of a block (`x0 | x1`) in every 32-bit lane.
///
/// # Safety
/// NEON.
#[inline(always)]
unsafe fn broadcast_terms(x0: int8x16_t, x1: int8x16_t) -> [int8x16_t; 8] {
    // SAFETY: NEON (baseline on this build); register operations only.
    unsafe {
        let (a, b) = (vreinterpretq_s32_s8(x0), vreinterpretq_s32_s8(x1));
        [
            vreinterpretq_s8_s32(vdupq_laneq_s32::<0>(a)),
            vreinterpretq_s8_s32(vdupq_laneq_s32::<1>(a)),
            vreinterpretq_s8_s32(vdupq_laneq_s32::<2>(a)),
            vreinterpretq_s8_s32(vdupq_laneq_s32::<3>(a)),
            vreinterpretq_s8_s32(vdupq_laneq_s32::<0>(b)),
            vreinterpretq_s8_s32(vdupq_laneq_s32::<1>(b)),
            vreinterpretq_s8_s32(vdupq_laneq_s32::<2>(b)),
            vreinterpretq_s8_s32(vdupq_laneq_s32::<3>(b)),
        ]
    }
}

/// Rows `4h..4h + 4` (one per lane) of `Σ_{i in first..end} Σ_k w[i][h]_k * x[i]_k`,
/// exactly, for `K` weights and inputs |x| <= 127.
///
/// Of a half's 4 rows r0, r1, r2, r3, `smull` of the low 8 bytes gives the i16
/// products of r0 (lanes 0..4) and r1 (lanes 4..8), of the high 8 bytes those of r2
/// and r3; each product is at most `p = weight_max(K::T) * 127` in magnitude (4 bits:
/// 1905, 5 bits: 3937, `Q6_K`: 4064, `Q8_0`: 16256). When all `n` terms and then one
/// pairwise add stay in i16 (`2 n p <= i16::MAX`: 4 bits, 8 terms; `Q6_K`, 4 terms),
/// they do, and one widening add gives i32; otherwise the terms go in i16 in chunks
/// of `i16::MAX / p` (5 bits: all 8; `Q8_0`: 2), each chunk widened pairwise into i32
/// (`sadalp`), and a last pairwise add joins each row's two i32.
///
/// # Safety
/// NEON; `first < end <= 8`, `h < 2`.
#[inline(always)]
unsafe fn widen_sum<K: Kind>(
    w: &Terms,
    x: &[int8x16_t; 8],
    first: usize,
    end: usize,
    h: usize,
) -> int32x4_t {
    let p = weight_max(K::T) * 127;
    let n = (end - first) as i32;
    // SAFETY: NEON (baseline on this build); register operations only, every index
    // below 8 (caller). By the bounds above no i16 sum overflows, so the result is
    // exact.
    unsafe {
        if 2 * n * p <= i16::MAX as i32 {
            let mut lo = vmull_s8(vget_low_s8(w[first][h]), vget_low_s8(x[first]));
            let mut hi = vmull_high_s8(w[first][h], x[first]);
            for i in first + 1..end {
                lo = vmlal_s8(lo, vget_low_s8(w[i][h]), vget_low_s8(x[i]));
                hi = vmlal_high_s8(hi, w[i][h], x[i]);
            }
            // [r0, r0, r1, r1, r2, r2, r3, r3] -> [r0, r1, r2, r3].
            vpaddlq_s16(vpaddq_s16(lo, hi))
        } else {
            let per = (i16::MAX as i32 / p).max(1) as usize;
            let mut acc = [vdupq_n_s32(0); 2];
            let mut i = first;
            while i < end {
                let stop = (i + per).min(end);
                let mut lo = vmull_s8(vget_low_s8(w[i][h]), vget_low_s8(x[i]));
                let mut hi = vmull_high_s8(w[i][h], x[i]);
                for k in i + 1..stop {
                    lo = vmlal_s8(lo, vget_low_s8(w[k][h]), vget_low_s8(x[k]));
                    hi = vmlal_high_s8(hi, w[k][h], x[k]);
                }
                // [r0, r0, r1, r1] and [r2, r2, r3, r3].
                acc[0] = vpadalq_s16(acc[0], lo);
                acc[1] = vpadalq_s16(acc[1], hi);
                i = stop;
            }
            vpaddq_s32(acc[0], acc[1])
        }
    }
}

impl Dot for Widen {
    #[inline(always)]
    unsafe fn halves<K: Kind>(w: &Terms, x0: int8x16_t, x1: int8x16_t) -> [[int32x4_t; 2]; 2] {
        // SAFETY: NEON (baseline); the term ranges are within 0..8, the halves 0 and 1.
        unsafe {
            let x = broadcast_terms(x0, x1);
            [
                [
                    widen_sum::<K>(w, &x, 0, 4, 0),
                    widen_sum::<K>(w, &x, 0, 4, 1),
                ],
                [
                    widen_sum::<K>(w, &x, 4, 8, 0),
                    widen_sum::<K>(w, &x, 4, 8, 1),
                ],
            ]
        }
    }

    #[inline(always)]
    unsafe fn block<K: Kind>(w: &Terms, x0: int8x16_t, x1: int8x16_t) -> [int32x4_t; 2] {
        // SAFETY: NEON (baseline); the term range is 0..8, the halves 0 and 1.
        unsafe {
            let x = broadcast_terms(x0, x1);
            [
                widen_sum::<K>(w, &x, 0, 8, 0),
                widen_sum::<K>(w, &x, 0, 8, 1),
            ]
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
    unsafe fn halves<K: Kind>(w: &Terms, x0: int8x16_t, x1: int8x16_t) -> [[int32x4_t; 2]; 2] {
        // SAFETY: dotprod is the caller's contract; the rest is NEON (baseline) on
        // registers.
        unsafe {
            let acc = [vdupq_n_s32(0); 4];
            let acc = sdot_terms::<0>(acc, w, x0, x1);
            let acc = sdot_terms::<1>(acc, w, x0, x1);
            let acc = sdot_terms::<2>(acc, w, x0, x1);
            let acc = sdot_terms::<3>(acc, w, x0, x1);
            [[acc[0], acc[1]], [acc[2], acc[3]]]
        }
    }

    #[inline(always)]
    unsafe fn block<K: Kind>(w: &Terms, x0: int8x16_t, x1: int8x16_t) -> [int32x4_t; 2] {
        // SAFETY: dotprod is the caller's contract; the rest is NEON (baseline) on
        // registers. Integer adds are exact in any order.
        unsafe {
            let [a, b] = Self::halves::<K>(w, x0, x1);
            [vaddq_s32(a[0], b[0]), vaddq_s32(a[1], b[1])]
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

/// The group (32 bytes) at `p`: rows 0..4 and rows 4..8.
///
/// # Safety
/// NEON; `p` readable for 32 bytes.
#[inline(always)]
unsafe fn load_group(p: *const u8) -> [uint8x16_t; 2] {
    // SAFETY: the 32 bytes at `p` are readable (caller), read unaligned; NEON.
    unsafe { [vld1q_u8(p), vld1q_u8(p.add(16))] }
}

/// `v` as signed bytes.
///
/// # Safety
/// NEON.
#[inline(always)]
unsafe fn s8(v: uint8x16_t) -> int8x16_t {
    // SAFETY: NEON (baseline); a register reinterpretation.
    unsafe { vreinterpretq_s8_u8(v) }
}

/// The terms of a `Q8_0` block whose 8 groups start at `qb`: group `i` is term `i`.
///
/// # Safety
/// NEON; `qb` readable for 256 bytes.
#[inline(always)]
unsafe fn q8_terms(qb: *const u8) -> Terms {
    // SAFETY: NEON; group `g < 8` is the 32 bytes at `32 g`, inside the 256 (caller).
    unsafe {
        let mut w = [[vdupq_n_s8(0); 2]; 8];
        for (g, wg) in w.iter_mut().enumerate() {
            let v = load_group(qb.add(32 * g));
            *wg = [s8(v[0]), s8(v[1])];
        }
        w
    }
}

/// The low and high nibbles of the `N` groups at `p`, as terms: `lo[g]` and `hi[g]`.
///
/// # Safety
/// NEON; `p` readable for `32 N` bytes.
#[inline(always)]
unsafe fn nibble_groups<const N: usize>(
    p: *const u8,
) -> ([[int8x16_t; 2]; N], [[int8x16_t; 2]; N]) {
    // SAFETY: NEON; group `g < N` is the 32 bytes at `32 g` (caller).
    unsafe {
        let m = vdupq_n_u8(0x0F);
        let mut lo = [[vdupq_n_s8(0); 2]; N];
        let mut hi = [[vdupq_n_s8(0); 2]; N];
        for g in 0..N {
            let v = load_group(p.add(32 * g));
            for h in 0..2 {
                lo[g][h] = s8(vandq_u8(v[h], m));
                hi[g][h] = s8(vshrq_n_u8::<4>(v[h]));
            }
        }
        (lo, hi)
    }
}

/// The terms of a 32-element 4-bit block whose 4 groups start at `p` (GGUF order:
/// byte `j` holds elements `j` and `j + 16`): the low nibbles of groups 0..4, then
/// their high nibbles.
///
/// # Safety
/// NEON; `p` readable for 128 bytes.
#[inline(always)]
unsafe fn q4_terms(p: *const u8) -> Terms {
    // SAFETY: NEON; the 4 groups are the 128 bytes at `p` (caller).
    unsafe {
        let (lo, hi) = nibble_groups::<4>(p);
        let mut w = [[vdupq_n_s8(0); 2]; 8];
        w[..4].copy_from_slice(&lo);
        w[4..].copy_from_slice(&hi);
        w
    }
}

/// Per byte, `0x10` where bit `4i + k` of its lane's little-endian `u32` in `qh` is
/// set (`k` the byte's place in the lane), else 0: the 5th bits of term `i` (elements
/// `4i..4i + 4`) of a `Q5_0` / `Q5_1` block, one row per lane.
///
/// # Safety
/// NEON; `i < 8`.
#[inline(always)]
unsafe fn q5_fifth_bits(qh: uint8x16_t, i: usize) -> uint8x16_t {
    // Byte `i / 2` of each lane (bits `4i..4i + 4` lie in it, at `4 (i % 2)..`) into
    // all 4 bytes of the lane.
    const LANE_BASE: [u8; 16] = [0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12];
    // SAFETY: NEON; `LANE_BASE` is 16 readable bytes; the table indices are below 16.
    unsafe {
        let idx = vaddq_u8(vld1q_u8(LANE_BASE.as_ptr()), vdupq_n_u8((i / 2) as u8));
        let bytes = vqtbl1q_u8(qh, idx);
        // Byte `k` tests bit `4 (i % 2) + k`: bytes 1, 2, 4, 8 (or 0x10.. 0x80).
        let mask = vreinterpretq_u8_u32(vdupq_n_u32(0x0804_0201 << (4 * (i % 2))));
        vandq_u8(vtstq_u8(bytes, mask), vdupq_n_u8(0x10))
    }
}

/// The terms of a `Q5_0` / `Q5_1` block at `qb` (`qh` in group 0, one word per row
/// lane; the nibbles in groups 1..5): the 4-bit terms with their 5th bits.
///
/// # Safety
/// NEON; `qb` readable for 160 bytes.
#[inline(always)]
unsafe fn q5_terms(qb: *const u8) -> Terms {
    // SAFETY: NEON; `qh` is the 32 bytes at `qb`, the nibbles the 128 after (caller).
    unsafe {
        let qh = load_group(qb);
        let mut w = q4_terms(qb.add(32));
        for (i, wi) in w.iter_mut().enumerate() {
            for h in 0..2 {
                wi[h] = vorrq_s8(wi[h], s8(q5_fifth_bits(qh[h], i)));
            }
        }
        w
    }
}

/// Per byte, bit `s` of `v` moved to bit 4 (`0x10` or 0): a `Q5_K` sub-block's 5th
/// bits.
///
/// # Safety
/// NEON; `s < 8`.
#[inline(always)]
unsafe fn bit_to_4(v: uint8x16_t, s: usize) -> uint8x16_t {
    // SAFETY: NEON; `USHL` by `4 - s` (a negative count shifts right) per byte.
    unsafe { vandq_u8(vshlq_u8(v, vdupq_n_s8(4 - s as i8)), vdupq_n_u8(0x10)) }
}

/// Bits `n..` of every 32-bit lane of `v` under `mask`.
///
/// # Safety
/// NEON; `n < 32`.
#[inline(always)]
unsafe fn lane_bits(v: uint32x4_t, n: u32, mask: u32) -> int32x4_t {
    // SAFETY: NEON; `USHL` by `-n` is a logical right shift by `n`.
    unsafe {
        let shifted = vshlq_u32(v, vdupq_n_s32(-(n as i32)));
        vreinterpretq_s32_u32(vandq_u32(shifted, vdupq_n_u32(mask)))
    }
}

/// The 6-bit scale and minimum of sub-block `j < 8` of a `Q4_K` / `Q5_K` block of 8
/// rows, from its 3 scale groups `sg` (12 bytes per row), per lane: rows 0..4 and rows
/// 4..8 of each (`tvl_format::quant::scale_min_k4` per lane).
///
/// # Safety
/// NEON; `j < 8`.
#[inline(always)]
unsafe fn k_scale_min(sg: &[[uint8x16_t; 2]; 3], j: usize) -> ([int32x4_t; 2], [int32x4_t; 2]) {
    // SAFETY: NEON; every shift count below is under 32.
    unsafe {
        let (mut sc, mut mn) = ([vdupq_n_s32(0); 2], [vdupq_n_s32(0); 2]);
        for h in 0..2 {
            let g0 = vreinterpretq_u32_u8(sg[0][h]);
            let g1 = vreinterpretq_u32_u8(sg[1][h]);
            let g2 = vreinterpretq_u32_u8(sg[2][h]);
            if j < 4 {
                // The low 6 bits of bytes `j` (group 0) and `j + 4` (group 1).
                let n = 8 * j as u32;
                sc[h] = lane_bits(g0, n, 63);
                mn[h] = lane_bits(g1, n, 63);
            } else {
                // The nibbles of byte `j + 4` (group 2) under the top 2 bits of bytes
                // `j - 4` (group 0) and `j` (group 1).
                let n = 8 * (j as u32 - 4);
                let top0 = vshlq_n_s32::<4>(lane_bits(g0, n + 6, 3));
                let top1 = vshlq_n_s32::<4>(lane_bits(g1, n + 6, 3));
                sc[h] = vorrq_s32(lane_bits(g2, n, 15), top0);
                mn[h] = vorrq_s32(lane_bits(g2, n + 4, 15), top1);
            }
        }
        (sc, mn)
    }
}

/// The terms of sub-block `s < 8` (elements `32s..32s + 32`) of a `Q6_K` block at
/// `qb`: in half `s / 4`, quarter `k = s % 4`, nibble `k / 2` of the `ql` groups and
/// bits `2k..2k + 2` of the `qh` groups (from group 32) as bits 4..6, minus 32.
///
/// # Safety
/// NEON; `qb` readable for 1536 bytes (the `ql` and `qh` runs of 8 rows); `s < 8`.
#[inline(always)]
unsafe fn q6_terms(qb: *const u8, s: usize) -> Terms {
    let (half, k) = (s / 4, s % 4);
    // SAFETY: NEON; `ql` groups `16 half + 8 (k % 2) + i < 32` and `qh` groups
    // `32 + 8 half + i < 48` (`i < 8`) lie in the 1536 bytes at `qb` (caller).
    unsafe {
        let ql = qb.add(32 * (16 * half + 8 * (k % 2)));
        let qh = qb.add(32 * (32 + 8 * half));
        let (m4, m2, off) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x30), vdupq_n_s8(32));
        let shift = vdupq_n_s8(4 - 2 * k as i8);
        let mut w = [[vdupq_n_s8(0); 2]; 8];
        for (i, wi) in w.iter_mut().enumerate() {
            let (l, hb) = (load_group(ql.add(32 * i)), load_group(qh.add(32 * i)));
            for h in 0..2 {
                let lo = if k / 2 == 0 {
                    vandq_u8(l[h], m4)
                } else {
                    vshrq_n_u8::<4>(l[h])
                };
                let hi = vandq_u8(vshlq_u8(hb[h], shift), m2);
                wi[h] = vsubq_s8(s8(vorrq_u8(lo, hi)), off);
            }
        }
        w
    }
}

/// Byte `n < 4` of every 32-bit lane of `v`, sign-extended: `Q6_K` scale `4g + n` of
/// every row from scale group `g`.
///
/// # Safety
/// NEON; `n < 4`.
#[inline(always)]
unsafe fn lane_byte_i8(v: uint8x16_t, n: usize) -> int32x4_t {
    // SAFETY: NEON; the left shift count `24 - 8n` is in 0..=24.
    unsafe {
        let up = vshlq_s32(vreinterpretq_s32_u8(v), vdupq_n_s32(24 - 8 * n as i32));
        vshrq_n_s32::<24>(up)
    }
}

/// Input block `xb` of `x`: inputs 0..16 and 16..32.
///
/// # Safety
/// NEON; `xb` a block of `x`.
#[inline(always)]
unsafe fn inputs(x: &Q8Vec, xb: usize) -> (int8x16_t, int8x16_t) {
    // SAFETY: block `xb` is the 32 bytes at `32 xb` of `x.qs` (caller).
    unsafe {
        let p = x.qs.as_ptr().add(xb * BLOCK);
        (vld1q_s8(p), vld1q_s8(p.add(16)))
    }
}

/// `fma(isum, f * d, acc)` for 4 rows: the canonical step of an integer part `isum`
/// (exact in f32) with the block field `f` and the input block's scale `d`.
///
/// # Safety
/// NEON.
#[inline(always)]
unsafe fn step(acc: float32x4_t, isum: int32x4_t, f: float32x4_t, d: f32) -> float32x4_t {
    // SAFETY: NEON (baseline); `vfmaq_f32(a, b, c)` is `a + b * c` rounded once.
    unsafe { vfmaq_f32(acc, vcvtq_f32_s32(isum), vmulq_f32(f, vdupq_n_f32(d))) }
}

/// A tile's 8 row sums `acc` (rows 0..4, rows 4..8) after weight block `b` (quants at
/// `qb`, fields at `sb`): the canonical integer and float parts of each of its
/// 32-element input blocks, in order.
///
/// # Safety
/// NEON and whatever `D` needs; `qb` readable for `8 * K::T.quant_bytes()` bytes (the
/// block of an 8-row tile) and `sb` for `8 * K::T.fields()` values; `x` has at least
/// `(b + 1) * K::T.elems()` elements.
#[inline(always)]
unsafe fn block_step<D: Dot, K: Kind>(
    mut acc: [float32x4_t; 2],
    qb: *const u8,
    sb: *const u16,
    x: &Q8Vec,
    b: usize,
) -> [float32x4_t; 2] {
    // Input blocks of 32 per weight block.
    let per = K::T.elems() / BLOCK;
    // SAFETY: every load below lies in the block's quant bytes (each run of a block's
    // bytes at offset `o` is `R` times as long in the tile, at `R o`) or fields
    // (`d_w` of rows 0..8, then the second field); input blocks `b per..(b + 1) per`
    // lie in `x` (caller). Features: the caller's.
    unsafe {
        let (mut dw, mut mw) = ([vdupq_n_f32(0.0); 2], [vdupq_n_f32(0.0); 2]);
        for h in 0..2 {
            dw[h] = load_f16x4(sb.add(4 * h));
            if K::T.fields() == 2 {
                mw[h] = load_f16x4(sb.add(R + 4 * h));
            }
        }
        match K::T {
            BlockType::Q8_0 | BlockType::Q4_0 | BlockType::Q4_1 => {
                let w = if K::T == BlockType::Q8_0 {
                    q8_terms(qb)
                } else {
                    q4_terms(qb)
                };
                acc = small_step::<D, K>(acc, &w, dw, mw, x, b);
            }
            BlockType::Q5_0 | BlockType::Q5_1 => {
                acc = small_step::<D, K>(acc, &q5_terms(qb), dw, mw, x, b);
            }
            BlockType::Q4_K | BlockType::Q5_K => {
                // Runs: scales (12 bytes a row: 3 groups) at 0; Q5_K's `qh` (32: 8
                // groups) next; `qs` (128: 32 groups) last.
                let sg = [
                    load_group(qb),
                    load_group(qb.add(32)),
                    load_group(qb.add(64)),
                ];
                let five = K::T == BlockType::Q5_K;
                let qh = qb.add(R * 12);
                let qs = if five { qb.add(R * 44) } else { qh };
                for c in 0..4 {
                    // Sub-blocks 2c (low nibbles) and 2c + 1 (high) share the 32 bytes
                    // `32c..32c + 32` of `qs`: 8 groups.
                    let (lo, hi) = nibble_groups::<8>(qs.add(32 * 8 * c));
                    for (t, mut w) in [lo, hi].into_iter().enumerate() {
                        let s = 2 * c + t;
                        if five {
                            for (i, wi) in w.iter_mut().enumerate() {
                                let bits = load_group(qh.add(32 * i));
                                for h in 0..2 {
                                    wi[h] = vorrq_s8(wi[h], s8(bit_to_4(bits[h], s)));
                                }
                            }
                        }
                        let xb = b * per + s;
                        let (x0, x1) = inputs(x, xb);
                        let dot = D::block::<K>(&w, x0, x1);
                        let (sc, mn) = k_scale_min(&sg, s);
                        let neg_sum = vdupq_n_s32(-x.sum[xb]);
                        for h in 0..2 {
                            // isum = sc * Σ u q, msum = -(mn * sum): exact in i32.
                            let isum = vmulq_s32(sc[h], dot[h]);
                            let msum = vmulq_s32(mn[h], neg_sum);
                            acc[h] = step(acc[h], isum, dw[h], x.d[xb]);
                            acc[h] = step(acc[h], msum, mw[h], x.d[xb]);
                        }
                    }
                }
            }
            BlockType::Q6_K => {
                // Runs: `ql` (128 bytes a row) at 0, `qh` (64) next, the 16 int8
                // scales (4 groups) last.
                let sp = qb.add(R * 192);
                for s in 0..per {
                    let w = q6_terms(qb, s);
                    let xb = b * per + s;
                    let (x0, x1) = inputs(x, xb);
                    let [lo, hi] = D::halves::<K>(&w, x0, x1);
                    // Scales 2s and 2s + 1: bytes 2 (s % 2) and 2 (s % 2) + 1 of group s / 2.
                    let sg = load_group(sp.add(32 * (s / 2)));
                    for h in 0..2 {
                        let sc0 = lane_byte_i8(sg[h], 2 * (s % 2));
                        let sc1 = lane_byte_i8(sg[h], 2 * (s % 2) + 1);
                        // sc_2s * Σlo + sc_2s+1 * Σhi: exact in i32 (< 2^24).
                        let isum = vmlaq_s32(vmulq_s32(sc0, lo[h]), sc1, hi[h]);
                        acc[h] = step(acc[h], isum, dw[h], x.d[xb]);
                    }
                }
            }
        }
        acc
    }
}

/// The canonical step of one 32-element block `xb` of the types without sub-blocks,
/// for 8 rows: `isum` (minus `8 sum` for `Q4_0`, `16 sum` for `Q5_0`), then
/// `fma(isum, d_w * d, acc)`, then `fma(m_w, s, acc)` for the types with a minimum.
///
/// # Safety
/// NEON and whatever `D` needs; `xb` a block of `x`.
#[inline(always)]
unsafe fn small_step<D: Dot, K: Kind>(
    mut acc: [float32x4_t; 2],
    w: &Terms,
    dw: [float32x4_t; 2],
    mw: [float32x4_t; 2],
    x: &Q8Vec,
    xb: usize,
) -> [float32x4_t; 2] {
    let (offset, min) = match K::T {
        BlockType::Q8_0 => (0, false),
        BlockType::Q4_0 => (8, false),
        BlockType::Q4_1 | BlockType::Q5_1 => (0, true),
        BlockType::Q5_0 => (16, false),
        BlockType::Q4_K | BlockType::Q5_K | BlockType::Q6_K => {
            unreachable!("small_step of a K type")
        }
    };
    // SAFETY: NEON and `D`'s features (caller); block `xb` of `x` (caller).
    unsafe {
        let (x0, x1) = inputs(x, xb);
        let mut isum = D::block::<K>(w, x0, x1);
        let c = vdupq_n_s32(offset * x.sum[xb]);
        for h in 0..2 {
            if offset != 0 {
                isum[h] = vsubq_s32(isum[h], c);
            }
            acc[h] = step(acc[h], isum[h], dw[h], x.d[xb]);
            if min {
                acc[h] = vfmaq_f32(acc[h], mw[h], vdupq_n_f32(x.s[xb]));
            }
        }
        acc
    }
}

/// The canonical product for 8-row tiles.
///
/// # Safety
/// NEON and whatever `D` needs; `a.g.tile_rows == 8` and `a.g.kind() == K::T`; `x`
/// and `y` checked by `quant::check`.
#[inline(always)]
unsafe fn matvec8<D: Dot, K: Kind>(a: &QuantArgs<'_>, x: &Q8Vec, y: &mut [f32]) {
    let (q, g) = (&a.q, &a.g);
    debug_assert_eq!((g.tile_rows, g.kind()), (R, K::T));
    let nb = g.blocks_per_row();
    let bb = g.block_bytes();
    let f = g.fields();
    for (t, yt) in y.chunks_mut(R).enumerate() {
        // SAFETY: tile `t < n_tiles`: its quants (`R * nb * bb` bytes from
        // `t * tile_quant_bytes`, block `b` the `R * bb` bytes from `b * R * bb`) and
        // scales (`R * nb * f` values from `t * tile_scales`, block `b` the `R * f`
        // from `b * f * R`) lie inside the slices (`Matrix::new` checked their
        // lengths); `x` has `g.cols = nb * elems` elements (`quant::check`).
        // Features: the caller's.
        unsafe {
            let qt = q.quants.as_ptr().add(t * g.tile_quant_bytes());
            let st = q.scales.as_ptr().add(t * g.tile_scales()).cast::<u16>();
            let mut acc = [vdupq_n_f32(0.0); 2];
            for b in 0..nb {
                acc = block_step::<D, K>(acc, qt.add(b * R * bb), st.add(b * f * R), x, b);
            }
            let mut out = [0.0f32; R];
            vst1q_f32(out.as_mut_ptr(), acc[0]);
            vst1q_f32(out.as_mut_ptr().add(4), acc[1]);
            yt.copy_from_slice(&out[..yt.len()]);
        }
    }
}

/// Dispatch on the block type and tile size: every block type has a kernel for 8-row
/// tiles (`by_kind!` is exhaustive), other tile sizes take the canonical plain-Rust
/// path, with the same bits.
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
    unsafe { quant::by_kind!(a.g.kind(), matvec8::<D>(&a, x, y)) }
}

impl QuantKernels for Neon {
    fn quantize_q8(self, x: &[f32], out: &mut Q8Vec) {
        out.set_len(x.len());
        for (b, xs) in x.chunks_exact(BLOCK).enumerate() {
            // SAFETY: NEON (baseline on this build); `xs` holds 32 floats and
            // `out.qs` 32 bytes at `32 b`.
            unsafe {
                let p = xs.as_ptr();
                // (Loops, not `map`: a closure does not inherit its caller's target
                // features, so intrinsics inside it may not be inlined.)
                let mut v = [vdupq_n_f32(0.0); 8];
                for (k, vk) in v.iter_mut().enumerate() {
                    *vk = vld1q_f32(p.add(4 * k));
                }
                let mut m = vabsq_f32(v[0]);
                for vi in &v[1..] {
                    m = vmaxq_f32(m, vabsq_f32(*vi));
                }
                let (d, id) = block_scale(vmaxvq_f32(m));
                let idv = vdupq_n_f32(id);
                // FCVTNS: round to nearest, ties to even.
                let mut i = [vdupq_n_s32(0); 8];
                for (ik, vk) in i.iter_mut().zip(&v) {
                    *ik = vcvtnq_s32_f32(vmulq_f32(*vk, idv));
                }
                let mut sum = vdupq_n_s32(0);
                for ii in &i {
                    sum = vaddq_s32(sum, *ii);
                }
                // Narrow (values are within -127..=127: no saturation).
                let mut h = [vdupq_n_s16(0); 4];
                for (k, hk) in h.iter_mut().enumerate() {
                    *hk = vcombine_s16(vqmovn_s32(i[2 * k]), vqmovn_s32(i[2 * k + 1]));
                }
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
