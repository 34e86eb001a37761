#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod arch;
mod config;
mod geometry;
pub mod quant;
mod records;
mod writer;

pub use config::{ARCH_LLAMA, Arch, ConfigError, MAX_DIM, MAX_LAYERS_OR_HEADS};
pub use geometry::{TileGeometry, line_utilization};
pub use quant::{BlockGeometry, BlockType, QuantData};
pub use records::{
    ALIGN, BYTE_ORDER_MARK, CONFIG_OFFSET, Header, MAGIC, ModelConfig, NAME_LEN, NONE_ID,
    TABLE_OFFSET, TensorRecord, VERSION, align_up,
};
pub use records::{block_flags, tokenizer_flags};
pub use writer::{TensorData, TvlWriter};

/// Element type of a tensor. The numeric value is what the tensor record stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[allow(non_camel_case_types)]
pub enum DType {
    /// IEEE 754 binary32.
    F32 = 0,
    /// IEEE 754 binary16.
    F16 = 1,
    /// Unsigned byte (token strings, token types, templates).
    U8 = 2,
    /// Unsigned 32-bit integer (string offsets).
    U32 = 3,
    /// Blocks of 32: 32 signed bytes and an f16 scale `d` (value `q * d`).
    Q8_0 = 4,
    /// Blocks of 32: 32 nibbles and an f16 scale `d` (value `(q - 8) * d`).
    Q4_0 = 5,
    /// Blocks of 32: 32 nibbles, an f16 scale `d` and minimum `m` (value `q * d + m`).
    Q4_1 = 6,
    /// Blocks of 32: 32 nibbles, a plane of their 5th bits and `d` (value `(q - 16) * d`).
    Q5_0 = 7,
    /// Blocks of 32: 5-bit quants as `Q5_0`, `d` and `m` (value `q * d + m`).
    Q5_1 = 8,
    /// Super-blocks of 256: 4-bit quants in 8 sub-blocks of 32 with packed 6-bit scales
    /// and minimums, f16 `d` and `dmin` (value `d * sc * q - dmin * mn`).
    Q4_K = 9,
    /// Super-blocks of 256: 5-bit quants (nibbles and a bit plane), otherwise as `Q4_K`.
    Q5_K = 10,
    /// Super-blocks of 256: 6-bit quants in 16 sub-blocks of 16 with int8 scales and an
    /// f16 `d` (value `d * sc * (q - 32)`).
    Q6_K = 11,
}

impl DType {
    /// Decode a record's `dtype` field.
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::U8,
            3 => Self::U32,
            4 => Self::Q8_0,
            5 => Self::Q4_0,
            6 => Self::Q4_1,
            7 => Self::Q5_0,
            8 => Self::Q5_1,
            9 => Self::Q4_K,
            10 => Self::Q5_K,
            11 => Self::Q6_K,
            _ => return None,
        })
    }

    /// Bytes of one element; 0 for the block types, whose sizes come from
    /// [`BlockGeometry`].
    pub fn size(self) -> usize {
        match self {
            Self::F32 | Self::U32 => 4,
            Self::F16 => 2,
            Self::U8 => 1,
            Self::Q8_0
            | Self::Q4_0
            | Self::Q4_1
            | Self::Q5_0
            | Self::Q5_1
            | Self::Q4_K
            | Self::Q5_K
            | Self::Q6_K => 0,
        }
    }

    /// The block type of a block-quantized dtype (`None` for the others).
    #[inline]
    pub fn block_type(self) -> Option<BlockType> {
        Some(match self {
            Self::F32 | Self::F16 | Self::U8 | Self::U32 => return None,
            Self::Q8_0 => BlockType::Q8_0,
            Self::Q4_0 => BlockType::Q4_0,
            Self::Q4_1 => BlockType::Q4_1,
            Self::Q5_0 => BlockType::Q5_0,
            Self::Q5_1 => BlockType::Q5_1,
            Self::Q4_K => BlockType::Q4_K,
            Self::Q5_K => BlockType::Q5_K,
            Self::Q6_K => BlockType::Q6_K,
        })
    }

    /// Whether this is a block-quantized type: only in the `BlockTiled` layout.
    #[inline]
    pub fn is_quantized(self) -> bool {
        self.block_type().is_some()
    }

    /// Elements of one block (32, or 256 for the K types; 0 for other types).
    #[inline]
    pub fn block_elems(self) -> usize {
        self.block_type().map_or(0, BlockType::elems)
    }

    /// Quant bytes of one block, f16 fields excluded (0 for other types).
    #[inline]
    pub fn block_bytes(self) -> usize {
        self.block_type().map_or(0, BlockType::quant_bytes)
    }

    /// f16 scale fields per block: 1 (`d`) or 2 (`d`, `m` or `dmin`); 0 for other types.
    #[inline]
    pub fn scale_fields(self) -> usize {
        self.block_type().map_or(0, BlockType::fields)
    }

    /// Elements of one 128-byte chunk of the row-tiled layout.
    pub fn chunk_elems(self) -> usize {
        ALIGN / self.size()
    }

    /// Whether a weight matrix of this dtype may use the row-tiled layout.
    pub fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F16)
    }

    /// Every dtype, in id order.
    pub const ALL: [DType; 12] = [
        Self::F32,
        Self::F16,
        Self::U8,
        Self::U32,
        Self::Q8_0,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q4_K,
        Self::Q5_K,
        Self::Q6_K,
    ];

    /// Lower-case name used by tools (`f32`, `f16`, `u8`, `u32`, `q8_0`, `q4_0`, `q4_1`,
    /// `q5_0`, `q5_1`, `q4_k`, `q5_k`, `q6_k`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::U8 => "u8",
            Self::U32 => "u32",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
            Self::Q5_0 => "q5_0",
            Self::Q5_1 => "q5_1",
            Self::Q4_K => "q4_k",
            Self::Q5_K => "q5_k",
            Self::Q6_K => "q6_k",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a tensor's elements are ordered in its byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Layout {
    /// Row-major, last dimension contiguous, no padding inside.
    Plain = 0,
    /// Row-interleaved tiles of `tile_rows` rows cut into 128-byte column chunks
    /// (see [`TileGeometry`]); only for 2-D float matrices.
    RowTiled = 1,
    /// Block-quantized tiles of `tile_rows` rows, quants (rows interleaved 4 bytes at
    /// a time) and scales in separate line-aligned regions (see [`BlockGeometry`]);
    /// only for 2-D block types.
    BlockTiled = 3,
}

