//! Quantized products on x86-64: AVX2 (`maddubs` + `madd`) and AVX-512 VNNI
//! (`vpdpbusd`). Both compute each 32-element input block's exact integer dot product
//! and then the canonical float combination (see `crate::quant`) for 8 rows at once,
//! one row per lane, so they match Scalar bit for bit.
//!
//! The layout does the transposition: a tile's quants hold the same 4 bytes of its 8
//! rows side by side (`tvl_format::quant::LANE`), so one 32-byte load is one row per
//! 32-bit lane, and multiplying it by the input's matching 4 bytes (broadcast) sums
//! each row's products in its own lane. A block's 8 row sums come out in one vector:
//! no horizontal adds, no permutes. Every run of a block's quant bytes (a K type's
//! packed scales, the 5th-bit plane, the nibbles) is a run of whole 32-byte groups of
//! the tile, so the unpacking works on 8 rows at once too: shifts and masks per lane
//! (the scales), per byte (the bits).
//!
//! One tile kernel (`tile_batch`) serves both products: the batched one (`matmul_q8`)
//! runs it for up to 4 inputs at a time, each weight block loaded and unpacked once for
//! all of them, and `matvec_q8` for one, so their rows are bit for bit the same. It is
//! written once for a register [`Width`]: [`Ymm`] (256 bits, one tile: AVX2, AVX-512
//! without VNNI, and every one-input product) or [`Zmm`] (512 bits, two neighbouring
//! tiles side by side: the batched product on AVX-512 VNNI + BW), which does every
//! operation of the 256-bit kernel per lane, so the bits are the same; a matrix with an
//! odd number of tiles takes its last tile at 256 bits.
//!
//! Fast path: tiles of 8 rows (what the converter writes). Other tile sizes take the
//! plain-Rust canonical path.

use core::arch::x86_64::*;
use core::ops::Range;

use tvl_format::BlockGeometry;
use tvl_format::quant::{BLOCK, BlockType, LANE};

use super::{Avx2, Avx512};
use crate::Matrix;
use crate::quant::{self, Kind, Q8Vec, QuantArgs, QuantKernels, block_scale};

/// Rows per tile of the fast path: one row per 32-bit lane of a 256-bit vector.
const R: usize = 8;

/// 32-byte groups of one 32-element block's 8-bit (or 5/6-bit, unpacked) weights of
/// an 8-row tile, and of its input (4 elements per group).
const GX: usize = BLOCK / LANE;

/// How far ahead of the block-tile in use the quant stream is prefetched: 3 KiB (24
/// block-tiles of 4-bit quants, 12 of Q8_0). Measured from 1 to 6 KiB, and
/// against `T1` and `NTA` hints, with the variants interleaved in one process on
/// matrices streamed from DRAM: 3 KiB was 2-4% faster than the 1 KiB (4-bit) and
/// 2 KiB (Q8_0) used before, and longer distances were no better.
const PREFETCH_AHEAD: usize = 3 << 10;

/// Prefetch the block-tile [`PREFETCH_AHEAD`] bytes past the one at `qb` (`len`
/// bytes), one request per 64-byte line: the hardware prefetcher alone leaves a single
/// core waiting on DRAM (every line requested: +25-30% streamed, against one request
/// per tile). The addresses may lie past the matrix: a prefetch never faults.
#[inline(always)]
fn prefetch_block(qb: *const u8, len: usize) {
    let ahead = qb.wrapping_add(PREFETCH_AHEAD);
    for line in (0..len).step_by(64) {
        // SAFETY: SSE (baseline on x86-64); a prefetch reads nothing architecturally
        // and never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast()) };
    }
}

/// The register width of the tile kernel: how many 8-row tiles one register holds
/// side by side (one row per 32-bit lane), and the operations the kernel uses at that
/// width. Every operation works per byte, per 16- or 32-bit lane, or per 128-bit lane
/// (the byte shuffle), so a wider register computes each row exactly as a narrower
/// one.
///
/// A value carries where the side-by-side tiles lie: the second tile's quants are
/// `tq` bytes and its scales `ts` values after the first's.
///
/// # Safety (of every method)
/// The CPU must support the width's instructions (`Ymm`: AVX2, FMA, F16C; `Zmm`:
/// those and AVX-512 F, BW, VL, VNNI), and pointers must be valid as each says.
trait Width: Copy {
    /// Tiles per register: 1 or 2.
    const TILES: usize;
    /// Integer vector: 32 bytes of each tile.
    type I: Copy;
    /// Float vector: one f32 per row.
    type F: Copy;

