//! The fixed-size little-endian records of a TVL file. Each is `#[repr(C)]`, has no
//! padding and is `bytemuck::Pod`, so a loader reads it straight from the mapping.

use bytemuck::{Pod, Zeroable};

/// File magic, the first 8 bytes.
pub const MAGIC: [u8; 8] = *b"VTC-TVL\0";
/// Format version this crate writes and reads.
pub const VERSION: u32 = 1;
/// Alignment of every tensor and every row tile: 128 bytes (an Apple M-series cache line,
/// two x86 lines).
pub const ALIGN: usize = 128;
/// Value of [`Header::byte_order`]; reads back as this number only on a little-endian host.
pub const BYTE_ORDER_MARK: u32 = 0x0102_0304;
/// Byte offset of the [`ModelConfig`] record.
pub const CONFIG_OFFSET: usize = 128;
/// Byte offset of the tensor table.
pub const TABLE_OFFSET: usize = 256;
/// Bytes of the name field of a [`TensorRecord`] (names are at most NAME_LEN - 1 bytes).
pub const NAME_LEN: usize = 64;
/// "No such token" in the special-id fields of [`ModelConfig`].
pub const NONE_ID: u32 = u32::MAX;

/// Round `n` up to a multiple of `align` (a power of two); `None` on overflow.
pub fn align_up(n: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two());
    Some(n.checked_add(align - 1)? & !(align - 1))
}

/// The file header, 128 bytes at offset 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`VERSION`].
    pub version: u32,
    /// [`BYTE_ORDER_MARK`], written little-endian.
    pub byte_order: u32,
    /// [`ALIGN`].
    pub alignment: u32,
    /// Number of records in the tensor table.
    pub tensor_count: u32,
    /// Byte offset of the tensor table ([`TABLE_OFFSET`]).
    pub table_offset: u64,
    /// Byte offset of the data section: the end of the table rounded up to [`ALIGN`].
    pub data_offset: u64,
    /// Bytes of the data section.
    pub data_len: u64,
    /// Total bytes of the file: `data_offset + data_len`.
    pub file_len: u64,
    /// Zero.
    pub reserved: [u32; 18],
}

/// The model configuration, 128 bytes at offset [`CONFIG_OFFSET`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct ModelConfig {
    /// Architecture: 1 = Llama. (0 = no model, tables only.)
    pub arch: u32,
    /// Model width (embedding length).
    pub dim: u32,
    /// Feed-forward hidden width.
    pub hidden_dim: u32,
    /// Number of transformer blocks.
    pub n_layers: u32,
    /// Query heads.
    pub n_heads: u32,
    /// Key/value heads (divides `n_heads`).
    pub n_kv_heads: u32,
    /// Dimension of one head (even).
    pub head_dim: u32,
    /// Vocabulary size (rows of the embedding table).
    pub vocab_size: u32,
    /// Maximum context length the model was trained for.
    pub context_len: u32,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE pairing, a `RopeStyle` value.
    pub rope_style: u32,
    /// 1 if the output head is the embedding table (no `output.weight` tensor).
    pub tied_output: u32,
    /// Beginning-of-sequence token, or [`NONE_ID`].
    pub bos_id: u32,
    /// End-of-sequence token, or [`NONE_ID`].
    pub eos_id: u32,
    /// End-of-turn token (chat), or [`NONE_ID`].
    pub eot_id: u32,
    /// 1 if a BOS token is prepended when encoding a prompt.
    pub add_bos: u32,
    /// Tokenizer algorithm, a `TokenizerKind` value.
    pub tokenizer: u32,
    /// Pre-tokenizer, a `PreTokenizer` value.
    pub pretokenizer: u32,
    /// Unknown-token id, or [`NONE_ID`].
    pub unk_id: u32,
    /// Tokenizer options, bits of [`tokenizer_flags`] (zero: the defaults).
    pub tokenizer_flags: u32,
    /// What the blocks add to the Llama block, bits of [`block_flags`] (zero: none).
    pub block_flags: u32,
    /// Factor applied to each embedding row before the first block (Gemma: the square
    /// root of `dim`); 0 = none (1).
    pub embed_scale: f32,
    /// Factor applied to the query-key dot products; 0 = `1 / sqrt(head_dim)`.
    pub attn_scale: f32,
    /// Tokens a local (sliding-window) layer attends to, its own included; 0 = every
    /// layer is global.
    pub sliding_window: u32,
    /// Layer pattern of the sliding window: with `P > 0`, layer `l` is local unless
    /// `l % P == P - 1` (Gemma 3: `P = 6`, five local layers then one global); `P = 0`:
    /// every layer is local. Ignored when `sliding_window` is 0.
    pub swa_pattern: u32,
    /// RoPE base frequency of the local layers; 0 = `rope_theta`.
    pub rope_theta_local: f32,
    /// Zero.
    pub reserved: [u32; 5],
}

