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
//! all of them, and `matvec_q8` for one, so their rows are bit for bit the same.
//!
//! Fast path: tiles of 8 rows (what the converter writes). Other tile sizes take the
//! plain-Rust canonical path.

use core::arch::x86_64::*;

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
    /// The CPU must support the instructions of the implementation.
    unsafe fn dot_sum<const N: usize, const BITS: u32>(
        w: &[__m256i; N],
        x: &[__m256i; N],
    ) -> __m256i;
}

/// AVX2: `maddubs` (u8 x i8 pairs summed to i16) then `madd` by 1 (pairs to i32).
#[derive(Clone, Copy)]
struct Madd;

impl Dot for Madd {
    // AVX2 has no broadcasting memory operand: a `vpbroadcastd` per group and tile,
    // against one aligned load that `maddubs` takes as its operand.
    const WIDE: bool = true;

    #[inline(always)]
    unsafe fn dot_sum<const N: usize, const BITS: u32>(
        w: &[__m256i; N],
        x: &[__m256i; N],
    ) -> __m256i {
        // How many `maddubs` results add up in i16 without saturating: each is at most
        // `2 * wmax * 127` (4 bits: 3810, 8 of them; 5 bits: 7874, 4; 6 bits: 16002,
        // 2; 8 bits, |w| <= 128: 32512, 1), and the sum must stay <= 32767.
        let wmax = if BITS >= 8 { 128 } else { (1 << BITS) - 1 };
        let per = (32767 / (2 * wmax * 127)).max(1) as usize;
        // SAFETY: AVX2 (the caller's contract); by the bound above no i16 saturates.
        unsafe {
            let ones = _mm256_set1_epi16(1);
            let mut acc = _mm256_setzero_si256();
            let mut g = 0;
            while g < N {
                let mut p = _mm256_maddubs_epi16(w[g], x[g]);
                for k in g + 1..(g + per).min(N) {
                    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[k], x[k]));
                }
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
                g += per;
            }
            acc
        }
    }
}

/// AVX-512 VNNI on 256-bit vectors: `vpdpbusd` (4 u8 x i8 products summed into i32).
#[derive(Clone, Copy)]
struct Vnni;

impl Dot for Vnni {
    // `vpdpbusd` broadcasts its 4-byte memory operand itself (`{1to8}`).
    const WIDE: bool = false;

    #[inline(always)]
    unsafe fn dot_sum<const N: usize, const BITS: u32>(
        w: &[__m256i; N],
        x: &[__m256i; N],
    ) -> __m256i {
        // SAFETY: AVX-512 VNNI + VL (the caller's contract).
        unsafe {
            let mut acc = _mm256_setzero_si256();
            for g in 0..N {
                acc = _mm256_dpbusd_epi32(acc, w[g], x[g]);
            }
            acc
        }
    }
}

/// The 4 input bytes at `p` in every 32-bit lane.
///
/// # Safety
/// AVX2; `p` readable for 4 bytes.
#[inline(always)]
unsafe fn broadcast4(p: *const i8) -> __m256i {
    // SAFETY: 4 readable bytes at `p` (caller), read unaligned; AVX2 (caller).
    unsafe { _mm256_set1_epi32(p.cast::<i32>().read_unaligned()) }
}

/// The 32 bytes at `p`.
///
/// # Safety
/// AVX2; `p` readable for 32 bytes.
#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    // SAFETY: the caller's contract.
    unsafe { _mm256_loadu_si256(p.cast()) }
}

/// The low and high nibbles of `v`, one per byte.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn nibbles(v: __m256i) -> (__m256i, __m256i) {
    // SAFETY: AVX2 (caller).
    unsafe {
        let mask = _mm256_set1_epi8(0x0F);
        let lo = _mm256_and_si256(v, mask);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
        (lo, hi)
    }
}