    fn new(tq: usize, ts: usize) -> Self;
    /// The 32 bytes at `p` of each tile (`p` in the first).
    unsafe fn load(self, p: *const u8) -> Self::I;
    /// The 8 f16 values at `p` of each tile, as f32.
    unsafe fn load_f16(self, p: *const u16) -> Self::F;
    /// [`prefetch_block`] for each tile.
    fn prefetch(self, p: *const u8, len: usize);
    /// Store the `8 * TILES` floats of `v` at `p`.
    unsafe fn store(p: *mut f32, v: Self::F);
    /// The 4 bytes at `p` in every 32-bit lane.
    unsafe fn bcast4(p: *const i8) -> Self::I;
    /// The 32 bytes of `p` (aligned) in each tile's half.
    unsafe fn load_wide(p: *const Wide) -> Self::I;
    /// `v` in every 128-bit lane.
    unsafe fn per_128(v: __m128i) -> Self::I;
    unsafe fn zero() -> Self::I;
    unsafe fn splat8(v: i8) -> Self::I;
    unsafe fn splat16(v: i16) -> Self::I;
    unsafe fn splat32(v: i32) -> Self::I;
    unsafe fn and(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn or(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn add8(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn add16(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn add32(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn sub32(a: Self::I, b: Self::I) -> Self::I;
    /// Each 16-bit lane shifted right by 4.
    unsafe fn shr16_4(v: Self::I) -> Self::I;
    /// Each 16-bit lane shifted left / right by `n < 16`.
    unsafe fn shl16(v: Self::I, n: u32) -> Self::I;
    unsafe fn shr16(v: Self::I, n: u32) -> Self::I;
    /// Each 32-bit lane shifted left / right (logical) by `n < 32`.
    unsafe fn shl32(v: Self::I, n: u32) -> Self::I;
    unsafe fn shr32(v: Self::I, n: u32) -> Self::I;
    /// Each 32-bit lane shifted left by 4 / right by 24 (arithmetic).
    unsafe fn shl32_4(v: Self::I) -> Self::I;
    unsafe fn sra32_24(v: Self::I) -> Self::I;
    /// `pshufb`: per 128-bit lane, byte `i` = byte `ctrl[i] & 15` (0 if bit 7 is set).
    unsafe fn shuffle8(v: Self::I, ctrl: Self::I) -> Self::I;
    /// Per byte, that byte of `v` where `a` and `b` are equal, else 0.
    unsafe fn select_eq8(a: Self::I, b: Self::I, v: Self::I) -> Self::I;
    /// Per byte, `|w|` (wrapping: -128 stays 0x80, which `maddubs` and `vpdpbusd`
    /// read unsigned, 128).
    unsafe fn abs8(w: Self::I) -> Self::I;
    /// Per byte, `x` negated where `w < 0` (and any value where `w == 0`, whose
    /// products with `|w|` are 0): the sign of `w` moved onto `x`.
    unsafe fn sign8(x: Self::I, w: Self::I) -> Self::I;
    /// `vpdpbusd`: per 32-bit lane, `acc` + the 4 products of unsigned `w` and signed
    /// `x` bytes.
    unsafe fn dpbusd(acc: Self::I, w: Self::I, x: Self::I) -> Self::I;
    /// `pmaddubsw`: per 16-bit lane, the 2 products of unsigned `w` and signed `x`
    /// bytes, summed with saturation.
    unsafe fn maddubs(w: Self::I, x: Self::I) -> Self::I;
    /// `pmaddwd`: per 32-bit lane, the 2 products of the 16-bit lanes of `a` and `b`.
    unsafe fn madd16(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn fzero() -> Self::F;
    unsafe fn fsplat(v: f32) -> Self::F;
    unsafe fn fadd(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn fmul(a: Self::F, b: Self::F) -> Self::F;
    /// `a * b + c`, fused.
    unsafe fn fma(a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// Each i32 lane as f32 (round to nearest even; exact below 2^24).
    unsafe fn cvt(v: Self::I) -> Self::F;
}

/// 256 bits: one tile per register.
#[derive(Clone, Copy)]
struct Ymm;

// SAFETY (of every method): the trait's contract (AVX2, FMA and F16C; the pointers
// as each method says).
impl Width for Ymm {
    const TILES: usize = 1;
    type I = __m256i;
    type F = __m256;

    #[inline(always)]
    fn new(_: usize, _: usize) -> Self {
        Ymm
    }
    #[inline(always)]
    unsafe fn load(self, p: *const u8) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_loadu_si256(p.cast()) }
    }
    #[inline(always)]
    unsafe fn load_f16(self, p: *const u16) -> __m256 {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
    #[inline(always)]
    fn prefetch(self, p: *const u8, len: usize) {
        prefetch_block(p, len)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn bcast4(p: *const i8) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_set1_epi32(p.cast::<i32>().read_unaligned()) }
    }
    #[inline(always)]
    unsafe fn load_wide(p: *const Wide) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_load_si256(p.cast()) }
    }
    #[inline(always)]
    unsafe fn per_128(v: __m128i) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_broadcastsi128_si256(v) }
    }
    #[inline(always)]
    unsafe fn zero() -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_setzero_si256() }
    }
    #[inline(always)]
    unsafe fn splat8(v: i8) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_set1_epi8(v) }
    }
    #[inline(always)]
    unsafe fn splat16(v: i16) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_set1_epi16(v) }
    }
    #[inline(always)]
    unsafe fn splat32(v: i32) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_set1_epi32(v) }
    }
    #[inline(always)]
    unsafe fn and(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_and_si256(a, b) }
    }
    #[inline(always)]
    unsafe fn or(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_or_si256(a, b) }
    }
    #[inline(always)]
    unsafe fn add8(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_add_epi8(a, b) }
    }
    #[inline(always)]
    unsafe fn add16(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_add_epi16(a, b) }
    }
    #[inline(always)]
    unsafe fn add32(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_add_epi32(a, b) }
    }
    #[inline(always)]
    unsafe fn sub32(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_sub_epi32(a, b) }
    }
    #[inline(always)]
    unsafe fn shr16_4(v: __m256i) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_srli_epi16::<4>(v) }
    }
    #[inline(always)]
    unsafe fn shl16(v: __m256i, n: u32) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_sll_epi16(v, _mm_cvtsi32_si128(n as i32)) }
    }
    #[inline(always)]
    unsafe fn shr16(v: __m256i, n: u32) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_srl_epi16(v, _mm_cvtsi32_si128(n as i32)) }
    }
    #[inline(always)]
    unsafe fn shl32(v: __m256i, n: u32) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_sllv_epi32(v, _mm256_set1_epi32(n as i32)) }
    }
    #[inline(always)]
    unsafe fn shr32(v: __m256i, n: u32) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_srlv_epi32(v, _mm256_set1_epi32(n as i32)) }
    }
    #[inline(always)]
    unsafe fn shl32_4(v: __m256i) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_slli_epi32::<4>(v) }
    }
    #[inline(always)]
    unsafe fn sra32_24(v: __m256i) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_srai_epi32::<24>(v) }
    }
    #[inline(always)]
    unsafe fn shuffle8(v: __m256i, ctrl: __m256i) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_shuffle_epi8(v, ctrl) }
    }
    #[inline(always)]
    unsafe fn select_eq8(a: __m256i, b: __m256i, v: __m256i) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_and_si256(_mm256_cmpeq_epi8(a, b), v) }
    }
    #[inline(always)]
    unsafe fn abs8(w: __m256i) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_sign_epi8(w, w) }
    }
    #[inline(always)]
    unsafe fn sign8(x: __m256i, w: __m256i) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_sign_epi8(x, w) }
    }
    #[inline(always)]
    unsafe fn dpbusd(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_dpbusd_epi32(acc, w, x) }
    }
    #[inline(always)]
    unsafe fn maddubs(w: __m256i, x: __m256i) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_maddubs_epi16(w, x) }
    }
    #[inline(always)]
    unsafe fn madd16(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_madd_epi16(a, b) }
    }
    #[inline(always)]
    unsafe fn fzero() -> __m256 {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn fsplat(v: f32) -> __m256 {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn fadd(a: __m256, b: __m256) -> __m256 {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn fmul(a: __m256, b: __m256) -> __m256 {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn cvt(v: __m256i) -> __m256 {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm256_cvtepi32_ps(v) }
    }
}

/// 512 bits: two neighbouring tiles per register, the first in the low 256 bits.
/// The batched product uses it (pp64 on SmolLM2 q4_1, Zen 5, 1 thread: 1077-1121 ->
/// 1639-1665 tok/s); the one-input product does not: reading two tiles' streams per
/// step made decode 17% slower (tg128 322-343 -> 275-276 tok/s, same sitting), so
/// `matvec_q8` keeps one tile per step.
#[derive(Clone, Copy)]
struct Zmm {
    /// Quant bytes from a tile to the next.
    tq: usize,
    /// Scale values from a tile to the next.
    ts: usize,
}

// SAFETY (of every method): the trait's contract (AVX-512 F, BW, VL and VNNI, AVX2,
// FMA and F16C; the pointers as each method says, the second tile `tq` quant bytes
// and `ts` scales after the first).
impl Width for Zmm {
    const TILES: usize = 2;
    type I = __m512i;
    type F = __m512;

    #[inline(always)]
    fn new(tq: usize, ts: usize) -> Self {
        Zmm { tq, ts }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const u8) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe {
            let lo = _mm512_castsi256_si512(_mm256_loadu_si256(p.cast()));
            _mm512_inserti64x4::<1>(lo, _mm256_loadu_si256(p.add(self.tq).cast()))
        }
    }
    #[inline(always)]
    unsafe fn load_f16(self, p: *const u16) -> __m512 {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe {
            let lo = _mm256_castsi128_si256(_mm_loadu_si128(p.cast()));
            let both = _mm256_inserti128_si256::<1>(lo, _mm_loadu_si128(p.add(self.ts).cast()));
            _mm512_cvtph_ps(both)
        }
    }
    #[inline(always)]
    fn prefetch(self, p: *const u8, len: usize) {
        prefetch_block(p, len);
        prefetch_block(p.wrapping_add(self.tq), len);
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn bcast4(p: *const i8) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_set1_epi32(p.cast::<i32>().read_unaligned()) }
    }
    #[inline(always)]
    unsafe fn load_wide(p: *const Wide) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_broadcast_i64x4(_mm256_load_si256(p.cast())) }
    }
    #[inline(always)]
    unsafe fn per_128(v: __m128i) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_broadcast_i32x4(v) }
    }
    #[inline(always)]
    unsafe fn zero() -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_setzero_si512() }
    }
    #[inline(always)]
    unsafe fn splat8(v: i8) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_set1_epi8(v) }
    }
    #[inline(always)]
    unsafe fn splat16(v: i16) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_set1_epi16(v) }
    }
    #[inline(always)]
    unsafe fn splat32(v: i32) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_set1_epi32(v) }
    }
    #[inline(always)]
    unsafe fn and(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_and_si512(a, b) }
    }
    #[inline(always)]
    unsafe fn or(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_or_si512(a, b) }
    }
    #[inline(always)]
    unsafe fn add8(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_add_epi8(a, b) }
    }
    #[inline(always)]
    unsafe fn add16(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_add_epi16(a, b) }
    }
    #[inline(always)]
    unsafe fn add32(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_add_epi32(a, b) }
    }
    #[inline(always)]
    unsafe fn sub32(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_sub_epi32(a, b) }
    }
    #[inline(always)]
    unsafe fn shr16_4(v: __m512i) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_srli_epi16::<4>(v) }
    }
    #[inline(always)]
    unsafe fn shl16(v: __m512i, n: u32) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_sll_epi16(v, _mm_cvtsi32_si128(n as i32)) }
    }
    #[inline(always)]
    unsafe fn shr16(v: __m512i, n: u32) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_srl_epi16(v, _mm_cvtsi32_si128(n as i32)) }
    }
    #[inline(always)]
    unsafe fn shl32(v: __m512i, n: u32) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_sllv_epi32(v, _mm512_set1_epi32(n as i32)) }
    }
    #[inline(always)]
    unsafe fn shr32(v: __m512i, n: u32) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_srlv_epi32(v, _mm512_set1_epi32(n as i32)) }
    }
    #[inline(always)]
    unsafe fn shl32_4(v: __m512i) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_slli_epi32::<4>(v) }
    }
    #[inline(always)]
    unsafe fn sra32_24(v: __m512i) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_srai_epi32::<24>(v) }
    }
    #[inline(always)]
    unsafe fn shuffle8(v: __m512i, ctrl: __m512i) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_shuffle_epi8(v, ctrl) }
    }
    #[inline(always)]
    unsafe fn select_eq8(a: __m512i, b: __m512i, v: __m512i) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_maskz_mov_epi8(_mm512_cmpeq_epi8_mask(a, b), v) }
    }
    #[inline(always)]
    unsafe fn abs8(w: __m512i) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_abs_epi8(w) }
    }
    #[inline(always)]
    unsafe fn sign8(x: __m512i, w: __m512i) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x) }
    }
    #[inline(always)]
    unsafe fn dpbusd(acc: __m512i, w: __m512i, x: __m512i) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_dpbusd_epi32(acc, w, x) }
    }
    #[inline(always)]
    unsafe fn maddubs(w: __m512i, x: __m512i) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_maddubs_epi16(w, x) }
    }
    #[inline(always)]
    unsafe fn madd16(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_madd_epi16(a, b) }
    }
    #[inline(always)]
    unsafe fn fzero() -> __m512 {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn fsplat(v: f32) -> __m512 {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn fadd(a: __m512, b: __m512) -> __m512 {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn fmul(a: __m512, b: __m512) -> __m512 {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn cvt(v: __m512i) -> __m512 {
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe { _mm512_cvtepi32_ps(v) }
    }
}

/// Exact dot products of 4 unsigned bytes with 4 signed bytes per i32 lane.
trait Dot: Copy {
    /// Whether the products read their inputs pre-broadcast ([`Wide`], expanded once
    /// per product call) instead of broadcasting 4 bytes per group and tile.
    const WIDE: bool;

    /// `Σ_g dot(w[g], x[g])` per 32-bit lane, exactly, for weight bytes `w` of at most
    /// `2^BITS - 1` (for `BITS = 8`: at most 128, the magnitudes of signed bytes) and
    /// inputs `|x| <= 127`.
    ///
    /// # Safety
    /// The CPU must support the instructions of the implementation at width `W`.
    unsafe fn dot_sum<W: Width, const N: usize, const BITS: u32>(
        w: &[W::I; N],
        x: &[W::I; N],
    ) -> W::I;
}

/// AVX2: `maddubs` (u8 x i8 pairs summed to i16) then `madd` by 1 (pairs to i32).
#[derive(Clone, Copy)]
struct Madd;

impl Dot for Madd {
    // AVX2 has no broadcasting memory operand: a `vpbroadcastd` per group and tile,
    // against one aligned load that `maddubs` takes as its operand.
    const WIDE: bool = true;

    #[inline(always)]
    unsafe fn dot_sum<W: Width, const N: usize, const BITS: u32>(
        w: &[W::I; N],
        x: &[W::I; N],
    ) -> W::I {
        // How many `maddubs` results add up in i16 without saturating: each is at most
        // `2 * wmax * 127` (4 bits: 3810, 8 of them; 5 bits: 7874, 4; 6 bits: 16002,
        // 2; 8 bits, |w| <= 128: 32512, 1), and the sum must stay <= 32767.
        let wmax = if BITS >= 8 { 128 } else { (1 << BITS) - 1 };
        let per = (32767 / (2 * wmax * 127)).max(1) as usize;
        // SAFETY: the width's instructions (the caller's contract); by the bound above
        // no i16 saturates.
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe {
            let ones = W::splat16(1);
            let mut acc = W::zero();
            let mut g = 0;
            while g < N {
                let mut p = W::maddubs(w[g], x[g]);
                for k in g + 1..(g + per).min(N) {
                    p = W::add16(p, W::maddubs(w[k], x[k]));
                }
                acc = W::add32(acc, W::madd16(p, ones));
                g += per;
            }
            acc
        }
    }
}

/// AVX-512 VNNI: `vpdpbusd` (4 u8 x i8 products summed into i32).
#[derive(Clone, Copy)]
struct Vnni;

impl Dot for Vnni {
    // `vpdpbusd` broadcasts its 4-byte memory operand itself (`{1to8}`, `{1to16}`).
    const WIDE: bool = false;

    #[inline(always)]
    unsafe fn dot_sum<W: Width, const N: usize, const BITS: u32>(
        w: &[W::I; N],
        x: &[W::I; N],
    ) -> W::I {
        // SAFETY: AVX-512 VNNI (+ VL at 256 bits): the caller's contract.
        // SAFETY: the trait's contract (the width's features; the pointers).
        unsafe {
            let mut acc = W::zero();
            for g in 0..N {
                acc = W::dpbusd(acc, w[g], x[g]);
            }
            acc
        }
    }
}

/// The low and high nibbles of `v`, one per byte.
///
/// # Safety
/// The width's instructions.
#[inline(always)]
unsafe fn nibbles<W: Width>(v: W::I) -> (W::I, W::I) {
    // SAFETY: the width's instructions (caller).
    unsafe {
        let mask = W::splat8(0x0F);
        (W::and(v, mask), W::and(W::shr16_4(v), mask))
    }
}

/// The 32 quants of a 32-element 4-bit block of 8 rows at `qb` (16 bytes per row,
/// 4 groups; GGUF order: byte `j` holds elements `j` and `j + 16`), as 8 groups in
/// element order: the low nibbles of groups 0..4, then their high nibbles.
///
/// # Safety
/// The width's instructions; `qb` readable for 128 bytes in each tile of `wd`.
#[inline(always)]
unsafe fn q4_groups<W: Width>(wd: W, qb: *const u8) -> [W::I; GX] {
    // SAFETY: the width's instructions (caller); group `g < 4` is 32 bytes at `32 g`,
    // inside the 128.
    unsafe {
        // (Loops, not `map` / `from_fn`: their closures do not inherit the caller's
        // target features, so the intrinsics inside them would not be inlined.)
        let mut w = [W::zero(); GX];
        for g in 0..4 {
            (w[g], w[g + 4]) = nibbles::<W>(wd.load(qb.add(32 * g)));
        }
        w
    }
}

/// Per byte, `0x10` where bit `e + i` of the lane's little-endian `u32` in `qh` is set
/// (`i` the byte's place in its lane), else 0: the 5th bits of elements `e..e + 4` of
/// every row (`e % 4 == 0`).
///
/// # Safety
/// The width's instructions.
#[inline(always)]
unsafe fn fifth_bits<W: Width>(qh: W::I, e: usize) -> W::I {
    // SAFETY: the width's instructions (caller); SSE2 (baseline) for the pattern.
    unsafe {
        // Byte `e / 8` of each lane into all 4 bytes of the lane (`pshufb` works per
        // 128-bit lane: 32-bit lanes at bytes 0, 4, 8, 12 of each).
        let base = W::per_128(_mm_setr_epi32(0, 0x0404_0404, 0x0808_0808, 0x0C0C_0C0C));
        let ctrl = W::add8(base, W::splat8((e / 8) as i8));
        let b = (e % 8) as u32;
        let bits = u32::from_le_bytes([1 << b, 1 << (b + 1), 1 << (b + 2), 1 << (b + 3)]);
        let mask = W::splat32(bits as i32);
        let t = W::and(W::shuffle8(qh, ctrl), mask);
        W::select_eq8(t, mask, W::splat8(0x10))
    }
}

/// The 5-bit quants of a `Q5_0` / `Q5_1` block of 8 rows at `qb` (`qh`, one lane per
/// row, then the nibbles), as 8 groups in element order.
///
/// # Safety
/// The width's instructions; `qb` readable for 160 bytes in each tile of `wd`.
#[inline(always)]
unsafe fn q5_groups<W: Width>(wd: W, qb: *const u8) -> [W::I; GX] {
    // SAFETY: the width's instructions (caller); `qh` is the 32 bytes at `qb`, the
    // nibbles the 128 after.
    unsafe {
        let qh = wd.load(qb);
        let mut w = q4_groups(wd, qb.add(32));
        for (g, wg) in w.iter_mut().enumerate() {
            *wg = W::or(*wg, fifth_bits::<W>(qh, 4 * g));
        }
        w
    }
}

/// The 8 input groups of input block `xb` of `x` (see [`input_group`]).
///
/// # Safety
/// As [`input_group`].
#[inline(always)]
unsafe fn inputs<D: Dot, K: Kind, W: Width>(x: &Q8Vec, wide: *const Wide, xb: usize) -> [W::I; GX] {
    // SAFETY: groups `0..8` of block `xb` (caller's contract).
    unsafe {
        let mut v = [W::zero(); GX];
        for (g, vg) in v.iter_mut().enumerate() {
            *vg = input_group::<D, K, W>(x, wide, xb, g);
        }
        v
    }
}

/// One group of 4 input bytes in every 32-bit lane of a 256-bit vector: the broadcast
/// form of the input that [`Madd`] reads, 8 times the size of the int8 input.
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct Wide([i32; R]);

std::thread_local! {
    /// This thread's buffer for the broadcast form of a product's inputs: grown on
    /// demand and never shrunk, so a thread allocates only for its largest product.
    static SCRATCH: core::cell::Cell<Vec<Wide>> = const { core::cell::Cell::new(Vec::new()) };
}

/// Whether the kernels of `kind` read the broadcast form of their inputs when `D`
/// can ([`Dot::WIDE`]): not `Q8_0`, whose products broadcast their inputs (measured
/// no faster from the broadcast form).
fn reads_wide(kind: BlockType) -> bool {
    match kind {
        BlockType::Q8_0 => false,
        BlockType::Q4_0
        | BlockType::Q4_1
        | BlockType::Q5_0
        | BlockType::Q5_1
        | BlockType::Q4_K
        | BlockType::Q5_K
        | BlockType::Q6_K => true,
    }
}

/// The broadcast form of the inputs `xs` (each of `cols` elements), one after
/// another, `cols / 4` groups each: group `k` of an input holds its bytes `4k..4k + 4`
/// in every lane. Taken from this thread's scratch (give it back with
/// [`give_back`]); empty unless `D` and `K` read it ([`reads_wide`]).
///
/// # Safety
/// AVX2; every input of `xs` has `cols` elements.
#[inline(always)]
unsafe fn widen<D: Dot, K: Kind>(xs: &[Q8Vec], cols: usize) -> Vec<Wide> {
    let mut wide = SCRATCH.take();
    if D::WIDE && reads_wide(K::T) {
        let per = cols / LANE;
        if wide.len() < xs.len() * per {
            wide.resize(xs.len() * per, Wide::default());
        }
        // (Indexed, not `chunks_exact_mut(per)`: `per` is 0 for a matrix of 0 columns.)
        for (j, x) in xs.iter().enumerate() {
            for (o, q) in wide[j * per..(j + 1) * per]
                .iter_mut()
                .zip(x.qs.chunks_exact(LANE))
            {
                // SAFETY: AVX2 (caller); `q` holds 4 bytes; `o` is 32 bytes, aligned
                // to 32 (`Wide`).
                unsafe { _mm256_store_si256((o as *mut Wide).cast(), Ymm::bcast4(q.as_ptr())) }
            }
        }
    }
    wide
}

/// Return the scratch that [`widen`] took, for the next product of this thread.
#[inline(always)]
fn give_back(wide: Vec<Wide>) {
    SCRATCH.set(wide);
}

/// Input group `g < 8` (elements `4g..4g + 4`) of input block `xb` of `x`, in every
/// lane: from the broadcast form `wide` of `x` (see [`widen`]) when `D` and `K` read
/// it, else broadcast from `x` itself.
///
/// # Safety
/// The width's instructions; `xb` a block of `x`; if `D::WIDE` and
/// `reads_wide(K::T)`, `wide` points at the broadcast form of `x`.
#[inline(always)]
unsafe fn input_group<D: Dot, K: Kind, W: Width>(
    x: &Q8Vec,
    wide: *const Wide,
    xb: usize,
    g: usize,
) -> W::I {
    // SAFETY: group `GX xb + g` of the broadcast form, or bytes `32 xb + 4 g..` of
    // `x`, inside `x` (caller's contract); the width's instructions (caller).
    unsafe {
        if D::WIDE && reads_wide(K::T) {
            W::load_wide(wide.add(xb * GX + g))
        } else {
            W::bcast4(x.qs.as_ptr().add(xb * BLOCK + LANE * g))
        }
    }
}

/// The f32 fields of one block of each tile from its f16 scales at `sb`: `d_w`, and
/// the second field (`m_w` or `dmin_w`; zeros for one-field types).
///
/// # Safety
/// The width's instructions; `sb` readable for `8 * fields` values in each tile of
/// `wd`.
#[inline(always)]
unsafe fn fields<K: Kind, W: Width>(wd: W, sb: *const u16) -> (W::F, W::F) {
    // SAFETY: the caller's contract.
    unsafe {
        let dw = wd.load_f16(sb);
        let mw = if K::T.fields() == 2 {
            wd.load_f16(sb.add(R))
        } else {
            W::fzero()
        };
        (dw, mw)
    }
}

/// `fma(isum, d_w * d, acc)` for input block `xb`, one row per lane.
///
/// # Safety
/// The width's instructions; `xb` a block of `x`.
#[inline(always)]
unsafe fn step<W: Width>(acc: W::F, isum: W::F, dw: W::F, x: &Q8Vec, xb: usize) -> W::F {
    // SAFETY: the width's instructions (caller).
    unsafe { W::fma(isum, W::fmul(dw, W::fsplat(x.d[xb])), acc) }
}

/// The canonical float part of a 32-element block `xb` of the types without
/// sub-blocks, one row per lane: `fma(isum, d_w * d, acc)`, then `fma(m_w, s, acc)`
/// for the types with a minimum.
///
/// # Safety
/// The width's instructions; `xb` a block of `x`.
#[inline(always)]
unsafe fn accumulate<K: Kind, W: Width>(
    acc: W::F,
    isum: W::I,
    dw: W::F,
    mw: W::F,
    x: &Q8Vec,
    xb: usize,
) -> W::F {
    // SAFETY: the width's instructions (caller).
    unsafe {
        let acc = step::<W>(acc, W::cvt(isum), dw, x, xb);
        if K::T.fields() == 2 {
            W::fma(mw, W::fsplat(x.s[xb]), acc)
        } else {
            acc
        }
    }
}

/// The canonical float part of sub-block input `xb` of a `Q4_K` / `Q5_K` block, one
/// row per lane: `fma(sc * isum, d_w * d, acc)` then `fma(-(mn * sum), dmin_w * d,
/// acc)`, the integer products taken in f32, where they are exact (`sc * isum < 63 *
/// 125984 < 2^23`, `mn * sum < 63 * 4064`).
///
/// # Safety
/// The width's instructions; `xb` a block of `x`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn accumulate_k<W: Width>(
    acc: W::F,
    isum: W::I,
    (sc, mn): (W::F, W::F),
    dw: W::F,
    dmin: W::F,
    x: &Q8Vec,
    xb: usize,
) -> W::F {
    // SAFETY: the width's instructions (caller).
    unsafe {
        let acc = step::<W>(acc, W::fmul(W::cvt(isum), sc), dw, x, xb);
        let msum = W::fmul(mn, W::fsplat(-(x.sum[xb] as f32)));
        W::fma(msum, W::fmul(dmin, W::fsplat(x.d[xb])), acc)
    }
}

/// The 6-bit scales and minimums of the 8 sub-blocks of a `Q4_K` / `Q5_K` block, one
/// row per lane, from the packed scales at `sp` (12 bytes per row: 3 groups), as f32
/// (exact): ggml's `get_scale_min_k4` per lane (`tvl_format::quant::scale_min_k4`).
///
/// # Safety
/// The width's instructions; `sp` readable for 96 bytes in each tile of `wd`.
#[inline(always)]
unsafe fn k4_scales<W: Width>(wd: W, sp: *const u8) -> [(W::F, W::F); 8] {
    // SAFETY: the width's instructions (caller); the 3 groups are the 96 bytes at `sp`.
    unsafe {
        let (g0, g1, g2) = (wd.load(sp), wd.load(sp.add(32)), wd.load(sp.add(64)));
        let (m6, m4, m2) = (W::splat32(63), W::splat32(15), W::splat32(3));
        let mut out = [(W::fzero(), W::fzero()); 8];
        for (j, o) in out.iter_mut().enumerate() {
            let (sc, mn) = if j < 4 {
                let n = 8 * j as u32;
                (W::and(W::shr32(g0, n), m6), W::and(W::shr32(g1, n), m6))
            } else {
                let n = 8 * (j as u32 - 4);
                let top0 = W::shl32_4(W::and(W::shr32(g0, n + 6), m2));
                let top1 = W::shl32_4(W::and(W::shr32(g1, n + 6), m2));
                (
                    W::or(W::and(W::shr32(g2, n), m4), top0),
                    W::or(W::and(W::shr32(g2, n + 4), m4), top1),
                )
            };
            *o = (W::cvt(sc), W::cvt(mn));
        }
        out
    }
}

/// Per byte, bit `s` of `v` moved to bit 4 (`0x10` or 0): a `Q5_K` sub-block's 5th
/// bits. A 16-bit shift crosses bytes, but the bits it moves across land outside bit
/// 4 of the other byte.
///
/// # Safety
/// The width's instructions.
#[inline(always)]
unsafe fn bit_to_4<W: Width>(v: W::I, s: u32) -> W::I {
    // SAFETY: the width's instructions (caller).
    unsafe {
        let moved = if s <= 4 {
            W::shl16(v, 4 - s)
        } else {
            W::shr16(v, s - 4)
        };
        W::and(moved, W::splat8(0x10))
    }
}

/// Per byte, bits `2k..2k + 2` of `v` moved to bits 4..6: a `Q6_K` quarter's high bits.
/// (As in [`bit_to_4`], what crosses bytes lands outside bits 4..6.)
///
/// # Safety
/// The width's instructions.
#[inline(always)]
unsafe fn bits_to_45<W: Width>(v: W::I, k: u32) -> W::I {
    // SAFETY: the width's instructions (caller).
    unsafe {
        let moved = if 2 * k <= 4 {
            W::shl16(v, 4 - 2 * k)
        } else {
            W::shr16(v, 2 * k - 4)
        };
        W::and(moved, W::splat8(0x30))
    }
}

/// Inputs per register block of the batched product.
const TB: usize = 4;

/// The tiles of `wd` (quants at `qt`, scales at `st`: one 8-row tile, or two side by
/// side) times the `T` inputs `xs`: lane `r` of result `j` is row `r` of the tiles
/// times `xs[j]` (the canonical operations, one row per lane), each weight block
/// loaded and unpacked once for all `T` inputs.
///
/// # Safety
/// The width's instructions and whatever `D` needs; `qt` and `st` point at whole
/// tiles of the geometry `g` (8 rows, of block type `K::T`), as many as `wd` holds;
/// `xs.len() == T`, each of `g.cols` elements; if `D::WIDE` and `K` reads it
/// ([`reads_wide`]), `wide` points at their broadcast forms, one after another (see
/// [`widen`]).
#[inline(always)]
unsafe fn tile_batch<D: Dot, K: Kind, W: Width, const T: usize>(
    wd: W,
    g: &BlockGeometry,
    qt: *const u8,
    st: *const u16,
    xs: &[Q8Vec],
    wide: *const Wide,
) -> [W::F; T] {
    let (nb, bb, f) = (g.blocks_per_row(), g.block_bytes(), g.fields());
    // Input blocks of 32 per weight block.
    let per = K::T.elems() / BLOCK;
    debug_assert_eq!(xs.len(), T);
    // Input `j`'s broadcast form (computed only when `D` reads it).
    let wide_of = |j: usize| wide.wrapping_add(j * nb * per * GX);
    // SAFETY: block `b < nb` of a tile is `R * bb` quant bytes at `b * R * bb` and
    // `R * f` scales at `b * f * R` (the caller's tiles), and every load below lies in
    // its quant bytes (each run of a block's `bb` bytes is `R` times as long in the
    // tile, at `R` times its offset); input block `xb < nb * per` of every input is 32
    // bytes at `32 xb` (each has `g.cols = 32 nb per` elements), and its broadcast form
    // (read when `D::WIDE`) groups `8 xb..8 xb + 8` at `wide_of(j)`. Features: the
    // caller's.
    unsafe {
        let mut acc = [W::fzero(); T];
        for b in 0..nb {
            let qb = qt.add(b * R * bb);
            wd.prefetch(qb, R * bb);
            let (dw, mw) = fields::<K, W>(wd, st.add(b * f * R));
            match K::T {
                BlockType::Q8_0 => {
                    // `maddubs` and `vpdpbusd` multiply unsigned by signed bytes, so the
                    // weights' signs move onto the input: `|w| * (sign(w) x)`.
                    let (mut w, mut aw) = ([W::zero(); GX], [W::zero(); GX]);
                    for g in 0..GX {
                        w[g] = wd.load(qb.add(32 * g));
                        aw[g] = W::abs8(w[g]);
                    }
                    for j in 0..T {
                        let mut sx = inputs::<D, K, W>(&xs[j], wide_of(j), b);
                        for g in 0..GX {
                            sx[g] = W::sign8(sx[g], w[g]);
                        }
                        let isum = D::dot_sum::<W, GX, 8>(&aw, &sx);
                        acc[j] = accumulate::<K, W>(acc[j], isum, dw, mw, &xs[j], b);
                    }
                }
                BlockType::Q4_0 | BlockType::Q4_1 => {
                    let w = q4_groups(wd, qb);
                    for j in 0..T {
                        let x = inputs::<D, K, W>(&xs[j], wide_of(j), b);
                        let mut isum = D::dot_sum::<W, GX, 4>(&w, &x);
                        if K::T == BlockType::Q4_0 {
                            isum = W::sub32(isum, W::splat32(8 * xs[j].sum[b]));
                        }
                        acc[j] = accumulate::<K, W>(acc[j], isum, dw, mw, &xs[j], b);
                    }
                }
                BlockType::Q5_0 | BlockType::Q5_1 => {
                    let w = q5_groups(wd, qb);
                    for j in 0..T {
                        let x = inputs::<D, K, W>(&xs[j], wide_of(j), b);
                        let mut isum = D::dot_sum::<W, GX, 5>(&w, &x);
                        if K::T == BlockType::Q5_0 {
                            isum = W::sub32(isum, W::splat32(16 * xs[j].sum[b]));
                        }
                        acc[j] = accumulate::<K, W>(acc[j], isum, dw, mw, &xs[j], b);
                    }
                }
                BlockType::Q4_K | BlockType::Q5_K => {
                    // Runs: scales (12 bytes a row) at 0; Q5_K's `qh` (32) next; `qs`
                    // (128) last.
                    let scales = k4_scales(wd, qb);
                    let five = K::T == BlockType::Q5_K;
                    let qh = qb.add(R * 12);
                    let qs = if five { qb.add(R * 44) } else { qh };
                    for c in 0..4 {
                        // Sub-blocks 2c (low nibbles) and 2c + 1 (high) share the 32
                        // bytes `32c..32c + 32` of `qs`: 8 groups.
                        let (mut lo, mut hi) = ([W::zero(); GX], [W::zero(); GX]);
                        for (g, (l, h)) in lo.iter_mut().zip(hi.iter_mut()).enumerate() {
                            (*l, *h) = nibbles::<W>(wd.load(qs.add(32 * (GX * c + g))));
                        }
                        for (h, mut w) in [lo, hi].into_iter().enumerate() {
                            let s = 2 * c + h;
                            if five {
                                for (g, wg) in w.iter_mut().enumerate() {
                                    let bits = bit_to_4::<W>(wd.load(qh.add(32 * g)), s as u32);
                                    *wg = W::or(*wg, bits);
                                }
                            }
                            let xb = b * per + s;
                            for j in 0..T {
                                let x = inputs::<D, K, W>(&xs[j], wide_of(j), xb);
                                let isum = if five {
                                    D::dot_sum::<W, GX, 5>(&w, &x)
                                } else {
                                    D::dot_sum::<W, GX, 4>(&w, &x)
                                };
                                acc[j] =
                                    accumulate_k::<W>(acc[j], isum, scales[s], dw, mw, &xs[j], xb);
                            }
                        }
                    }
                }
                BlockType::Q6_K => {
                    // Runs: `ql` (128 bytes a row) at 0, `qh` (64) next, the 16 int8
                    // scales (4 groups) last.
                    let qh = qb.add(R * 128);
                    let sp = qb.add(R * 192);
                    // Scale `i` of every row: byte `i % 4` of group `i / 4`, sign-extended.
                    let mut scale = [W::fzero(); 16];
                    for (i, si) in scale.iter_mut().enumerate() {
                        let sg = wd.load(sp.add(32 * (i / 4)));
                        let up = W::shl32(sg, 24 - 8 * (i % 4) as u32);
                        *si = W::cvt(W::sra32_24(up));
                    }
                    for half in 0..2 {
                        let mut hb = [W::zero(); GX];
                        for (g, h) in hb.iter_mut().enumerate() {
                            *h = wd.load(qh.add(32 * (GX * half + g)));
                        }
                        for k in 0..4 {
                            // Quarter `k`: nibble `k / 2` of `ql` bytes `64 half + 32 (k % 2)..`,
                            // bits `2k..2k + 2` of `qh` bytes `32 half..`.
                            let lo = qb.add(32 * (16 * half + GX * (k % 2)));
                            let mut w = [W::zero(); GX];
                            for g in 0..GX {
                                let (l, h) = nibbles::<W>(wd.load(lo.add(32 * g)));
                                let nib = if k / 2 == 0 { l } else { h };
                                w[g] = W::or(nib, bits_to_45::<W>(hb[g], k as u32));
                            }
                            let s = 4 * half + k;
                            let (sc0, sc1) = (scale[2 * s], scale[2 * s + 1]);
                            let (w0, w1) = ([w[0], w[1], w[2], w[3]], [w[4], w[5], w[6], w[7]]);
                            let xb = b * per + s;
                            for j in 0..T {
                                let x = inputs::<D, K, W>(&xs[j], wide_of(j), xb);
                                let (x0, x1) = ([x[0], x[1], x[2], x[3]], [x[4], x[5], x[6], x[7]]);
                                // The 6-bit quants are unsigned here: subtract 32 times
                                // each half block's input sum.
                                let hs = &xs[j].hsum[2 * xb..2 * xb + 2];
                                let i0 = W::sub32(
                                    D::dot_sum::<W, 4, 6>(&w0, &x0),
                                    W::splat32(32 * hs[0]),
                                );
                                let i1 = W::sub32(
                                    D::dot_sum::<W, 4, 6>(&w1, &x1),
                                    W::splat32(32 * hs[1]),
                                );
                                // Exact in f32: each product < 2^23, their sum < 2^24.
                                let isum =
                                    W::fadd(W::fmul(W::cvt(i0), sc0), W::fmul(W::cvt(i1), sc1));
                                acc[j] = step::<W>(acc[j], isum, dw, &xs[j], xb);
                            }
                        }
                    }
                }
            }
        }
        acc
    }
}

/// The canonical product of an 8-row-tiled matrix and the inputs `xs` (`y` holds
/// each input's rows, one input after another; one input is the matrix-vector
/// product): pairs of tiles at width `W` where it holds two, the rest one at a time.
///
/// # Safety
/// The width's instructions and whatever `D` needs (and AVX2, FMA, F16C);
/// `a.g.tile_rows == 8` and `a.g.kind() == K::T`; `xs` and `y` checked by
/// `quant::check_batch`.
#[inline(always)]
unsafe fn product8<D: Dot, K: Kind, W: Width>(a: &QuantArgs<'_>, xs: &[Q8Vec], y: &mut [f32]) {
    let g = &a.g;
    debug_assert_eq!((g.tile_rows, g.kind()), (R, K::T));
    // SAFETY: AVX2 (caller); every input has `g.cols` elements (`check_batch`).
    let wide = unsafe { widen::<D, K>(xs, g.cols) };
    let n = g.n_tiles();
    let paired = n - n % W::TILES;
    // SAFETY: the caller's contract; the two ranges are tiles of the matrix.
    unsafe {
        tiles::<D, K, W>(a, xs, &wide, y, 0..paired);
        tiles::<D, K, Ymm>(a, xs, &wide, y, paired..n);
    }
    give_back(wide);
}

/// [`product8`] over the tiles `range` (a multiple of `W::TILES` of them), the
/// inputs in register blocks of [`TB`].
///
/// # Safety
/// As [`product8`]; `range` within the matrix's tiles; `wide` from [`widen`] of `xs`.
#[inline(always)]
unsafe fn tiles<D: Dot, K: Kind, W: Width>(
    a: &QuantArgs<'_>,
    xs: &[Q8Vec],
    wide: &[Wide],
    y: &mut [f32],
    range: Range<usize>,
) {
    let (q, g) = (&a.q, &a.g);
    let m = g.rows;
    let (tq, ts) = (g.tile_quant_bytes(), g.tile_scales());
    let wd = W::new(tq, ts);
    let rows = R * W::TILES;
    for t in range.step_by(W::TILES) {
        // SAFETY: tiles `t..t + W::TILES` lie inside the quant and scale slices
        // (`Matrix::new` checked their lengths).
        let (qt, st) = unsafe {
            (
                q.quants.as_ptr().add(t * tq),
                q.scales.as_ptr().add(t * ts).cast::<u16>(),
            )
        };
        let (r0, here) = (t * R, rows.min(m - t * R));
        let mut i = 0;
        while i < xs.len() {
            let n = TB.min(xs.len() - i);
            let group = &xs[i..i + n];
            let gw = wide.as_ptr().wrapping_add(i * (g.cols / LANE));
            // SAFETY: the caller's features; the tiles and `group` (of `n` inputs) as
            // `tile_batch` needs them, their broadcast forms (when read) from input `i`
            // on in `wide`.
            let acc: &[W::F] = unsafe {
                match n {
                    4 => &tile_batch::<D, K, W, 4>(wd, g, qt, st, group, gw),
                    3 => &tile_batch::<D, K, W, 3>(wd, g, qt, st, group, gw),
                    2 => &tile_batch::<D, K, W, 2>(wd, g, qt, st, group, gw),
                    _ => &tile_batch::<D, K, W, 1>(wd, g, qt, st, group, gw),
                }
            };
            for (j, &v) in acc.iter().enumerate() {
                let out = &mut y[(i + j) * m + r0..][..here];
                // SAFETY: a full `out` holds the `rows` floats stored, `tmp` too.
                unsafe {
                    if here == rows {
                        W::store(out.as_mut_ptr(), v);
                    } else {
                        // The last tile of a matrix whose rows are not a multiple of 8.
                        let mut tmp = [0.0f32; 2 * R];
                        W::store(tmp.as_mut_ptr(), v);
                        out.copy_from_slice(&tmp[..here]);
                    }
                }
            }
            i += n;
        }
    }
}

/// Dispatch a batched product on the block type and tile size.
///
/// # Safety
/// AVX2, FMA, F16C and whatever `D` and `W` need.
#[inline(always)]
unsafe fn matmul_q8<D: Dot, W: Width>(w: &Matrix<'_>, xs: &[Q8Vec], y: &mut [f32]) {
    let a = quant::check_batch(w, xs, y);
    if a.g.tile_rows != R {
        return quant::each_input(xs, y, a.g.rows, |x, yt| quant::matvec_ref(&a, x, yt));
    }
    // SAFETY: tile_rows == 8 and shapes checked; features are the caller's contract.
    unsafe { quant::by_kind!(a.g.kind(), product8::<D, W>(&a, xs, y)) }
}

/// Dispatch on the block type and tile size.
///
/// # Safety
/// AVX2, FMA, F16C and whatever `D` and `W` need.
#[inline(always)]
unsafe fn matvec_q8<D: Dot, W: Width>(w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
    let a = quant::check(w, x, y);
    if a.g.tile_rows != R {
        return quant::matvec_ref(&a, x, y);
    }
    let xs = core::slice::from_ref(x);
    // SAFETY: tile_rows == 8 and shapes checked (one input, `y` of its rows);
    // features are the caller's contract.
    unsafe { quant::by_kind!(a.g.kind(), product8::<D, W>(&a, xs, y)) }
}

/// The canonical quantization, 32 floats per step.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn quantize(x: &[f32], out: &mut Q8Vec) {
    out.set_len(x.len());
    for (b, xs) in x.chunks_exact(BLOCK).enumerate() {
        // SAFETY: AVX2 (caller); `xs` holds 32 floats and `out.qs` 32 bytes at `32 b`.
        unsafe {
            let p = xs.as_ptr();
            let v = [0, 8, 16, 24].map(|i| _mm256_loadu_ps(p.add(i)));
            let sign = _mm256_set1_ps(-0.0);
            let m01 = _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1]));
            let m23 = _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3]));
            let amax = super::hmax256(_mm256_max_ps(m01, m23));
            let (d, id) = block_scale(amax);
            let idv = _mm256_set1_ps(id);
            // Round to nearest, ties to even (the default MXCSR mode Rust assumes).
            let i = v.map(|vi| _mm256_cvtps_epi32(_mm256_mul_ps(vi, idv)));
            let sum = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
            let s128 = _mm_add_epi32(
                _mm256_castsi256_si128(sum),
                _mm256_extracti128_si256::<1>(sum),
            );
            let s64 = _mm_add_epi32(s128, _mm_unpackhi_epi64(s128, s128));
            let total = _mm_cvtsi128_si32(_mm_add_epi32(s64, _mm_shuffle_epi32::<0b01>(s64)));
            // Pack 4 x 8 i32 to 32 i8 (values are within -127..=127: no saturation),
            // then undo the per-128-bit-lane interleave of the packs.
            let p16a = _mm256_packs_epi32(i[0], i[1]);
            let p16b = _mm256_packs_epi32(i[2], i[3]);
            let p8 = _mm256_packs_epi16(p16a, p16b);
            let ordered =
                _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(out.qs.as_mut_ptr().add(b * BLOCK).cast(), ordered);
            out.d[b] = d;
            out.sum[b] = total;
            out.s[b] = d * total as f32;
        }
    }
}

