//! Every kernel of [`Backend`](crate::Backend), written once over [`Simd`].
//!
//! All functions here are `#[inline(always)]`: they are compiled as part of an ISA's
//! `#[target_feature]` trampoline (see [`simd_backend!`](super::simd_backend)), so the
//! trait calls become single instructions. No closures in the bodies: a closure is its
//! own function, compiled without the trampoline's target features if not inlined.
//!
//! `ACC` is the number of accumulator vectors of a dot product; `ACC * S::LANES` is
//! always [`PARTIALS`], which fixes the reduction order across ISAs (module docs of
//! [`simd`](super)).
// Register-blocked loops read clearest with explicit indices.
#![allow(clippy::needless_range_loop)]

use half::f16;
use tvl_format::TileGeometry;

use super::{MAX_LANES, PARTIALS, Simd};
use crate::{FloatSlice, Matrix, RopeStyle};

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

/// Load the first `min(src.len(), LANES)` floats of `src`; lanes past its end are
/// `fill`.
#[inline(always)]
fn load_upto<S: Simd>(s: S, src: &[f32], fill: f32) -> S::V {
    if src.len() >= S::LANES {
        // SAFETY: `src` holds at least LANES floats.
        unsafe { s.loadu(src.as_ptr()) }
    } else {
        // SAFETY: `src.len() < LANES` floats are readable at `src`.
        unsafe { s.load_partial(src.as_ptr(), src.len(), fill) }
    }
}

/// Store the first `min(dst.len(), LANES)` lanes of `v` to `dst`.
#[inline(always)]
fn store_upto<S: Simd>(s: S, dst: &mut [f32], v: S::V) {
    if dst.len() >= S::LANES {
        // SAFETY: `dst` holds at least LANES floats.
        unsafe { s.storeu(dst.as_mut_ptr(), v) }
    } else {
        // SAFETY: `dst.len() < LANES` floats are writable at `dst`.
        unsafe { s.store_partial(dst.as_mut_ptr(), dst.len(), v) }
    }
}

/// Combine `ACC` accumulators into one float in the canonical order: halving across
/// accumulators (`acc[j] += acc[j + ACC/2]`, ...), then [`Simd::reduce_sum`].
#[inline(always)]
fn reduce_acc<S: Simd, const ACC: usize>(s: S, mut acc: [S::V; ACC]) -> f32 {
    const { assert!(ACC * S::LANES == PARTIALS && ACC.is_power_of_two()) };
    let mut half = ACC / 2;
    while half > 0 {
        for j in 0..half {
            acc[j] = s.add(acc[j], acc[j + half]);
        }
        half /= 2;
    }
    s.reduce_sum(acc[0])
}

/// `Σ a[i] b[i]` in the canonical order: element `i` is fused-multiply-added into
/// partial `i % PARTIALS`, partials combined by [`reduce_acc`].
#[inline(always)]
pub(crate) fn dot<S: Simd, const ACC: usize>(s: S, a: &[f32], b: &[f32]) -> f32 {
    const { assert!(ACC * S::LANES == PARTIALS) };
    assert_eq!(a.len(), b.len(), "dot: lengths");
    let l = S::LANES;
    let mut acc = [s.splat(0.0); ACC];
    let (ab, bb) = (a.chunks_exact(PARTIALS), b.chunks_exact(PARTIALS));
    let (ar, br) = (ab.remainder(), bb.remainder());
    for (ca, cb) in ab.zip(bb) {
        for j in 0..ACC {
            // SAFETY: both chunks hold PARTIALS = ACC * LANES floats.
            let (va, vb) = unsafe {
                (
                    s.loadu(ca.as_ptr().add(j * l)),
                    s.loadu(cb.as_ptr().add(j * l)),
                )
            };
            acc[j] = s.fma(va, vb, acc[j]);
        }
    }
    // Fewer than PARTIALS left: at most ACC vectors, the last possibly partial
    // (zero-filled lanes add exact zeros).
    for (j, (ca, cb)) in ar.chunks(l).zip(br.chunks(l)).enumerate() {
        acc[j] = s.fma(load_upto(s, ca, 0.0), load_upto(s, cb, 0.0), acc[j]);
    }
    reduce_acc(s, acc)
}

// ---------------------------------------------------------------------------------
// exp
// ---------------------------------------------------------------------------------

