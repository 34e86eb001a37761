//! Quantized products on x86-64: AVX2 (`maddubs` + `madd`) and AVX-512 VNNI
//! (`vpdpbusd`). Both compute each block's exact integer dot product and then the
//! canonical float combination (see `crate::quant`) for 8 rows at once, one row per
//! lane, so they match Scalar bit for bit.
//!
//! The batched product (`matmul_q8`) runs the same per-row operations for up to 4
//! inputs at a time, each weight block loaded and unpacked once for all of them, so
//! its rows are bit for bit those of `matvec_q8`.
//!
//! Fast path: tiles of 8 rows (what the converter writes). Other tile sizes take the
//! plain-Rust canonical path.

use core::arch::x86_64::*;

use tvl_format::quant::BLOCK;
use tvl_format::{BlockGeometry, DType};

use super::{Avx2, Avx512};
use crate::Matrix;
use crate::quant::{self, Q8Vec, QuantArgs, QuantKernels, block_scale};

/// Rows per tile of the fast path: one row per f32 lane of a 256-bit vector.
const R: usize = 8;

/// Bytes ahead of the current block that the quant stream is prefetched.
const AHEAD: usize = 1024;

/// An exact dot product of 32 unsigned bytes with 32 signed bytes into 8 i32 lanes
/// (lane `l` = the 4 products `4l..4l+4`).
trait Dot: Copy {
    /// # Safety
    /// The CPU must support the instructions of the implementation.
    unsafe fn dot(a: __m256i, b: __m256i) -> __m256i;

    /// `dot(a0, b0) + dot(a1, b1)` for nibbles `a` (at most 15): 8 i32 lanes.
    ///
    /// # Safety
    /// The CPU must support the instructions of the implementation.
    unsafe fn dot2(a0: __m256i, b0: __m256i, a1: __m256i, b1: __m256i) -> __m256i;
}

/// AVX2: `maddubs` (u8 x i8 pairs summed to i16) then `madd` by 1 (pairs to i32).
#[derive(Clone, Copy)]
struct Madd;

impl Dot for Madd {
    #[inline(always)]
    unsafe fn dot(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: AVX2 (the caller's contract). No i16 saturation: |a| <= 128 and
        // |b| <= 127 give pair sums of at most 2 * 128 * 127 = 32512 < 32767.
        unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)) }
    }

    #[inline(always)]
    unsafe fn dot2(a0: __m256i, b0: __m256i, a1: __m256i, b1: __m256i) -> __m256i {
        // SAFETY: AVX2 (the caller's contract). Nibbles are at most 15, so each i16 of
        // a `maddubs` is at most 2 * 15 * 127 = 3810 and the sum of two at most 7620.
        unsafe {
            let p = _mm256_add_epi16(_mm256_maddubs_epi16(a0, b0), _mm256_maddubs_epi16(a1, b1));
            _mm256_madd_epi16(p, _mm256_set1_epi16(1))
        }
    }
}

/// AVX-512 VNNI on 256-bit vectors: `vpdpbusd` (4 u8 x i8 products summed into i32).
#[derive(Clone, Copy)]
struct Vnni;

impl Dot for Vnni {
    #[inline(always)]
    unsafe fn dot(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: AVX-512 VNNI + VL (the caller's contract).
        unsafe { _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b) }
    }

    #[inline(always)]
    unsafe fn dot2(a0: __m256i, b0: __m256i, a1: __m256i, b1: __m256i) -> __m256i {
        // SAFETY: AVX-512 VNNI + VL (the caller's contract).
        unsafe { _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), a0, b0), a1, b1) }
    }
}

/// The nibbles of two consecutive rows of 4-bit quants (32 bytes at `p`: row `r`'s 16
/// bytes, then row `r + 1`'s): `(low nibbles, high nibbles)`, one per byte.
///
/// # Safety
/// AVX2; `p` readable for 32 bytes.
#[inline(always)]
unsafe fn unpack_pair(p: *const u8) -> (__m256i, __m256i) {
    // SAFETY: AVX2; 32 readable bytes at `p` (caller).
    unsafe {
        let v = _mm256_loadu_si256(p.cast());
        let mask = _mm256_set1_epi8(0x0F);
        let lo = _mm256_and_si256(v, mask);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
        (lo, hi)
    }
}

/// Block dot products of a row pair's nibbles ([`unpack_pair`]) with the input block
/// split as `xlo` (elements 0..16 in both 128-bit halves) and `xhi` (elements 16..32 in
/// both halves): lanes 0..4 hold row `r`'s partial sums, lanes 4..8 row `r + 1`'s.
///
/// # Safety
/// AVX2 and what `D` needs.
#[inline(always)]
unsafe fn nibble_pair<D: Dot>(lo: __m256i, hi: __m256i, xlo: __m256i, xhi: __m256i) -> __m256i {
    // SAFETY: the caller's contract.
    unsafe { D::dot2(lo, xlo, hi, xhi) }
}