impl QuantKernels for Avx2 {
    fn quantize_q8(self, x: &[f32], out: &mut Q8Vec) {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn imp(x: &[f32], out: &mut Q8Vec) {
            // SAFETY: AVX2 is enabled on this function.
            unsafe { quantize(x, out) }
        }
        // SAFETY: an `Avx2` value exists only once the CPU has AVX2, FMA and F16C.
        unsafe { imp(x, out) }
    }

    fn matvec_q8(self, w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn imp(w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
            // SAFETY: AVX2, FMA and F16C are enabled on this function.
            unsafe { matvec_q8::<Madd, Ymm>(w, x, y) }
        }
        // SAFETY: an `Avx2` value exists only once the CPU has AVX2, FMA and F16C.
        unsafe { imp(w, x, y) }
    }

    fn matmul_q8(self, w: &Matrix<'_>, x: &[Q8Vec], y: &mut [f32]) {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn imp(w: &Matrix<'_>, x: &[Q8Vec], y: &mut [f32]) {
            // SAFETY: AVX2, FMA and F16C are enabled on this function.
            unsafe { matmul_q8::<Madd, Ymm>(w, x, y) }
        }
        // SAFETY: an `Avx2` value exists only once the CPU has AVX2, FMA and F16C.
        unsafe { imp(w, x, y) }
    }
}

