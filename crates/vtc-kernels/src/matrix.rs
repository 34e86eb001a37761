//! Weight matrices as kernels see them: borrowed slices in a TVL layout plus their
//! geometry, paired by type. A [`Matrix`] is either a [`FloatMatrix`] (row-tiled
//! `F32`/`F16` data with a [`TileGeometry`]) or a [`QuantMatrix`] (the quant and scale
//! regions of a block type with a [`BlockGeometry`]); no other pairing can be built,
//! and the constructors check that the data has exactly the size its geometry implies.

use half::f16;
use half::slice::HalfFloatSliceExt;
use tvl_format::{BlockGeometry, DType, TileGeometry};

use crate::KernelError;

/// Borrowed weights of one dtype: the input of [`Matrix::new`], and what
/// [`Matrix::data`] gives back.
#[derive(Clone, Copy, Debug)]
pub enum WeightSlice<'a> {
    /// f32 weights (row-tiled).
    F32(&'a [f32]),
    /// f16 weights (row-tiled), widened to f32 in registers.
    F16(&'a [f16]),
    /// Block-quantized weights (block-tiled).
    Quant(QuantSlice<'a>),
}

/// Borrowed float weights (row-tiled), the data of a [`FloatMatrix`].
#[derive(Clone, Copy, Debug)]
pub enum FloatSlice<'a> {
    /// f32 weights.
    F32(&'a [f32]),
    /// f16 weights, widened to f32 in registers.
    F16(&'a [f16]),
}

/// The two regions of a block-tiled matrix (see [`BlockGeometry`]), the data of a
/// [`QuantMatrix`].
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

impl FloatSlice<'_> {
    /// The dtype of the weights (`F32` or `F16`).
    pub fn dtype(&self) -> DType {
        match self {
            Self::F32(_) => DType::F32,
            Self::F16(_) => DType::F16,
        }
    }

    /// Elements of weight data.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(s) => s.len(),
            Self::F16(s) => s.len(),
        }
    }

    /// Whether there is no weight data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of weight data.
    pub fn nbytes(&self) -> usize {
        match self {
            Self::F32(s) => s.len() * 4,
            Self::F16(s) => s.len() * 2,
        }
    }
}

/// A `rows x cols` weight matrix in a TVL layout, borrowed (typically from a
/// memory-mapped TVL file). `y = W x` reads its data once, front to back.
#[derive(Clone, Copy, Debug)]
pub enum Matrix<'a> {
    /// `F32`/`F16` in the row-tiled layout.
    Float(FloatMatrix<'a>),
    /// A block type in the block-tiled layout.
    Quant(QuantMatrix<'a>),
}

/// A row-tiled `F32`/`F16` matrix: data of exactly the size of its geometry.
#[derive(Clone, Copy, Debug)]
pub struct FloatMatrix<'a> {
    data: FloatSlice<'a>,
    geom: TileGeometry,
}

/// A block-tiled matrix: quant and scale regions of exactly the sizes of its
/// geometry.
#[derive(Clone, Copy, Debug)]
pub struct QuantMatrix<'a> {
    data: QuantSlice<'a>,
    geom: BlockGeometry,
}

impl<'a> FloatMatrix<'a> {
    /// A matrix over `data`, which must hold exactly the tiled, padded weights of a
    /// `rows x cols` matrix with `tile_rows` rows per tile.
    pub fn new(
        data: FloatSlice<'a>,
        rows: usize,
        cols: usize,
        tile_rows: usize,
    ) -> Result<Self, KernelError> {
        let shape = Shape {
            rows,
            cols,
            tile_rows,
        };
        let geom = TileGeometry::new(rows, cols, tile_rows, data.dtype()).ok_or(shape.bad())?;
        let want = geom.total_elems().ok_or(shape.bad())?;
        shape.check_size(want, data.len())?;
        Ok(Self { data, geom })
    }

