//! The TVL writer: it lays tensors out exactly as the spec says, so every file it
//! writes passes the loader's checks.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use half::f16;

use crate::{
    ALIGN, BYTE_ORDER_MARK, BlockGeometry, DType, FormatError, Header, Layout, MAGIC, ModelConfig,
    NAME_LEN, QuantData, TABLE_OFFSET, TensorRecord, TileGeometry, VERSION, align_up,
    tensor_nbytes,
};

/// Elements of a tensor in logical row-major order (last dimension contiguous).
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// F32 elements.
    F32(Vec<f32>),
    /// F16 elements.
    F16(Vec<f16>),
    /// Bytes.
    U8(Vec<u8>),
    /// u32 elements.
    U32(Vec<u32>),
    /// Block-quantized matrix (`BlockTiled` layout only).
    Quant(QuantData),
}

impl TensorData {
    /// The dtype these elements are stored as.
    pub fn dtype(&self) -> DType {
        match self {
            Self::F32(_) => DType::F32,
            Self::F16(_) => DType::F16,
            Self::U8(_) => DType::U8,
            Self::U32(_) => DType::U32,
            Self::Quant(q) => q.dtype,
        }
    }

    /// The elements as little-endian bytes (this crate targets little-endian hosts);
    /// for [`TensorData::Quant`], the quant bytes only.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::F32(v) => bytemuck::cast_slice(v),
            Self::F16(v) => bytemuck::cast_slice(v),
            Self::U8(v) => v,
            Self::U32(v) => bytemuck::cast_slice(v),
            Self::Quant(q) => &q.quants,
        }
    }
}

struct Pending {
    record: TensorRecord,
    layout: Layout,
    shape: Vec<usize>,
    data: TensorData,
}

/// Collects tensors, then writes one self-contained TVL file.
///
/// Tensors are written in the order they were added, each at the next 128-byte
/// boundary; row-tiled tensors are reordered into tiles here, so callers always pass
/// logical row-major data.
pub struct TvlWriter {
    config: ModelConfig,
    tensors: Vec<Pending>,
    names: HashSet<String>,
}

impl TvlWriter {
    /// A writer for a file with this model configuration.
    pub fn new(config: ModelConfig) -> Self {
        Self {
            config,
            tensors: Vec::new(),
            names: HashSet::new(),
        }
    }

    /// Number of tensors added so far.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether no tensor was added yet.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Add a plain (row-major) tensor.
    pub fn add_plain(
        &mut self,
        name: &str,
        shape: &[usize],
        data: TensorData,
    ) -> Result<(), FormatError> {
        self.add(name, shape, Layout::Plain, 0, data)
    }

    /// Add a `[rows, cols]` float matrix in the row-tiled layout with `tile_rows` rows
    /// per tile.
    pub fn add_tiled(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
        tile_rows: usize,
        data: TensorData,
    ) -> Result<(), FormatError> {
        self.add(name, &[rows, cols], Layout::RowTiled, tile_rows, data)
    }

    /// Add a `[rows, cols]` block-quantized matrix in the block-tiled layout with
    /// `tile_rows` rows per tile.
    pub fn add_quant(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
        tile_rows: usize,
        data: QuantData,
    ) -> Result<(), FormatError> {
        self.add(
            name,
            &[rows, cols],
            Layout::BlockTiled,
            tile_rows,
            TensorData::Quant(data),
        )
    }

    /// Add a tensor with any layout. `data` is in logical row-major order.
    pub fn add(
        &mut self,
        name: &str,
        shape: &[usize],
        layout: Layout,
        tile_rows: usize,
        data: TensorData,
    ) -> Result<(), FormatError> {
        if name.is_empty() || name.len() >= NAME_LEN || name.contains('\0') {
            return Err(FormatError::BadName(name.to_string()));
        }
        if self.names.contains(name) {
            return Err(FormatError::DuplicateName(name.to_string()));
        }
        if shape.is_empty() || shape.len() > 4 {
            return Err(FormatError::BadRank {
                name: name.to_string(),
                ndim: shape.len(),
            });
        }
        let dtype = data.dtype();
        let mut dims = [0u32; 4];
        for (d, &s) in dims.iter_mut().zip(shape) {
            *d = u32::try_from(s).map_err(|_| FormatError::ShapeOverflow(name.to_string()))?;
        }
        let bad_layout = || FormatError::BadLayout {
            name: name.to_string(),
            layout,
            dtype,
            ndim: shape.len(),
            tile_rows,
        };
        if !layout.allows(dtype, shape.len(), tile_rows) {
            return Err(bad_layout());
        }
        let tile_rows_field = u32::try_from(tile_rows).map_err(|_| bad_layout())?;
        let overflow = || FormatError::ShapeOverflow(name.to_string());
        let elems = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(overflow)?;
        // (bytes expected, bytes given); quantized data: quant bytes and scale fields.
        let sizes = match &data {
            TensorData::Quant(q) => {
                if !shape[1].is_multiple_of(dtype.block_elems()) {
                    return Err(bad_layout());
                }
                let blocks = elems / dtype.block_elems();
                let want = blocks.checked_mul(dtype.block_bytes() + 2 * dtype.scale_fields());
                let got = q.quants.len() + 2 * q.scales.len();
                let fields_ok = q.scales.len() == blocks * dtype.scale_fields();
                (
                    want.ok_or_else(overflow)?,
                    if fields_ok { got } else { usize::MAX },
                )
            }
            d => (
                elems.checked_mul(dtype.size()).ok_or_else(overflow)?,
                d.as_bytes().len(),
            ),
        };
        if sizes.0 != sizes.1 {
            return Err(FormatError::DataSize {
                name: name.to_string(),
                want: sizes.0,
                got: sizes.1,
            });
        }
        let nbytes = tensor_nbytes(dtype, layout, shape, tile_rows)
            .ok_or_else(|| FormatError::ShapeOverflow(name.to_string()))?;
        let mut record = TensorRecord {
            dtype: dtype as u32,
            layout: layout as u32,
            tile_rows: tile_rows_field,
            ndim: shape.len() as u32,
            shape: dims,
            nbytes: nbytes as u64,
            ..bytemuck::Zeroable::zeroed()
        };
        record.name[..name.len()].copy_from_slice(name.as_bytes());
        self.names.insert(name.to_string());
        self.tensors.push(Pending {
            record,
            layout,
            shape: shape.to_vec(),
            data,
        });
        Ok(())
    }

