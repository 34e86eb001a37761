//! Validation of header, config and tensor table: O(tensor count), never reads a
//! tensor's data bytes, and allocates only after the tensor count is known to fit in
//! the file.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;

use tvl_format::{
    ALIGN, BYTE_ORDER_MARK, BlockGeometry, CONFIG_OFFSET, DType, Header, Layout, MAGIC,
    ModelConfig, TABLE_OFFSET, TensorRecord, TileGeometry, VERSION, tensor_nbytes,
};

use crate::LoadError;

const HEADER_LEN: usize = size_of::<Header>();
const RECORD_LEN: usize = size_of::<TensorRecord>();

/// One validated table record, with its fields decoded. The name stays in the
/// mapping (record `i`'s name is the first `name_len` bytes of its record).
#[derive(Debug)]
pub(crate) struct Entry {
    pub name_len: usize,
    pub dtype: DType,
    pub layout: Layout,
    pub tile_rows: usize,
    pub ndim: usize,
    pub shape: [usize; 4],
    /// Absolute byte offset; `offset + nbytes <= file length` holds.
    pub offset: usize,
    pub nbytes: usize,
    /// The stored checksum (0 = none).
    pub checksum: u64,
}

/// The result of validating a file's bytes.
pub(crate) struct Parsed {
    pub header: Header,
    pub config: ModelConfig,
    pub entries: Vec<Entry>,
    pub index: HashMap<Box<str>, usize>,
}

/// `n` rounded up to a multiple of [`ALIGN`]; `None` on overflow.
fn align_up_u64(n: u64) -> Option<u64> {
    let a = ALIGN as u64;
    Some(n.checked_add(a - 1)? & !(a - 1))
}

/// Validate a whole TVL file given as bytes. See the crate docs for the checks.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed, LoadError> {
    if cfg!(target_endian = "big") {
        return Err(LoadError::BigEndianHost);
    }
    let actual = bytes.len() as u64;
    let (Some(head), Some(conf)) = (
        bytes.get(..HEADER_LEN),
        bytes.get(CONFIG_OFFSET..TABLE_OFFSET),
    ) else {
        // Shorter than header + config: say how long the file should be if we can.
        let min = TABLE_OFFSET as u64;
        let expected = bytes
            .get(..HEADER_LEN)
            .map(bytemuck::pod_read_unaligned::<Header>)
            .filter(|h| h.magic == MAGIC)
            .map_or(min, |h| h.file_len.max(min));
        return Err(LoadError::Truncated { expected, actual });
    };
    let header: Header = bytemuck::pod_read_unaligned(head);
    let config: ModelConfig = bytemuck::pod_read_unaligned(conf);

    if header.magic != MAGIC {
        return Err(LoadError::BadMagic {
            found: header.magic,
        });
    }
    if header.version != VERSION {
        return Err(LoadError::UnsupportedVersion {
            found: header.version,
            supported: VERSION,
        });
    }
    if header.byte_order != BYTE_ORDER_MARK {
        return Err(LoadError::ByteOrder {
            found: header.byte_order,
        });
    }
    if header.alignment as usize != ALIGN {
        return Err(LoadError::BadAlignment {
            found: header.alignment,
        });
    }
    if header.table_offset != TABLE_OFFSET as u64 {
        return Err(LoadError::BadTableOffset {
            found: header.table_offset,
        });
    }
    if header.file_len > actual {
        return Err(LoadError::Truncated {
            expected: header.file_len,
            actual,
        });
    }
    if header.file_len < actual {
        return Err(LoadError::FileLenMismatch {
            header: header.file_len,
            actual,
        });
    }
    let file_len = actual;

    // Bound the tensor count by the file length before allocating anything for it.
    let table_end = u64::from(header.tensor_count)
        .checked_mul(RECORD_LEN as u64)
        .and_then(|n| n.checked_add(TABLE_OFFSET as u64));
    let table_end = match table_end {
        Some(end) if end <= file_len => end,
        _ => {
            return Err(LoadError::TableTooLarge {
                tensor_count: header.tensor_count,
                table_end: table_end.unwrap_or(u64::MAX),
                file_len,
            });
        }
    };
    let data_offset = align_up_u64(table_end).unwrap_or(u64::MAX);
    if header.data_offset != data_offset {
        return Err(LoadError::BadDataOffset {
            expected: data_offset,
            found: header.data_offset,
        });
    }
    if data_offset.checked_add(header.data_len) != Some(file_len) {
        return Err(LoadError::BadDataLen {
            data_offset,
            data_len: header.data_len,
            file_len,
        });
    }

    // table_end <= file_len == bytes.len(), so this slice is in bounds (the error is
    // unreachable) and holds exactly tensor_count records.
    let table = usize::try_from(table_end)
        .ok()
        .and_then(|end| bytes.get(TABLE_OFFSET..end))
        .ok_or(LoadError::TableTooLarge {
            tensor_count: header.tensor_count,
            table_end,
            file_len,
        })?;
    let count = table.len() / RECORD_LEN;
    let mut entries = Vec::with_capacity(count);
    let mut index = HashMap::with_capacity(count);
    let mut prev: Option<(u64, u64)> = None; // (offset, end) of the previous record
    for (i, raw) in table.chunks_exact(RECORD_LEN).enumerate() {
        let rec: TensorRecord = bytemuck::pod_read_unaligned(raw);
        let name = check_name(i, &rec.name)?;
        let entry = check_record(i, name, &rec, data_offset, file_len, prev)?;
        prev = Some((rec.offset, rec.offset + rec.nbytes)); // checked in check_record
        match index.entry(Box::<str>::from(name)) {
            MapEntry::Occupied(first) => {
                return Err(LoadError::DuplicateName {
                    index: i,
                    name: name.into(),
                    first: *first.get(),
                });
            }
            MapEntry::Vacant(slot) => {
                slot.insert(i);
            }
        }
        entries.push(entry);
    }
    Ok(Parsed {
        header,
        config,
        entries,
        index,
    })
}