    /// The weights.
    pub fn data(&self) -> FloatSlice<'a> {
        self.data
    }

    /// The layout geometry.
    pub fn geometry(&self) -> &TileGeometry {
        &self.geom
    }

    /// The sub-matrix of tiles `first..first + n` (clipped to the matrix).
    pub fn tiles(&self, first: usize, n: usize) -> FloatMatrix<'a> {
        let g = &self.geom;
        let first = first.min(g.n_tiles());
        let n = n.min(g.n_tiles() - first);
        let te = g.tile_elems();
        let range = first * te..(first + n) * te;
        let data = match self.data {
            FloatSlice::F32(s) => FloatSlice::F32(&s[range]),
            FloatSlice::F16(s) => FloatSlice::F16(&s[range]),
        };
        FloatMatrix {
            data,
            geom: g.tiles(first, n),
        }
    }

    /// Copy logical row `row` into `out` (widened to f32).
    pub fn row_into(&self, row: usize, out: &mut [f32]) {
        let g = &self.geom;
        assert!(row < g.rows, "row {row} out of {} rows", g.rows);
        assert_eq!(out.len(), g.cols);
        let chunk = g.chunk;
        for (k, dst) in out.chunks_mut(chunk).enumerate() {
            let start = g.index(row, k * chunk);
            match self.data {
                FloatSlice::F32(s) => dst.copy_from_slice(&s[start..start + dst.len()]),
                FloatSlice::F16(s) => s[start..start + dst.len()].convert_to_f32_slice(dst),
            }
        }
    }
}

impl<'a> QuantMatrix<'a> {
    /// A matrix over `data`: the quant region (without its alignment padding) and the
    /// scale region of a `rows x cols` matrix with `tile_rows` rows per tile.
    pub fn new(
        data: QuantSlice<'a>,
        rows: usize,
        cols: usize,
        tile_rows: usize,
    ) -> Result<Self, KernelError> {
        let shape = Shape {
            rows,
            cols,
            tile_rows,
        };
        let geom = BlockGeometry::new(rows, cols, tile_rows, data.dtype).ok_or(shape.bad())?;
        let sizes = geom.quant_bytes().zip(geom.scales_len());
        let (qb, ns) = sizes.ok_or(shape.bad())?;
        // Count both regions in bytes: a mismatch in either is reported.
        let got = if data.quants.len() == qb {
            data.quants.len() + 2 * data.scales.len()
        } else {
            data.quants.len()
        };
        shape.check_size(qb + 2 * ns, got)?;
        Ok(Self { data, geom })
    }

    /// The weights (both regions).
    pub fn data(&self) -> QuantSlice<'a> {
        self.data
    }

    /// The layout geometry.
    pub fn geometry(&self) -> &BlockGeometry {
        &self.geom
    }

    /// The sub-matrix of tiles `first..first + n` (clipped to the matrix): a
    /// contiguous piece of each region.
    pub fn tiles(&self, first: usize, n: usize) -> QuantMatrix<'a> {
        let (q, g) = (&self.data, &self.geom);
        let first = first.min(g.n_tiles());
        let n = n.min(g.n_tiles() - first);
        let (tq, ts) = (g.tile_quant_bytes(), g.tile_scales());
        QuantMatrix {
            data: QuantSlice {
                dtype: q.dtype,
                quants: &q.quants[first * tq..(first + n) * tq],
                scales: &q.scales[first * ts..(first + n) * ts],
            },
            geom: g.tiles(first, n),
        }
    }

    /// Copy logical row `row` into `out` (dequantized to f32), block by block.
    pub fn row_into(&self, row: usize, out: &mut [f32]) {
        let g = &self.geom;
        assert!(row < g.rows, "row {row} out of {} rows", g.rows);
        assert_eq!(out.len(), g.cols);
        for (b, dst) in out.chunks_exact_mut(g.block_elems()).enumerate() {
            g.dequantize_at(self.data.quants, self.data.scales, row, b, dst);
        }
    }
}