/// The 32 quants of a 32-element 4-bit block of 8 rows at `qb` (16 bytes per row,
/// 4 groups; GGUF order: byte `j` holds elements `j` and `j + 16`), as 8 groups in
/// element order: the low nibbles of groups 0..4, then their high nibbles.
///
/// # Safety
/// AVX2; `qb` readable for 128 bytes.
#[inline(always)]
unsafe fn q4_groups(qb: *const u8) -> [__m256i; GX] {
    // SAFETY: AVX2 (caller); group `g < 4` is 32 bytes at `32 g`, inside the 128.
    unsafe {
        // (Loops, not `map` / `from_fn`: their closures do not inherit the caller's
        // target features, so the intrinsics inside them would not be inlined.)
        let mut w = [_mm256_setzero_si256(); GX];
        for g in 0..4 {
            (w[g], w[g + 4]) = nibbles(load(qb.add(32 * g)));
        }
        w
    }
}

/// Per byte, `0x10` where bit `e + i` of the lane's little-endian `u32` in `qh` is set
/// (`i` the byte's place in its lane), else 0: the 5th bits of elements `e..e + 4` of
/// every row (`e % 4 == 0`).
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn fifth_bits(qh: __m256i, e: usize) -> __m256i {
    // SAFETY: AVX2 (caller).
    unsafe {
        // Byte `e / 8` of each lane into all 4 bytes of the lane (`pshufb` works per
        // 128-bit half: lanes at 0, 4, 8, 12 of each).
        let base = _mm256_setr_epi32(
            0,
            0x0404_0404,
            0x0808_0808,
            0x0C0C_0C0C,
            0,
            0x0404_0404,
            0x0808_0808,
            0x0C0C_0C0C,
        );
        let ctrl = _mm256_add_epi8(base, _mm256_set1_epi8((e / 8) as i8));
        let b = (e % 8) as u32;
        let bits = u32::from_le_bytes([1 << b, 1 << (b + 1), 1 << (b + 2), 1 << (b + 3)]);
        let mask = _mm256_set1_epi32(bits as i32);
        let t = _mm256_and_si256(_mm256_shuffle_epi8(qh, ctrl), mask);
        _mm256_and_si256(_mm256_cmpeq_epi8(t, mask), _mm256_set1_epi8(0x10))
    }
}

/// The 5-bit quants of a `Q5_0` / `Q5_1` block of 8 rows at `qb` (`qh`, one lane per
/// row, then the nibbles), as 8 groups in element order.
///
/// # Safety
/// AVX2; `qb` readable for 160 bytes.
#[inline(always)]
unsafe fn q5_groups(qb: *const u8) -> [__m256i; GX] {
    // SAFETY: AVX2 (caller); `qh` is the 32 bytes at `qb`, the nibbles the 128 after.
    unsafe {
        let qh = load(qb);
        let mut w = q4_groups(qb.add(32));
        for (g, wg) in w.iter_mut().enumerate() {
            *wg = _mm256_or_si256(*wg, fifth_bits(qh, 4 * g));
        }
        w
    }
}

/// Groups of one 32-element input block: elements `4g..4g + 4` in every lane.
type Inputs = [__m256i; GX];

/// The 8 input groups of input block `xb` of `x` (see [`input_group`]).
///
/// # Safety
/// As [`input_group`].
#[inline(always)]
unsafe fn inputs<D: Dot, K: Kind>(x: &Q8Vec, wide: *const Wide, xb: usize) -> Inputs {
    // SAFETY: groups `0..8` of block `xb` (caller's contract).
    unsafe {
        let mut v = [_mm256_setzero_si256(); GX];
        for (g, vg) in v.iter_mut().enumerate() {
            *vg = input_group::<D, K>(x, wide, xb, g);
        }
        v
    }
}

/// One group of 4 input bytes in every 32-bit lane: the broadcast form of the input
/// that [`Madd`] reads, 8 times the size of the int8 input.
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
                unsafe { _mm256_store_si256((o as *mut Wide).cast(), broadcast4(q.as_ptr())) }
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
/// AVX2; `xb` a block of `x`; if `D::WIDE` and `reads_wide(K::T)`, `wide` points at
/// the broadcast form of `x`.
#[inline(always)]
unsafe fn input_group<D: Dot, K: Kind>(
    x: &Q8Vec,
    wide: *const Wide,
    xb: usize,
    g: usize,
) -> __m256i {
    // SAFETY: group `GX xb + g` of the broadcast form, or bytes `32 xb + 4 g..` of
    // `x`, inside `x` (caller's contract); AVX2 (caller).
    unsafe {
        if D::WIDE && reads_wide(K::T) {
            _mm256_load_si256(wide.add(xb * GX + g).cast())
        } else {
            broadcast4(x.qs.as_ptr().add(xb * BLOCK + LANE * g))
        }
    }
}