/// Inputs are clamped to `[EXP_LO, EXP_HI]`: below, `exp` rounds to 0; above, the
/// result overflows to infinity.
const EXP_LO: f32 = -104.0;
const EXP_HI: f32 = 88.8;
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2 = LN2_HI + LN2_LO`, `LN2_HI` with 9 significant bits so `n * LN2_HI` is
/// exact (Cody-Waite).
const LN2_HI: f32 = 355.0 / 512.0;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes `expf` minimax polynomial for `(e^r - 1 - r) / r^2` on `|r| <= ln2 / 2`,
/// highest degree first.
const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_6e-1,
    0.5,
];

/// `e^x` lane-wise, within about 2 ulp of the correctly rounded value on normal
/// results (subnormal results: one more rounding), `0` below -104, `+inf` above
/// `ln(f32::MAX)`, NaN for NaN.
///
/// Range reduction `x = n ln2 + r` with `n = round(x log2 e)` and a two-constant
/// `ln 2` (fused), the Cephes polynomial for `e^r` (fused, Horner), and the scale by
/// `2^n` done as `2^n1 * 2^n2` with `n1 = round(n / 2)` so that subnormal and
/// overflowing results come out right with plain exponent arithmetic.
#[inline(always)]
pub(crate) fn exp<S: Simd>(s: S, x: S::V) -> S::V {
    // Constant first: on x86 min/max return the second operand if either is NaN.
    let x = s.max(s.splat(EXP_LO), s.min(s.splat(EXP_HI), x));
    let n = s.round(s.mul(x, s.splat(LOG2E)));
    let r = s.fma(n, s.splat(-LN2_HI), x);
    let r = s.fma(n, s.splat(-LN2_LO), r);
    let mut y = s.splat(EXP_POLY[0]);
    for &c in &EXP_POLY[1..] {
        y = s.fma(y, r, s.splat(c));
    }
    let y = s.add(s.fma(y, s.mul(r, r), r), s.splat(1.0));
    let n1 = s.round(s.mul(n, s.splat(0.5)));
    let n2 = s.sub(n, n1);
    s.mul(s.mul(y, s.pow2i(n1)), s.pow2i(n2))
}

// ---------------------------------------------------------------------------------
// matvec
// ---------------------------------------------------------------------------------

/// A weight element type a matvec streams, widened to f32 in registers.
pub(crate) trait Weight: Copy {
    /// Elements per 128-byte chunk.
    const CHUNK: usize;

    /// Software prefetch distance: bytes ahead of the weight stream, per chunk.
    ///
    /// Measured on Zen 4 (AVX2, one thread, matrices streamed from DRAM; GiB/s at
    /// 0 / 512 / 1024 / 2048 / 4096 bytes ahead, 49152x576 and 32000x768, noisy):
    /// f32 11.1 / 11.9 / 10.8 / 10.1 / 10.2 and 11.2 / 12.4 / 11.3 / 10.9 / 10.8;
    /// f16 6.0 / 8.9 / 9.9 / 9.7 / 9.9 and 5.9 / 9.0 / 10.0 / 10.1 / 10.2. The f16
    /// widening makes each line cost more instructions, so the out-of-order window
    /// reaches fewer lines ahead and the hardware prefetcher alone falls behind.
    const PREFETCH: usize;

    /// Load `LANES` elements from `p`, widened to f32.
    ///
    /// # Safety
    /// `p` must be valid for reads of `S::LANES` elements.
    unsafe fn load<S: Simd>(s: S, p: *const Self) -> S::V;
}

impl Weight for f32 {
    const CHUNK: usize = tvl_format::ALIGN / 4;
    const PREFETCH: usize = 512;

    #[inline(always)]
    unsafe fn load<S: Simd>(s: S, p: *const f32) -> S::V {
        // SAFETY: forwarded from the caller.
        unsafe { s.loadu(p) }
    }
}

impl Weight for f16 {
    const CHUNK: usize = tvl_format::ALIGN / 2;
    const PREFETCH: usize = 2048;

    #[inline(always)]
    unsafe fn load<S: Simd>(s: S, p: *const f16) -> S::V {
        // SAFETY: forwarded from the caller; `f16` is a `repr(transparent)` u16.
        unsafe { s.load_f16(p.cast::<u16>()) }
    }
}

/// Elements of the largest chunk (f16).
const MAX_CHUNK: usize = tvl_format::ALIGN / 2;

/// `x`, chunk by chunk, as the matvec inner loop reads it: whole chunks straight from
/// `x`, the last partial chunk from a zero-padded copy (the weights there are zero
/// padding, and `x` must not be read past its end).
#[derive(Clone, Copy)]
struct Cols {
    /// `x`: `full * CHUNK` readable floats.
    x: *const f32,
    /// The zero-padded last chunk: `CHUNK` readable floats.
    tail: *const f32,
    /// Chunks read from `x` directly.
    full: usize,
    /// All chunks (`full` or `full + 1`).
    n_chunks: usize,
}

impl Cols {
    /// No input (zero chunks): a placeholder until [`Cols::new`] fills the slot.
    const EMPTY: Cols = Cols {
        x: std::ptr::null(),
        tail: std::ptr::null(),
        full: 0,
        n_chunks: 0,
    };

    /// `x` (`g.cols` floats) read in chunks of `c`, its last partial chunk copied into
    /// `tail` (zero-padded).
    #[inline(always)]
    fn new(x: &[f32], g: &TileGeometry, c: usize, tail: &mut [f32; MAX_CHUNK]) -> Self {
        let full = g.cols / c;
        tail[..g.cols - full * c].copy_from_slice(&x[full * c..]);
        tail[g.cols - full * c..].fill(0.0);
        Cols {
            x: x.as_ptr(),
            tail: tail.as_ptr(),
            full,
            n_chunks: g.n_chunks(),
        }
    }

    /// Chunk `k < n_chunks`: `CHUNK` readable floats.
    #[inline(always)]
    fn chunk<W: Weight>(&self, k: usize) -> *const f32 {
        if k < self.full {
            self.x.wrapping_add(k * W::CHUNK)
        } else {
            self.tail
        }
    }
}

/// The geometry and data of a float matrix, after the checks every product relies on.
#[inline(always)]
fn tiled<'a, W: Weight>(data: &'a [W], g: &TileGeometry) -> &'a [W] {
    const { assert!(W::CHUNK.is_multiple_of(PARTIALS) && W::CHUNK <= MAX_CHUNK) };
    assert_eq!(g.chunk, W::CHUNK, "matvec: chunk size");
    // `Matrix::new` guarantees this; every load of the products relies on it.
    assert_eq!(
        Some(data.len()),
        g.n_tiles().checked_mul(g.tile_elems()),
        "matvec: weight length"
    );
    data
}

/// `y = W x` over the row-tiled layout.
#[inline(always)]
pub(crate) fn matvec<S: Simd, const ACC: usize>(s: S, w: &Matrix<'_>, x: &[f32], y: &mut [f32]) {
    let Matrix::Float(m) = w else {
        panic!("matvec of a block-quantized matrix: use matvec_q8");
    };
    let g = *m.geometry();
    assert_eq!(x.len(), g.cols, "matvec: x length");
    assert_eq!(y.len(), g.rows, "matvec: y length");
    match m.data() {
        FloatSlice::F32(d) => matvec_typed::<S, f32, ACC>(s, tiled(d, &g), &g, x, y),
        FloatSlice::F16(d) => matvec_typed::<S, f16, ACC>(s, tiled(d, &g), &g, x, y),
    }
}

/// The tiled GEMV: tile after tile, front to back. A tile is cut into groups of at
/// most 4 rows ([`rows`]); with 4 rows per tile (every real model) a tile is one group,
/// so the weights stream strictly linearly and each chunk of `x` is loaded once per
/// tile. Each row's result depends only on its own weights and `x`, never on the tile
/// range or grouping, so splitting a matrix with [`Matrix::tiles`] gives the same bits.
#[inline(always)]
fn matvec_typed<S: Simd, W: Weight, const ACC: usize>(
    s: S,
    data: &[W],
    g: &TileGeometry,
    x: &[f32],
    y: &mut [f32],
) {
    let (rt, c) = (g.tile_rows, W::CHUNK);
    let te = g.tile_elems();
    let mut tail = [0.0f32; MAX_CHUNK];
    let cols = [Cols::new(x, g, c, &mut tail)];
    let stride = rt * c;
    // `y` has `rows <= n_tiles * rt` entries, so tile `t` below is < n_tiles.
    for (t, yt) in y.chunks_mut(rt).enumerate() {
        for (gi, yg) in yt.chunks_mut(4).enumerate() {
            // SAFETY: group `gi` of tile `t` starts at row `4 gi < rt` of a tile inside
            // `data` (`t < n_tiles`, length checked by `tiled`); for every chunk `k <
            // n_chunks` and row `r < yg.len() <= rt - 4 gi` of the group, the CHUNK
            // elements at `w + k * stride + r * CHUNK` lie in that tile.
            unsafe {
                let w = data.as_ptr().add(t * te + gi * 4 * c);
                match yg.len() {
                    4 => yg.copy_from_slice(&rows::<S, W, 4, 1, ACC>(s, w, stride, &cols, true)[0]),
                    3 => yg.copy_from_slice(&rows::<S, W, 3, 1, ACC>(s, w, stride, &cols, true)[0]),
                    2 => yg.copy_from_slice(&rows::<S, W, 2, 1, ACC>(s, w, stride, &cols, true)[0]),
                    _ => yg.copy_from_slice(&rows::<S, W, 1, 1, ACC>(s, w, stride, &cols, true)[0]),
                }
            }
        }
    }
}

