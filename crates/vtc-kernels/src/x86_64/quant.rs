//! Quantized products on x86-64: AVX2 (`maddubs` + `madd`) and AVX-512 VNNI
//! (`vpdpbusd`). Both compute each block's exact integer dot product and then the
//! canonical float combination (see `crate::quant`) for 8 rows at once, one row per
//! lane, so they match Scalar bit for bit.
//!
//! The layout does the transposition: a tile's quants hold the same 4 bytes of its 8
//! rows side by side (`tvl_format::quant::LANE`), so one 32-byte load is one row per
//! 32-bit lane, and multiplying it by the input's matching 4 bytes (broadcast) sums
//! each row's products in its own lane. A block's 8 row sums come out in one vector:
//! no horizontal adds, no permutes.
//!
//! One tile kernel (`tile_batch`) serves both products: the batched one (`matmul_q8`)
//! runs it for up to 4 inputs at a time, each weight block loaded and unpacked once for
//! all of them, and `matvec_q8` for one, so their rows are bit for bit the same.
//!
//! Fast path: tiles of 8 rows (what the converter writes). Other tile sizes take the
//! plain-Rust canonical path.

use core::arch::x86_64::*;

use tvl_format::quant::{BLOCK, LANE};
use tvl_format::{BlockGeometry, DType};

use super::{Avx2, Avx512};
use crate::Matrix;
use crate::quant::{self, Q8Vec, QuantArgs, QuantKernels, block_scale};

/// Rows per tile of the fast path: one row per 32-bit lane of a 256-bit vector.
const R: usize = 8;

/// 32-byte groups of a 4-bit block-tile (16 bytes per row, 4 per group and row).
const G4: usize = 16 / LANE;

/// 32-byte groups of a Q8_0 block-tile (32 bytes per row).
const G8: usize = 32 / LANE;

/// How far ahead of the block-tile in use the quant stream is prefetched: 3 KiB (24
/// block-tiles of 4-bit quants, 12 of Q8_0). Measured from 1 to 6 KiB, and
/// against `T1` and `NTA` hints, with the variants interleaved in one process on
/// matrices streamed from DRAM: 3 KiB was 2-4% faster than the 1 KiB (4-bit) and
/// 2 KiB (Q8_0) used before, and longer distances were no better.
const PREFETCH_AHEAD: usize = 3 << 10;

