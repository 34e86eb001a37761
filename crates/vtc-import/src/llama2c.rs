//! karpathy/llama2.c checkpoints (`model.bin`) and tokenizers (`tokenizer.bin`) to TVL.
//!
//! Three checkpoint versions exist (llama2.c `export.py`), all little-endian:
//!
//! - **legacy** (version 0, what `run.c` reads and the stories15M/42M/110M files are):
//!   7 × i32 `dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len`
//!   (a negative `vocab_size` means a separate classifier), then f32 tensors:
//!   `token_embedding [vocab, dim]`, per layer (each group over all layers in turn)
//!   `rms_att [dim]`, `wq [dim, dim]`, `wk [kv_dim, dim]`, `wv [kv_dim, dim]`,
//!   `wo [dim, dim]`, `rms_ffn [dim]`, `w1 [hidden, dim]`, `w2 [dim, hidden]`,
//!   `w3 [hidden, dim]`, then `rms_final [dim]`, the RoPE tables `freq_cis_real` and
//!   `freq_cis_imag` (`seq_len * head_dim / 2` each, skipped: RoPE is recomputed), and
//!   the classifier `[vocab, dim]` if separate.
//! - **version 1**: a 256-byte header (`u32` magic `0x616b3432` "ak42", `i32` version 1,
//!   the 7 × i32, `u8 shared_classifier`, zero padding), then f32 tensors: all
//!   `rms_att`, all `rms_ffn`, `rms_final`, `token_embedding`, all `wq`, `wk`, `wv`,
//!   `wo`, `w1`, `w2`, `w3`, and the classifier if not shared.
//! - **version 2** (`runq.c`): the same header plus `i32 group_size`, then the norms in
//!   f32 as in version 1, then each matrix in version 1's order quantized to Q8_0 in
//!   groups of `group_size` over the flattened tensor: its `i8` values, then its f32
//!   scales (value = `q * scale`). Dequantized here to the exact f32 products.
//!
//! `w1`/`w3`/`w2` are the SwiGLU gate/up/down projections. llama2.c rotates adjacent
//! pairs `(2i, 2i + 1)` of each head (its `export.py` un-permutes Hugging Face weights),
//! the interleaved RoPE of GGUF, so weights are taken as they are; `rope_theta` is
//! 10000 and `rms_eps` 1e-5, as in `run.c`.
//!
//! `tokenizer.bin`: `i32 max_token_length`, then per token `f32 score`, `i32 length`
//! and the bytes (spaces as `' '`, BOS and EOS spelled `"\n<s>\n"` and `"\n</s>\n"`). The
//! number of tokens is the model's vocabulary size. It becomes a
//! [`TokenizerKind::SentencePiece`] table in SentencePiece's own spelling (`▁` for a
//! space, `<s>`, `</s>`), with token types (`<unk>` unknown, `<s>`/`</s>` control,
//! `<0xXX>` byte, the rest normal), BOS 1 added to prompts as `run.c` does, EOS 2, and
//! generation also stopping at BOS (the end-of-turn id is 1: the stories models separate
//! stories with BOS, and `run.c` stops there).

use std::path::{Path, PathBuf};

use tvl_format::{ModelConfig, NONE_ID, PreTokenizer, RopeStyle, TokenizerKind};

use crate::assemble::{Tables, Values, assemble};
use crate::convert::{ARCH_LLAMA, Conversion, ConvertOptions};
use crate::error::ImportError;
pub use crate::error::Llama2cError;

/// Magic of the version 1 and 2 headers: "ak42" as a little-endian u32.
pub const MAGIC: u32 = 0x616b_3432;
/// Bytes of the version 1 and 2 headers.
pub const HEADER_LEN: usize = 256;
/// Bytes of the legacy header.
pub const LEGACY_HEADER_LEN: usize = 28;

/// The checkpoint header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// 0 (legacy), 1 (f32) or 2 (Q8_0).
    pub version: u32,
    /// Model width.
    pub dim: usize,
    /// Feed-forward width.
    pub hidden_dim: usize,
    /// Blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Context length.
    pub seq_len: usize,
    /// Whether the classifier is the embedding table.
    pub shared_classifier: bool,
    /// Q8_0 group size (version 2), else 0.
    pub group_size: usize,
}

