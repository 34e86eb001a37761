//! The row-tiled layout's index arithmetic: the one place that knows where element
//! (r, c) of a weight matrix lives. The writer, the kernels and `inspect` all use it.

use crate::{ALIGN, DType};

/// Shape of a row-tiled matrix: `rows` outputs by `cols` inputs, cut into tiles of
/// `tile_rows` rows and, within a tile, into column chunks of `chunk` elements
/// (128 bytes). A tile stores chunk 0 of its rows 0..R, then chunk 1 of rows 0..R, and
/// so on; tiles follow each other. Rows past `rows` and columns past `cols` are zero
/// padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileGeometry {
    /// Logical rows (outputs).
    pub rows: usize,
    /// Logical columns (inputs).
    pub cols: usize,
    /// Rows per tile (R).
    pub tile_rows: usize,
    /// Elements per column chunk (128 bytes / element size).
    pub chunk: usize,
    /// Bytes per element.
    pub elem_size: usize,
}

impl TileGeometry {
    /// Geometry of a `rows` x `cols` matrix of `dtype` in tiles of `tile_rows` rows.
    /// `None` if `tile_rows` is 0, `dtype` is not a float type, or the padded size
    /// overflows `usize`.
    pub fn new(rows: usize, cols: usize, tile_rows: usize, dtype: DType) -> Option<Self> {
        if tile_rows == 0 || !dtype.is_float() {
            return None;
        }
        let g = Self {
            rows,
            cols,
            tile_rows,
            chunk: dtype.chunk_elems(),
            elem_size: dtype.size(),
        };
        g.nbytes()?;
        // One tile must be addressable too (it can overflow when rows == 0).
        g.cols
            .div_ceil(g.chunk)
            .checked_mul(g.chunk)?
            .checked_mul(tile_rows)?
            .checked_mul(g.elem_size)?;
        Some(g)
    }

    /// Number of row tiles: ceil(rows / tile_rows).
    pub fn n_tiles(&self) -> usize {
        self.rows.div_ceil(self.tile_rows)
    }

    /// Number of column chunks: ceil(cols / chunk).
    pub fn n_chunks(&self) -> usize {
        self.cols.div_ceil(self.chunk)
    }

    /// Columns including the padding of the last chunk.
    pub fn padded_cols(&self) -> usize {
        self.n_chunks() * self.chunk
    }

    /// Rows including the padding of the last tile.
    pub fn padded_rows(&self) -> usize {
        self.n_tiles() * self.tile_rows
    }

    /// Elements of one tile (padding included).
    pub fn tile_elems(&self) -> usize {
        self.tile_rows * self.padded_cols()
    }

    /// Elements of the whole tensor (padding included); `None` on overflow.
    pub fn total_elems(&self) -> Option<usize> {
        self.n_tiles()
            .checked_mul(self.tile_rows)?
            .checked_mul(self.cols.div_ceil(self.chunk))?
            .checked_mul(self.chunk)
    }

    /// Bytes of the whole tensor (padding included): always a multiple of 128.
    pub fn nbytes(&self) -> Option<usize> {
        self.total_elems()?.checked_mul(self.elem_size)
    }

    /// Element index of logical (row, col) in the tiled buffer.
    #[inline]
    pub fn index(&self, row: usize, col: usize) -> usize {
        let (tile, r) = (row / self.tile_rows, row % self.tile_rows);
        let (chunk, c) = (col / self.chunk, col % self.chunk);
        tile * self.tile_elems() + chunk * self.tile_rows * self.chunk + r * self.chunk + c
    }

    /// Geometry of the sub-matrix made of tiles `first_tile..first_tile + n_tiles`
    /// (its rows are clipped to the logical rows). Its elements are the contiguous
    /// range starting at `first_tile * tile_elems()`.
    pub fn tiles(&self, first_tile: usize, n_tiles: usize) -> Self {
        let start = (first_tile * self.tile_rows).min(self.rows);
        let end = ((first_tile + n_tiles) * self.tile_rows).min(self.rows);
        Self {
            rows: end - start,
            ..*self
        }
    }

    /// Fraction of the bytes of touched cache lines that hold logical elements: the
    /// kernel streams every byte of the tensor, so this is used bytes / padded bytes.
    pub fn line_utilization(&self) -> f64 {
        let used = (self.rows * self.cols * self.elem_size) as f64;
        match self.nbytes() {
            Some(0) | None => 1.0,
            Some(n) => used / n as f64,
        }
    }
}

/// Line utilization of a plain tensor of `nbytes` bytes that starts on a 128-byte
/// boundary and is read whole: nbytes / (bytes of the 128-byte lines it touches).
pub fn line_utilization(nbytes: usize) -> f64 {
    if nbytes == 0 {
        return 1.0;
    }
    nbytes as f64 / nbytes.div_ceil(ALIGN).saturating_mul(ALIGN) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_a_bijection_onto_logical_slots() {
        for (rows, cols, r) in [(1, 1, 4), (5, 33, 4), (8, 64, 4), (3, 31, 2), (7, 100, 1)] {
            let g = TileGeometry::new(rows, cols, r, DType::F32).unwrap();
            let mut seen = vec![false; g.total_elems().unwrap()];
            for row in 0..rows {
                for col in 0..cols {
                    let i = g.index(row, col);
                    assert!(!seen[i], "slot {i} used twice");
                    seen[i] = true;
                }
            }
            assert_eq!(seen.iter().filter(|s| **s).count(), rows * cols);
            assert_eq!(g.nbytes().unwrap() % ALIGN, 0);
        }
    }

    #[test]
    fn file_order_is_chunk_then_row_within_a_tile() {
        let g = TileGeometry::new(8, 64, 4, DType::F32).unwrap();
        assert_eq!(g.index(0, 0), 0);
        assert_eq!(g.index(1, 0), 32);
        assert_eq!(g.index(3, 31), 127);
        assert_eq!(g.index(0, 32), 128);
        assert_eq!(g.index(4, 0), 256);
        let h = TileGeometry::new(4, 64, 4, DType::F16).unwrap();
        assert_eq!(h.chunk, 64);
        assert_eq!(h.index(1, 0), 64);
    }

    #[test]
    fn utilization_counts_padding() {
        assert_eq!(
            TileGeometry::new(576, 576, 4, DType::F32)
                .unwrap()
                .line_utilization(),
            1.0
        );
        let g = TileGeometry::new(4, 33, 4, DType::F32).unwrap();
        assert!((g.line_utilization() - 33.0 / 64.0).abs() < 1e-12);
        assert_eq!(line_utilization(576 * 4), 1.0);
        assert!((line_utilization(4) - 4.0 / 128.0).abs() < 1e-12);
    }

    #[test]
    fn sub_tiles_clip_rows() {
        let g = TileGeometry::new(10, 32, 4, DType::F32).unwrap();
        assert_eq!(g.tiles(0, 2).rows, 8);
        assert_eq!(g.tiles(2, 1).rows, 2);
        assert_eq!(g.tiles(1, 2).rows, 6);
    }
}