/// The canonical product for 8-row tiles: [`tile_batch`] with one input, tile after
/// tile.
///
/// # Safety
/// AVX2, FMA, F16C and whatever `D` needs; `a.g.tile_rows == 8` and `a.g.kind() ==
/// K::T`; `x` and `y` checked by `quant::check`.
#[inline(always)]
unsafe fn matvec8<D: Dot, K: Kind>(a: &QuantArgs<'_>, x: &Q8Vec, y: &mut [f32]) {
    let (q, g) = (&a.q, &a.g);
    debug_assert_eq!((g.tile_rows, g.kind()), (R, K::T));
    let xs = core::slice::from_ref(x);
    // SAFETY: AVX2 (caller); `x` has `g.cols` elements (`quant::check`).
    let wide = unsafe { widen::<D, K>(xs, g.cols) };
    let (tq, ts) = (g.tile_quant_bytes(), g.tile_scales());
    for (t, yt) in y.chunks_mut(R).enumerate() {
        // SAFETY: tile `t < n_tiles` (y has rows <= n_tiles * 8 entries) lies inside
        // the quant and scale slices (`Matrix::new` checked their lengths); `x` has
        // `g.cols` elements (`quant::check`); a full `yt` holds the 8 floats stored.
        // Features: the caller's contract.
        unsafe {
            let qt = q.quants.as_ptr().add(t * tq);
            let st = q.scales.as_ptr().add(t * ts).cast::<u16>();
            let [acc] = tile_batch::<D, K, 1>(g, qt, st, xs, wide.as_ptr());
            if yt.len() == R {
                _mm256_storeu_ps(yt.as_mut_ptr(), acc);
            } else {
                // The last tile of a matrix whose rows are not a multiple of 8.
                let mut out = [0.0f32; R];
                _mm256_storeu_ps(out.as_mut_ptr(), acc);
                yt.copy_from_slice(&out[..yt.len()]);
            }
        }
    }
    give_back(wide);
}

/// The f32 fields of one block of an 8-row tile from its f16 scales at `sb`: `d_w`,
/// and the second field (`m_w` or `dmin_w`; zeros for one-field types).
///
/// # Safety
/// AVX2 and F16C; `sb` readable for `8 * fields` values.
#[inline(always)]
unsafe fn fields<K: Kind>(sb: *const u16) -> (__m256, __m256) {
    // SAFETY: the caller's contract.
    unsafe {
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(sb.cast()));
        let mw = if K::T.fields() == 2 {
            _mm256_cvtph_ps(_mm_loadu_si128(sb.add(R).cast()))
        } else {
            _mm256_setzero_ps()
        };
        (dw, mw)
    }
}

/// `fma(isum, d_w * d, acc)` for input block `xb`, 8 rows (one per lane).
///
/// # Safety
/// AVX2 and FMA; `xb` a block of `x`.
#[inline(always)]
unsafe fn step(acc: __m256, isum: __m256, dw: __m256, x: &Q8Vec, xb: usize) -> __m256 {
    // SAFETY: AVX2 and FMA (caller).
    unsafe { _mm256_fmadd_ps(isum, _mm256_mul_ps(dw, _mm256_set1_ps(x.d[xb])), acc) }
}