/// `Y = X Wᵀ` over the row-tiled layout, for the inputs stored one after another in
/// `x`: row `t` of `y` is bit for bit [`matvec`] of row `t` of `x`.
#[inline(always)]
pub(crate) fn matmul<S: Simd, const ACC: usize>(s: S, w: &Matrix<'_>, x: &[f32], y: &mut [f32]) {
    let Matrix::Float(m) = w else {
        panic!("matmul of a block-quantized matrix: use matmul_q8");
    };
    let g = *m.geometry();
    let n = crate::batch_len(w, x.len(), y.len(), "matmul");
    if n == 0 || g.rows == 0 {
        return;
    }
    match m.data() {
        FloatSlice::F32(d) => matmul_typed::<S, f32, ACC>(s, tiled(d, &g), &g, n, x, y),
        FloatSlice::F16(d) => matmul_typed::<S, f16, ACC>(s, tiled(d, &g), &g, n, x, y),
    }
}

/// Bytes of weights per row block of the float GEMM: the block stays in the L2 cache
/// while every group of inputs passes over it, so it is read from memory once per
/// batch. Measured on the Xeon with AVX-512 (1 thread, `vtc bench -p 64` of SmolLM2
/// f32, tok/s): 64 KiB 297, 256 KiB 313, 1 MiB 246, no blocking 175.
const GEMM_BLOCK_BYTES: usize = 256 << 10;