/// Largest accepted size field (as in the model crate): far above real models, small
/// enough that products of a few of them cannot overflow.
const MAX_DIM: i64 = tvl_format::MAX_DIM as i64;

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Header {
    /// Parse the header at the start of `bytes`; returns it and the header's length.
    pub fn parse(bytes: &[u8]) -> Result<(Self, usize), Llama2cError> {
        let len = bytes.len() as u64;
        let short = |needed: usize| Llama2cError::ShortHeader {
            len,
            needed: needed as u64,
        };
        if bytes.len() < LEGACY_HEADER_LEN {
            return Err(short(LEGACY_HEADER_LEN));
        }
        let magic = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let (version, params_at, header_len) = if magic == MAGIC {
            if bytes.len() < HEADER_LEN {
                return Err(short(HEADER_LEN));
            }
            match i32_at(bytes, 4) {
                1 => (1, 8, HEADER_LEN),
                2 => (2, 8, HEADER_LEN),
                version => return Err(Llama2cError::UnsupportedVersion { version }),
            }
        } else {
            (0, 0, LEGACY_HEADER_LEN)
        };
        const FIELDS: [&str; 7] = [
            "dim",
            "hidden_dim",
            "n_layers",
            "n_heads",
            "n_kv_heads",
            "vocab_size",
            "seq_len",
        ];
        let mut v = [0usize; 7];
        let mut shared = true;
        for (i, field) in FIELDS.into_iter().enumerate() {
            let mut x = i64::from(i32_at(bytes, params_at + 4 * i));
            if field == "vocab_size" && version == 0 && x < 0 {
                // Legacy: a negative vocabulary size flags a separate classifier.
                shared = false;
                x = -x;
            }
            if !(1..=MAX_DIM).contains(&x) {
                return Err(Llama2cError::BadHeader {
                    field,
                    value: i64::from(i32_at(bytes, params_at + 4 * i)),
                    why: "must be in 1..=2^20",
                });
            }
            v[i] = x as usize;
        }
        let [
            dim,
            hidden_dim,
            n_layers,
            n_heads,
            n_kv_heads,
            vocab_size,
            seq_len,
        ] = v;
        if version >= 1 {
            shared = match bytes[params_at + 28] {
                0 => false,
                1 => true,
                b => {
                    return Err(Llama2cError::BadHeader {
                        field: "shared_classifier",
                        value: i64::from(b),
                        why: "must be 0 or 1",
                    });
                }
            };
        }
        let group_size = if version == 2 {
            let g = i64::from(i32_at(bytes, params_at + 29));
            if !(1..=MAX_DIM).contains(&g) {
                return Err(Llama2cError::BadHeader {
                    field: "group_size",
                    value: g,
                    why: "must be in 1..=2^20",
                });
            }
            g as usize
        } else {
            0
        };
        let bad = |field, value: usize, why| Llama2cError::BadHeader {
            field,
            value: value as i64,
            why,
        };
        if !dim.is_multiple_of(n_heads) || !(dim / n_heads).is_multiple_of(2) {
            return Err(bad(
                "n_heads",
                n_heads,
                "must divide dim into even head dims",
            ));
        }
        if !n_heads.is_multiple_of(n_kv_heads) {
            return Err(bad("n_kv_heads", n_kv_heads, "must divide n_heads"));
        }
        Ok((
            Self {
                version,
                dim,
                hidden_dim,
                n_layers,
                n_heads,
                n_kv_heads,
                vocab_size,
                seq_len,
                shared_classifier: shared,
                group_size,
            },
            header_len,
        ))
    }

    /// Dimension of one head.
    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }

    /// The TVL configuration (no tokenizer: see [`Vocab::apply`]).
    pub fn config(&self) -> ModelConfig {
        ModelConfig {
            arch: ARCH_LLAMA,
            dim: self.dim as u32,
            hidden_dim: self.hidden_dim as u32,
            n_layers: self.n_layers as u32,
            n_heads: self.n_heads as u32,
            n_kv_heads: self.n_kv_heads as u32,
            head_dim: self.head_dim() as u32,
            vocab_size: self.vocab_size as u32,
            context_len: self.seq_len as u32,
            rope_theta: 10000.0,
            rms_eps: 1e-5,
            rope_style: RopeStyle::Interleaved as u32,
            tied_output: u32::from(self.shared_classifier),
            bos_id: NONE_ID,
            eos_id: NONE_ID,
            eot_id: NONE_ID,
            add_bos: 0,
            tokenizer: TokenizerKind::None as u32,
            pretokenizer: PreTokenizer::Gpt2 as u32,
            unk_id: NONE_ID,
            ..ModelConfig::default()
        }
    }
}