/// The canonical float part of a 32-element block `xb` of the types without
/// sub-blocks, for 8 rows: `fma(isum, d_w * d, acc)`, then `fma(m_w, s, acc)` for the
/// types with a minimum.
///
/// # Safety
/// AVX2 and FMA; `xb` a block of `x`.
#[inline(always)]
unsafe fn accumulate<K: Kind>(
    acc: __m256,
    isum: __m256i,
    dw: __m256,
    mw: __m256,
    x: &Q8Vec,
    xb: usize,
) -> __m256 {
    // SAFETY: AVX2 and FMA (caller).
    unsafe {
        let acc = step(acc, _mm256_cvtepi32_ps(isum), dw, x, xb);
        if K::T.fields() == 2 {
            _mm256_fmadd_ps(mw, _mm256_set1_ps(x.s[xb]), acc)
        } else {
            acc
        }
    }
}

/// The canonical float part of sub-block input `xb` of a `Q4_K` / `Q5_K` block for 8
/// rows: `fma(sc * isum, d_w * d, acc)` then `fma(-(mn * sum), dmin_w * d, acc)`, the
/// integer products taken in f32, where they are exact (`sc * isum < 63 * 125984 <
/// 2^23`, `mn * sum < 63 * 4064`).
///
/// # Safety
/// AVX2 and FMA; `xb` a block of `x`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn accumulate_k(
    acc: __m256,
    isum: __m256i,
    (sc, mn): (__m256, __m256),
    dw: __m256,
    dmin: __m256,
    x: &Q8Vec,
    xb: usize,
) -> __m256 {
    // SAFETY: AVX2 and FMA (caller).
    unsafe {
        let acc = step(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(isum), sc), dw, x, xb);
        let msum = _mm256_mul_ps(mn, _mm256_set1_ps(-(x.sum[xb] as f32)));
        _mm256_fmadd_ps(msum, _mm256_mul_ps(dmin, _mm256_set1_ps(x.d[xb])), acc)
    }
}

/// Each lane shifted right by `n` bits (`n < 32`).
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn srl32(v: __m256i, n: u32) -> __m256i {
    // SAFETY: AVX2 (caller).
    unsafe { _mm256_srlv_epi32(v, _mm256_set1_epi32(n as i32)) }
}

/// The 6-bit scales and minimums of the 8 sub-blocks of a `Q4_K` / `Q5_K` block of 8
/// rows, from the packed scales at `sp` (12 bytes per row: 3 groups), as f32 (exact):
/// ggml's `get_scale_min_k4` per lane (`tvl_format::quant::scale_min_k4`).
///
/// # Safety
/// AVX2; `sp` readable for 96 bytes.
#[inline(always)]
unsafe fn k4_scales(sp: *const u8) -> [(__m256, __m256); 8] {
    // SAFETY: AVX2 (caller); the 3 groups are the 96 bytes at `sp`.
    unsafe {
        let (g0, g1, g2) = (load(sp), load(sp.add(32)), load(sp.add(64)));
        let (m6, m4, m2) = (
            _mm256_set1_epi32(63),
            _mm256_set1_epi32(15),
            _mm256_set1_epi32(3),
        );
        let mut out = [(_mm256_setzero_ps(), _mm256_setzero_ps()); 8];
        for (j, o) in out.iter_mut().enumerate() {
            let (sc, mn) = if j < 4 {
                let n = 8 * j as u32;
                (
                    _mm256_and_si256(srl32(g0, n), m6),
                    _mm256_and_si256(srl32(g1, n), m6),
                )
            } else {
                let n = 8 * (j as u32 - 4);
                let top0 = _mm256_slli_epi32::<4>(_mm256_and_si256(srl32(g0, n + 6), m2));
                let top1 = _mm256_slli_epi32::<4>(_mm256_and_si256(srl32(g1, n + 6), m2));
                (
                    _mm256_or_si256(_mm256_and_si256(srl32(g2, n), m4), top0),
                    _mm256_or_si256(_mm256_and_si256(srl32(g2, n + 4), m4), top1),
                )
            };
            *o = (_mm256_cvtepi32_ps(sc), _mm256_cvtepi32_ps(mn));
        }
        out
    }
}