/// Prefetch the block-tile [`PREFETCH_AHEAD`] bytes past the one at `qb` (`len`
/// bytes, which divides it), one request per 64-byte line: the hardware prefetcher
/// alone leaves a single core waiting on DRAM (every line requested: +25-30% streamed,
/// against one request per tile). The addresses may lie past the matrix: a prefetch
/// never faults.
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

    /// `acc + dot(a, b)` per lane, for `|a| <= 128`, `|b| <= 127`.
    ///
    /// # Safety
    /// The CPU must support the instructions of the implementation.
    unsafe fn dot_acc(acc: __m256i, a: __m256i, b: __m256i) -> __m256i;

    /// `Σ_g dot(lo[g], xa[g]) + dot(hi[g], xb[g])` per lane, for nibbles `lo`, `hi`
    /// (at most 15) and `|x| <= 127`: one block of 8 rows of 4-bit quants.
    ///
    /// # Safety
    /// The CPU must support the instructions of the implementation.
    unsafe fn nibbles(
        lo: &[__m256i; G4],
        hi: &[__m256i; G4],
        xa: &[__m256i; G4],
        xb: &[__m256i; G4],
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
    unsafe fn dot_acc(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: AVX2 (the caller's contract). No i16 saturation: |a| <= 128 and
        // |b| <= 127 give pair sums of at most 2 * 128 * 127 = 32512 < 32767.
        unsafe {
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1));
            _mm256_add_epi32(acc, p)
        }
    }

    #[inline(always)]
    unsafe fn nibbles(
        lo: &[__m256i; G4],
        hi: &[__m256i; G4],
        xa: &[__m256i; G4],
        xb: &[__m256i; G4],
    ) -> __m256i {
        // SAFETY: AVX2 (the caller's contract). The sums stay in i16 until the end, so
        // one `madd` widens them: a `maddubs` i16 is at most 2 * 15 * 127 = 3810 in
        // magnitude, and the 8 added here at most 30480 < 32767.
        unsafe {
            let mut p = _mm256_setzero_si256();
            for g in 0..G4 {
                let l = _mm256_maddubs_epi16(lo[g], xa[g]);
                let h = _mm256_maddubs_epi16(hi[g], xb[g]);
                p = _mm256_add_epi16(p, _mm256_add_epi16(l, h));
            }
            _mm256_madd_epi16(p, _mm256_set1_epi16(1))
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
    unsafe fn dot_acc(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: AVX-512 VNNI + VL (the caller's contract).
        unsafe { _mm256_dpbusd_epi32(acc, a, b) }
    }

    #[inline(always)]
    unsafe fn nibbles(
        lo: &[__m256i; G4],
        hi: &[__m256i; G4],
        xa: &[__m256i; G4],
        xb: &[__m256i; G4],
    ) -> __m256i {
        // SAFETY: AVX-512 VNNI + VL (the caller's contract).
        unsafe {
            let mut acc = _mm256_setzero_si256();
            for g in 0..G4 {
                acc = _mm256_dpbusd_epi32(acc, lo[g], xa[g]);
                acc = _mm256_dpbusd_epi32(acc, hi[g], xb[g]);
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

/// The low and high nibbles of the 32 bytes at `p`, one per byte.
///
/// # Safety
/// AVX2; `p` readable for 32 bytes.
#[inline(always)]
unsafe fn unpack(p: *const u8) -> (__m256i, __m256i) {
    // SAFETY: AVX2; 32 readable bytes at `p` (caller).
    unsafe {
        let v = _mm256_loadu_si256(p.cast());
        let mask = _mm256_set1_epi8(0x0F);
        let lo = _mm256_and_si256(v, mask);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
        (lo, hi)
    }
}

/// The 4-bit quants of one block-tile at `qb` (8 rows x 16 bytes, interleaved 4 at a
/// time): `(low nibbles, high nibbles)` per 32-byte group.
///
/// # Safety
/// AVX2; `qb` readable for 128 bytes.
#[inline(always)]
unsafe fn unpack_block(qb: *const u8) -> ([__m256i; G4], [__m256i; G4]) {
    // SAFETY: AVX2 (caller); group `g < 4` is 32 bytes at `32 g`, inside the
    // caller's 128.
    unsafe {
        let [(l0, h0), (l1, h1), (l2, h2), (l3, h3)] = [
            unpack(qb),
            unpack(qb.add(32)),
            unpack(qb.add(64)),
            unpack(qb.add(96)),
        ];
        ([l0, l1, l2, l3], [h0, h1, h2, h3])
    }
}

/// Groups of 4 input bytes per block.
const GX: usize = BLOCK / LANE;

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

/// The broadcast form of the inputs `xs` (each of `cols` elements), one after
/// another, `cols / 4` groups each: group `k` of an input holds its bytes `4k..4k + 4`
/// in every lane. Taken from this thread's scratch (give it back with
/// [`give_back`]); empty when `D` does not read it or `KIND` is Q8_0 (whose
/// products broadcast their inputs: measured no faster from the broadcast form).
///
/// # Safety
/// AVX2; every input of `xs` has `cols` elements.
#[inline(always)]
unsafe fn widen<D: Dot, const KIND: u32>(xs: &[Q8Vec], cols: usize) -> Vec<Wide> {
    let mut wide = SCRATCH.take();
    if D::WIDE && KIND != DType::Q8_0 as u32 {
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

/// Input group `g < 8` (elements `4g..4g + 4`) of block `b` of `x`, in every lane:
/// from the broadcast form `wide` of `x` (see [`widen`]) when `D` reads it, else
/// broadcast from `x` itself.
///
/// # Safety
/// AVX2; `b` a block of `x`; if `D::WIDE`, `wide` points at the broadcast form of `x`.
#[inline(always)]
unsafe fn input_group<D: Dot>(x: &Q8Vec, wide: *const Wide, b: usize, g: usize) -> __m256i {
    // SAFETY: group `GX b + g` of the broadcast form, or bytes `32 b + 4 g..` of `x`,
    // inside `x` (caller's contract); AVX2 (caller).
    unsafe {
        if D::WIDE {
            _mm256_load_si256(wide.add(b * GX + g).cast())
        } else {
            broadcast4(x.qs.as_ptr().add(b * BLOCK + LANE * g))
        }
    }
}

/// Input block `b` of `x` as the 4-bit groups need it: elements `4g..4g + 4`
/// (multiplying the low nibbles of group `g`) and `16 + 4g..` (the high nibbles),
/// each in every lane (see [`input_group`]).
///
/// # Safety
/// As [`input_group`].
#[inline(always)]
unsafe fn nibble_inputs<D: Dot>(
    x: &Q8Vec,
    wide: *const Wide,
    b: usize,
) -> ([__m256i; G4], [__m256i; G4]) {
    // SAFETY: groups `0..8` of block `b` (caller's contract).
    unsafe {
        let at = |g: usize| input_group::<D>(x, wide, b, g);
        ([at(0), at(1), at(2), at(3)], [at(4), at(5), at(6), at(7)])
    }
}

/// The canonical product for 8-row tiles: [`tile_batch`] with one input, tile after
/// tile.
///
/// # Safety
/// AVX2, FMA, F16C and whatever `D` needs; `a.g.tile_rows == 8`; `x` and `y` checked
/// by `quant::check`.
#[inline(always)]
unsafe fn matvec8<D: Dot, const KIND: u32>(a: &QuantArgs<'_>, x: &Q8Vec, y: &mut [f32]) {
    let (q, g) = (&a.q, &a.g);
    debug_assert_eq!(g.tile_rows, R);
    let xs = core::slice::from_ref(x);
    // SAFETY: AVX2 (caller); `x` has `g.cols` elements (`quant::check`).
    let wide = unsafe { widen::<D, KIND>(xs, g.cols) };
    for (t, yt) in y.chunks_mut(R).enumerate() {
        // SAFETY: tile `t < n_tiles` (y has rows <= n_tiles * 8 entries) lies inside
        // the quant and scale slices (`Matrix::new` checked their lengths); `x` has
        // `g.cols` elements (`quant::check`). Features: the caller's contract.
        unsafe {
            let qt = q.quants.as_ptr().add(t * g.tile_quant_bytes());
            let st = q.scales.as_ptr().add(t * g.tile_scales()).cast::<u16>();
            let [acc] = tile_batch::<D, KIND, 1>(g, qt, st, xs, wide.as_ptr());
            let mut out = [0.0f32; R];
            _mm256_storeu_ps(out.as_mut_ptr(), acc);
            yt.copy_from_slice(&out[..yt.len()]);
        }
    }
    give_back(wide);
}

/// The f32 scales `d_w` (and mins `m_w` for Q4_1, else zeros) of one block of an 8-row
/// tile, from its f16 scales at `sb`.
///
/// # Safety
/// AVX2 and F16C; `sb` readable for `8 * fields` values.
#[inline(always)]
unsafe fn scales<const KIND: u32>(sb: *const u16) -> (__m256, __m256) {
    // SAFETY: the caller's contract.
    unsafe {
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(sb.cast()));
        let mw = if KIND == DType::Q4_1 as u32 {
            _mm256_cvtph_ps(_mm_loadu_si128(sb.add(R).cast()))
        } else {
            _mm256_setzero_ps()
        };
        (dw, mw)
    }
}

/// The canonical float part of block `b` for 8 rows (one per lane): `acc` becomes
/// `fma(isum, d_w * d, acc)`, then for Q4_1 `fma(m_w, s, acc)`.
///
/// # Safety
/// AVX2 and FMA; `b` a block of `x`.
#[inline(always)]
unsafe fn accumulate<const KIND: u32>(
    acc: __m256,
    isum: __m256i,
    dw: __m256,
    mw: __m256,
    x: &Q8Vec,
    b: usize,
) -> __m256 {
    // SAFETY: AVX2 and FMA (caller).
    unsafe {
        let scale = _mm256_mul_ps(dw, _mm256_set1_ps(x.d[b]));
        let acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc);
        if KIND == DType::Q4_1 as u32 {
            _mm256_fmadd_ps(mw, _mm256_set1_ps(x.s[b]), acc)
        } else {
            acc
        }
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
/// geometry `g` (8 rows); `xs.len() == T`, each of `g.cols` elements; if `D::WIDE`
/// and `KIND` is 4-bit, `wide` points at their broadcast forms, one after another
/// (see [`widen`]).
#[inline(always)]
unsafe fn tile_batch<D: Dot, const KIND: u32, const T: usize>(
    g: &BlockGeometry,
    qt: *const u8,
    st: *const u16,
    xs: &[Q8Vec],
    wide: *const Wide,
) -> [__m256; T] {
    let (nb, bb, f) = (g.blocks_per_row(), g.block_bytes(), g.fields());
    debug_assert_eq!(xs.len(), T);
    // Input `j`'s broadcast form (computed only when `D` reads it).
    let wide_of = |j: usize| wide.wrapping_add(j * nb * GX);
    // SAFETY: block `b < nb` of the tile is `R * bb` quant bytes at `b * R * bb` and
    // `R * f` scales at `b * f * R` (the caller's tile); block `b` of every input is 32
    // bytes at `32 b` (each has `g.cols = 32 nb` elements), and its broadcast form
    // (read for 4-bit kinds only) groups `8 b..8 b + 8` of the `nb * 8` at
    // `wide_of(j)`. Features: the caller's.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let qb = qt.add(b * R * bb);
            prefetch_block(qb, R * bb);
            let (dw, mw) = scales::<KIND>(st.add(b * f * R));
            if KIND == DType::Q8_0 as u32 {
                // `maddubs` and `vpdpbusd` multiply unsigned by signed bytes, so the
                // weights' signs move onto the input: `|w| * (sign(w) x)`.
                let mut w = [_mm256_setzero_si256(); G8];
                let mut aw = [_mm256_setzero_si256(); G8];
                for g in 0..G8 {
                    w[g] = _mm256_loadu_si256(qb.add(32 * g).cast());
                    aw[g] = _mm256_sign_epi8(w[g], w[g]);
                }
                for j in 0..T {
                    let mut isum = _mm256_setzero_si256();
                    for g in 0..G8 {
                        let xg = broadcast4(xs[j].qs.as_ptr().add(b * BLOCK + LANE * g));
                        isum = D::dot_acc(isum, aw[g], _mm256_sign_epi8(xg, w[g]));
                    }
                    acc[j] = accumulate::<KIND>(acc[j], isum, dw, mw, &xs[j], b);
                }
            } else {
                let (lo, hi) = unpack_block(qb);
                for j in 0..T {
                    let (xa, xb) = nibble_inputs::<D>(&xs[j], wide_of(j), b);
                    let mut isum = D::nibbles(&lo, &hi, &xa, &xb);
                    if KIND == DType::Q4_0 as u32 {
                        isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(8 * xs[j].sum[b]));
                    }
                    acc[j] = accumulate::<KIND>(acc[j], isum, dw, mw, &xs[j], b);
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
/// AVX2, FMA, F16C and whatever `D` needs; `a.g.tile_rows == 8`; `xs` and `y` checked
/// by `quant::check_batch`.
#[inline(always)]
unsafe fn matmul8<D: Dot, const KIND: u32>(a: &QuantArgs<'_>, xs: &[Q8Vec], y: &mut [f32]) {
    let (q, g) = (&a.q, &a.g);
    let m = g.rows;
    // SAFETY: AVX2 (caller); every input has `g.cols` elements (`check_batch`).
    let wide = unsafe { widen::<D, KIND>(xs, g.cols) };
    for t in 0..g.n_tiles() {
        let here = R.min(m - t * R);
        // SAFETY: tile `t < n_tiles` lies inside the quant and scale slices
        // (`Matrix::new` checked their lengths); `xs` was checked by the caller.
        let (qt, st) = unsafe {
            (
                q.quants.as_ptr().add(t * g.tile_quant_bytes()),
                q.scales.as_ptr().add(t * g.tile_scales()).cast::<u16>(),
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
                    4 => &tile_batch::<D, KIND, 4>(g, qt, st, group, gw),
                    3 => &tile_batch::<D, KIND, 3>(g, qt, st, group, gw),
                    2 => &tile_batch::<D, KIND, 2>(g, qt, st, group, gw),
                    _ => &tile_batch::<D, KIND, 1>(g, qt, st, group, gw),
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

/// Dispatch a batched product on the dtype and tile size.
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
    unsafe { quant::by_dtype!(a.q.dtype, matmul8::<D>(&a, xs, y)) }
}

/// Dispatch on the dtype and tile size.
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
    unsafe { quant::by_dtype!(a.q.dtype, matvec8::<D>(&a, x, y)) }
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