/// Decode a NUL-padded name field.
fn check_name(index: usize, field: &[u8]) -> Result<&str, LoadError> {
    let end = field
        .iter()
        .position(|&b| b == 0)
        .ok_or(LoadError::NameNotTerminated { index })?;
    if end == 0 {
        return Err(LoadError::EmptyName { index });
    }
    let name = std::str::from_utf8(&field[..end]).map_err(|_| LoadError::NameNotUtf8 {
        index,
        lossy: String::from_utf8_lossy(&field[..end]).into_owned(),
    })?;
    if field[end..].iter().any(|&b| b != 0) {
        return Err(LoadError::NamePadding {
            index,
            name: name.into(),
        });
    }
    Ok(name)
}

/// Validate one record (whose name `check_name` decoded) against the file and the
/// previous record.
fn check_record(
    index: usize,
    name: &str,
    rec: &TensorRecord,
    data_offset: u64,
    file_len: u64,
    prev: Option<(u64, u64)>,
) -> Result<Entry, LoadError> {
    let owned = || name.to_string();
    let dtype = DType::from_u32(rec.dtype).ok_or_else(|| LoadError::UnknownDType {
        index,
        name: owned(),
        dtype: rec.dtype,
    })?;
    let layout = Layout::from_u32(rec.layout).ok_or_else(|| {
        if rec.layout == Layout::RETIRED_BLOCK_TILED {
            LoadError::RetiredLayout {
                index,
                name: owned(),
            }
        } else {
            LoadError::UnknownLayout {
                index,
                name: owned(),
                layout: rec.layout,
            }
        }
    })?;
    let dims = rec.dims().ok_or_else(|| LoadError::BadRank {
        index,
        name: owned(),
        ndim: rec.ndim,
    })?;
    let ndim = dims.len();
    if rec.shape[ndim..].iter().any(|&d| d != 0) {
        return Err(LoadError::BadShape {
            index,
            name: owned(),
            ndim: rec.ndim,
            shape: rec.shape,
        });
    }
    let tile_rows_ok = usize::try_from(rec.tile_rows).is_ok_and(|t| layout.allows(dtype, ndim, t));
    if !tile_rows_ok {
        return Err(LoadError::BadLayout {
            index,
            name: owned(),
            layout,
            dtype,
            ndim: rec.ndim,
            tile_rows: rec.tile_rows,
        });
    }
    if layout == Layout::BlockTiled && !(dims[1] as usize).is_multiple_of(dtype.block_elems()) {
        return Err(LoadError::PartialBlock {
            index,
            name: owned(),
            cols: dims[1],
            dtype,
        });
    }
    let overflow = || LoadError::ShapeOverflow {
        index,
        name: owned(),
        shape: dims.to_vec(),
    };
    let mut shape = [0usize; 4];
    for (s, &d) in shape.iter_mut().zip(dims) {
        *s = usize::try_from(d).map_err(|_| overflow())?;
    }
    let tile_rows = usize::try_from(rec.tile_rows).map_err(|_| overflow())?;
    let expected = tensor_nbytes(dtype, layout, &shape[..ndim], tile_rows).ok_or_else(overflow)?;
    if layout == Layout::BlockTiled {
        // cols must be whole blocks, and one tile addressable (checked by the geometry).
        BlockGeometry::new(shape[0], shape[1], tile_rows, dtype).ok_or_else(overflow)?;
    }
    if layout == Layout::RowTiled {
        // One tile must be addressable too (it is not implied by nbytes when rows == 0).
        let g = TileGeometry::new(shape[0], shape[1], tile_rows, dtype).ok_or_else(overflow)?;
        g.padded_cols()
            .checked_mul(tile_rows)
            .and_then(|n| n.checked_mul(g.elem_size))
            .ok_or_else(overflow)?;
    }
    if expected as u64 != rec.nbytes {
        return Err(LoadError::NbytesMismatch {
            index,
            name: owned(),
            expected: expected as u64,
            found: rec.nbytes,
        });
    }
    if !rec.offset.is_multiple_of(ALIGN as u64) {
        return Err(LoadError::MisalignedOffset {
            index,
            name: owned(),
            offset: rec.offset,
        });
    }
    if rec.offset < data_offset {
        return Err(LoadError::OffsetBeforeData {
            index,
            name: owned(),
            offset: rec.offset,
            data_offset,
        });
    }
    let end = rec.offset.checked_add(rec.nbytes);
    if end.is_none_or(|e| e > file_len) {
        return Err(LoadError::TensorOutOfBounds {
            index,
            name: owned(),
            offset: rec.offset,
            nbytes: rec.nbytes,
            file_len,
        });
    }
    if let Some((prev_offset, prev_end)) = prev {
        if rec.offset < prev_offset {
            return Err(LoadError::OutOfOrder {
                index,
                name: owned(),
                offset: rec.offset,
                prev_offset,
            });
        }
        if rec.offset < prev_end {
            return Err(LoadError::Overlap {
                index,
                name: owned(),
                offset: rec.offset,
                prev_end,
            });
        }
    }
    Ok(Entry {
        name_len: name.len(),
        dtype,
        layout,
        tile_rows,
        ndim,
        shape,
        // offset + nbytes <= file_len == the length of a slice in memory: both fit usize.
        offset: rec.offset as usize,
        nbytes: expected,
        checksum: rec.checksum,
    })
}