/// Per byte, bit `s` of `v` moved to bit 4 (`0x10` or 0): a `Q5_K` sub-block's 5th
/// bits. A 16-bit shift crosses bytes, but the bits it moves across land outside bit
/// 4 of the other byte.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn bit_to_4(v: __m256i, s: u32) -> __m256i {
    // SAFETY: AVX2 (caller).
    unsafe {
        let moved = if s <= 4 {
            _mm256_sll_epi16(v, _mm_cvtsi32_si128(4 - s as i32))
        } else {
            _mm256_srl_epi16(v, _mm_cvtsi32_si128(s as i32 - 4))
        };
        _mm256_and_si256(moved, _mm256_set1_epi8(0x10))
    }
}

/// Per byte, bits `2k..2k + 2` of `v` moved to bits 4..6: a `Q6_K` quarter's high bits.
/// (As in [`bit_to_4`], what crosses bytes lands outside bits 4..6.)
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn bits_to_45(v: __m256i, k: u32) -> __m256i {
    // SAFETY: AVX2 (caller).
    unsafe {
        let moved = if 2 * k <= 4 {
            _mm256_sll_epi16(v, _mm_cvtsi32_si128(4 - 2 * k as i32))
        } else {
            _mm256_srl_epi16(v, _mm_cvtsi32_si128(2 * k as i32 - 4))
        };
        _mm256_and_si256(moved, _mm256_set1_epi8(0x30))
    }
}

/// Inputs per register block of the batched product.
const TB: usize = 4;

