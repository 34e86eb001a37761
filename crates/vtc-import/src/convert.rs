//! GGUF (Llama architecture) to TVL.
//!
//! Every GGUF tensor keeps its GGUF name. A 2-D tensor with GGUF dims `[in, out]`
//! becomes a TVL `[out, in]` matrix (row `r` is the `r`-th `dims[0]`-long run of the
//! GGUF data, so no element moves relative to its row), in the element type the
//! chosen [`OutDType`] gives it: row-tiled f32/f16, or block-tiled in one of the TVL
//! block types (`Q8_0`, `Q4_0`, `Q4_1`, `Q5_0`, `Q5_1`, `Q4_K`, `Q5_K`, `Q6_K`, which
//! have GGUF's blocks bit for bit). Every other tensor (norms) is written plain F32. Float weights are
//! dequantized exactly as ggml does ([`crate::dequant`]), so an F32 import is
//! lossless for every supported source type; [`OutDType::Keep`] copies quantized
//! blocks as they are (lossless, and the smallest file). The tokenizer tables and the
//! chat template follow the weights under the names in [`tvl_format::names`].

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use half::f16;
use half::slice::HalfFloatSliceExt;
use tvl_format::{
    Arch, DType, ModelConfig, NONE_ID, PreTokenizer, QuantData, RopeStyle, TensorData,
    TokenizerKind, TvlWriter, arch, block_flags, names, tokenizer_flags,
};

use crate::dequant;
pub use crate::error::ImportError;
use crate::error::check_config;
use crate::gguf::{Array, GgmlType, GgufFile, TensorInfo, Value};

/// [`ModelConfig::arch`] of a Llama model.
pub use tvl_format::ARCH_LLAMA;

/// GGUF's token type of a control token (the token-type table keeps GGUF's values).
const GGUF_CONTROL: u8 = 3;

/// Tokens tried, in order, as the end-of-turn token when the file names none.
pub const EOT_CANDIDATES: [&str; 4] = ["<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"];

/// Texts of tokens that end a generation in some model family (llama.cpp's list in
/// `llama_vocab::impl::load`). As llama.cpp does, a token with one of these texts is
/// imported as a control token whatever its GGUF type says, so plain text that spells
/// it (Gemma 3's user-defined `</s>`, say) is not matched to it unless special tokens
/// are parsed.
pub const CONTROL_LOOKING: [&str; 19] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
];

/// Element type of the weight matrices in the output file. Norms and other vectors
/// are always F32.
///
/// The block types need whole blocks: a K type falls back as llama.cpp's does for a
/// matrix whose input dimension is not a multiple of 256 (`Q4_K` to `Q5_0`, `Q5_K` to
/// `Q5_1`, `Q6_K` to `Q8_0`), and a matrix whose input dimension is not a multiple of
/// 32 is written f32. The output head (`output.weight`, or `token_embd.weight` when
/// the head is tied to it) is written `Q8_0` for the 4- and 5-bit block types and
/// `Q6_K` for the K types, as llama.cpp does: low-bit logits cost too much quality.
/// Quantizing follows llama.cpp's reference quantizers (`quantize_row_*_ref`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(non_camel_case_types)]
pub enum OutDType {
    /// f32: lossless for every supported source type.
    #[default]
    F32,
    /// f16: half the bytes; lossless only for F16 sources (others are rounded to
    /// nearest-even, and [`ConvertReport::rounded_tensors`] lists them).
    F16,
    /// Each matrix in its source type (blocks of the eight block types copied, F16
    /// kept, F32, BF16 and other ggml types as f32): always lossless. A K-quant mix
    /// such as Q4_K_M keeps its per-tensor types.
    Keep,
    /// `Q8_0` blocks (copied from `Q8_0` sources, quantized by llama.cpp's rules
    /// otherwise).
    Q8_0,
    /// `Q4_0` blocks (copied or quantized; see the type docs for the output head).
    Q4_0,
    /// `Q4_1` blocks (copied or quantized; see the type docs for the output head).
    Q4_1,
    /// `Q5_0` blocks (the output head `Q8_0`).
    Q5_0,
    /// `Q5_1` blocks (the output head `Q8_0`).
    Q5_1,
    /// `Q4_K` super-blocks (the output head `Q6_K`; rows not a multiple of 256: `Q5_0`).
    Q4_K,
    /// `Q5_K` super-blocks (the output head `Q6_K`; rows not a multiple of 256: `Q5_1`).
    Q5_K,
    /// `Q6_K` super-blocks (rows not a multiple of 256: `Q8_0`).
    Q6_K,
}

impl OutDType {
    /// Every variant, in command-line order.
    pub const ALL: [OutDType; 11] = [
        Self::F32,
        Self::F16,
        Self::Keep,
        Self::Q8_0,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q4_K,
        Self::Q5_K,
        Self::Q6_K,
    ];

    /// Lower-case name (`f32`, `f16`, `keep`, `q8_0`, `q4_0`, `q4_1`, `q5_0`, `q5_1`,
    /// `q4_k`, `q5_k`, `q6_k`), as used in file names and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Keep => "keep",
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

