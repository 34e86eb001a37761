//! Typed, borrowed views of one tensor's bytes in the mapping.

use half::f16;
use tvl_format::{BlockGeometry, DType, Layout, TileGeometry};

use crate::LoadError;

/// One tensor of an open [`TvlFile`](crate::TvlFile): its metadata and its bytes,
/// borrowed from the mapping (nothing is copied).
///
/// For the row-tiled layout the bytes (and the typed slices) are the tiled buffer,
/// padding included, not the logical row-major matrix: find element `(r, c)` at
/// `geometry().unwrap().index(r, c)`.
#[derive(Clone, Copy)]
pub struct TensorView<'a> {
    pub(crate) name: &'a str,
    pub(crate) dtype: DType,
    pub(crate) layout: Layout,
    pub(crate) tile_rows: usize,
    pub(crate) shape: [usize; 4],
    pub(crate) ndim: usize,
    pub(crate) bytes: &'a [u8],
    pub(crate) index: usize,
    pub(crate) offset: u64,
    pub(crate) checksum: u64,
}

impl std::fmt::Debug for TensorView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorView")
            .field("name", &self.name)
            .field("index", &self.index)
            .field("dtype", &self.dtype)
            .field("layout", &self.layout)
            .field("tile_rows", &self.tile_rows)
            .field("shape", &self.shape())
            .field("offset", &self.offset)
            .field("nbytes", &self.bytes.len())
            .finish()
    }
}

impl<'a> TensorView<'a> {
    /// The tensor's name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Position of the tensor's record in the table.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Byte layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Rows per tile for [`Layout::RowTiled`]; 0 for [`Layout::Plain`].
    pub fn tile_rows(&self) -> usize {
        self.tile_rows
    }

    /// Logical dimensions, outermost first (1 to 4 of them).
    pub fn shape(&self) -> &[usize] {
        &self.shape[..self.ndim]
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.ndim
    }

    /// Number of logical elements (product of the shape; padding not counted).
    pub fn numel(&self) -> usize {
        // The loader checked that the padded size fits usize, so this product does too.
        self.shape().iter().product()
    }

    /// Absolute byte offset of the tensor in the file (a multiple of 128).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The tensor's bytes in the mapping, layout padding included.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The checksum stored in the tensor's record (`None` if the writer stored none).
    pub fn stored_checksum(&self) -> Option<u64> {
        (self.checksum != 0).then_some(self.checksum)
    }

    /// Recompute the checksum of the tensor's bytes and compare it with the stored one:
    /// `None` if none is stored, else whether they agree. Reads every byte.
    pub fn verify(&self) -> Option<bool> {
        self.stored_checksum()
            .map(|c| c == tvl_format::checksum(self.bytes))
    }

    /// Bytes of the tensor, layout padding included.
    pub fn nbytes(&self) -> usize {
        self.bytes.len()
    }

    fn check(&self, want: DType) -> Result<(), LoadError> {
        if self.dtype == want {
            Ok(())
        } else {
            Err(LoadError::WrongDType {
                name: self.name.to_string(),
                expected: want,
                found: self.dtype,
            })
        }
    }

    fn cast<T: bytemuck::Pod>(&self, want: DType) -> Result<&'a [T], LoadError> {
        self.check(want)?;
        bytemuck::try_cast_slice(self.bytes).map_err(|_| LoadError::Misaligned {
            name: self.name.to_string(),
            dtype: want,
        })
    }

    /// The elements as `f32` ([`LoadError::WrongDType`] unless the dtype is F32).
    /// Row-tiled tensors give the tiled buffer, padding included.
    pub fn as_f32(&self) -> Result<&'a [f32], LoadError> {
        self.cast(DType::F32)
    }

    /// The elements as `f16` ([`LoadError::WrongDType`] unless the dtype is F16).
    /// Row-tiled tensors give the tiled buffer, padding included.
    pub fn as_f16(&self) -> Result<&'a [f16], LoadError> {
        self.cast(DType::F16)
    }

    /// The elements as bytes ([`LoadError::WrongDType`] unless the dtype is U8; use
    /// [`bytes`](Self::bytes) for the raw bytes of any tensor).
    pub fn as_u8(&self) -> Result<&'a [u8], LoadError> {
        self.check(DType::U8)?;
        Ok(self.bytes)
    }

    /// The elements as `u32` ([`LoadError::WrongDType`] unless the dtype is U32).
    pub fn as_u32(&self) -> Result<&'a [u32], LoadError> {
        self.cast(DType::U32)
    }

    /// The tile geometry of a row-tiled tensor; `None` for other layouts.
    pub fn geometry(&self) -> Option<TileGeometry> {
        match self.layout {
            Layout::RowTiled => {
                TileGeometry::new(self.shape[0], self.shape[1], self.tile_rows, self.dtype)
            }
            _ => None,
        }
    }

    /// The block geometry of a block-tiled (quantized) tensor; `None` otherwise.
    pub fn block_geometry(&self) -> Option<BlockGeometry> {
        match self.layout {
            Layout::BlockTiled => {
                BlockGeometry::new(self.shape[0], self.shape[1], self.tile_rows, self.dtype)
            }
            _ => None,
        }
    }

    /// A block-quantized matrix's two regions, borrowed from the mapping
    /// ([`LoadError::NotQuantized`] for any other tensor).
    pub fn as_quant(&self) -> Result<QuantView<'a>, LoadError> {
        let not = || LoadError::NotQuantized {
            name: self.name.to_string(),
            dtype: self.dtype,
        };
        let g = self.block_geometry().ok_or_else(not)?;
        // The loader checked nbytes == g.nbytes(), so both regions are in bounds.
        let (q, s0, ns) = (
            g.quant_bytes().ok_or_else(not)?,
            g.scales_offset().ok_or_else(not)?,
            g.scales_len().ok_or_else(not)?,
        );
        let scales = bytemuck::try_cast_slice(&self.bytes[s0..s0 + 2 * ns]).map_err(|_| {
            LoadError::Misaligned {
                name: self.name.to_string(),
                dtype: self.dtype,
            }
        })?;
        Ok(QuantView {
            geometry: g,
            quants: &self.bytes[..q],
            scales,
        })
    }

    /// Cache-line utilization of streaming this tensor: logical bytes / bytes of the
    /// 128-byte lines read ([`TileGeometry::line_utilization`] for row-tiled tensors,
    /// [`BlockGeometry::line_utilization`] for block-tiled ones,
    /// [`tvl_format::line_utilization`] of `nbytes` for plain ones).
    pub fn line_utilization(&self) -> f64 {
        if let Some(g) = self.geometry() {
            g.line_utilization()
        } else if let Some(g) = self.block_geometry() {
            g.line_utilization()
        } else {
            tvl_format::line_utilization(self.nbytes())
        }
    }
}

/// The two regions of a block-quantized (`BlockTiled`) matrix, borrowed from the
/// mapping: see [`BlockGeometry`] for where block (r, b) lives.
#[derive(Clone, Copy, Debug)]
pub struct QuantView<'a> {
    /// Shape, dtype and tiling.
    pub geometry: BlockGeometry,
    /// The quant region (`quant_bytes` bytes).
    pub quants: &'a [u8],
    /// The scale region (`scales_len` f16 values).
    pub scales: &'a [f16],
}