/// One 8-row tile (quants at `qt`, scales at `st`) times the `T` inputs `xs`: lane `r`
/// of result `j` is row `r` times `xs[j]` (the canonical operations, one row per lane),
/// each weight block loaded and unpacked once for all `T` inputs.
///
/// # Safety
/// AVX2, FMA, F16C and whatever `D` needs; `qt` and `st` point at a whole tile of the
/// geometry `g` (8 rows, of block type `K::T`); `xs.len() == T`, each of `g.cols`
/// elements; if `D::WIDE` and `K` reads it ([`reads_wide`]), `wide` points at their broadcast forms,
/// one after another (see [`widen`]).
#[inline(always)]
unsafe fn tile_batch<D: Dot, K: Kind, const T: usize>(
    g: &BlockGeometry,
    qt: *const u8,
    st: *const u16,
    xs: &[Q8Vec],
    wide: *const Wide,
) -> [__m256; T] {
    let (nb, bb, f) = (g.blocks_per_row(), g.block_bytes(), g.fields());
    // Input blocks of 32 per weight block.
    let per = K::T.elems() / BLOCK;
    debug_assert_eq!(xs.len(), T);
    // Input `j`'s broadcast form (computed only when `D` reads it).
    let wide_of = |j: usize| wide.wrapping_add(j * nb * per * GX);
    // SAFETY: block `b < nb` of the tile is `R * bb` quant bytes at `b * R * bb` and
    // `R * f` scales at `b * f * R` (the caller's tile), and every load below lies in
    // its quant bytes (each run of a block's `bb` bytes is `R` times as long in the
    // tile, at `R` times its offset); input block `xb < nb * per` of every input is 32
    // bytes at `32 xb` (each has `g.cols = 32 nb per` elements), and its broadcast form
    // (read when `D::WIDE`) groups `8 xb..8 xb + 8` at `wide_of(j)`. Features: the
    // caller's.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let qb = qt.add(b * R * bb);
            prefetch_block(qb, R * bb);
            let (dw, mw) = fields::<K>(st.add(b * f * R));
            match K::T {
                BlockType::Q8_0 => {
                    // `maddubs` and `vpdpbusd` multiply unsigned by signed bytes, so the
                    // weights' signs move onto the input: `|w| * (sign(w) x)`.
                    let (mut w, mut aw) =
                        ([_mm256_setzero_si256(); GX], [_mm256_setzero_si256(); GX]);
                    for g in 0..GX {
                        w[g] = load(qb.add(32 * g));
                        aw[g] = _mm256_sign_epi8(w[g], w[g]);
                    }
                    for j in 0..T {
                        let mut sx = inputs::<D, K>(&xs[j], wide_of(j), b);
                        for g in 0..GX {
                            sx[g] = _mm256_sign_epi8(sx[g], w[g]);
                        }
                        let isum = D::dot_sum::<GX, 8>(&aw, &sx);
                        acc[j] = accumulate::<K>(acc[j], isum, dw, mw, &xs[j], b);
                    }
                }
                BlockType::Q4_0 | BlockType::Q4_1 => {
                    let w = q4_groups(qb);
                    for j in 0..T {
                        let x = inputs::<D, K>(&xs[j], wide_of(j), b);
                        let mut isum = D::dot_sum::<GX, 4>(&w, &x);
                        if K::T == BlockType::Q4_0 {
                            isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(8 * xs[j].sum[b]));
                        }
                        acc[j] = accumulate::<K>(acc[j], isum, dw, mw, &xs[j], b);
                    }
                }
                BlockType::Q5_0 | BlockType::Q5_1 => {
                    let w = q5_groups(qb);
                    for j in 0..T {
                        let x = inputs::<D, K>(&xs[j], wide_of(j), b);
                        let mut isum = D::dot_sum::<GX, 5>(&w, &x);
                        if K::T == BlockType::Q5_0 {
                            isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(16 * xs[j].sum[b]));
                        }
                        acc[j] = accumulate::<K>(acc[j], isum, dw, mw, &xs[j], b);
                    }
                }
                BlockType::Q4_K | BlockType::Q5_K => {
                    // Runs: scales (12 bytes a row) at 0; Q5_K's `qh` (32) next; `qs`
                    // (128) last.
                    let scales = k4_scales(qb);
                    let five = K::T == BlockType::Q5_K;
                    let qh = qb.add(R * 12);
                    let qs = if five { qb.add(R * 44) } else { qh };
                    for c in 0..4 {
                        // Sub-blocks 2c (low nibbles) and 2c + 1 (high) share the 32
                        // bytes `32c..32c + 32` of `qs`: 8 groups.
                        let (mut lo, mut hi) =
                            ([_mm256_setzero_si256(); GX], [_mm256_setzero_si256(); GX]);
                        for (g, (l, h)) in lo.iter_mut().zip(hi.iter_mut()).enumerate() {
                            (*l, *h) = nibbles(load(qs.add(32 * (GX * c + g))));
                        }
                        for (h, mut w) in [lo, hi].into_iter().enumerate() {
                            let s = 2 * c + h;
                            if five {
                                for (g, wg) in w.iter_mut().enumerate() {
                                    let bits = bit_to_4(load(qh.add(32 * g)), s as u32);
                                    *wg = _mm256_or_si256(*wg, bits);
                                }
                            }
                            let xb = b * per + s;
                            for j in 0..T {
                                let x = inputs::<D, K>(&xs[j], wide_of(j), xb);
                                let isum = if five {
                                    D::dot_sum::<GX, 5>(&w, &x)
                                } else {
                                    D::dot_sum::<GX, 4>(&w, &x)
                                };
                                acc[j] = accumulate_k(acc[j], isum, scales[s], dw, mw, &xs[j], xb);
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
                    let mut scale = [_mm256_setzero_ps(); 16];
                    for (i, si) in scale.iter_mut().enumerate() {
                        let sg = load(sp.add(32 * (i / 4)));
                        let up = _mm256_sllv_epi32(sg, _mm256_set1_epi32(24 - 8 * (i % 4) as i32));
                        *si = _mm256_cvtepi32_ps(_mm256_srai_epi32::<24>(up));
                    }
                    for half in 0..2 {
                        let mut hb = [_mm256_setzero_si256(); GX];
                        for (g, v) in hb.iter_mut().enumerate() {
                            *v = load(qh.add(32 * (GX * half + g)));
                        }
                        for k in 0..4 {
                            // Quarter `k`: nibble `k / 2` of `ql` bytes `64 half + 32 (k % 2)..`,
                            // bits `2k..2k + 2` of `qh` bytes `32 half..`.
                            let lo = qb.add(32 * (16 * half + GX * (k % 2)));
                            let mut w = [_mm256_setzero_si256(); GX];
                            for g in 0..GX {
                                let (l, h) = nibbles(load(lo.add(32 * g)));
                                let nib = if k / 2 == 0 { l } else { h };
                                w[g] = _mm256_or_si256(nib, bits_to_45(hb[g], k as u32));
                            }
                            let s = 4 * half + k;
                            let (sc0, sc1) = (scale[2 * s], scale[2 * s + 1]);
                            let (w0, w1) = ([w[0], w[1], w[2], w[3]], [w[4], w[5], w[6], w[7]]);
                            let xb = b * per + s;
                            for j in 0..T {
                                let x = inputs::<D, K>(&xs[j], wide_of(j), xb);
                                let (x0, x1) = ([x[0], x[1], x[2], x[3]], [x[4], x[5], x[6], x[7]]);
                                // The 6-bit quants are unsigned here: subtract 32 times
                                // each half block's input sum.
                                let hs = &xs[j].hsum[2 * xb..2 * xb + 2];
                                let i0 = _mm256_sub_epi32(
                                    D::dot_sum::<4, 6>(&w0, &x0),
                                    _mm256_set1_epi32(32 * hs[0]),
                                );
                                let i1 = _mm256_sub_epi32(
                                    D::dot_sum::<4, 6>(&w1, &x1),
                                    _mm256_set1_epi32(32 * hs[1]),
                                );
                                // Exact in f32: each product < 2^23, their sum < 2^24.
                                let isum = _mm256_add_ps(
                                    _mm256_mul_ps(_mm256_cvtepi32_ps(i0), sc0),
                                    _mm256_mul_ps(_mm256_cvtepi32_ps(i1), sc1),
                                );
                                acc[j] = step(acc[j], isum, dw, &xs[j], xb);
                            }
                        }
                    }
                }
            }
        }
        acc
    }
}