/// Row sums of 4 row pairs (as [`nibble_pair`] leaves them): lane `r` of the result is
/// row `r`'s block dot product.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn reduce_pairs(v: &[__m256i; R / 2]) -> __m256i {
    // SAFETY: AVX2 (caller). Integer adds are exact in any order.
    unsafe {
        // [r0 r0 r2 r2 | r1 r1 r3 r3], [r4 r4 r6 r6 | r5 r5 r7 r7]
        let h0 = _mm256_hadd_epi32(v[0], v[1]);
        let h1 = _mm256_hadd_epi32(v[2], v[3]);
        // [r0 r2 r4 r6 | r1 r3 r5 r7]
        let t = _mm256_hadd_epi32(h0, h1);
        _mm256_permutevar8x32_epi32(t, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }
}

/// Sum the 8 lanes of each of 8 vectors: lane `r` of the result is the sum of `v[r]`.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn reduce8(v: &[__m256i; R]) -> __m256i {
    // SAFETY: AVX2 (caller). Integer adds are exact in any order.
    unsafe {
        let a01 = _mm256_hadd_epi32(v[0], v[1]);
        let a23 = _mm256_hadd_epi32(v[2], v[3]);
        let a45 = _mm256_hadd_epi32(v[4], v[5]);
        let a67 = _mm256_hadd_epi32(v[6], v[7]);
        let b0 = _mm256_hadd_epi32(a01, a23);
        let b1 = _mm256_hadd_epi32(a45, a67);
        let lo = _mm256_permute2x128_si256::<0x20>(b0, b1);
        let hi = _mm256_permute2x128_si256::<0x31>(b0, b1);
        _mm256_add_epi32(lo, hi)
    }
}

/// The canonical product for 8-row tiles.
///
/// # Safety
/// AVX2, FMA, F16C and whatever `D` needs; `a.g.tile_rows == 8`; `x` and `y` checked
/// by `quant::check`.
#[inline(always)]
unsafe fn matvec8<D: Dot, const KIND: u32>(a: &QuantArgs<'_>, x: &Q8Vec, y: &mut [f32]) {
    let (q, g) = (&a.q, &a.g);
    let nb = g.blocks_per_row();
    let bb = g.block_bytes();
    let f = g.fields();
    debug_assert_eq!(g.tile_rows, R);
    for (t, yt) in y.chunks_mut(R).enumerate() {
        // SAFETY: tile `t < n_tiles` (y has rows <= n_tiles * 8 entries): its quants
        // are `R * nb * bb` bytes from `t * tile_quant_bytes`, its scales `R * nb * f`
        // values from `t * tile_scales`, both inside the slices (`Matrix::new` checked
        // their lengths). Block `b < nb` of `x` is 32 bytes at `32 b`. AVX2/F16C and
        // the features of `D` are the caller's contract.
        unsafe {
            let qt = q.quants.as_ptr().add(t * g.tile_quant_bytes());
            let st = q.scales.as_ptr().add(t * g.tile_scales()).cast::<u16>();
            let mut acc = _mm256_setzero_ps();
            for b in 0..nb {
                let xp = x.qs.as_ptr().add(b * BLOCK);
                let qb = qt.add(b * R * bb);
                _mm_prefetch::<_MM_HINT_T0>(qb.wrapping_add(AHEAD).cast());
                let mut isum = if KIND == DType::Q8_0 as u32 {
                    let xv = _mm256_loadu_si256(xp.cast());
                    let mut v = [_mm256_setzero_si256(); R];
                    for (r, vr) in v.iter_mut().enumerate() {
                        let w = _mm256_loadu_si256(qb.add(r * bb).cast());
                        *vr = D::dot(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xv, w));
                    }
                    reduce8(&v)
                } else {
                    let xlo = _mm256_broadcastsi128_si256(_mm_loadu_si128(xp.cast()));
                    let xhi = _mm256_broadcastsi128_si256(_mm_loadu_si128(xp.add(16).cast()));
                    let mut v = [_mm256_setzero_si256(); R / 2];
                    for (i, vi) in v.iter_mut().enumerate() {
                        let (lo, hi) = unpack_pair(qb.add(2 * i * bb));
                        *vi = nibble_pair::<D>(lo, hi, xlo, xhi);
                    }
                    reduce_pairs(&v)
                };
                if KIND == DType::Q4_0 as u32 {
                    isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(8 * x.sum[b]));
                }
                let (dw, mw) = scales::<KIND>(st.add(b * f * R));
                acc = accumulate::<KIND>(acc, isum, dw, mw, x, b);
            }
            let mut out = [0.0f32; R];
            _mm256_storeu_ps(out.as_mut_ptr(), acc);
            yt.copy_from_slice(&out[..yt.len()]);
        }
    }
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

