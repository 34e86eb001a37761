//! Block-quantized weights: the values a block stands for, llama.cpp's quantizers, and
//! the `BlockTiled` layout's index arithmetic (the one place that knows where the
//! quants and scales of block (r, b) live).
//!
//! A block is 32 consecutive elements of one row. `Q8_0` stores 32 signed bytes and a
//! scale `d`; `Q4_0` 32 nibbles and `d`; `Q4_1` 32 nibbles, `d` and a minimum `m`. In
//! a 4-bit block, byte `j` holds element `j` in its low nibble and element `j + 16` in
//! its high nibble (GGUF's order, kept so import is a copy).

use half::f16;

use crate::{ALIGN, DType};

/// Elements per quantization block.
pub const BLOCK: usize = 32;

/// The value of element `j` (`j < 32`) of a block with quant bytes `q`, scale `d` and
/// minimum `m` (ignored unless `Q4_1`), in f32 arithmetic without fused multiply-add:
///
/// - `Q8_0`: `(q[j] as i8) * d`
/// - `Q4_0`: `(nibble(j) - 8) * d`
/// - `Q4_1`: `nibble(j) * d + m`
///
/// where `nibble(j) = q[j] & 15` for `j < 16` and `q[j - 16] >> 4` otherwise. This is
/// ggml's dequantization, bit for bit.
#[inline]
pub fn block_value(dtype: DType, q: &[u8], d: f16, m: f16, j: usize) -> f32 {
    let d = d.to_f32();
    match dtype {
        DType::Q8_0 => f32::from(q[j] as i8) * d,
        DType::Q4_0 => (nibble(q, j) as i32 - 8) as f32 * d,
        DType::Q4_1 => nibble(q, j) as f32 * d + m.to_f32(),
        _ => panic!("block_value of non-block dtype {dtype}"),
    }
}

/// Nibble `j` (`j < 32`) of a 16-byte 4-bit block.
#[inline]
pub fn nibble(q: &[u8], j: usize) -> u8 {
    if j < 16 { q[j] & 15 } else { q[j - 16] >> 4 }
}

/// Dequantize one block into `out` (32 floats), as [`block_value`].
pub fn dequantize_block(dtype: DType, q: &[u8], d: f16, m: f16, out: &mut [f32]) {
    for (j, o) in out[..BLOCK].iter_mut().enumerate() {
        *o = block_value(dtype, q, d, m, j);
    }
}

/// Quantize 32 floats into one block by llama.cpp's reference rules
/// (`quantize_row_*_ref`), so users get the files they know:
///
/// - `Q8_0`: `d = amax / 127`, `q = round(x / d)` (`x * (1 / d)`, half away from zero).
/// - `Q4_0`: `max` = the element of largest magnitude (the first one), `d = max / -8`,
///   `q = min(15, trunc(x * (1 / d) + 8.5))`.
/// - `Q4_1`: `d = (max - min) / 15`, `m = min`, `q = min(15, trunc((x - min) * (1 / d) + 0.5))`.
///
/// `1 / d` is 0 when `d` is 0; `d` and `m` are stored rounded to f16. Writes
/// [`DType::block_bytes`] bytes of `q` and returns `(d, m)` (`m` is 0 unless `Q4_1`).
pub fn quantize_block(dtype: DType, x: &[f32], q: &mut [u8]) -> (f16, f16) {
    let x = &x[..BLOCK];
    match dtype {
        DType::Q8_0 => {
            let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (o, v) in q[..BLOCK].iter_mut().zip(x) {
                *o = ((v * id).round() as i8) as u8;
            }
            (f16::from_f32(d), f16::ZERO)
        }
        DType::Q4_0 => {
            let (mut amax, mut max) = (0.0f32, 0.0f32);
            for &v in x {
                if amax < v.abs() {
                    amax = v.abs();
                    max = v;
                }
            }
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            pack_nibbles(q, |j| ((x[j] * id + 8.5) as i8).min(15) as u8);
            (f16::from_f32(d), f16::ZERO)
        }
        DType::Q4_1 => {
            let (mut min, mut max) = (f32::MAX, -f32::MAX);
            for &v in x {
                if v < min {
                    min = v;
                }
                if v > max {
                    max = v;
                }
            }
            let d = (max - min) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            pack_nibbles(q, |j| (((x[j] - min) * id + 0.5) as i8).min(15) as u8);
            (f16::from_f32(d), f16::from_f32(min))
        }
        _ => panic!("quantize_block to non-block dtype {dtype}"),
    }
}