/// The canonical batched product for 8-row tiles: tile after tile (each read from
/// memory once), the inputs in register blocks of [`TB`].
///
/// # Safety
/// AVX2, FMA, F16C and whatever `D` needs; `a.g.tile_rows == 8` and `a.g.kind() ==
/// K::T`; `xs` and `y` checked by `quant::check_batch`.
#[inline(always)]
unsafe fn matmul8<D: Dot, K: Kind>(a: &QuantArgs<'_>, xs: &[Q8Vec], y: &mut [f32]) {
    let (q, g) = (&a.q, &a.g);
    let m = g.rows;
    // SAFETY: AVX2 (caller); every input has `g.cols` elements (`check_batch`).
    let wide = unsafe { widen::<D, K>(xs, g.cols) };
    let (tq, ts) = (g.tile_quant_bytes(), g.tile_scales());
    for t in 0..g.n_tiles() {
        let here = R.min(m - t * R);
        // SAFETY: tile `t < n_tiles` lies inside the quant and scale slices
        // (`Matrix::new` checked their lengths); `xs` was checked by the caller.
        let (qt, st) = unsafe {
            (
                q.quants.as_ptr().add(t * tq),
                q.scales.as_ptr().add(t * ts).cast::<u16>(),
            )
        };
        let mut i = 0;
        while i < xs.len() {
            let n = TB.min(xs.len() - i);
            let group = &xs[i..i + n];
            let gw = wide.as_ptr().wrapping_add(i * (g.cols / LANE));
            let mut out = [[0.0f32; R]; TB];
            // SAFETY: the caller's features; the tile and `group` (of `n` inputs) as
            // `tile_batch` needs them, their broadcast forms (when read) from input `i`
            // on in `wide`.
            unsafe {
                let acc: &[__m256] = match n {
                    4 => &tile_batch::<D, K, 4>(g, qt, st, group, gw),
                    3 => &tile_batch::<D, K, 3>(g, qt, st, group, gw),
                    2 => &tile_batch::<D, K, 2>(g, qt, st, group, gw),
                    _ => &tile_batch::<D, K, 1>(g, qt, st, group, gw),
                };
                for (o, v) in out.iter_mut().zip(acc) {
                    _mm256_storeu_ps(o.as_mut_ptr(), *v);
                }
            }
            for (j, o) in out[..n].iter().enumerate() {
                let at = (i + j) * m + t * R;
                y[at..at + here].copy_from_slice(&o[..here]);
            }
            i += n;
        }
    }
    give_back(wide);
}