/// Where a tensor's data is.
#[derive(Clone, Copy, Debug)]
enum Loc {
    /// f32 values at a byte offset.
    F32 { at: usize, n: usize },
    /// Q8_0: `n` i8 values at `q`, then `n / group_size` f32 scales at `s`.
    Q8 { q: usize, s: usize, n: usize },
}

/// A parsed checkpoint: the header and the location of every tensor (GGUF names).
#[derive(Debug)]
pub struct Checkpoint {
    /// The header.
    pub header: Header,
    tensors: Vec<(String, Loc)>,
}

/// The tensor groups of a checkpoint, with per-layer element counts (u64: every field is
/// below 2^20, so products of two fit).
fn groups(h: &Header) -> Vec<(&'static str, usize, u64)> {
    let [d, hd, v, seq, head] =
        [h.dim, h.hidden_dim, h.vocab_size, h.seq_len, h.head_dim()].map(|x| x as u64);
    let kv = h.n_kv_heads as u64 * head;
    let l = h.n_layers;
    // (name, tensors, elements each); "" = not a TVL tensor.
    let mut g = match h.version {
        0 => vec![
            ("token_embd.weight", 1, v * d),
            ("attn_norm", l, d),
            ("attn_q", l, d * d),
            ("attn_k", l, kv * d),
            ("attn_v", l, kv * d),
            ("attn_output", l, d * d),
            ("ffn_norm", l, d),
            ("ffn_gate", l, hd * d),
            ("ffn_down", l, d * hd),
            ("ffn_up", l, hd * d),
            ("output_norm.weight", 1, d),
            ("", 2, seq * head / 2),
        ],
        _ => vec![
            ("attn_norm", l, d),
            ("ffn_norm", l, d),
            ("output_norm.weight", 1, d),
            ("token_embd.weight", 1, v * d),
            ("attn_q", l, d * d),
            ("attn_k", l, kv * d),
            ("attn_v", l, kv * d),
            ("attn_output", l, d * d),
            ("ffn_gate", l, hd * d),
            ("ffn_down", l, d * hd),
            ("ffn_up", l, hd * d),
        ],
    };
    if !h.shared_classifier {
        g.push(("output.weight", 1, v * d));
    }
    g
}

/// Walk the tensors of a checkpoint from `header_len` on: the end offset of the last
/// tensor and, with `out`, each tensor's location. Sums are checked (`file_len` only
/// names the file in the overflow error).
fn layout(
    header: &Header,
    header_len: usize,
    file_len: usize,
    mut out: Option<&mut Vec<(String, Loc)>>,
) -> Result<usize, Llama2cError> {
    let mut at = header_len;
    // All sizes are below 2^20 each, so products of three fit u64 and usize on 64-bit;
    // sums are checked.
    let overflow = || Llama2cError::SizeMismatch {
        version: header.version,
        expected: u64::MAX,
        found: file_len as u64,
    };
    for (name, count, n) in groups(header) {
        let n = usize::try_from(n).map_err(|_| overflow())?;
        let norm = name.ends_with("norm") || name == "output_norm.weight" || name.is_empty();
        let quantized = header.version == 2 && !norm;
        if quantized && !n.is_multiple_of(header.group_size) {
            let tensor = if name.contains('.') {
                name.to_string()
            } else {
                format!("blk.0.{name}.weight")
            };
            return Err(Llama2cError::GroupSize {
                tensor,
                elements: n as u64,
                group_size: header.group_size as u64,
            });
        }
        let Some(out) = out.as_deref_mut() else {
            // Sizes only: the whole group at once.
            let each = if quantized {
                n.checked_add(n / header.group_size * 4)
            } else {
                n.checked_mul(4)
            };
            at = each
                .and_then(|b| b.checked_mul(count))
                .and_then(|b| at.checked_add(b))
                .ok_or_else(overflow)?;
            continue;
        };
        for layer in 0..count {
            let loc = if quantized {
                let q = at;
                let s = q.checked_add(n).ok_or_else(overflow)?;
                at = s
                    .checked_add(n / header.group_size * 4)
                    .ok_or_else(overflow)?;
                Loc::Q8 { q, s, n }
            } else {
                let loc = Loc::F32 { at, n };
                at = n
                    .checked_mul(4)
                    .and_then(|b| at.checked_add(b))
                    .ok_or_else(overflow)?;
                loc
            };
            if !name.is_empty() {
                let full = if name.contains('.') {
                    name.to_string()
                } else {
                    format!("blk.{layer}.{name}.weight")
                };
                out.push((full, loc));
            }
        }
    }
    Ok(at)
}