    /// The TVL dtype a `[rows, cols]` matrix gets, given its source's element type
    /// (`source`: the TVL dtype its values come in, F32 for anything else) and
    /// whether it is the output head.
    pub fn target(self, source: DType, cols: usize, output_head: bool) -> DType {
        let want = match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Keep => source,
            Self::Q8_0 => DType::Q8_0,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 if output_head => DType::Q8_0,
            Self::Q4_K | Self::Q5_K | Self::Q6_K if output_head => DType::Q6_K,
            Self::Q4_0 => DType::Q4_0,
            Self::Q4_1 => DType::Q4_1,
            Self::Q5_0 => DType::Q5_0,
            Self::Q5_1 => DType::Q5_1,
            Self::Q4_K => DType::Q4_K,
            Self::Q5_K => DType::Q5_K,
            Self::Q6_K => DType::Q6_K,
        };
        // llama.cpp's fallbacks for rows that are not whole super-blocks.
        let want = match want {
            _ if !want.is_quantized() || cols.is_multiple_of(want.block_elems()) => want,
            DType::Q4_K => DType::Q5_0,
            DType::Q5_K => DType::Q5_1,
            DType::Q6_K => DType::Q8_0,
            other => other,
        };
        if want.is_quantized() && !cols.is_multiple_of(want.block_elems()) {
            DType::F32
        } else {
            want
        }
    }
}

impl std::fmt::Display for OutDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OutDType {
    type Err = ImportError;

    fn from_str(s: &str) -> Result<Self, ImportError> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "keep" => Ok(Self::Keep),
            "q8_0" => Ok(Self::Q8_0),
            "q4_0" => Ok(Self::Q4_0),
            "q4_1" => Ok(Self::Q4_1),
            "q5_0" => Ok(Self::Q5_0),
            "q5_1" => Ok(Self::Q5_1),
            "q4_k" => Ok(Self::Q4_K),
            "q5_k" => Ok(Self::Q5_K),
            "q6_k" => Ok(Self::Q6_K),
            _ => Err(ImportError::Unsupported {
                what: "output dtype (f32, f16, keep, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k or q6_k)",
                value: s.to_string(),
            }),
        }
    }
}

/// Options of a conversion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Element type of the weight matrices.
    pub dtype: OutDType,
    /// Rows per tile of the row-tiled (float) matrices (at least 1).
    pub tile_rows: usize,
    /// Rows per tile of the block-tiled (quantized) matrices (at least 1; the kernels'
    /// fast path is 8).
    pub block_tile_rows: usize,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            dtype: OutDType::F32,
            tile_rows: 4,
            block_tile_rows: 8,
        }
    }
}

/// A matrix's values as an importer holds them.
pub(crate) enum MatrixSource<'a> {
    /// f32 values, row-major.
    F32(Vec<f32>),
    /// f16 values, row-major.
    F16(Vec<f16>),
    /// GGUF blocks of a block dtype (f16 fields and quant bytes in GGUF's order, see
    /// [`tvl_format::BlockType::split_gguf`]), row-major.
    Blocks(DType, &'a [u8]),
}

impl MatrixSource<'_> {
    fn dtype(&self) -> DType {
        match self {
            Self::F32(_) => DType::F32,
            Self::F16(_) => DType::F16,
            Self::Blocks(d, _) => *d,
        }
    }

    fn into_f32(self) -> Vec<f32> {
        match self {
            Self::F32(v) => v,
            Self::F16(v) => v.iter().map(|h| h.to_f32()).collect(),
            Self::Blocks(dtype, raw) => {
                let q = split_blocks(dtype, raw);
                q.dequantize()
            }
        }
    }
}

/// GGUF blocks of a block dtype into a [`QuantData`] (fields split from quants).
fn split_blocks(dtype: DType, raw: &[u8]) -> QuantData {
    let kind = dtype.block_type().expect("a block dtype");
    let (qb, f) = (kind.quant_bytes(), kind.fields());
    let n = raw.len() / kind.gguf_bytes();
    let mut quants = vec![0u8; n * qb];
    let mut scales = Vec::with_capacity(n * f);
    for (blk, q) in raw
        .chunks_exact(kind.gguf_bytes())
        .zip(quants.chunks_exact_mut(qb))
    {
        let (d, m) = kind.split_gguf(blk, q);
        scales.push(d);
        if f == 2 {
            scales.push(m);
        }
    }
    QuantData {
        dtype,
        quants,
        scales,
    }
}