fn pack_nibbles(q: &mut [u8], nib: impl Fn(usize) -> u8) {
    for (j, o) in q[..BLOCK / 2].iter_mut().enumerate() {
        *o = (nib(j) & 15) | ((nib(j + 16) & 15) << 4);
    }
}

/// Bytes of one row's block that lie together in a tile (one 32-bit lane of an integer
/// dot-product instruction: x86 `vpdpbusd` / `pmaddubsw` + `pmaddwd`, Arm `sdot`).
pub const LANE: usize = 4;

/// Shape of a `BlockTiled` matrix: `rows` outputs by `cols` inputs (`cols` a multiple
/// of [`BLOCK`]), in tiles of `tile_rows` rows. The tensor holds two regions:
///
/// - *quants*, from byte 0: for each tile, for each block column `b`, the quant bytes
///   of block `b` of the tile's rows `0..R`, interleaved [`LANE`] bytes at a time
///   (bytes `0..4` of rows `0..R`, then bytes `4..8` of rows `0..R`, ...), so that one
///   32-byte load holds the same 4 bytes of 8 rows, one row per 32-bit lane;
/// - *scales*, from byte [`scales_offset`](Self::scales_offset) (a multiple of 128):
///   f16 values, for each tile, for each block column, for each field (`d`, then `m`
///   for `Q4_1`), the field of rows `0..R`.
///
/// A kernel computing `R` outputs reads both regions front to back, in step, and gets
/// each row's block sums in its own lane: no horizontal reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockGeometry {
    /// Logical rows (outputs).
    pub rows: usize,
    /// Logical columns (inputs), a multiple of [`BLOCK`].
    pub cols: usize,
    /// Rows per tile (R).
    pub tile_rows: usize,
    /// The block dtype.
    pub dtype: DType,
}

impl BlockGeometry {
    /// Geometry of a `rows x cols` matrix of the block dtype `dtype` in tiles of
    /// `tile_rows` rows. `None` unless `dtype` is a block type, `tile_rows >= 1`,
    /// `cols % 32 == 0` and every size fits `usize`.
    pub fn new(rows: usize, cols: usize, tile_rows: usize, dtype: DType) -> Option<Self> {
        if tile_rows == 0 || !dtype.is_quantized() || !cols.is_multiple_of(BLOCK) {
            return None;
        }
        let g = Self {
            rows,
            cols,
            tile_rows,
            dtype,
        };
        g.nbytes()?;
        // One tile's sizes must be addressable too (they can overflow when rows == 0).
        g.blocks_per_row()
            .checked_mul(tile_rows)?
            .checked_mul(g.block_bytes() + 2 * g.fields())?;
        Some(g)
    }

    /// Blocks per row: `cols / 32`.
    pub fn blocks_per_row(&self) -> usize {
        self.cols / BLOCK
    }

    /// Quant bytes per block (32 for `Q8_0`, 16 for the 4-bit types).
    pub fn block_bytes(&self) -> usize {
        self.dtype.block_bytes()
    }

    /// f16 fields per block: 1 (`d`), or 2 (`d`, `m`) for `Q4_1`.
    pub fn fields(&self) -> usize {
        self.dtype.scale_fields()
    }

    /// Number of row tiles: ceil(rows / tile_rows).
    pub fn n_tiles(&self) -> usize {
        self.rows.div_ceil(self.tile_rows)
    }