/// The canonical float part of block `b` for 8 rows (one per lane): `acc + t` with
/// `t = isum * (d_w * d) (+ m_w * s for Q4_1)`, each operation rounded.
///
/// # Safety
/// AVX2; `b` a block of `x`.
#[inline(always)]
unsafe fn accumulate<const KIND: u32>(
    acc: __m256,
    isum: __m256i,
    dw: __m256,
    mw: __m256,
    x: &Q8Vec,
    b: usize,
) -> __m256 {
    // SAFETY: AVX2 (caller).
    unsafe {
        let scale = _mm256_mul_ps(dw, _mm256_set1_ps(x.d[b]));
        let mut term = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), scale);
        if KIND == DType::Q4_1 as u32 {
            term = _mm256_add_ps(term, _mm256_mul_ps(mw, _mm256_set1_ps(x.s[b])));
        }
        _mm256_add_ps(acc, term)
    }
}

/// Inputs per register block of the batched product.
const TB: usize = 4;

/// One 8-row tile (quants at `qt`, scales at `st`) times the `T` inputs `xs`: lane `r`
/// of result `j` is row `r` times `xs[j]`, by exactly the operations of [`matvec8`],
/// but each weight block is loaded, unpacked and widened once for all `T` inputs.
///
/// # Safety
/// AVX2, FMA, F16C and whatever `D` needs; `qt` and `st` point at a whole tile of the
/// geometry `g` (8 rows); `xs.len() == T`, each of `g.cols` elements.
#[inline(always)]
unsafe fn tile_batch<D: Dot, const KIND: u32, const T: usize>(
    g: &BlockGeometry,
    qt: *const u8,
    st: *const u16,
    xs: &[Q8Vec],
) -> [__m256; T] {
    let (nb, bb, f) = (g.blocks_per_row(), g.block_bytes(), g.fields());
    debug_assert_eq!(xs.len(), T);
    // SAFETY: block `b < nb` of the tile is `R * bb` quant bytes at `b * R * bb` and
    // `R * f` scales at `b * f * R` (the caller's tile); block `b` of every input is 32
    // bytes at `32 b` (each has `g.cols = 32 nb` elements). Features: the caller's.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let qb = qt.add(b * R * bb);
            _mm_prefetch::<_MM_HINT_T0>(qb.wrapping_add(AHEAD).cast());
            let (dw, mw) = scales::<KIND>(st.add(b * f * R));
            if KIND == DType::Q8_0 as u32 {
                let mut w = [_mm256_setzero_si256(); R];
                let mut aw = [_mm256_setzero_si256(); R];
                for r in 0..R {
                    w[r] = _mm256_loadu_si256(qb.add(r * bb).cast());
                    aw[r] = _mm256_sign_epi8(w[r], w[r]);
                }
                for j in 0..T {
                    let xv = _mm256_loadu_si256(xs[j].qs.as_ptr().add(b * BLOCK).cast());
                    let mut v = [_mm256_setzero_si256(); R];
                    for r in 0..R {
                        v[r] = D::dot(aw[r], _mm256_sign_epi8(xv, w[r]));
                    }
                    acc[j] = accumulate::<KIND>(acc[j], reduce8(&v), dw, mw, &xs[j], b);
                }
            } else {
                let mut lo = [_mm256_setzero_si256(); R / 2];
                let mut hi = [_mm256_setzero_si256(); R / 2];
                for i in 0..R / 2 {
                    (lo[i], hi[i]) = unpack_pair(qb.add(2 * i * bb));
                }
                for j in 0..T {
                    let xp = xs[j].qs.as_ptr().add(b * BLOCK);
                    let xlo = _mm256_broadcastsi128_si256(_mm_loadu_si128(xp.cast()));
                    let xhi = _mm256_broadcastsi128_si256(_mm_loadu_si128(xp.add(16).cast()));
                    let mut v = [_mm256_setzero_si256(); R / 2];
                    for i in 0..R / 2 {
                        v[i] = nibble_pair::<D>(lo[i], hi[i], xlo, xhi);
                    }
                    let mut isum = reduce_pairs(&v);
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
            let mut out = [[0.0f32; R]; TB];
            // SAFETY: the caller's features; the tile and `group` (of `n` inputs) as
            // `tile_batch` needs them.
            unsafe {
                let acc: &[__m256] = match n {
                    4 => &tile_batch::<D, KIND, 4>(g, qt, st, group),
                    3 => &tile_batch::<D, KIND, 3>(g, qt, st, group),
                    2 => &tile_batch::<D, KIND, 2>(g, qt, st, group),
                    _ => &tile_batch::<D, KIND, 1>(g, qt, st, group),
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
