//! Weight matrices as kernels see them: borrowed slices in a TVL layout (row-tiled
//! floats or block-tiled quants) plus their geometry.

use half::f16;
use half::slice::HalfFloatSliceExt;
use tvl_format::{BlockGeometry, DType, TileGeometry};

use crate::KernelError;

/// Borrowed weights of one dtype.
#[derive(Clone, Copy, Debug)]
pub enum WeightSlice<'a> {
    /// f32 weights (row-tiled).
    F32(&'a [f32]),
    /// f16 weights (row-tiled), widened to f32 in registers.
    F16(&'a [f16]),
    /// Block-quantized weights (block-tiled).
    Quant(QuantSlice<'a>),
}

/// The two regions of a block-tiled matrix (see [`BlockGeometry`]).
#[derive(Clone, Copy, Debug)]
pub struct QuantSlice<'a> {
    /// A block type.
    pub dtype: DType,
    /// The quant region, `quant_bytes` bytes.
    pub quants: &'a [u8],
    /// The scale region, `scales_len` f16 values.
    pub scales: &'a [f16],
}

impl WeightSlice<'_> {
    /// The dtype of the weights.
    pub fn dtype(&self) -> DType {
        match self {
            Self::F32(_) => DType::F32,
            Self::F16(_) => DType::F16,
            Self::Quant(q) => q.dtype,
        }
    }

    /// Bytes of weight data (both regions for quantized weights; not the alignment
    /// padding between them).
    pub fn nbytes(&self) -> usize {
        match self {
            Self::F32(s) => s.len() * 4,
            Self::F16(s) => s.len() * 2,
            Self::Quant(q) => q.quants.len() + 2 * q.scales.len(),
        }
    }
}

/// Where a matrix's weights are: row-tiled floats or block-tiled quants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Geometry {
    /// `F32`/`F16` in the row-tiled layout.
    Tiled(TileGeometry),
    /// `Q8_0`/`Q4_0`/`Q4_1` in the block-tiled layout.
    Blocked(BlockGeometry),
}

/// A `rows x cols` weight matrix in a TVL layout, borrowed (typically from a
/// memory-mapped TVL file). `y = W x` reads its data once, front to back.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    data: WeightSlice<'a>,
    geom: Geometry,
}

impl<'a> Matrix<'a> {
    /// A matrix over `data`, which must hold exactly the tiled, padded weights of a
    /// `rows x cols` matrix with `tile_rows` rows per tile (for quantized weights: the
    /// quant region without its alignment padding, and the scale region).
    pub fn new(
        data: WeightSlice<'a>,
        rows: usize,
        cols: usize,
        tile_rows: usize,
    ) -> Result<Self, KernelError> {
        let bad = KernelError::Geometry {
            rows,
            cols,
            tile_rows,
        };
        let (geom, want, got) = match data {
            WeightSlice::F32(_) | WeightSlice::F16(_) => {
                let g = TileGeometry::new(rows, cols, tile_rows, data.dtype()).ok_or(bad)?;
                let want = g.total_elems().ok_or(KernelError::Geometry {
                    rows,
                    cols,
                    tile_rows,
                })?;
                let got = match data {
                    WeightSlice::F32(s) => s.len(),
                    WeightSlice::F16(s) => s.len(),
                    WeightSlice::Quant(_) => unreachable!(),
                };
                (Geometry::Tiled(g), want, got)
            }
            WeightSlice::Quant(q) => {
                let g = BlockGeometry::new(rows, cols, tile_rows, q.dtype).ok_or(bad)?;
                let sizes = g.quant_bytes().zip(g.scales_len());
                let Some((qb, ns)) = sizes else {
                    return Err(KernelError::Geometry {
                        rows,
                        cols,
                        tile_rows,
                    });
                };
                // Count both regions in bytes: a mismatch in either is reported.
                let want = qb + 2 * ns;
                let got = if q.quants.len() == qb {
                    q.quants.len() + 2 * q.scales.len()
                } else {
                    q.quants.len()
                };
                (Geometry::Blocked(g), want, got)
            }
        };
        if got != want {
            return Err(KernelError::MatrixSize {
                rows,
                cols,
                tile_rows,
                want,
                got,
            });
        }
        Ok(Self { data, geom })
    }