/// One entry of the tensor table, 128 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct TensorRecord {
    /// UTF-8 name, NUL-padded (at least one NUL).
    pub name: [u8; NAME_LEN],
    /// A `DType` value.
    pub dtype: u32,
    /// A `Layout` value.
    pub layout: u32,
    /// Rows per tile for the row-tiled layout; 0 for plain.
    pub tile_rows: u32,
    /// Number of dimensions, 1 to 4.
    pub ndim: u32,
    /// Dimensions, outermost first (a matrix is `[rows, cols]`, `cols` contiguous);
    /// entries past `ndim` are 0.
    pub shape: [u32; 4],
    /// Absolute byte offset in the file; a multiple of [`ALIGN`], inside the data section.
    pub offset: u64,
    /// Bytes of the tensor, layout padding included.
    pub nbytes: u64,
    /// XXH3-64 of the tensor's bytes ([`checksum`](crate::checksum)); 0 = none.
    pub checksum: u64,
    /// Zero.
    pub reserved: u64,
}

impl TensorRecord {
    /// The name as a string: the bytes before the first NUL, if they are UTF-8.
    pub fn name_str(&self) -> Option<&str> {
        let end = self.name.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&self.name[..end]).ok()
    }

    /// The used dimensions, or `None` if `ndim` is out of range.
    pub fn dims(&self) -> Option<&[u32]> {
        self.shape
            .get(..self.ndim as usize)
            .filter(|d| !d.is_empty())
    }
}

const _: () = {
    assert!(std::mem::size_of::<Header>() == 128);
    assert!(std::mem::size_of::<ModelConfig>() == 128);
    assert!(std::mem::size_of::<TensorRecord>() == 128);
};

/// Bits of [`ModelConfig::tokenizer_flags`]. A bit unknown to a reader is an error
/// there (the tokens it would give could differ).
pub mod tokenizer_flags {
    /// SentencePiece: no dummy-prefix space in front of each piece of text (Gemma;
    /// GGUF `tokenizer.ggml.add_space_prefix = false`).
    pub const NO_SPACE_PREFIX: u32 = 1;
    /// Every bit defined so far.
    pub const ALL: u32 = NO_SPACE_PREFIX;
}

/// Bits of [`ModelConfig::block_flags`]: what an architecture adds to the Llama block
/// (each bit adds the tensors [`crate::arch::tensors`] lists for it). A reader MUST refuse
/// a bit it does not know.
pub mod block_flags {
    /// Biases added to the query, key and value projections (Qwen2):
    /// `blk.N.attn_{q,k,v}.bias`.
    pub const QKV_BIAS: u32 = 1;
    /// RMSNorm of every query and key head before RoPE, gains `[head_dim]` shared by
    /// the heads (Qwen3, Gemma 3): `blk.N.attn_{q,k}_norm.weight`.
    pub const QK_NORM: u32 = 2;
    /// RMSNorm of the attention output before the residual add (Gemma):
    /// `blk.N.post_attention_norm.weight`.
    pub const POST_ATTN_NORM: u32 = 4;
    /// RMSNorm of the feed-forward output before the residual add (Gemma):
    /// `blk.N.post_ffw_norm.weight`.
    pub const POST_FFN_NORM: u32 = 8;
    /// The feed-forward gate is GELU (tanh approximation) instead of SiLU (Gemma).
    pub const GELU: u32 = 16;
    /// Each RoPE frequency is divided by a factor of `rope_freqs.weight` `[head_dim / 2]`
    /// (Llama 3's frequency scaling, as GGUF stores it).
    pub const ROPE_FREQS: u32 = 32;
    /// Every bit defined so far.
    pub const ALL: u32 = QKV_BIAS | QK_NORM | POST_ATTN_NORM | POST_FFN_NORM | GELU | ROPE_FREQS;
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            bos_id: NONE_ID,
            eos_id: NONE_ID,
            eot_id: NONE_ID,
            unk_id: NONE_ID,
            ..Zeroable::zeroed()
        }
    }
}