    /// Quant bytes of one tile.
    pub fn tile_quant_bytes(&self) -> usize {
        self.tile_rows * self.blocks_per_row() * self.block_bytes()
    }

    /// f16 scale values of one tile.
    pub fn tile_scales(&self) -> usize {
        self.tile_rows * self.blocks_per_row() * self.fields()
    }

    /// Bytes of the quant region (tiles only, before the alignment padding).
    pub fn quant_bytes(&self) -> Option<usize> {
        self.n_tiles()
            .checked_mul(self.tile_rows)?
            .checked_mul(self.blocks_per_row())?
            .checked_mul(self.block_bytes())
    }

    /// f16 values of the scale region.
    pub fn scales_len(&self) -> Option<usize> {
        self.n_tiles()
            .checked_mul(self.tile_rows)?
            .checked_mul(self.blocks_per_row())?
            .checked_mul(self.fields())
    }

    /// Byte offset of the scale region in the tensor: `align_up(quant_bytes)`.
    pub fn scales_offset(&self) -> Option<usize> {
        crate::align_up(self.quant_bytes()?, ALIGN)
    }

    /// Bytes of the whole tensor: `align_up(scales_offset + 2 * scales_len)`.
    pub fn nbytes(&self) -> Option<usize> {
        let end = self
            .scales_offset()?
            .checked_add(self.scales_len()?.checked_mul(2)?)?;
        crate::align_up(end, ALIGN)
    }

    /// Byte offset, within the quant region, of quant byte `k` (`k < block_bytes`) of
    /// block `b` of row `row`.
    #[inline]
    pub fn quant_index(&self, row: usize, b: usize, k: usize) -> usize {
        let (tile, r) = (row / self.tile_rows, row % self.tile_rows);
        let block = (tile * self.blocks_per_row() + b) * self.tile_rows * self.block_bytes();
        block + (k / LANE) * self.tile_rows * LANE + r * LANE + k % LANE
    }

    /// The quant bytes of block `b` of row `row`, gathered from the quant region
    /// `quants` into their logical order (the first [`block_bytes`](Self::block_bytes)
    /// bytes of the result; the rest are zero).
    #[inline]
    pub fn block_quants(&self, quants: &[u8], row: usize, b: usize) -> [u8; BLOCK] {
        let mut out = [0u8; BLOCK];
        let at = self.quant_index(row, b, 0);
        for (k, run) in out[..self.block_bytes()].chunks_exact_mut(LANE).enumerate() {
            let from = at + k * self.tile_rows * LANE;
            run.copy_from_slice(&quants[from..from + LANE]);
        }
        out
    }

    /// Index, within the scale region (in f16 values), of field `field` (0 = `d`,
    /// 1 = `m`) of block `b` of row `row`.
    #[inline]
    pub fn scale_index(&self, row: usize, b: usize, field: usize) -> usize {
        let (tile, r) = (row / self.tile_rows, row % self.tile_rows);
        ((tile * self.blocks_per_row() + b) * self.fields() + field) * self.tile_rows + r
    }

    /// Fields `(d, m)` of block `b` of row `row` from the scale region `scales` (`m` is
    /// zero unless the dtype has it).
    #[inline]
    pub fn block_fields(&self, scales: &[f16], row: usize, b: usize) -> (f16, f16) {
        let d = scales[self.scale_index(row, b, 0)];
        let m = if self.fields() == 2 {
            scales[self.scale_index(row, b, 1)]
        } else {
            f16::ZERO
        };
        (d, m)
    }

    /// Dequantize block `b` of row `row` of a tensor's two regions into `out` (32
    /// floats), as [`block_value`].
    pub fn dequantize_at(
        &self,
        quants: &[u8],
        scales: &[f16],
        row: usize,
        b: usize,
        out: &mut [f32],
    ) {
        let (d, m) = self.block_fields(scales, row, b);
        dequantize_block(self.dtype, &self.block_quants(quants, row, b), d, m, out);
    }