    /// Logical rows (outputs).
    pub fn rows(&self) -> usize {
        match &self.geom {
            Geometry::Tiled(g) => g.rows,
            Geometry::Blocked(g) => g.rows,
        }
    }

    /// Logical columns (inputs).
    pub fn cols(&self) -> usize {
        match &self.geom {
            Geometry::Tiled(g) => g.cols,
            Geometry::Blocked(g) => g.cols,
        }
    }

    /// Rows per tile.
    pub fn tile_rows(&self) -> usize {
        match &self.geom {
            Geometry::Tiled(g) => g.tile_rows,
            Geometry::Blocked(g) => g.tile_rows,
        }
    }

    /// Number of row tiles.
    pub fn n_tiles(&self) -> usize {
        self.rows().div_ceil(self.tile_rows())
    }

    /// The layout geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geom
    }

    /// The weights.
    pub fn data(&self) -> WeightSlice<'a> {
        self.data
    }

    /// The weights' dtype.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// Whether the weights are block-quantized: products take
    /// [`Backend::matvec_q8`](crate::Backend::matvec_q8) with a quantized input.
    pub fn is_quantized(&self) -> bool {
        matches!(self.data, WeightSlice::Quant(_))
    }

    /// Bytes of weights a product streams (row padding included).
    pub fn nbytes(&self) -> usize {
        self.data.nbytes()
    }

    /// The sub-matrix of tiles `first..first + n` (clipped to the matrix): a contiguous
    /// piece of the weights (of each region, for quantized ones), for splitting a
    /// product across threads.
    pub fn tiles(&self, first: usize, n: usize) -> Matrix<'a> {
        let first = first.min(self.n_tiles());
        let n = n.min(self.n_tiles() - first);
        match (self.data, &self.geom) {
            (WeightSlice::Quant(q), Geometry::Blocked(g)) => {
                let (tq, ts) = (g.tile_quant_bytes(), g.tile_scales());
                Matrix {
                    data: WeightSlice::Quant(QuantSlice {
                        dtype: q.dtype,
                        quants: &q.quants[first * tq..(first + n) * tq],
                        scales: &q.scales[first * ts..(first + n) * ts],
                    }),
                    geom: Geometry::Blocked(g.tiles(first, n)),
                }
            }
            (data, Geometry::Tiled(g)) => {
                let te = g.tile_elems();
                let range = first * te..(first + n) * te;
                let data = match data {
                    WeightSlice::F32(s) => WeightSlice::F32(&s[range]),
                    WeightSlice::F16(s) => WeightSlice::F16(&s[range]),
                    WeightSlice::Quant(_) => unreachable!("quantized data has a block geometry"),
                };
                Matrix {
                    data,
                    geom: Geometry::Tiled(g.tiles(first, n)),
                }
            }
            (_, Geometry::Blocked(_)) => unreachable!("float data has a tile geometry"),
        }
    }

    /// Copy logical row `row` into `out` (widened or dequantized to f32): the
    /// embedding lookup. Each 128-byte chunk (or block) of a row is read whole.
    pub fn row_into(&self, row: usize, out: &mut [f32]) {
        assert!(row < self.rows(), "row {row} out of {} rows", self.rows());
        assert_eq!(out.len(), self.cols());
        match (self.data, &self.geom) {
            (WeightSlice::Quant(q), Geometry::Blocked(g)) => {
                for (b, dst) in out.chunks_exact_mut(g.block_elems()).enumerate() {
                    g.dequantize_at(q.quants, q.scales, row, b, dst);
                }
            }
            (data, Geometry::Tiled(g)) => {
                let chunk = g.chunk;
                for (k, dst) in out.chunks_mut(chunk).enumerate() {
                    let start = g.index(row, k * chunk);
                    match data {
                        WeightSlice::F32(s) => dst.copy_from_slice(&s[start..start + dst.len()]),
                        WeightSlice::F16(s) => {
                            s[start..start + dst.len()].convert_to_f32_slice(dst)
                        }
                        WeightSlice::Quant(_) => unreachable!(),
                    }
                }
            }
            (_, Geometry::Blocked(_)) => unreachable!("float data has a tile geometry"),
        }
    }
}