/// Encode a `[rows, cols]` matrix in the type `opts` gives it and add it to `w`;
/// returns whether its values were kept exactly. The one place every importer turns
/// matrix values into TVL tensors.
pub(crate) fn add_matrix(
    w: &mut TvlWriter,
    name: &str,
    rows: usize,
    cols: usize,
    src: MatrixSource<'_>,
    output_head: bool,
    opts: &ConvertOptions,
) -> Result<bool, ImportError> {
    let target = opts.dtype.target(src.dtype(), cols, output_head);
    if target.is_quantized() {
        let (q, exact) = match src {
            MatrixSource::Blocks(d, raw) if d == target => (split_blocks(d, raw), true),
            other => {
                let x = other.into_f32();
                let q = QuantData::quantize(target, &x, rows, cols)
                    .ok_or_else(|| invalid(format!("{name}: cannot quantize to {target}")))?;
                (q, false)
            }
        };
        w.add_quant(name, rows, cols, opts.block_tile_rows, q)?;
        return Ok(exact);
    }
    let (data, exact) = match (target, src) {
        (DType::F16, MatrixSource::F16(v)) => (TensorData::F16(v), true),
        (DType::F16, other) => {
            let (h, exact) = to_f16(&other.into_f32());
            (TensorData::F16(h), exact)
        }
        (_, other) => (TensorData::F32(other.into_f32()), true),
    };
    w.add_tiled(name, rows, cols, opts.tile_rows, data)?;
    Ok(exact)
}

/// The result of [`convert`]: a writer holding the whole model, ready to write.
pub struct Conversion {
    /// The writer (config, weights, tokenizer tables).
    pub writer: TvlWriter,
    /// The model configuration written.
    pub config: ModelConfig,
    /// Tensors whose values were rounded (only with [`OutDType::F16`] and non-F16
    /// sources); empty means the import is lossless.
    pub rounded_tensors: Vec<String>,
}

/// What [`convert_file`] did.
#[derive(Clone, Debug)]
pub struct ConvertReport {
    /// The file written.
    pub output: PathBuf,
    /// The model configuration written.
    pub config: ModelConfig,
    /// Number of tensors in the output (weights and tables).
    pub tensors: usize,
    /// Bytes of the output file.
    pub bytes_written: u64,
    /// Tensors whose values were rounded (see [`Conversion::rounded_tensors`]).
    pub rounded_tensors: Vec<String>,
}

// ---------------------------------------------------------------------------------
// Metadata helpers: absent is `Ok(None)`, a wrong type is a typed error.

fn key_u64(g: &GgufFile, key: &str) -> Result<Option<u64>, ImportError> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad_key(key, "a non-negative integer", v)),
    }
}

fn key_u32(g: &GgufFile, key: &str) -> Result<Option<u32>, ImportError> {
    match key_u64(g, key)? {
        None => Ok(None),
        Some(v) => u32::try_from(v)
            .map(Some)
            .map_err(|_| bad_key(key, "an integer below 2^32", &Value::U64(v))),
    }
}

fn req_u32(g: &GgufFile, key: &str) -> Result<u32, ImportError> {
    key_u32(g, key)?.ok_or_else(|| ImportError::MissingKey { key: key.into() })
}

fn key_f32(g: &GgufFile, key: &str) -> Result<Option<f32>, ImportError> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_f32()
            .map(Some)
            .ok_or_else(|| bad_key(key, "a number", v)),
    }
}

fn key_str<'a>(g: &'a GgufFile, key: &str) -> Result<Option<&'a str>, ImportError> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| bad_key(key, "a string", v)),
    }
}

fn key_bool(g: &GgufFile, key: &str) -> Result<Option<bool>, ImportError> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| bad_key(key, "a bool", v)),
    }
}

fn key_array<'a>(g: &'a GgufFile, key: &str) -> Result<Option<&'a Array>, ImportError> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_array()
            .map(Some)
            .ok_or_else(|| bad_key(key, "an array", v)),
    }
}

fn bad_key(key: &str, expected: &'static str, v: &Value) -> ImportError {
    let mut found = format!("{} {v}", v.value_type());
    if found.len() > 80 {
        let cut = (0..=80)
            .rev()
            .find(|&i| found.is_char_boundary(i))
            .unwrap_or(0);
        found.truncate(cut);
        found.push_str("...");
    }
    ImportError::BadKey {
        key: key.into(),
        expected,
        found,
    }
}