impl Layout {
    /// The id of the first block layout (whole blocks one row after another), retired
    /// when [`Layout::BlockTiled`] (id 3) replaced it. Readers refuse it as unknown;
    /// tools name it so users know to convert their model again.
    pub const RETIRED_BLOCK_TILED: u32 = 2;

    /// Decode a record's `layout` field.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::Plain),
            1 => Some(Self::RowTiled),
            3 => Some(Self::BlockTiled),
            _ => None,
        }
    }

    /// Lower-case name used by tools (`plain`, `row_tiled`, `block_tiled`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::RowTiled => "row_tiled",
            Self::BlockTiled => "block_tiled",
        }
    }

    /// Whether this layout cuts a matrix into row tiles (`tile_rows >= 1`).
    pub fn is_tiled(self) -> bool {
        !matches!(self, Self::Plain)
    }

    /// Whether a tensor of `dtype` with `ndim` dimensions and `tile_rows` may use this
    /// layout (section 7 of the spec).
    pub fn allows(self, dtype: DType, ndim: usize, tile_rows: usize) -> bool {
        match self {
            Self::Plain => tile_rows == 0 && !dtype.is_quantized(),
            Self::RowTiled => ndim == 2 && dtype.is_float() && tile_rows >= 1,
            Self::BlockTiled => ndim == 2 && dtype.is_quantized() && tile_rows >= 1,
        }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Rotary embedding pairing convention recorded in [`ModelConfig::rope_style`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RopeStyle {
    /// Rotate adjacent pairs (2i, 2i+1): llama.cpp's "normal" rope on GGUF weights.
    Interleaved = 0,
    /// Rotate (i, i + head_dim/2): the NeoX / Hugging Face half-split pairing.
    HalfSplit = 1,
}

impl RopeStyle {
    /// Decode the config field.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::Interleaved),
            1 => Some(Self::HalfSplit),
            _ => None,
        }
    }
}

/// Tokenizer algorithm recorded in [`ModelConfig::tokenizer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum TokenizerKind {
    /// No tokenizer tables in the file.
    None = 0,
    /// Byte-level BPE (GPT-2 byte mapping, merges by rank).
    ByteLevelBpe = 1,
    /// SentencePiece-style BPE: merges chosen by token score, `<0xXX>` byte fallback.
    SentencePiece = 2,
}

impl TokenizerKind {
    /// Decode the config field.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::None),
            1 => Some(Self::ByteLevelBpe),
            2 => Some(Self::SentencePiece),
            _ => None,
        }
    }
}