impl<'a> Matrix<'a> {
    /// A matrix over `data`, which must hold exactly the tiled, padded weights of a
    /// `rows x cols` matrix with `tile_rows` rows per tile (for quantized weights: the
    /// quant region without its alignment padding, and the scale region): a
    /// [`FloatMatrix`] for float data, a [`QuantMatrix`] for quantized data.
    pub fn new(
        data: WeightSlice<'a>,
        rows: usize,
        cols: usize,
        tile_rows: usize,
    ) -> Result<Self, KernelError> {
        Ok(match data {
            WeightSlice::F32(s) => {
                Self::Float(FloatMatrix::new(FloatSlice::F32(s), rows, cols, tile_rows)?)
            }
            WeightSlice::F16(s) => {
                Self::Float(FloatMatrix::new(FloatSlice::F16(s), rows, cols, tile_rows)?)
            }
            WeightSlice::Quant(q) => Self::Quant(QuantMatrix::new(q, rows, cols, tile_rows)?),
        })
    }

    /// Logical rows (outputs).
    pub fn rows(&self) -> usize {
        match self {
            Self::Float(m) => m.geom.rows,
            Self::Quant(m) => m.geom.rows,
        }
    }

    /// Logical columns (inputs).
    pub fn cols(&self) -> usize {
        match self {
            Self::Float(m) => m.geom.cols,
            Self::Quant(m) => m.geom.cols,
        }
    }

    /// Rows per tile.
    pub fn tile_rows(&self) -> usize {
        match self {
            Self::Float(m) => m.geom.tile_rows,
            Self::Quant(m) => m.geom.tile_rows,
        }
    }

    /// Number of row tiles.
    pub fn n_tiles(&self) -> usize {
        self.rows().div_ceil(self.tile_rows())
    }

    /// The weights.
    pub fn data(&self) -> WeightSlice<'a> {
        match self {
            Self::Float(m) => match m.data {
                FloatSlice::F32(s) => WeightSlice::F32(s),
                FloatSlice::F16(s) => WeightSlice::F16(s),
            },
            Self::Quant(m) => WeightSlice::Quant(m.data),
        }
    }

    /// The weights' dtype.
    pub fn dtype(&self) -> DType {
        match self {
            Self::Float(m) => m.data.dtype(),
            Self::Quant(m) => m.data.dtype,
        }
    }

    /// Whether the weights are block-quantized: products take
    /// [`Backend::matvec_q8`](crate::Backend::matvec_q8) with a quantized input.
    pub fn is_quantized(&self) -> bool {
        matches!(self, Self::Quant(_))
    }

    /// Bytes of weights a product streams (row padding included).
    pub fn nbytes(&self) -> usize {
        match self {
            Self::Float(m) => m.data.nbytes(),
            Self::Quant(m) => m.data.quants.len() + 2 * m.data.scales.len(),
        }
    }

    /// The sub-matrix of tiles `first..first + n` (clipped to the matrix): a contiguous
    /// piece of the weights (of each region, for quantized ones), for splitting a
    /// product across threads.
    pub fn tiles(&self, first: usize, n: usize) -> Matrix<'a> {
        match self {
            Self::Float(m) => Self::Float(m.tiles(first, n)),
            Self::Quant(m) => Self::Quant(m.tiles(first, n)),
        }
    }

    /// Copy logical row `row` into `out` (widened or dequantized to f32): the
    /// embedding lookup. Each 128-byte chunk (or block) of a row is read whole.
    pub fn row_into(&self, row: usize, out: &mut [f32]) {
        match self {
            Self::Float(m) => m.row_into(row, out),
            Self::Quant(m) => m.row_into(row, out),
        }
    }
}

/// The shape a matrix constructor was given, and its two errors.
#[derive(Clone, Copy)]
struct Shape {
    rows: usize,
    cols: usize,
    tile_rows: usize,
}

impl Shape {
    /// No geometry of this shape (or its size overflows).
    fn bad(self) -> KernelError {
        KernelError::Geometry {
            rows: self.rows,
            cols: self.cols,
            tile_rows: self.tile_rows,
        }
    }

    /// The data holds `got` units where the geometry needs `want`.
    fn check_size(self, want: usize, got: usize) -> Result<(), KernelError> {
        if got == want {
            return Ok(());
        }
        Err(KernelError::MatrixSize {
            rows: self.rows,
            cols: self.cols,
            tile_rows: self.tile_rows,
            want,
            got,
        })
    }
}