    /// Geometry of the sub-matrix made of tiles `first_tile..first_tile + n_tiles`
    /// (rows clipped to the logical rows). Its quants are the contiguous byte range
    /// from `first_tile * tile_quant_bytes()` and its scales the contiguous range from
    /// `first_tile * tile_scales()`.
    pub fn tiles(&self, first_tile: usize, n_tiles: usize) -> Self {
        let start = (first_tile * self.tile_rows).min(self.rows);
        let end = ((first_tile + n_tiles) * self.tile_rows).min(self.rows);
        Self {
            rows: end - start,
            ..*self
        }
    }

    /// Fraction of the bytes the kernel streams that hold logical data (quants and
    /// scales of real rows): `rows * blocks * (block_bytes + 2 * fields) / nbytes`.
    pub fn line_utilization(&self) -> f64 {
        let used =
            (self.rows * self.blocks_per_row() * (self.block_bytes() + 2 * self.fields())) as f64;
        match self.nbytes() {
            Some(0) | None => 1.0,
            Some(n) => used / n as f64,
        }
    }
}

/// A block-quantized matrix in logical order, as a writer receives it: row `r`'s
/// block `b` has quant bytes `quants[(r * blocks + b) * block_bytes ..][.. block_bytes]`
/// and fields `scales[(r * blocks + b) * fields ..][.. fields]` (`d`, then `m`).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantData {
    /// `Q8_0`, `Q4_0` or `Q4_1`.
    pub dtype: DType,
    /// Quant bytes, row-major by block.
    pub quants: Vec<u8>,
    /// Scale fields, row-major by block.
    pub scales: Vec<f16>,
}

impl QuantData {
    /// Quantize a row-major `[rows, cols]` f32 matrix (`cols % 32 == 0`) by
    /// [`quantize_block`]. `None` if `dtype` is not a block type, `cols` is not a
    /// multiple of 32 or `x.len() != rows * cols`.
    pub fn quantize(dtype: DType, x: &[f32], rows: usize, cols: usize) -> Option<Self> {
        if !dtype.is_quantized()
            || !cols.is_multiple_of(BLOCK)
            || rows.checked_mul(cols)? != x.len()
        {
            return None;
        }
        let n = x.len() / BLOCK;
        let (bb, f) = (dtype.block_bytes(), dtype.scale_fields());
        let mut quants = vec![0u8; n * bb];
        let mut scales = vec![f16::ZERO; n * f];
        for (i, blk) in x.chunks_exact(BLOCK).enumerate() {
            let (d, m) = quantize_block(dtype, blk, &mut quants[i * bb..(i + 1) * bb]);
            scales[i * f] = d;
            if f == 2 {
                scales[i * f + 1] = m;
            }
        }
        Some(Self {
            dtype,
            quants,
            scales,
        })
    }

    /// Dequantize block `i` (row-major block index) into `out` (32 floats).
    pub fn dequantize_block(&self, i: usize, out: &mut [f32]) {
        let (bb, f) = (self.dtype.block_bytes(), self.dtype.scale_fields());
        let m = if f == 2 {
            self.scales[i * f + 1]
        } else {
            f16::ZERO
        };
        dequantize_block(
            self.dtype,
            &self.quants[i * bb..(i + 1) * bb],
            self.scales[i * f],
            m,
            out,
        );
    }

