//! Weight matrices as kernels see them: a borrowed slice in the TVL row-tiled layout
//! plus its geometry.

use half::f16;
use half::slice::HalfFloatSliceExt;
use tvl_format::{DType, TileGeometry};

use crate::KernelError;

/// Borrowed weight elements of one dtype.
#[derive(Clone, Copy, Debug)]
pub enum WeightSlice<'a> {
    /// f32 weights.
    F32(&'a [f32]),
    /// f16 weights, widened to f32 in registers.
    F16(&'a [f16]),
}

impl WeightSlice<'_> {
    /// Element count.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(s) => s.len(),
            Self::F16(s) => s.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            Self::F32(_) => DType::F32,
            Self::F16(_) => DType::F16,
        }
    }
}

/// A `rows x cols` weight matrix in the row-tiled layout, borrowed (typically from a
/// memory-mapped TVL file). `y = W x` reads `data` once, front to back.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    data: WeightSlice<'a>,
    geom: TileGeometry,
}

impl<'a> Matrix<'a> {
    /// A matrix over `data`, which must hold exactly the tiled, padded elements of a
    /// `rows x cols` matrix with `tile_rows` rows per tile.
    pub fn new(
        data: WeightSlice<'a>,
        rows: usize,
        cols: usize,
        tile_rows: usize,
    ) -> Result<Self, KernelError> {
        let geom = TileGeometry::new(rows, cols, tile_rows, data.dtype()).ok_or(
            KernelError::Geometry {
                rows,
                cols,
                tile_rows,
            },
        )?;
        let want = geom.total_elems().ok_or(KernelError::Geometry {
            rows,
            cols,
            tile_rows,
        })?;
        if data.len() != want {
            return Err(KernelError::MatrixSize {
                rows,
                cols,
                tile_rows,
                want,
                got: data.len(),
            });
        }
        Ok(Self { data, geom })
    }

    /// Logical rows (outputs).
    pub fn rows(&self) -> usize {
        self.geom.rows
    }

    /// Logical columns (inputs).
    pub fn cols(&self) -> usize {
        self.geom.cols
    }

    /// The layout geometry.
    pub fn geometry(&self) -> &TileGeometry {
        &self.geom
    }

    /// The tiled elements.
    pub fn data(&self) -> WeightSlice<'a> {
        self.data
    }

    /// Bytes of weights a `matvec` streams (padding included).
    pub fn nbytes(&self) -> usize {
        self.data.len() * self.data.dtype().size()
    }

    /// The sub-matrix of tiles `first..first + n` (clipped to the matrix): a contiguous
    /// piece of the weights, for splitting a matvec across threads.
    pub fn tiles(&self, first: usize, n: usize) -> Matrix<'a> {
        let first = first.min(self.geom.n_tiles());
        let n = n.min(self.geom.n_tiles() - first);
        let te = self.geom.tile_elems();
        let range = first * te..(first + n) * te;
        let data = match self.data {
            WeightSlice::F32(s) => WeightSlice::F32(&s[range]),
            WeightSlice::F16(s) => WeightSlice::F16(&s[range]),
        };
        Matrix {
            data,
            geom: self.geom.tiles(first, n),
        }
    }

    /// Copy logical row `row` into `out` (widening to f32): the embedding lookup. Each
    /// 128-byte chunk of a row is one whole cache line.
    pub fn row_into(&self, row: usize, out: &mut [f32]) {
        assert!(row < self.rows(), "row {row} out of {} rows", self.rows());
        assert_eq!(out.len(), self.cols());
        let chunk = self.geom.chunk;
        for (k, dst) in out.chunks_mut(chunk).enumerate() {
            let start = self.geom.index(row, k * chunk);
            match self.data {
                WeightSlice::F32(s) => dst.copy_from_slice(&s[start..start + dst.len()]),
                WeightSlice::F16(s) => s[start..start + dst.len()].convert_to_f32_slice(dst),
            }
        }
    }
}