impl Checkpoint {
    /// Locate every tensor of the checkpoint in `bytes` (the whole file), checking that
    /// the file is exactly as long as the header implies. The length is checked before
    /// anything is allocated: a 28-byte header claiming 2^20 layers costs nothing.
    pub fn parse(bytes: &[u8]) -> Result<Self, Llama2cError> {
        let (header, header_len) = Header::parse(bytes)?;
        let expected = layout(&header, header_len, bytes.len(), None)?;
        if expected != bytes.len() {
            return Err(Llama2cError::SizeMismatch {
                version: header.version,
                expected: expected as u64,
                found: bytes.len() as u64,
            });
        }
        let mut tensors = Vec::new();
        layout(&header, header_len, bytes.len(), Some(&mut tensors))?;
        Ok(Self { header, tensors })
    }

    /// The names of the tensors (GGUF names), in file order.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(n, _)| n.as_str())
    }

    /// The f32 values of a tensor (dequantized for version 2), or `None` if the
    /// checkpoint has no such tensor. `bytes` must be the file [`parse`](Self::parse) saw.
    pub fn tensor_f32(&self, bytes: &[u8], name: &str) -> Option<Vec<f32>> {
        let loc = self.tensors.iter().find(|(n, _)| n == name)?.1;
        let f32s = |at: usize, n: usize| -> Option<Vec<f32>> {
            let b = bytes.get(at..at.checked_add(n.checked_mul(4)?)?)?;
            Some(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        };
        match loc {
            Loc::F32 { at, n } => f32s(at, n),
            Loc::Q8 { q, s, n } => {
                let gs = self.header.group_size;
                let quants = bytes.get(q..q.checked_add(n)?)?;
                let scales = f32s(s, n / gs)?;
                Some(
                    quants
                        .chunks_exact(gs)
                        .zip(&scales)
                        .flat_map(|(g, &scale)| g.iter().map(move |&v| f32::from(v as i8) * scale))
                        .collect(),
                )
            }
        }
    }
}

/// A llama2.c vocabulary (`tokenizer.bin`), in SentencePiece's spelling.
#[derive(Clone, Debug, PartialEq)]
pub struct Vocab {
    /// The header's maximum token length.
    pub max_token_length: i32,
    /// Token strings, `▁` for a space; BOS/EOS as `<s>` / `</s>`.
    pub tokens: Vec<Vec<u8>>,
    /// Scores.
    pub scores: Vec<f32>,
    /// Token types (1 normal, 2 unknown, 3 control, 6 byte).
    pub types: Vec<u8>,
}

/// BOS id of llama2.c vocabularies.
pub const BOS_ID: u32 = 1;
/// EOS id of llama2.c vocabularies.
pub const EOS_ID: u32 = 2;

impl Vocab {
    /// Parse `tokenizer.bin` (all its entries, up to the end of the file).
    pub fn parse(bytes: &[u8]) -> Result<Self, Llama2cError> {
        let trunc = |token, offset: usize, needed: usize| Llama2cError::TokenizerTruncated {
            token,
            offset: offset as u64,
            needed: needed as u64,
            available: (bytes.len().saturating_sub(offset)) as u64,
        };
        if bytes.len() < 4 {
            return Err(trunc(0, 0, 4));
        }
        let max = i32_at(bytes, 0);
        let mut at = 4;
        let (mut tokens, mut scores) = (Vec::new(), Vec::new());
        while at < bytes.len() {
            let i = tokens.len();
            if bytes.len() - at < 8 {
                return Err(trunc(i, at, 8));
            }
            let score =
                f32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            let len = i32_at(bytes, at + 4);
            if len < 0 || len > max.max(0) {
                return Err(Llama2cError::TokenLength {
                    token: i,
                    offset: at as u64 + 4,
                    len,
                    max,
                });
            }
            at += 8;
            let s = bytes
                .get(at..at + len as usize)
                .ok_or_else(|| trunc(i, at, len as usize))?;
            at += len as usize;
            tokens.push(s.to_vec());
            scores.push(score);
        }
        let mut types = Vec::with_capacity(tokens.len());
        for (i, t) in tokens.iter_mut().enumerate() {
            let ty = match (i as u32, t.as_slice()) {
                (0, b"<unk>") => 2,
                (BOS_ID, b"\n<s>\n") => {
                    *t = b"<s>".to_vec();
                    3
                }
                (EOS_ID, b"\n</s>\n") => {
                    *t = b"</s>".to_vec();
                    3
                }
                (_, s) if is_byte_spelling(s) => 6,
                _ => {
                    *t = spaces_to_marks(t);
                    1
                }
            };
            types.push(ty);
        }
        Ok(Self {
            max_token_length: max,
            tokens,
            scores,
            types,
        })
    }