/// The tiled GEMM, register-blocked: `G` rows of a tile times `T` inputs at a time
/// ([`rows`]), `G * T * ACC` accumulators live with `T` input vectors and one weight
/// vector, so each weight vector is loaded once for `T` inputs and each input vector
/// once for `G` rows. Per vector width, measured (`cargo bench --bench matmul`, G
/// multiply-adds/s on the Xeon, and `vtc bench -p 64` of SmolLM2):
/// - 16 lanes (AVX-512), f32: 4 x 4 (16 accumulators; 44-47 G/s, pp64 385 tok/s against
///   345 for 4 x 2). 4 x 5 and 4 x 6 would fit the 32 registers, but LLVM then keeps
///   accumulators on the stack (pp64 170-190 tok/s).
/// - 16 lanes, f16: 4 x 2 (41-44 G/s; 4 x 4 spills around the conversions: 28 G/s,
///   2 x 2: 35 G/s).
/// - otherwise 2 x 3 (AVX2: 12 + 3 + 1 of 16 registers, 29 G/s against 27 for 2 x 2;
///   NEON: 24 + 3 + 1 of 32).
///
/// Cache blocking: the tiles are taken in row blocks of about [`GEMM_BLOCK_BYTES`]; for
/// each block, every group of `T` inputs (at most 4 x 1536 floats: in L1) runs over
/// every tile of the block (in L2), and the next block is prefetched meanwhile. Every
/// row of every input goes through the operations of [`matvec_typed`], so the bits are
/// the same.
#[inline(always)]
fn matmul_typed<S: Simd, W: Weight, const ACC: usize>(
    s: S,
    data: &[W],
    g: &TileGeometry,
    n: usize,
    x: &[f32],
    y: &mut [f32],
) {
    if S::LANES == 16 && size_of::<W>() == 2 {
        gemm::<S, W, 4, 2, ACC>(s, data, g, n, x, y)
    } else if S::LANES == 16 {
        gemm::<S, W, 4, 4, ACC>(s, data, g, n, x, y)
    } else {
        gemm::<S, W, 2, 3, ACC>(s, data, g, n, x, y)
    }
}

/// [`matmul_typed`] with a `G` x `T` register block: the loop over row blocks.
#[inline(always)]
fn gemm<S: Simd, W: Weight, const G: usize, const T: usize, const ACC: usize>(
    s: S,
    data: &[W],
    g: &TileGeometry,
    n: usize,
    x: &[f32],
    y: &mut [f32],
) {
    let te = g.tile_elems();
    let n_tiles = g.n_tiles();
    let block = (GEMM_BLOCK_BYTES / (te * size_of::<W>()).max(1)).max(1);
    let mut t0 = 0;
    while t0 < n_tiles {
        let t1 = (t0 + block).min(n_tiles);
        let next = &data[t1 * te..(t1 + block).min(n_tiles) * te];
        gemm_block::<S, W, G, T, ACC>(s, &data[t0 * te..t1 * te], t0..t1, g, next, n, x, y);
        t0 = t1;
    }
}

/// The tiles `t0 .. t1` of one row block (`blk`, tile `t` at `(t - t0) * tile_elems`) times
/// every input, `T` inputs at a time, the bytes of `next` (the next block) prefetched a
/// few lines per tile visited (the first block is fetched by the first group's
/// in-stream prefetches), so memory and arithmetic overlap.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gemm_block<S: Simd, W: Weight, const G: usize, const T: usize, const ACC: usize>(
    s: S,
    blk: &[W],
    tiles: std::ops::Range<usize>,
    g: &TileGeometry,
    next: &[W],
    n: usize,
    x: &[f32],
    y: &mut [f32],
) {
    let (rt, c, m, k) = (g.tile_rows, W::CHUNK, g.rows, g.cols);
    let (te, stride) = (g.tile_elems(), rt * c);
    let (t0, t1) = (tiles.start, tiles.end);
    debug_assert_eq!(blk.len(), (t1 - t0) * te);
    let next_bytes = size_of_val(next);
    let visits = n.div_ceil(T) * (t1 - t0);
    let per_visit = next_bytes.div_ceil(64).div_ceil(visits.max(1));
    let mut ahead = 0;
    let mut tails = [[0.0f32; MAX_CHUNK]; T];
    let mut i = 0;
    while i < n {
        // Inputs `i .. i + live`; the slots past the last input repeat it (computed and
        // discarded: a ragged batch costs at most `T - 1` extra inputs).
        let live = T.min(n - i);
        let mut cols = [Cols::EMPTY; T];
        for (j, (col, tail)) in cols.iter_mut().zip(tails.iter_mut()).enumerate() {
            let at = (i + j.min(live - 1)) * k;
            *col = Cols::new(&x[at..at + k], g, c, tail);
        }
        for t in t0..t1 {
            for _ in 0..per_visit {
                if ahead < next_bytes {
                    s.prefetch(next.as_ptr().cast::<u8>().wrapping_add(ahead));
                    ahead += 64;
                }
            }
            let here = rt.min(m - t * rt);
            let mut r = 0;
            while r < here {
                // A whole group of G rows inside the tile's storage (rows past `here` are
                // the last tile's padding: read, discarded); else one row.
                let g_rows = if r + G <= rt { G } else { 1 };
                // SAFETY: rows `r .. r + g_rows <= rt` of tile `t` (`t0 <= t < t1`) lie
                // in `blk`, tiles `t0 .. t1` of the data whose length `tiled` checked;
                // for every chunk `k < n_chunks` and row `j` of the group, the CHUNK
                // elements at `w + k * stride + j * CHUNK` lie in that tile. `cols` are
                // whole inputs.
                let out = unsafe {
                    let w = blk.as_ptr().add((t - t0) * te + r * c);
                    if g_rows == G {
                        rows::<S, W, G, T, ACC>(s, w, stride, &cols, i == 0)
                    } else {
                        let o = rows::<S, W, 1, T, ACC>(s, w, stride, &cols, i == 0);
                        let mut out = [[0.0; G]; T];
                        for j in 0..T {
                            out[j][0] = o[j][0];
                        }
                        out
                    }
                };
                let take = g_rows.min(here - r);
                for (j, o) in out.iter().enumerate().take(live) {
                    let at = (i + j) * m + t * rt + r;
                    y[at..at + take].copy_from_slice(&o[..take]);
                }
                r += g_rows;
            }
        }
        i += live;
    }
}