fn invalid(reason: impl Into<String>) -> ImportError {
    ImportError::InvalidConfig {
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------
// Configuration.

const TOKENS_KEY: &str = "tokenizer.ggml.tokens";

fn tokens(g: &GgufFile) -> Result<Option<&[String]>, ImportError> {
    match key_array(g, TOKENS_KEY)? {
        None => Ok(None),
        Some(a) => a.as_strings().map(Some).ok_or_else(|| ImportError::BadKey {
            key: TOKENS_KEY.into(),
            expected: "an array of strings",
            found: format!("an array of {}", a.elem_type()),
        }),
    }
}

fn tokenizer_kind(g: &GgufFile) -> Result<TokenizerKind, ImportError> {
    Ok(match key_str(g, "tokenizer.ggml.model")? {
        None | Some("no") | Some("none") => TokenizerKind::None,
        Some("gpt2") => TokenizerKind::ByteLevelBpe,
        Some("llama") => TokenizerKind::SentencePiece,
        Some(other) => {
            return Err(ImportError::Unsupported {
                what: "tokenizer model (tokenizer.ggml.model)",
                value: other.into(),
            });
        }
    })
}

/// The pre-tokenizer of `tokenizer.ggml.pre`. Qwen2 and Llama 3 take the names llama.cpp
/// (`llama-vocab.cpp`) gives exactly that pre-tokenizer type: `LLAMA_VOCAB_PRE_TYPE_QWEN2`
/// and `LLAMA_VOCAB_PRE_TYPE_LLAMA3` (the latter with its whole-token rule,
/// `ignore_merges`). Names of other types that share one of the patterns (`stablelm2`,
/// `dbrx`, `smaug-bpe`...) are refused like any unknown name.
fn pretokenizer(g: &GgufFile) -> Result<PreTokenizer, ImportError> {
    Ok(match key_str(g, "tokenizer.ggml.pre")? {
        None | Some("default") | Some("gpt2") => PreTokenizer::Gpt2,
        Some("smollm") => PreTokenizer::SmolLm,
        Some("qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez") => PreTokenizer::Qwen2,
        Some(
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
            | "lfm2" | "jina-v5-nano",
        ) => PreTokenizer::Llama3,
        Some(other) => {
            return Err(ImportError::Unsupported {
                what: "pre-tokenizer (tokenizer.ggml.pre)",
                value: other.into(),
            });
        }
    })
}

fn token_id(g: &GgufFile, key: &str, vocab: u32) -> Result<u32, ImportError> {
    match key_u64(g, key)? {
        None => Ok(NONE_ID),
        Some(id) if id < u64::from(vocab) => Ok(id as u32),
        Some(id) => Err(ImportError::BadTokenId {
            key: key.into(),
            id,
            vocab,
        }),
    }
}

/// The TVL model configuration of a GGUF model (`general.architecture` `llama`,
/// `qwen2`, `qwen3` or `gemma3`), from its `ARCH.*` and `tokenizer.*` keys, checked for
/// consistency (the tensors are checked by [`convert`]). What the architecture adds
/// to the Llama block is written as TVL's block flags, scales and sliding window, as
/// llama.cpp runs it (TVL spec section 4).
pub fn model_config(g: &GgufFile) -> Result<ModelConfig, ImportError> {
    let name = key_str(g, "general.architecture")?.ok_or_else(|| ImportError::MissingKey {
        key: "general.architecture".into(),
    })?;
    let arch = Arch::from_name(name).ok_or_else(|| ImportError::Unsupported {
        what: "architecture (general.architecture)",
        value: name.into(),
    })?;
    let key = |k: &str| format!("{name}.{k}");
    if let Some(scaling) = key_str(g, &key("rope.scaling.type"))?
        && scaling != "none"
    {
        return Err(ImportError::Unsupported {
            what: "RoPE scaling (ARCH.rope.scaling.type)",
            value: scaling.into(),
        });
    }
    if let Some(cap) = key_f32(g, &key("final_logit_softcapping"))?
        && cap != 0.0
    {
        return Err(ImportError::Unsupported {
            what: "final logit soft-capping (ARCH.final_logit_softcapping)",
            value: cap.to_string(),
        });
    }
    let dim = req_u32(g, &key("embedding_length"))?;
    let hidden_dim = req_u32(g, &key("feed_forward_length"))?;
    let n_layers = req_u32(g, &key("block_count"))?;
    let n_heads = req_u32(g, &key("attention.head_count"))?;
    let n_kv_heads = key_u32(g, &key("attention.head_count_kv"))?.unwrap_or(n_heads);
    let context_len = req_u32(g, &key("context_length"))?;
    let rope_dims = key_u32(g, &key("rope.dimension_count"))?;
    let key_length = key_u32(g, &key("attention.key_length"))?;
    // Where the head size comes from, for the messages of the config check.
    let head_from = match (key_length, rope_dims) {
        (Some(_), _) => key("attention.key_length"),
        (None, Some(_)) => key("rope.dimension_count"),
        (None, None) => format!("the head size {name}.embedding_length / attention.head_count"),
    };
    let head_dim = match (key_length, rope_dims) {
        (Some(h), _) | (None, Some(h)) => h,
        (None, None) if n_heads > 0 && dim % n_heads == 0 => dim / n_heads,
        (None, None) => {
            return Err(invalid(format!(
                "{name}.rope.dimension_count is absent and embedding_length {dim} is not a \
                 multiple of head_count {n_heads}"
            )));
        }
    };
    if let Some(v) = key_u32(g, &key("attention.value_length"))?
        && v != head_dim
    {
        return Err(invalid(format!(
            "attention.value_length {v} differs from the key length {head_dim}"
        )));
    }
    if let Some(r) = rope_dims
        && r != head_dim
    {
        return Err(ImportError::Unsupported {
            what: "partial rotary embedding (ARCH.rope.dimension_count below the head size)",
            value: format!("{r} of {head_dim}"),
        });
    }
    let tokens = tokens(g)?;
    let vocab_key = key_u32(g, &key("vocab_size"))?;
    let vocab_from = match vocab_key {
        Some(_) => key("vocab_size"),
        None => "the vocabulary size (tokenizer.ggml.tokens, or token_embd.weight's rows)".into(),
    };
    let vocab_size = match vocab_key {
        Some(v) => v,
        None => match (tokens, g.tensor("token_embd.weight")) {
            (Some(t), _) => u32::try_from(t.len())
                .map_err(|_| invalid(format!("{} tokens exceed u32", t.len())))?,
            (None, Some(t)) => t
                .dims
                .get(1)
                .and_then(|&d| u32::try_from(d).ok())
                .ok_or_else(|| invalid("token_embd.weight has no row count below 2^32"))?,
            (None, None) => {
                return Err(ImportError::MissingKey {
                    key: key("vocab_size"),
                });
            }
        },
    };
    let rope_theta = key_f32(g, &key("rope.freq_base"))?.unwrap_or(10000.0);
    let rms_eps = key_f32(g, &key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5);

    let base = ModelConfig {
        arch: arch as u32,
        dim,
        hidden_dim,
        n_layers,
        n_heads,
        n_kv_heads,
        head_dim,
        vocab_size,
        context_len,
        rope_theta,
        rms_eps,
        rope_style: RopeStyle::HalfSplit as u32,
        tied_output: u32::from(g.tensor("output.weight").is_none()),
        ..ModelConfig::default()
    };
    let config = match arch {
        // llama.cpp's "normal" RoPE: its converter permuted the q/k rows for it.
        Arch::Llama => ModelConfig {
            rope_style: RopeStyle::Interleaved as u32,
            block_flags: if g.tensor("rope_freqs.weight").is_some() {
                block_flags::ROPE_FREQS
            } else {
                0
            },
            ..base
        },
        Arch::Qwen2 => ModelConfig {
            block_flags: block_flags::QKV_BIAS,
            ..base
        },
        Arch::Qwen3 => ModelConfig {
            block_flags: block_flags::QK_NORM,
            ..base
        },
        Arch::Gemma3 => gemma3(g, base)?,
    };
    check_config(&config, |field| {
        Some(match field {
            "dim" => key("embedding_length"),
            "hidden_dim" => key("feed_forward_length"),
            "n_layers" => key("block_count"),
            "n_heads" => key("attention.head_count"),
            "n_kv_heads" => key("attention.head_count_kv"),
            "head_dim" => head_from.clone(),
            "vocab_size" => vocab_from.clone(),
            "context_len" => key("context_length"),
            "rope_theta" => key("rope.freq_base"),
            "rms_eps" => key("attention.layer_norm_rms_epsilon"),
            _ => return None,
        })
    })?;
    // The tokenizer fields, checked against the vocabulary once its size is known good.
    let t = tokenizer_config(g, vocab_size)?;
    Ok(ModelConfig {
        bos_id: t.bos_id,
        eos_id: t.eos_id,
        eot_id: t.eot_id,
        add_bos: t.add_bos,
        tokenizer: t.tokenizer,
        pretokenizer: t.pretokenizer,
        unk_id: t.unk_id,
        tokenizer_flags: t.tokenizer_flags,
        ..config
    })
}

/// What Gemma 3 adds, as llama.cpp's `gemma3` graph runs it: QK-norm, post-norms and
/// the GELU gate; embeddings scaled by `sqrt(dim)`; queries by `1 / sqrt(head_dim)`
/// (the 27B model, 62 layers, by `1 / sqrt(dim / n_heads)`); with a sliding window,
/// five local layers in six (or the file's `sliding_window_pattern`) at the local RoPE
/// base (10000 unless the file says). The norm gains are stored as `1 + w` already.
fn gemma3(g: &GgufFile, base: ModelConfig) -> Result<ModelConfig, ImportError> {
    let window = key_u32(g, "gemma3.attention.sliding_window")?.unwrap_or(0);
    const PATTERN_KEY: &str = "gemma3.attention.sliding_window_pattern";
    let pattern = match g.get(PATTERN_KEY) {
        None => 6,
        Some(Value::Array(_)) => {
            return Err(ImportError::Unsupported {
                what: "per-layer sliding-window flags (gemma3.attention.sliding_window_pattern)",
                value: "an array".into(),
            });
        }
        Some(_) => req_u32(g, PATTERN_KEY)?,
    };
    let head_scale = if base.n_layers == 62 {
        base.dim / base.n_heads
    } else {
        base.head_dim
    };
    Ok(ModelConfig {
        block_flags: block_flags::QK_NORM
            | block_flags::POST_ATTN_NORM
            | block_flags::POST_FFN_NORM
            | block_flags::GELU,
        embed_scale: (base.dim as f32).sqrt(),
        attn_scale: 1.0 / (head_scale as f32).sqrt(),
        sliding_window: window,
        swa_pattern: if window > 0 { pattern } else { 0 },
        rope_theta_local: if window > 0 {
            key_f32(g, "gemma3.rope.freq_base_swa")?.unwrap_or(10000.0)
        } else {
            0.0
        },
        ..base
    })
}

/// The tokenizer fields of the configuration (the rest default): kind, pre-tokenizer,
/// special ids, BOS and dummy-prefix flags, checked against a vocabulary of
/// `vocab_size` tokens.
fn tokenizer_config(g: &GgufFile, vocab_size: u32) -> Result<ModelConfig, ImportError> {
    let tokens = tokens(g)?;
    let tokenizer = tokenizer_kind(g)?;
    let pre = pretokenizer(g)?;
    if let Some(t) = tokens
        && t.len() != vocab_size as usize
    {
        return Err(ImportError::TableLength {
            key: TOKENS_KEY.into(),
            expected: vocab_size as usize,
            found: t.len(),
        });
    }
    if tokenizer != TokenizerKind::None && tokens.is_none() {
        return Err(ImportError::MissingKey {
            key: TOKENS_KEY.into(),
        });
    }
    let bos_id = token_id(g, "tokenizer.ggml.bos_token_id", vocab_size)?;
    let eos_id = token_id(g, "tokenizer.ggml.eos_token_id", vocab_size)?;
    let unk_id = token_id(g, "tokenizer.ggml.unknown_token_id", vocab_size)?;
    let eot_id = match token_id(g, "tokenizer.ggml.eot_token_id", vocab_size)? {
        NONE_ID => tokens
            .and_then(|t| {
                EOT_CANDIDATES
                    .iter()
                    .find_map(|c| t.iter().position(|s| s == c))
            })
            .map_or(eos_id, |i| i as u32),
        id => id,
    };
    // llama.cpp's defaults when the key is absent: BOS for SentencePiece and for the
    // Llama 3 pre-tokenizer names.
    let add_bos = key_bool(g, "tokenizer.ggml.add_bos_token")?.unwrap_or(
        tokenizer == TokenizerKind::SentencePiece
            || (tokenizer == TokenizerKind::ByteLevelBpe
                && pre == PreTokenizer::Llama3
                && bos_id != NONE_ID),
    );
    // llama.cpp's default for a SentencePiece vocabulary: the dummy prefix is added.
    let space_prefix = key_bool(g, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let flags = if tokenizer == TokenizerKind::SentencePiece && !space_prefix {
        tokenizer_flags::NO_SPACE_PREFIX
    } else {
        0
    };

    Ok(ModelConfig {
        vocab_size,
        bos_id,
        eos_id,
        eot_id,
        add_bos: u32::from(add_bos),
        tokenizer: tokenizer as u32,
        pretokenizer: pre as u32,
        unk_id,
        tokenizer_flags: flags,
        ..ModelConfig::default()
    })
}

/// A tables-only TVL file (`arch` 0) of the GGUF file's tokenizer and chat template,
/// whatever its architecture: for tokenizing without the weights, and for testing a
/// vocabulary against another implementation before its graph is supported.
pub fn tokenizer_only(g: &GgufFile) -> Result<TvlWriter, ImportError> {
    let vocab = tokens(g)?.map_or(0, <[String]>::len);
    let vocab_size = u32::try_from(vocab).map_err(|_| invalid("vocabulary larger than u32"))?;
    let config = ModelConfig {
        arch: 0,
        ..tokenizer_config(g, vocab_size)?
    };
    let mut writer = TvlWriter::new(config);
    add_tokenizer_tables(g, &mut writer)?;
    add_chat_template(g, &mut writer)?;
    Ok(writer)
}

fn add_chat_template(g: &GgufFile, w: &mut TvlWriter) -> Result<(), ImportError> {
    if let Some(template) = key_str(g, "tokenizer.chat_template")?
        && !template.is_empty()
    {
        let bytes = template.as_bytes().to_vec();
        w.add_plain(names::CHAT_TEMPLATE, &[bytes.len()], TensorData::U8(bytes))?;
    }
    Ok(())
}

/// Sort key putting a model's tensors in forward-pass order (the order of
/// [`arch::tensors`]), then anything else in its original order (the sort is stable).
fn forward_order(c: &ModelConfig, name: &str) -> (u8, u64) {
    arch::forward_position(c, name).map_or((1, 0), |p| (0, p))
}

fn check_tensors(g: &GgufFile, c: &ModelConfig) -> Result<(), ImportError> {
    for spec in arch::tensors(c) {
        match g.tensor(&spec.name) {
            None if spec.required => return Err(ImportError::MissingTensor { name: spec.name }),
            None => {}
            Some(t) if t.shape() != spec.shape => {
                return Err(ImportError::ShapeMismatch {
                    name: spec.name,
                    expected_dims: spec.shape.iter().rev().copied().collect(),
                    expected: spec.shape,
                    found_dims: t.dims.clone(),
                });
            }
            Some(_) => {}
        }
    }
    for t in g.tensors() {
        if !dequant::is_supported(t.ggml_type) {
            return Err(ImportError::UnsupportedTensorType {
                name: t.name.clone(),
                ggml_type: t.ggml_type,
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Tensors.

fn dequantized(g: &GgufFile, t: &TensorInfo) -> Result<Vec<f32>, ImportError> {
    let n =
        usize::try_from(t.n_elements()).map_err(|_| invalid(format!("{} too large", t.name)))?;
    dequant::dequantize_to_vec(t.ggml_type, g.tensor_data(t), n).map_err(|source| {
        ImportError::Dequant {
            name: t.name.clone(),
            source,
        }
    })
}

/// Add one GGUF tensor of `g` to the writer under its own name, as [`convert`] does
/// (a matrix in the type `opts` gives it, anything else plain f32); returns whether
/// its values were kept exactly.
pub fn add_gguf_tensor(
    g: &GgufFile,
    t: &TensorInfo,
    opts: &ConvertOptions,
    w: &mut TvlWriter,
) -> Result<bool, ImportError> {
    let too_large = || invalid(format!("tensor {} has a dimension above usize", t.name));
    let shape = t
        .shape()
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| too_large()))
        .collect::<Result<Vec<_>, _>>()?;
    if let [rows, cols] = shape[..] {
        let raw = g.tensor_data(t);
        let src = match t.ggml_type {
            GgmlType::F16 => MatrixSource::F16(
                raw.chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]))
                    .collect(),
            ),
            ty => match ty.block_type() {
                Some(kind) => MatrixSource::Blocks(kind.dtype(), raw),
                None => MatrixSource::F32(dequantized(g, t)?),
            },
        };
        let output_head = t.name == "output.weight"
            || (t.name == "token_embd.weight"
                && !g.tensors().iter().any(|u| u.name == "output.weight"));
        add_matrix(w, &t.name, rows, cols, src, output_head, opts)
    } else {
        let shape = if shape.is_empty() { vec![1] } else { shape };
        w.add_plain(&t.name, &shape, TensorData::F32(dequantized(g, t)?))?;
        Ok(true)
    }
}

/// Round to f16 (nearest-even, vectorized where the CPU can); also reports whether
/// every value survived exactly.
fn to_f16(src: &[f32]) -> (Vec<f16>, bool) {
    let mut out = vec![f16::ZERO; src.len()];
    out.convert_from_f32_slice(src);
    let mut back = [0.0f32; 4096];
    let mut exact = true;
    for (h, x) in out.chunks(back.len()).zip(src.chunks(back.len())) {
        let back = &mut back[..h.len()];
        h.convert_to_f32_slice(back);
        exact &= back
            .iter()
            .zip(x)
            .all(|(b, x)| b.to_bits() == x.to_bits() || (x.is_nan() && b.is_nan()));
    }
    (out, exact)
}

/// Concatenate strings into (bytes, offsets[n + 1]).
fn string_table(key: &str, strings: &[String]) -> Result<(Vec<u8>, Vec<u32>), ImportError> {
    let total: u64 = strings.iter().map(|s| s.len() as u64).sum();
    if total > u64::from(u32::MAX) {
        return Err(ImportError::TableTooLarge {
            key: key.into(),
            bytes: total,
        });
    }
    let mut bytes = Vec::with_capacity(total as usize);
    let mut offsets = Vec::with_capacity(strings.len() + 1);
    offsets.push(0);
    for s in strings {
        bytes.extend_from_slice(s.as_bytes());
        offsets.push(bytes.len() as u32);
    }
    Ok((bytes, offsets))
}

fn add_tokenizer_tables(g: &GgufFile, w: &mut TvlWriter) -> Result<(), ImportError> {
    let Some(tokens) = tokens(g)? else {
        return Ok(());
    };
    let n = tokens.len();
    let (bytes, offsets) = string_table(TOKENS_KEY, tokens)?;
    w.add_plain(names::TOKENS, &[bytes.len()], TensorData::U8(bytes))?;
    w.add_plain(names::TOKEN_OFFSETS, &[n + 1], TensorData::U32(offsets))?;

    const SCORES_KEY: &str = "tokenizer.ggml.scores";
    if let Some(a) = key_array(g, SCORES_KEY)? {
        let scores = a.to_f32s().ok_or_else(|| ImportError::BadKey {
            key: SCORES_KEY.into(),
            expected: "an array of f32",
            found: format!("an array of {}", a.elem_type()),
        })?;
        if scores.len() != n {
            return Err(ImportError::TableLength {
                key: SCORES_KEY.into(),
                expected: n,
                found: scores.len(),
            });
        }
        w.add_plain(names::SCORES, &[n], TensorData::F32(scores.into_owned()))?;
    }

    const TYPES_KEY: &str = "tokenizer.ggml.token_type";
    if let Some(a) = key_array(g, TYPES_KEY)? {
        let bad = || ImportError::BadKey {
            key: TYPES_KEY.into(),
            expected: "an array of integers in 0..=255",
            found: format!("an array of {}", a.elem_type()),
        };
        let mut types = a
            .to_i64s()
            .ok_or_else(bad)?
            .into_iter()
            .map(|t| u8::try_from(t).map_err(|_| bad()))
            .collect::<Result<Vec<u8>, _>>()?;
        for (ty, text) in types.iter_mut().zip(tokens) {
            if CONTROL_LOOKING.contains(&text.as_str()) {
                *ty = GGUF_CONTROL;
            }
        }
        if types.len() != n {
            return Err(ImportError::TableLength {
                key: TYPES_KEY.into(),
                expected: n,
                found: types.len(),
            });
        }
        w.add_plain(names::TOKEN_TYPES, &[n], TensorData::U8(types))?;
    }

    const MERGES_KEY: &str = "tokenizer.ggml.merges";
    if let Some(a) = key_array(g, MERGES_KEY)? {
        let merges = a.as_strings().ok_or_else(|| ImportError::BadKey {
            key: MERGES_KEY.into(),
            expected: "an array of strings",
            found: format!("an array of {}", a.elem_type()),
        })?;
        if !merges.is_empty() {
            let (bytes, offsets) = string_table(MERGES_KEY, merges)?;
            w.add_plain(names::MERGES, &[bytes.len()], TensorData::U8(bytes))?;
            w.add_plain(
                names::MERGE_OFFSETS,
                &[merges.len() + 1],
                TensorData::U32(offsets),
            )?;
        }
    }
    Ok(())
}

/// Convert a parsed GGUF Llama model into a TVL writer.
///
/// `progress(done, total)` is called with the number of weight tensors converted so
/// far. Nothing is written to disk; see [`convert_file`].
pub fn convert(
    g: &GgufFile,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Conversion, ImportError> {
    if opts.tile_rows == 0 || opts.block_tile_rows == 0 {
        return Err(ImportError::InvalidOption {
            reason: "tile_rows and block_tile_rows must be at least 1".into(),
        });
    }
    let config = model_config(g)?;
    check_tensors(g, &config)?;

    let mut writer = TvlWriter::new(config);
    let mut rounded_tensors = Vec::new();
    let total = g.tensors().len();
    progress(0, total);
    // Write weights in the order the forward pass reads them, so one token streams the
    // file front to back (GGUF files list a layer's tensors alphabetically).
    let mut order: Vec<&TensorInfo> = g.tensors().iter().collect();
    order.sort_by_key(|t| forward_order(&config, &t.name));
    for (i, t) in order.into_iter().enumerate() {
        if !add_gguf_tensor(g, t, opts, &mut writer)? {
            rounded_tensors.push(t.name.clone());
        }
        progress(i + 1, total);
    }
    add_tokenizer_tables(g, &mut writer)?;
    add_chat_template(g, &mut writer)?;
    Ok(Conversion {
        writer,
        config,
        rounded_tensors,
    })
}

/// Convert the GGUF file `input` into the TVL file `output`.
///
/// The file is written under a unique temporary name beside `output`, synced, then
/// renamed over `output`: a crash or an error never leaves a partial file under the
/// final name (the temporary is removed on error).
pub fn convert_file(
    input: &Path,
    output: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ConvertReport, ImportError> {
    let gguf = GgufFile::open(input)?;
    let conv = convert(&gguf, opts, progress)?;
    drop(gguf);
    let bytes_written = write_atomically(output, |out| Ok(conv.writer.write_to(out)?))?;
    Ok(ConvertReport {
        output: output.to_path_buf(),
        config: conv.config,
        tensors: conv.writer.len(),
        bytes_written,
        rounded_tensors: conv.rounded_tensors,
    })
}

/// Removes a temporary file on drop unless disarmed.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Write `path` through a uniquely named temporary file in the same directory, then
/// rename it into place.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> Result<u64, ImportError>,
) -> Result<u64, ImportError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| ImportError::Io {
            action,
            path,
            source,
        }
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| ImportError::InvalidOption {
            reason: format!("output path {} has no file name", path.display()),
        })?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(
        ".{file_name}.{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io("cannot create", &tmp))?;
    let mut guard = TempGuard(Some(tmp.clone()));
    let mut out = BufWriter::with_capacity(1 << 20, &file);
    let n = write(&mut out)?;
    out.flush().map_err(io("cannot write", &tmp))?;
    drop(out);
    file.sync_all().map_err(io("cannot sync", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io("cannot rename the temporary file to", path))?;
    guard.0 = None;
    // Make the rename itself durable; failure here loses nothing already renamed.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::forward_order;
    use tvl_format::{ARCH_LLAMA, ModelConfig};

    #[test]
    fn tensors_sort_into_forward_pass_order() {
        let mut names = vec![
            "blk.10.attn_q.weight",
            "output.weight",
            "blk.1.ffn_down.weight",
            "extra.bias",
            "blk.1.attn_norm.weight",
            "output_norm.weight",
            "blk.1.attn_k.weight",
            "token_embd.weight",
            "blk.2.ffn_gate.weight",
        ];
        let config = ModelConfig {
            arch: ARCH_LLAMA,
            n_layers: 12,
            ..ModelConfig::default()
        };
        names.sort_by_key(|n| forward_order(&config, n));
        assert_eq!(
            names,
            [
                "token_embd.weight",
                "blk.1.attn_norm.weight",
                "blk.1.attn_k.weight",
                "blk.1.ffn_down.weight",
                "blk.2.ffn_gate.weight",
                "blk.10.attn_q.weight",
                "output_norm.weight",
                "output.weight",
                "extra.bias",
            ]
        );
    }
}