    /// Read and parse a `tokenizer.bin` file.
    pub fn open(path: &Path) -> Result<Self, ImportError> {
        let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
            action: "cannot read",
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::parse(&bytes)?)
    }

    /// Set the tokenizer fields of `config` and give the tables to write; fails unless
    /// the vocabulary has exactly `config.vocab_size` tokens.
    fn apply(self, config: &mut ModelConfig) -> Result<Tables, Llama2cError> {
        if self.tokens.len() != config.vocab_size as usize {
            return Err(Llama2cError::TokenCount {
                expected: config.vocab_size as usize,
                found: self.tokens.len(),
            });
        }
        let special = |id: u32, s: &[u8]| {
            (self.tokens.get(id as usize).map(Vec::as_slice) == Some(s)).then_some(id)
        };
        let bos = special(BOS_ID, b"<s>");
        config.tokenizer = TokenizerKind::SentencePiece as u32;
        config.bos_id = bos.unwrap_or(NONE_ID);
        config.eos_id = special(EOS_ID, b"</s>").unwrap_or(NONE_ID);
        config.eot_id = config.bos_id;
        config.add_bos = u32::from(bos.is_some());
        config.unk_id = special(0, b"<unk>").unwrap_or(NONE_ID);
        Ok(Tables {
            tokens: self.tokens,
            scores: self.scores,
            types: self.types,
            merges: Vec::new(),
            chat_template: None,
        })
    }
}

fn is_byte_spelling(s: &[u8]) -> bool {
    s.len() == 6
        && s.starts_with(b"<0x")
        && s[5] == b'>'
        && s[3..5].iter().all(u8::is_ascii_hexdigit)
}

fn spaces_to_marks(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s {
        if b == b' ' {
            out.extend_from_slice("\u{2581}".as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// Whether `bytes` start like a llama2.c checkpoint of a known version: the version-1/2
/// magic, or a legacy header whose fields are in range.
pub fn looks_like_checkpoint(bytes: &[u8]) -> bool {
    Header::parse(bytes).is_ok()
}

/// Convert a llama2.c checkpoint (its bytes) and optionally its vocabulary to a TVL
/// writer. Without a vocabulary the file has no tokenizer ([`TokenizerKind::None`]): it
/// runs from token ids (tests, benchmarks), and `vtc run` refuses it.
pub fn convert(
    bytes: &[u8],
    vocab: Option<Vocab>,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Conversion, ImportError> {
    let ck = Checkpoint::parse(bytes)?;
    let mut config = ck.header.config();
    let tables = match vocab {
        Some(v) => v.apply(&mut config)?,
        None => Tables::default(),
    };
    assemble(
        config,
        opts,
        &mut |name| Ok(ck.tensor_f32(bytes, name).map(Values::F32)),
        &tables,
        progress,
    )
}

/// Convert the llama2.c checkpoint `model` (with `tokenizer.bin` if given) into a TVL
/// writer. The checkpoint is memory-mapped.
pub fn convert_file(
    model: &Path,
    tokenizer: Option<&Path>,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Conversion, ImportError> {
    let io = |action: &'static str, path: &Path| {
        let path = PathBuf::from(path);
        move |source| ImportError::Io {
            action,
            path,
            source,
        }
    };
    let vocab = tokenizer.map(Vocab::open).transpose()?;
    let file = std::fs::File::open(model).map_err(io("cannot open", model))?;
    let len = file.metadata().map_err(io("cannot stat", model))?.len();
    if len == 0 {
        return convert(&[], vocab, opts, progress);
    }
    // SAFETY: a file mapping is only unsound if another process truncates or rewrites the
    // file while it is mapped. Every access here is bounds-checked against the mapping's
    // length; like every mmap-based model loader we require that model files are not
    // modified while they are being converted.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io("cannot map", model))?;
    convert(&map, vocab, opts, progress)
}