    /// Write the file to `out`; returns its length in bytes.
    pub fn write_to<W: Write>(&self, mut out: W) -> Result<u64, FormatError> {
        let count = u32::try_from(self.tensors.len())
            .map_err(|_| FormatError::TooManyTensors(self.tensors.len()))?;
        let overflow = || FormatError::TooManyTensors(self.tensors.len());
        let table_end = self
            .tensors
            .len()
            .checked_mul(size_of::<TensorRecord>())
            .and_then(|n| n.checked_add(TABLE_OFFSET))
            .ok_or_else(overflow)?;
        let data_offset = align_up(table_end, ALIGN).ok_or_else(overflow)?;
        let mut records = Vec::with_capacity(self.tensors.len());
        let mut pos = data_offset;
        for t in &self.tensors {
            let mut rec = t.record;
            rec.offset = pos as u64;
            rec.checksum = crate::checksum(&file_bytes(t)?);
            records.push(rec);
            pos = pos
                .checked_add(rec.nbytes as usize)
                .and_then(|n| align_up(n, ALIGN))
                .ok_or_else(overflow)?;
        }
        let header = Header {
            magic: MAGIC,
            version: VERSION,
            byte_order: BYTE_ORDER_MARK,
            alignment: ALIGN as u32,
            tensor_count: count,
            table_offset: TABLE_OFFSET as u64,
            data_offset: data_offset as u64,
            data_len: (pos - data_offset) as u64,
            file_len: pos as u64,
            reserved: [0; 18],
        };
        out.write_all(bytemuck::bytes_of(&header))?;
        out.write_all(bytemuck::bytes_of(&self.config))?;
        out.write_all(bytemuck::cast_slice(&records))?;
        let mut written = table_end;
        let zeros = [0u8; ALIGN];
        for (t, rec) in self.tensors.iter().zip(&records) {
            out.write_all(&zeros[..rec.offset as usize - written])?;
            out.write_all(&file_bytes(t)?)?;
            written = rec.offset as usize + rec.nbytes as usize;
            let next = align_up(written, ALIGN).ok_or_else(overflow)?;
            out.write_all(&zeros[..next - written])?;
            written = next;
        }
        out.flush()?;
        Ok(written as u64)
    }

    /// Write the file at `path` (created or truncated); returns its length in bytes.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<u64, FormatError> {
        let file = std::fs::File::create(path)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let n = self.write_to(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(n)
    }
}

/// The bytes of `t` as the file holds them (tiled and padded as its layout says).
fn file_bytes(t: &Pending) -> Result<std::borrow::Cow<'_, [u8]>, FormatError> {
    Ok(match (t.layout, &t.data) {
        (Layout::BlockTiled, TensorData::Quant(q)) => {
            let (rows, cols) = (t.shape[0], t.shape[1]);
            let tiled = BlockGeometry::new(rows, cols, t.record.tile_rows as usize, q.dtype)
                .and_then(|g| q.tile(&g))
                .ok_or_else(|| {
                    FormatError::ShapeOverflow(t.record.name_str().unwrap_or("").into())
                })?;
            tiled.into()
        }
        (Layout::RowTiled, _) => tile(t)?.into(),
        _ => t.data.as_bytes().into(),
    })
}

/// Reorder a row-major matrix into the row-tiled layout (zero padding included).
fn tile(t: &Pending) -> Result<Vec<u8>, FormatError> {
    let (rows, cols) = (t.shape[0], t.shape[1]);
    let dtype = t.data.dtype();
    let g = TileGeometry::new(rows, cols, t.record.tile_rows as usize, dtype)
        .ok_or_else(|| FormatError::ShapeOverflow(t.record.name_str().unwrap_or("").into()))?;
    let es = dtype.size();
    let src = t.data.as_bytes();
    let mut dst = vec![0u8; t.record.nbytes as usize];
    for r in 0..rows {
        for c0 in (0..cols).step_by(g.chunk) {
            let n = g.chunk.min(cols - c0) * es;
            let s = (r * cols + c0) * es;
            let d = g.index(r, c0) * es;
            dst[d..d + n].copy_from_slice(&src[s..s + n]);
        }
    }
    Ok(dst)
}
