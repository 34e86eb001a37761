//! The loader's one error type.

use std::path::PathBuf;

use tvl_format::{DType, Layout};

/// Everything that can go wrong opening a TVL file or viewing one of its tensors.
///
/// Variants about a tensor record carry the record's position in the table (`index`)
/// and, once the name field has been decoded, its `name`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Opening, reading the metadata of, or mapping the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path given to [`TvlFile::open`](crate::TvlFile::open).
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Copying the bytes into an anonymous mapping failed ([`TvlFile::from_bytes`](crate::TvlFile::from_bytes)).
    #[error("anonymous mapping of {len} bytes failed: {source}")]
    AnonMap {
        /// Bytes asked for.
        len: usize,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// This host is big-endian; TVL files are little-endian and viewed in place.
    #[error(
        "TVL files are little-endian and mapped without conversion: big-endian hosts are not supported"
    )]
    BigEndianHost,
    /// The file is shorter than its header says (or shorter than header + config).
    #[error("file truncated: {actual} bytes, expected {expected} ({} bytes missing)", expected.saturating_sub(*actual))]
    Truncated {
        /// Bytes the file should have: the header's `file_len` when the header is
        /// readable and has the right magic, else 256 (header + config).
        expected: u64,
        /// Bytes it has.
        actual: u64,
    },
    /// The first 8 bytes are not `b"VTC-TVL\0"`.
    #[error("not a TVL file: magic {found:02x?} at offset 0, expected \"VTC-TVL\\0\"")]
    BadMagic {
        /// The bytes found.
        found: [u8; 8],
    },
    /// The header's version is not one this loader reads.
    #[error("unsupported TVL version {found} (this loader reads version {supported})")]
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// Version supported.
        supported: u32,
    },
    /// The byte-order mark does not read back as 0x01020304: the file is not little-endian.
    #[error("byte-order mark reads {found:#010x}, expected 0x01020304: not a little-endian file")]
    ByteOrder {
        /// The mark as read.
        found: u32,
    },
    /// The header's alignment field is not 128.
    #[error("header alignment is {found}, expected 128")]
    BadAlignment {
        /// Value in the file.
        found: u32,
    },
    /// The header's table offset is not 256.
    #[error("header table_offset is {found}, expected 256")]
    BadTableOffset {
        /// Value in the file.
        found: u64,
    },
    /// The file is longer than the header's `file_len` (trailing bytes).
    #[error("header file_len is {header} but the file has {actual} bytes")]
    FileLenMismatch {
        /// `file_len` in the header.
        header: u64,
        /// Actual length.
        actual: u64,
    },
    /// The tensor table (`tensor_count` records of 128 bytes from offset 256) does not
    /// fit in the file.
    #[error(
        "tensor table of {tensor_count} records would end at byte {table_end}, past the end of the file ({file_len} bytes)"
    )]
    TableTooLarge {
        /// `tensor_count` in the header.
        tensor_count: u32,
        /// Where the table would end (`u64::MAX` if that overflows).
        table_end: u64,
        /// File length.
        file_len: u64,
    },
    /// `data_offset` is not the end of the table rounded up to 128.
    #[error(
        "header data_offset is {found}, expected {expected} (end of the table rounded up to 128)"
    )]
    BadDataOffset {
        /// Value required by the table size.
        expected: u64,
        /// Value in the file.
        found: u64,
    },
    /// `data_offset + data_len` is not the file length.
    #[error(
        "header data_offset {data_offset} + data_len {data_len} does not equal the file length {file_len}"
    )]
    BadDataLen {
        /// `data_offset` in the header.
        data_offset: u64,
        /// `data_len` in the header.
        data_len: u64,
        /// File length.
        file_len: u64,
    },
    /// A record's name field is all NUL.
    #[error("tensor #{index}: empty name")]
    EmptyName {
        /// Position in the table.
        index: usize,
    },
    /// A record's name field has no terminating NUL in its 64 bytes.
    #[error("tensor #{index}: name is not NUL-terminated within 64 bytes")]
    NameNotTerminated {
        /// Position in the table.
        index: usize,
    },
    /// A record's name is not UTF-8.
    #[error("tensor #{index}: name {lossy:?} is not valid UTF-8")]
    NameNotUtf8 {
        /// Position in the table.
        index: usize,
        /// The name with invalid sequences replaced, for the message.
        lossy: String,
    },
    /// Bytes after a name's terminating NUL are not all zero.
    #[error("tensor #{index} {name:?}: non-zero bytes after the name's terminating NUL")]
    NamePadding {
        /// Position in the table.
        index: usize,
        /// Tensor name.
        name: String,
    },
    /// Two records share a name.
    #[error("tensor #{index}: duplicate name {name:?} (first used by tensor #{first})")]
    DuplicateName {
        /// Position of the second record.
        index: usize,
        /// The shared name.
        name: String,
        /// Position of the first record with this name.
        first: usize,
    },
    /// A record's dtype value is not one of this version's (quantized types come with
    /// new ids that older readers refuse).
    #[error("tensor #{index} {name:?}: unknown dtype {dtype}")]
    UnknownDType {
        /// Position in the table.
        index: usize,
        /// Tensor name.
        name: String,
        /// Value in the record.
        dtype: u32,
    },
    /// A record's layout value is unknown.
    #[error("tensor #{index} {name:?}: unknown layout {layout}")]
    UnknownLayout {
        /// Position in the table.
        index: usize,
        /// Tensor name.
        name: String,
        /// Value in the record.
        layout: u32,
    },
    /// A record uses the retired first block layout (id 2, before the rows of a tile
    /// were interleaved 4 bytes at a time): the file was converted by an older VTC.
    #[error(
        "tensor #{index} {name:?}: layout 2 (the first block_tiled layout) is retired; \
         convert the model again with `vtc convert` (or delete the cached file)"
    )]
    RetiredLayout {
        /// Position in the table.
        index: usize,
        /// Tensor name.
        name: String,
    },
    /// `ndim` is not in 1..=4.
    #[error("tensor #{index} {name:?}: ndim {ndim} (1 to 4 allowed)")]
    BadRank {
        /// Position in the table.
        index: usize,
        /// Tensor name.
        name: String,
        /// Value in the record.
        ndim: u32,
    },
    /// A shape entry past `ndim` is not zero.
    #[error("tensor #{index} {name:?}: shape {shape:?} has non-zero entries past ndim {ndim}")]
    BadShape {
        /// Position in the table.
        index: usize,
        /// Tensor name.
        name: String,
        /// `ndim` in the record.
        ndim: u32,
        /// All four shape entries.
        shape: [u32; 4],
    },
    /// The layout does not fit the tensor: row-tiled needs a 2-D float matrix and
    /// `tile_rows >= 1`; plain needs `tile_rows == 0`.
    #[error(
        "tensor #{index} {name:?}: layout {layout} not allowed for dtype {dtype}, ndim {ndim}, tile_rows {tile_rows}"
    )]
    BadLayout {
        /// Position in the table.
        index: usize,
        /// Tensor name.
        name: String,
        /// Layout in the record.
        layout: Layout,
        /// Dtype in the record.
        dtype: DType,
        /// `ndim` in the record.
        ndim: u32,
        /// `tile_rows` in the record.
        tile_rows: u32,
    },
    /// The byte size implied by shape, dtype and layout (or the size of one row tile)
    /// overflows `usize`.
    #[error("tensor #{index} {name:?}: shape {shape:?} overflows the address space")]
    ShapeOverflow {
        /// Position in the table.
        index: usize,
        /// Tensor name.
        name: String,
        /// The used shape entries.
        shape: Vec<u32>,
    },
    /// `nbytes` differs from the size shape, dtype and layout require.
    #[error("tensor #{index} {name:?}: nbytes is {found}, shape, dtype and layout need {expected}")]
    NbytesMismatch {
        /// Position in the table.
        index: usize,
        /// Tensor name.
        name: String,
        /// Required size.
        expected: u64,
        /// Value in the record.
        found: u64,
    },
    /// `offset` is not a multiple of 128.
    #[error("tensor #{index} {name:?}: offset {offset} is not a multiple of 128")]
    MisalignedOffset {
        /// Position in the table.
        index: usize,
        /// Tensor name.
        name: String,
        /// Value in the record.
        offset: u64,
    },
    /// `offset` lies before the data section.
    #[error(
        "tensor #{index} {name:?}: offset {offset} lies before the data section at {data_offset}"
    )]
    OffsetBeforeData {
        /// Position in the table.
        index: usize,
        /// Tensor name.
        name: String,
        /// Value in the record.
        offset: u64,
        /// Start of the data section.
        data_offset: u64,
    },
    /// `offset + nbytes` is past the end of the file (or overflows).
    #[error(
        "tensor #{index} {name:?}: bytes {offset}..{offset}+{nbytes} run past the end of the file ({file_len} bytes)"
    )]
    TensorOutOfBounds {
        /// Position in the table.
        index: usize,
        /// Tensor name.
        name: String,
        /// Value in the record.
        offset: u64,
        /// Value in the record.
        nbytes: u64,
        /// File length.
        file_len: u64,
    },
    /// A record's offset is lower than the previous record's: tensors must be stored
    /// in table order.
    #[error(
        "tensor #{index} {name:?}: offset {offset} is below the previous tensor's offset {prev_offset}"
    )]
    OutOfOrder {
        /// Position in the table.
        index: usize,
        /// Tensor name.
        name: String,
        /// Value in the record.
        offset: u64,
        /// Offset of record `index - 1`.
        prev_offset: u64,
    },
    /// A tensor starts inside the previous tensor's bytes.
    #[error(
        "tensor #{index} {name:?}: offset {offset} overlaps the previous tensor, which ends at {prev_end}"
    )]
    Overlap {
        /// Position in the table.
        index: usize,
        /// Tensor name.
        name: String,
        /// Value in the record.
        offset: u64,
        /// `offset + nbytes` of record `index - 1`.
        prev_end: u64,
    },
    /// No tensor has this name ([`TvlFile::tensor`](crate::TvlFile::tensor)).
    #[error("no tensor named {name:?}")]
    MissingTensor {
        /// The name asked for.
        name: String,
    },
    /// A typed view asked for a dtype the tensor does not have.
    #[error("tensor {name:?} is {found}, not {expected}")]
    WrongDType {
        /// Tensor name.
        name: String,
        /// Dtype asked for.
        expected: DType,
        /// Dtype of the tensor.
        found: DType,
    },
    /// A typed view's bytes are not aligned for the element type. Cannot happen for a
    /// file opened by this crate (offsets are 128-aligned, maps page-aligned); kept so
    /// that the cast never panics.
    #[error("tensor {name:?}: bytes not aligned for {dtype}")]
    Misaligned {
        /// Tensor name.
        name: String,
        /// Dtype asked for.
        dtype: DType,
    },
    /// A block-quantized matrix whose column count is not a multiple of the block size.
    #[error(
        "tensor {index} ({name:?}): {cols} columns is not a whole number of {dtype} blocks of {} elements", dtype.block_elems()
    )]
    PartialBlock {
        /// Position in the table.
        index: usize,
        /// Tensor name.
        name: String,
        /// Columns of the matrix.
        cols: u32,
        /// The block type.
        dtype: DType,
    },
    /// A quantized view was asked of a tensor that is not block-quantized.
    #[error("tensor {name:?} is {dtype}, not a block-quantized matrix")]
    NotQuantized {
        /// Tensor name.
        name: String,
        /// Dtype of the tensor.
        dtype: DType,
    },
}