/// Dispatch a batched product on the block type and tile size.
///
/// # Safety
/// AVX2, FMA, F16C and whatever `D` needs.
#[inline(always)]
unsafe fn matmul_q8<D: Dot>(w: &Matrix<'_>, xs: &[Q8Vec], y: &mut [f32]) {
    let a = quant::check_batch(w, xs, y);
    if a.g.tile_rows != R {
        return quant::each_input(xs, y, a.g.rows, |x, yt| quant::matvec_ref(&a, x, yt));
    }
    // SAFETY: tile_rows == 8 and shapes checked; features are the caller's contract.
    unsafe { quant::by_kind!(a.g.kind(), matmul8::<D>(&a, xs, y)) }
}

/// Dispatch on the block type and tile size.
///
/// # Safety
/// AVX2, FMA, F16C and whatever `D` needs.
#[inline(always)]
unsafe fn matvec_q8<D: Dot>(w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
    let a = quant::check(w, x, y);
    if a.g.tile_rows != R {
        return quant::matvec_ref(&a, x, y);
    }
    // SAFETY: tile_rows == 8 and shapes checked; features are the caller's contract.
    unsafe { quant::by_kind!(a.g.kind(), matvec8::<D>(&a, x, y)) }
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
            unsafe { matvec_q8::<Madd>(w, x, y) }
        }
        // SAFETY: an `Avx2` value exists only once the CPU has AVX2, FMA and F16C.
        unsafe { imp(w, x, y) }
    }

    fn matmul_q8(self, w: &Matrix<'_>, x: &[Q8Vec], y: &mut [f32]) {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn imp(w: &Matrix<'_>, x: &[Q8Vec], y: &mut [f32]) {
            // SAFETY: AVX2, FMA and F16C are enabled on this function.
            unsafe { matmul_q8::<Madd>(w, x, y) }
        }
        // SAFETY: an `Avx2` value exists only once the CPU has AVX2, FMA and F16C.
        unsafe { imp(w, x, y) }
    }
}

/// Whether this CPU has AVX-512 VNNI with 256-bit forms (checked once, then cached by
/// the standard library).
fn has_vnni() -> bool {
    is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl")
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
        #[target_feature(enable = "avx512f,avx512vl,avx512vnni,avx2,fma,f16c")]
        fn vnni(w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
            // SAFETY: AVX-512 VNNI/VL, AVX2, FMA and F16C are enabled on this function.
            unsafe { matvec_q8::<Vnni>(w, x, y) }
        }
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
        fn madd(w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
            // SAFETY: AVX2, FMA and F16C are enabled on this function.
            unsafe { matvec_q8::<Madd>(w, x, y) }
        }
        if has_vnni() {
            // SAFETY: VNNI and VL were just detected; the rest is proven by `self`.
            unsafe { vnni(w, x, y) }
        } else {
            // SAFETY: an `Avx512` value proves AVX-512F, AVX2, FMA and F16C.
            unsafe { madd(w, x, y) }
        }
    }

    fn matmul_q8(self, w: &Matrix<'_>, x: &[Q8Vec], y: &mut [f32]) {
        #[target_feature(enable = "avx512f,avx512vl,avx512vnni,avx2,fma,f16c")]
        fn vnni(w: &Matrix<'_>, x: &[Q8Vec], y: &mut [f32]) {
            // SAFETY: AVX-512 VNNI/VL, AVX2, FMA and F16C are enabled on this function.
            unsafe { matmul_q8::<Vnni>(w, x, y) }
        }
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
        fn madd(w: &Matrix<'_>, x: &[Q8Vec], y: &mut [f32]) {
            // SAFETY: AVX2, FMA and F16C are enabled on this function.
            unsafe { matmul_q8::<Madd>(w, x, y) }
        }
        if has_vnni() {
            // SAFETY: VNNI and VL were just detected; the rest is proven by `self`.
            unsafe { vnni(w, x, y) }
        } else {
            // SAFETY: an `Avx512` value proves AVX-512F, AVX2, FMA and F16C.
            unsafe { madd(w, x, y) }
        }
    }
}