/// Whether this CPU has AVX-512 VNNI, VL and BW, what the 512-bit kernel needs
/// (checked once, then cached by the standard library).
fn has_vnni() -> bool {
    is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512bw")
}

impl QuantKernels for Avx512 {
    fn quantize_q8(self, x: &[f32], out: &mut Q8Vec) {
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
        fn imp(x: &[f32], out: &mut Q8Vec) {
            // SAFETY: AVX2 is enabled on this function.
            unsafe { quantize(x, out) }
        }
        // SAFETY: an `Avx512` value exists only once the CPU has AVX-512F, AVX2, FMA
        // and F16C.
        unsafe { imp(x, out) }
    }

    fn matvec_q8(self, w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        fn vnni(w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
            // SAFETY: AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C are enabled on this function.
            // One tile per step: see `Zmm` for why not two.
            unsafe { matvec_q8::<Vnni, Ymm>(w, x, y) }
        }
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
        fn madd(w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
            // SAFETY: AVX2, FMA and F16C are enabled on this function.
            unsafe { matvec_q8::<Madd, Ymm>(w, x, y) }
        }
        if has_vnni() {
            // SAFETY: VNNI, VL and BW were just detected; the rest is proven by `self`.
            unsafe { vnni(w, x, y) }
        } else {
            // SAFETY: an `Avx512` value proves AVX-512F, AVX2, FMA and F16C.
            unsafe { madd(w, x, y) }
        }
    }

    fn matmul_q8(self, w: &Matrix<'_>, x: &[Q8Vec], y: &mut [f32]) {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        fn vnni(w: &Matrix<'_>, x: &[Q8Vec], y: &mut [f32]) {
            // SAFETY: AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C are enabled on this function.
            unsafe { matmul_q8::<Vnni, Zmm>(w, x, y) }
        }
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
        fn madd(w: &Matrix<'_>, x: &[Q8Vec], y: &mut [f32]) {
            // SAFETY: AVX2, FMA and F16C are enabled on this function.
            unsafe { matmul_q8::<Madd, Ymm>(w, x, y) }
        }
        if has_vnni() {
            // SAFETY: VNNI, VL and BW were just detected; the rest is proven by `self`.
            unsafe { vnni(w, x, y) }
        } else {
            // SAFETY: an `Avx512` value proves AVX-512F, AVX2, FMA and F16C.
            unsafe { madd(w, x, y) }
        }
    }
}