    /// Dequantize everything, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let n = self.quants.len() / self.dtype.block_bytes().max(1);
        let mut out = vec![0.0; n * BLOCK];
        for (i, o) in out.chunks_exact_mut(BLOCK).enumerate() {
            self.dequantize_block(i, o);
        }
        out
    }

    /// Lay the blocks of a `rows x cols` matrix out in the `BlockTiled` order of `g`
    /// (zero padding included): the tensor's bytes.
    pub fn tile(&self, g: &BlockGeometry) -> Option<Vec<u8>> {
        let nb = g.blocks_per_row();
        let (bb, f) = (g.block_bytes(), g.fields());
        if self.quants.len() != g.rows * nb * bb || self.scales.len() != g.rows * nb * f {
            return None;
        }
        let mut out = vec![0u8; g.nbytes()?];
        let s0 = g.scales_offset()?;
        for r in 0..g.rows {
            for b in 0..nb {
                let i = r * nb + b;
                for (k, &v) in self.quants[i * bb..(i + 1) * bb].iter().enumerate() {
                    out[g.quant_index(r, b, k)] = v;
                }
                for k in 0..f {
                    let at = s0 + 2 * g.scale_index(r, b, k);
                    out[at..at + 2].copy_from_slice(&self.scales[i * f + k].to_le_bytes());
                }
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_a_bijection_and_regions_do_not_overlap() {
        for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
            for (rows, cols, r) in [(1, 32, 8), (9, 64, 8), (8, 96, 4), (3, 32, 1), (0, 32, 8)] {
                let g = BlockGeometry::new(rows, cols, r, dtype).unwrap();
                let (bb, f, nb) = (g.block_bytes(), g.fields(), g.blocks_per_row());
                let mut q = vec![false; g.quant_bytes().unwrap()];
                let mut s = vec![false; g.scales_len().unwrap()];
                for row in 0..rows {
                    for b in 0..nb {
                        for k in 0..bb {
                            let o = g.quant_index(row, b, k);
                            assert!(!q[o], "{dtype} {rows}x{cols}/{r}: byte {o} twice");
                            q[o] = true;
                            // Runs of LANE bytes of one row are contiguous.
                            if k % LANE != 0 {
                                assert_eq!(o, g.quant_index(row, b, k - 1) + 1);
                            }
                        }
                        for k in 0..f {
                            let i = g.scale_index(row, b, k);
                            assert!(!s[i]);
                            s[i] = true;
                        }
                    }
                }
                assert_eq!(g.nbytes().unwrap() % ALIGN, 0);
                assert_eq!(g.scales_offset().unwrap() % ALIGN, 0);
                assert!(g.scales_offset().unwrap() >= g.quant_bytes().unwrap());
                assert!(
                    g.scales_offset().unwrap() + 2 * g.scales_len().unwrap() <= g.nbytes().unwrap()
                );
            }
        }
    }

    #[test]
    fn tiling_then_gathering_gives_back_every_block() {
        for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
            for (rows, cols, r) in [(1, 32, 8), (9, 64, 8), (17, 96, 8), (5, 32, 3), (2, 64, 1)] {
                let x: Vec<f32> = (0..rows * cols)
                    .map(|i| ((i * 37) % 101) as f32 - 50.0)
                    .collect();
                let q = QuantData::quantize(dtype, &x, rows, cols).unwrap();
                let g = BlockGeometry::new(rows, cols, r, dtype).unwrap();
                let t = q.tile(&g).unwrap();
                let bb = g.block_bytes();
                let scales: Vec<f16> = t[g.scales_offset().unwrap()..]
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]))
                    .collect();
                let (mut got, mut want) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
                for row in 0..rows {
                    for b in 0..g.blocks_per_row() {
                        let i = row * g.blocks_per_row() + b;
                        let block = g.block_quants(&t, row, b);
                        assert_eq!(&block[..bb], &q.quants[i * bb..(i + 1) * bb]);
                        assert!(block[bb..].iter().all(|&v| v == 0));
                        g.dequantize_at(&t, &scales, row, b, &mut got);
                        q.dequantize_block(i, &mut want);
                        assert_eq!(got.map(f32::to_bits), want.map(f32::to_bits));
                    }
                }
            }
        }
    }

    #[test]
    fn geometry_rejects_what_it_cannot_describe() {
        assert!(BlockGeometry::new(4, 33, 8, DType::Q8_0).is_none());
        assert!(BlockGeometry::new(4, 32, 0, DType::Q8_0).is_none());
        assert!(BlockGeometry::new(4, 32, 8, DType::F32).is_none());
        assert!(BlockGeometry::new(usize::MAX, 32, 8, DType::Q4_1).is_none());
        assert!(BlockGeometry::new(0, usize::MAX - 31, 8, DType::Q4_1).is_none());
    }

    #[test]
    fn smollm2_shapes_use_every_byte() {
        for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
            for (rows, cols) in [
                (576, 576),
                (192, 576),
                (1536, 576),
                (576, 1536),
                (49152, 576),
            ] {
                let g = BlockGeometry::new(rows, cols, 8, dtype).unwrap();
                assert_eq!(g.line_utilization(), 1.0, "{dtype} {rows}x{cols}");
            }
        }
    }

    #[test]
    fn quantizers_follow_llama_cpp_on_hand_checked_blocks() {
        // Q8_0: amax 31.75 -> d = 0.25, id = 4. -1.625 * 4 = -6.5 and 0.125 * 4 = 0.5
        // round half away from zero (to -7 and 1, where half-to-even gives -6 and 0).
        let mut x = [0.0f32; 32];
        x[0] = 31.75;
        x[1] = -1.625;
        x[2] = 0.125;
        let mut q = [0u8; 32];
        let (d, _) = quantize_block(DType::Q8_0, &x, &mut q);
        assert_eq!(d.to_f32(), 0.25);
        assert_eq!(
            (q[0] as i8, q[1] as i8, q[2] as i8, q[3] as i8),
            (127, -7, 1, 0)
        );
        // Q4_0: max = -4 (largest magnitude, negative) -> d = 0.5, id = 2.
        let mut x = [0.0f32; 32];
        x[0] = -4.0;
        x[1] = 3.0;
        x[17] = 1.2;
        let (d, _) = quantize_block(DType::Q4_0, &x, &mut q);
        assert_eq!(d.to_f32(), 0.5);
        // x * 2 + 8.5 truncated: -4 -> 0, 3 -> 14, 0 -> 8, 1.2 -> 10; clamp at 15.
        assert_eq!(
            (nibble(&q, 0), nibble(&q, 1), nibble(&q, 2), nibble(&q, 17)),
            (0, 14, 8, 10)
        );
        let vals: Vec<f32> = (0..32)
            .map(|j| block_value(DType::Q4_0, &q, d, f16::ZERO, j))
            .collect();
        assert_eq!((vals[0], vals[1], vals[17]), (-4.0, 3.0, 1.0));
        // Q4_1: min -1, max 2 -> d = 0.2, m = -1.
        let mut x = [0.5f32; 32];
        x[3] = -1.0;
        x[30] = 2.0;
        let (d, m) = quantize_block(DType::Q4_1, &x, &mut q);
        assert_eq!((d, m), (f16::from_f32(0.2), f16::from_f32(-1.0)));
        assert_eq!((nibble(&q, 3), nibble(&q, 30), nibble(&q, 0)), (0, 15, 8));
    }

    #[test]
    fn quantize_then_dequantize_stays_within_half_a_step() {
        let x: Vec<f32> = (0..64 * 3)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
            let q = QuantData::quantize(dtype, &x, 3, 64).unwrap();
            let y = q.dequantize();
            for (blk, (xs, ys)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
                let d = q.scales[blk * dtype.scale_fields()].to_f32().abs();
                // Half a step plus the f16 rounding of d and m; Q4_0 clips the side
                // opposite its extreme at 7 steps, so a whole step there.
                let steps = if dtype == DType::Q4_0 { 1.0 } else { 0.5 };
                for (a, b) in xs.iter().zip(ys) {
                    assert!((a - b).abs() <= steps * d + 1e-2, "{dtype} {a} {b} d={d}");
                }
            }
        }
    }
}