/// Pre-tokenizer recorded in [`ModelConfig::pretokenizer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum PreTokenizer {
    /// The GPT-2 regex split.
    Gpt2 = 0,
    /// SmolLM: every digit split off on its own, then the GPT-2 split.
    SmolLm = 1,
    /// Qwen2 (Qwen2, Qwen2.5, Qwen3; GGUF `qwen2`): the Qwen2 regex split, every `\p{N}`
    /// a piece of its own.
    Qwen2 = 2,
    /// Llama 3 (GGUF `llama-bpe`): the Qwen2 split with runs of up to three `\p{N}`, and a
    /// piece that is itself a token of the vocabulary is that token, without merges.
    Llama3 = 3,
}

impl PreTokenizer {
    /// Decode the config field.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::Gpt2),
            1 => Some(Self::SmolLm),
            2 => Some(Self::Qwen2),
            3 => Some(Self::Llama3),
            _ => None,
        }
    }
}

/// Well-known tensor names for tokenizer tables and templates (weights use GGUF's names).
pub mod names {
    /// U8: all token strings concatenated.
    pub const TOKENS: &str = "tokenizer.tokens";
    /// U32 `[vocab + 1]`: start of token i is `offsets[i]`, its end `offsets[i + 1]`.
    pub const TOKEN_OFFSETS: &str = "tokenizer.token_offsets";
    /// F32 `[vocab]`: token scores (SentencePiece-style tokenizers).
    pub const SCORES: &str = "tokenizer.scores";
    /// U8 `[vocab]`: token types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
    pub const TOKEN_TYPES: &str = "tokenizer.token_types";
    /// U8: all merge strings (`"a b"`) concatenated, in rank order.
    pub const MERGES: &str = "tokenizer.merges";
    /// U32 `[merges + 1]`: offsets into [`MERGES`].
    pub const MERGE_OFFSETS: &str = "tokenizer.merge_offsets";
    /// U8: the chat template (Jinja source, UTF-8).
    pub const CHAT_TEMPLATE: &str = "tokenizer.chat_template";
}

/// Errors of the writer and of the layout arithmetic.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// A tensor name is empty, longer than [`NAME_LEN`] - 1 bytes, or contains NUL.
    #[error("tensor name {0:?} is empty, longer than 63 bytes or contains NUL")]
    BadName(String),
    /// Two tensors share a name.
    #[error("duplicate tensor name {0:?}")]
    DuplicateName(String),
    /// Shape has no dimensions or more than four.
    #[error("tensor {name:?}: {ndim} dimensions (1 to 4 allowed)")]
    BadRank {
        /// Tensor name.
        name: String,
        /// Number of dimensions given.
        ndim: usize,
    },
    /// A dimension does not fit in u32, or the element count or byte size overflows.
    #[error("tensor {0:?}: shape too large (a dimension exceeds u32 or the size overflows)")]
    ShapeOverflow(String),
    /// The data length does not match the shape.
    #[error("tensor {name:?}: data holds {got} bytes, shape and dtype need {want}")]
    DataSize {
        /// Tensor name.
        name: String,
        /// Bytes expected.
        want: usize,
        /// Bytes given.
        got: usize,
    },
    /// The layout cannot hold this tensor (row-tiled needs a 2-D float matrix and tile_rows >= 1).
    #[error(
        "tensor {name:?}: layout {layout} not allowed for dtype {dtype} with {ndim} dims and tile_rows {tile_rows}"
    )]
    BadLayout {
        /// Tensor name.
        name: String,
        /// Layout asked for.
        layout: Layout,
        /// Dtype of the tensor.
        dtype: DType,
        /// Number of dimensions.
        ndim: usize,
        /// Tile rows asked for.
        tile_rows: usize,
    },
    /// The table would hold more tensors than a u32 counts.
    #[error("too many tensors: {0}")]
    TooManyTensors(usize),
    /// Writing failed.
    #[error("i/o error while writing: {0}")]
    Io(#[from] std::io::Error),
}

/// The content checksum of a tensor's bytes (`nbytes` bytes from its offset, layout
/// padding included): XXH3-64 with seed 0. Stored in [`TensorRecord::checksum`]; a
/// stored 0 means "no checksum".
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Bytes a tensor occupies in the data section, layout padding included (but not the
/// padding that aligns the next tensor). `None` on overflow or an invalid combination.
pub fn tensor_nbytes(
    dtype: DType,
    layout: Layout,
    shape: &[usize],
    tile_rows: usize,
) -> Option<usize> {
    if !layout.allows(dtype, shape.len(), tile_rows) {
        return None;
    }
    match layout {
        Layout::Plain => shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))?
            .checked_mul(dtype.size()),
        Layout::RowTiled => TileGeometry::new(shape[0], shape[1], tile_rows, dtype)?.nbytes(),
        Layout::BlockTiled => BlockGeometry::new(shape[0], shape[1], tile_rows, dtype)?.nbytes(),
    }
}