/// Dot products of `G` rows of one tile with each of the `T` inputs `cols`: per chunk,
/// each input's chunk is loaded once (`ACC` vectors at a time) and each row's weights
/// once, multiplied into `G * T` dot products with `ACC` independent accumulators each
/// (`G * T * ACC` FMA chains hide the FMA latency). Result `[t][r]` is row `r` times
/// input `t`; its operations do not depend on `G` or `T`.
///
/// # Safety
/// For every chunk `k < cols.n_chunks` and row `r < G`, `w + k * stride + r * CHUNK`
/// must be valid for reads of `CHUNK` elements; all `cols` have the same `n_chunks`.
#[inline(always)]
unsafe fn rows<S: Simd, W: Weight, const G: usize, const T: usize, const ACC: usize>(
    s: S,
    w: *const W,
    stride: usize,
    cols: &[Cols; T],
    prefetch: bool,
) -> [[f32; G]; T] {
    const { assert!(ACC * S::LANES == PARTIALS) };
    let l = S::LANES;
    let mut acc = [[[s.splat(0.0); ACC]; G]; T];
    for k in 0..cols[0].n_chunks {
        let wk = w.wrapping_add(k * stride);
        // One prefetch per 64-byte line of this chunk's rows, `W::PREFETCH` bytes ahead
        // (past the end of the matrix it is a harmless hint).
        if prefetch {
            let ahead = wk.cast::<u8>().wrapping_add(W::PREFETCH);
            for line in 0..G * tvl_format::ALIGN / 64 {
                s.prefetch(ahead.wrapping_add(line * 64));
            }
        }
        let mut xk = [std::ptr::null::<f32>(); T];
        for t in 0..T {
            xk[t] = cols[t].chunk::<W>(k);
        }
        for b in 0..W::CHUNK / PARTIALS {
            // One accumulator index at a time, so only T input vectors are live beside
            // the accumulators.
            for j in 0..ACC {
                let off = b * PARTIALS + j * l;
                let mut xv = [s.splat(0.0); T];
                for t in 0..T {
                    // SAFETY: `xk[t]` is a whole chunk of an input (`Cols::chunk`),
                    // and `off + LANES <= CHUNK`.
                    xv[t] = unsafe { s.loadu(xk[t].add(off)) };
                }
                for r in 0..G {
                    // SAFETY: chunk `k` of row `r` is readable (the caller's contract)
                    // and the vector lies inside it, as above.
                    let wv = unsafe { W::load(s, wk.add(r * W::CHUNK + off)) };
                    for t in 0..T {
                        acc[t][r][j] = s.fma(wv, xv[t], acc[t][r][j]);
                    }
                }
            }
        }
    }
    let mut out = [[0.0f32; G]; T];
    for t in 0..T {
        for r in 0..G {
            out[t][r] = reduce_acc(s, acc[t][r]);
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// Vector operations
// ---------------------------------------------------------------------------------

/// rmsnorm: the sum of squares is a canonical [`dot`]; the rest is Scalar's arithmetic
/// (`x * inv * w`, same order, no FMA), so only the sum of squares differs from it.
#[inline(always)]
pub(crate) fn rmsnorm<S: Simd, const ACC: usize>(
    s: S,
    out: &mut [f32],
    x: &[f32],
    weight: &[f32],
    eps: f32,
) {
    assert_eq!(out.len(), x.len(), "rmsnorm: out length");
    assert_eq!(weight.len(), x.len(), "rmsnorm: weight length");
    if x.is_empty() {
        return;
    }
    let ss = dot::<S, ACC>(s, x, x) / x.len() as f32;
    let inv = 1.0 / (ss + eps).sqrt();
    let vinv = s.splat(inv);
    let l = S::LANES;
    let mut oc = out.chunks_exact_mut(l);
    let (mut xc, mut wc) = (x.chunks_exact(l), weight.chunks_exact(l));
    for ((o, xv), wv) in (&mut oc).zip(&mut xc).zip(&mut wc) {
        // SAFETY: every chunk holds LANES floats.
        unsafe {
            let v = s.mul(s.mul(s.loadu(xv.as_ptr()), vinv), s.loadu(wv.as_ptr()));
            s.storeu(o.as_mut_ptr(), v);
        }
    }
    for ((o, &v), &g) in oc
        .into_remainder()
        .iter_mut()
        .zip(xc.remainder())
        .zip(wc.remainder())
    {
        *o = v * inv * g;
    }
}

/// Softmax: the max (exact in any order), `e = exp(x - max)` ([`exp`]), their sum in
/// the canonical 16 partials (plain adds, element `i` into partial `i % 16`), then
/// `e * (1 / sum)` as Scalar does.
#[inline(always)]
pub(crate) fn softmax<S: Simd, const ACC: usize>(s: S, x: &mut [f32]) {
    const { assert!(ACC * S::LANES == PARTIALS) };
    if x.is_empty() {
        return;
    }
    let l = S::LANES;

    let mut m = [s.splat(f32::NEG_INFINITY); ACC];
    let blocks = x.chunks_exact(PARTIALS);
    let rest = blocks.remainder();
    for blk in blocks {
        for j in 0..ACC {
            // SAFETY: every block holds PARTIALS = ACC * LANES floats.
            m[j] = s.max(m[j], unsafe { s.loadu(blk.as_ptr().add(j * l)) });
        }
    }
    for (j, part) in rest.chunks(l).enumerate() {
        m[j] = s.max(m[j], load_upto(s, part, f32::NEG_INFINITY));
    }
    let mut mv = m[0];
    for v in &m[1..] {
        mv = s.max(mv, *v);
    }
    let vmax = s.splat(s.reduce_max(mv));

    let mut acc = [s.splat(0.0); ACC];
    let mut blocks = x.chunks_exact_mut(PARTIALS);
    for blk in &mut blocks {
        for j in 0..ACC {
            // SAFETY: every block holds PARTIALS = ACC * LANES floats.
            unsafe {
                let p = blk.as_mut_ptr().add(j * l);
                let e = exp(s, s.sub(s.loadu(p), vmax));
                s.storeu(p, e);
                acc[j] = s.add(acc[j], e);
            }
        }
    }
    for (j, part) in blocks.into_remainder().chunks_mut(l).enumerate() {
        let e = exp(s, s.sub(load_upto(s, part, 0.0), vmax));
        store_upto(s, part, e);
        // Reload, so the lanes past the end add zeros, not exp(-max).
        acc[j] = s.add(acc[j], load_upto(s, part, 0.0));
    }
    let inv = 1.0 / reduce_acc(s, acc);
    scale(s, x, inv);
}

/// `x[i] *= k`.
#[inline(always)]
fn scale<S: Simd>(s: S, x: &mut [f32], k: f32) {
    let vk = s.splat(k);
    let mut xc = x.chunks_exact_mut(S::LANES);
    for c in &mut xc {
        // SAFETY: every chunk holds LANES floats.
        unsafe { s.storeu(c.as_mut_ptr(), s.mul(s.loadu(c.as_ptr()), vk)) };
    }
    for v in xc.into_remainder() {
        *v *= k;
    }
}

/// RoPE with Scalar's arithmetic (`a c - b s`, `a s + b c`, no FMA): bit-identical to
/// [`Scalar`](crate::Scalar). Half-split pairs are two contiguous runs; interleaved
/// pairs are rotated in place with `x * [c0 c0 c1 c1..] + swap_pairs(x) * [-s0 s0 -s1
/// s1..]`.
#[inline(always)]
pub(crate) fn rope<S: Simd>(
    s: S,
    x: &mut [f32],
    head_dim: usize,
    cos: &[f32],
    sin: &[f32],
    style: RopeStyle,
) {
    assert!(
        head_dim.is_multiple_of(2) && head_dim > 0,
        "rope: head_dim must be even"
    );
    assert_eq!(x.len() % head_dim, 0, "rope: x length");
    let half = head_dim / 2;
    assert!(cos.len() == half && sin.len() == half, "rope: table length");
    let l = S::LANES;
    match style {
        RopeStyle::HalfSplit => {
            for head in x.chunks_exact_mut(head_dim) {
                let (a, b) = head.split_at_mut(half);
                let mut i = 0;
                while i + l <= half {
                    // SAFETY: `i + LANES <= half`, the length of `a`, `b`, `cos`, `sin`.
                    unsafe {
                        let (va, vb) = (s.loadu(a.as_ptr().add(i)), s.loadu(b.as_ptr().add(i)));
                        let c = s.loadu(cos.as_ptr().add(i));
                        let sn = s.loadu(sin.as_ptr().add(i));
                        s.storeu(a.as_mut_ptr().add(i), s.sub(s.mul(va, c), s.mul(vb, sn)));
                        s.storeu(b.as_mut_ptr().add(i), s.add(s.mul(va, sn), s.mul(vb, c)));
                    }
                    i += l;
                }
                for i in i..half {
                    let (x0, x1) = (a[i], b[i]);
                    a[i] = x0 * cos[i] - x1 * sin[i];
                    b[i] = x0 * sin[i] + x1 * cos[i];
                }
            }
        }
        RopeStyle::Interleaved => {
            let mut signs = [1.0f32; MAX_LANES];
            for v in signs.iter_mut().step_by(2) {
                *v = -1.0;
            }
            // SAFETY: `signs` holds MAX_LANES >= LANES floats.
            let sign = unsafe { s.loadu(signs.as_ptr()) };
            for head in x.chunks_exact_mut(head_dim) {
                let mut j = 0;
                while j + l <= head_dim {
                    // SAFETY: `j + LANES <= head_dim`, and `j` and LANES are even, so the
                    // LANES / 2 table entries from `j / 2` end by `head_dim / 2 = half`.
                    unsafe {
                        let p = head.as_mut_ptr().add(j);
                        let v = s.loadu(p);
                        let c = s.load_dup(cos.as_ptr().add(j / 2));
                        let sn = s.mul(s.load_dup(sin.as_ptr().add(j / 2)), sign);
                        s.storeu(p, s.add(s.mul(v, c), s.mul(s.swap_pairs(v), sn)));
                    }
                    j += l;
                }
                for i in j / 2..half {
                    let (x0, x1) = (head[2 * i], head[2 * i + 1]);
                    head[2 * i] = x0 * cos[i] - x1 * sin[i];
                    head[2 * i + 1] = x0 * sin[i] + x1 * cos[i];
                }
            }
        }
    }
}

/// `silu(g) * u = g / (1 + exp(-g)) * u`, Scalar's arithmetic with [`exp`].
#[inline(always)]
fn silu_mul<S: Simd>(s: S, g: S::V, u: S::V) -> S::V {
    let e = exp(s, s.mul(g, s.splat(-1.0)));
    s.mul(s.div(g, s.add(s.splat(1.0), e)), u)
}

/// `gelu(g) * u` with GELU's tanh form, `0.5 g (1 + tanh(c (g + 0.044715 g^3)))`,
/// `c = sqrt(2 / pi)`, computed as the equal `g / (1 + exp(-z)) * u` with
/// `z = g (2c + 2c 0.044715 g^2)`: the arithmetic of [`silu_mul`] on `z`.
#[inline(always)]
fn gelu_mul<S: Simd>(s: S, g: S::V, u: S::V) -> S::V {
    let z = s.mul(g, s.fma(s.mul(g, g), s.splat(GELU_K2), s.splat(GELU_K1)));
    let e = exp(s, s.mul(z, s.splat(-1.0)));
    s.mul(s.div(g, s.add(s.splat(1.0), e)), u)
}

/// `2 sqrt(2 / pi)`.
const GELU_K1: f32 = 1.595_769_2;
/// `2 sqrt(2 / pi) 0.044715`.
const GELU_K2: f32 = 0.071_354_814;

/// SwiGLU: `gate[i] = silu(gate[i]) * up[i]`.
#[inline(always)]
pub(crate) fn swiglu<S: Simd>(s: S, gate: &mut [f32], up: &[f32]) {
    glu::<S, Silu>(s, gate, up);
}

/// GeGLU (tanh GELU): `gate[i] = gelu(gate[i]) * up[i]`.
#[inline(always)]
pub(crate) fn geglu<S: Simd>(s: S, gate: &mut [f32], up: &[f32]) {
    glu::<S, Gelu>(s, gate, up);
}

/// The activation of a gated linear unit, as a type (not a closure: a closure's call
/// goes through a shim that is not `inline(always)`, and out of line, outside the
/// caller's target features, every SIMD operation would be a function call).
trait Gate {
    fn apply<S: Simd>(s: S, g: S::V, u: S::V) -> S::V;
}

/// SiLU: [`silu_mul`].
struct Silu;
/// tanh GELU: [`gelu_mul`].
struct Gelu;

impl Gate for Silu {
    #[inline(always)]
    fn apply<S: Simd>(s: S, g: S::V, u: S::V) -> S::V {
        silu_mul(s, g, u)
    }
}

impl Gate for Gelu {
    #[inline(always)]
    fn apply<S: Simd>(s: S, g: S::V, u: S::V) -> S::V {
        gelu_mul(s, g, u)
    }
}

/// A gated linear unit: `gate[i] = G(gate[i]) * up[i]` lane by lane (the tail padded
/// with zeros).
#[inline(always)]
fn glu<S: Simd, G: Gate>(s: S, gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "glu: lengths");
    let mut gc = gate.chunks_exact_mut(S::LANES);
    let mut uc = up.chunks_exact(S::LANES);
    for (g, u) in (&mut gc).zip(&mut uc) {
        // SAFETY: every chunk holds LANES floats.
        unsafe {
            let v = G::apply(s, s.loadu(g.as_ptr()), s.loadu(u.as_ptr()));
            s.storeu(g.as_mut_ptr(), v);
        }
    }
    let (g, u) = (gc.into_remainder(), uc.remainder());
    if !g.is_empty() {
        let v = G::apply(s, load_upto(s, g, 0.0), load_upto(s, u, 0.0));
        store_upto(s, g, v);
    }
}

/// Whether `n` rows of `d` floats at `stride` fit in `len` floats.
fn strided_fits(n: usize, d: usize, stride: usize, len: usize) -> bool {
    stride >= d
        && (n - 1)
            .checked_mul(stride)
            .and_then(|v| v.checked_add(d))
            .is_some_and(|need| need <= len)
}

/// Attention scores: a canonical [`dot`] per key, times `scale`.
#[inline(always)]
pub(crate) fn attn_scores<S: Simd, const ACC: usize>(
    s: S,
    q: &[f32],
    keys: &[f32],
    stride: usize,
    scale: f32,
    out: &mut [f32],
) {
    let (n, d) = (out.len(), q.len());
    if n == 0 {
        return;
    }
    assert!(
        strided_fits(n, d, stride, keys.len()),
        "attn_scores: keys length"
    );
    for (t, o) in out.iter_mut().enumerate() {
        *o = dot::<S, ACC>(s, q, &keys[t * stride..t * stride + d]) * scale;
    }
}

/// Attention output: `out[k] = Σ_t probs[t] values[t][k]`, each element one chain of
/// fused multiply-adds in increasing `t` from 0. Columns are processed in blocks held
/// in registers across all `t`; the blocking does not change any element's chain.
#[inline(always)]
pub(crate) fn attn_values<S: Simd>(
    s: S,
    probs: &[f32],
    values: &[f32],
    stride: usize,
    out: &mut [f32],
) {
    let (n, d) = (probs.len(), out.len());
    out.fill(0.0);
    if n == 0 {
        return;
    }
    assert!(
        strided_fits(n, d, stride, values.len()),
        "attn_values: values length"
    );
    let l = S::LANES;
    let mut c0 = 0;
    while c0 + 4 * l <= d {
        // SAFETY: `c0 + 4 LANES <= d`, so for every `t < n` the block
        // `values[t * stride + c0 ..][.. 4 LANES]` ends by `(n - 1) * stride + d <=
        // values.len()` (checked above); `out[c0..]` holds at least 4 LANES floats.
        unsafe { axpy_block::<S, 4>(s, probs, values.as_ptr().add(c0), stride, &mut out[c0..]) };
        c0 += 4 * l;
    }
    while c0 + l <= d {
        // SAFETY: as above, with blocks of one vector (`c0 + LANES <= d`).
        unsafe { axpy_block::<S, 1>(s, probs, values.as_ptr().add(c0), stride, &mut out[c0..]) };
        c0 += l;
    }
    if c0 < d {
        let rest = d - c0;
        let mut acc = s.splat(0.0);
        for (t, &p) in probs.iter().enumerate() {
            let row = &values[t * stride + c0..t * stride + d];
            acc = s.fma(s.splat(p), load_upto(s, row, 0.0), acc);
        }
        store_upto(s, &mut out[c0..c0 + rest], acc);
    }
}

/// `out[..B * LANES] = Σ_t probs[t] v[t * stride ..][.. B * LANES]`.
///
/// # Safety
/// For every `t < probs.len()`, `v + t * stride` must be valid for reads of
/// `B * LANES` floats; `out.len() >= B * LANES`.
#[inline(always)]
unsafe fn axpy_block<S: Simd, const B: usize>(
    s: S,
    probs: &[f32],
    v: *const f32,
    stride: usize,
    out: &mut [f32],
) {
    let l = S::LANES;
    assert!(out.len() >= B * l);
    let mut acc = [s.splat(0.0); B];
    for (t, &p) in probs.iter().enumerate() {
        let pv = s.splat(p);
        for b in 0..B {
            // SAFETY: the caller's contract.
            let x = unsafe { s.loadu(v.add(t * stride + b * l)) };
            acc[b] = s.fma(pv, x, acc[b]);
        }
    }
    for b in 0..B {
        // SAFETY: `out` holds at least B * LANES floats (asserted).
        unsafe { s.storeu(out.as_mut_ptr().add(b * l), acc[b]) };
    }
}

/// `y[i] += x[i]` (correctly rounded: bit-identical to Scalar).
#[inline(always)]
pub(crate) fn add<S: Simd>(s: S, y: &mut [f32], x: &[f32]) {
    assert_eq!(y.len(), x.len(), "add: lengths");
    let mut yc = y.chunks_exact_mut(S::LANES);
    let mut xc = x.chunks_exact(S::LANES);
    for (a, b) in (&mut yc).zip(&mut xc) {
        // SAFETY: every chunk holds LANES floats.
        unsafe {
            s.storeu(
                a.as_mut_ptr(),
                s.add(s.loadu(a.as_ptr()), s.loadu(b.as_ptr())),
            )
        };
    }
    for (a, &b) in yc.into_remainder().iter_mut().zip(xc.remainder()) {
        *a += b;
    }
}
