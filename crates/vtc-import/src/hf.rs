//! Hugging Face Llama checkpoints (a directory of safetensors and JSON) to TVL.
//!
//! The directory holds:
//! - `config.json`: `architectures` containing `LlamaForCausalLM` (or `model_type`
//!   `llama`), `hidden_size`, `intermediate_size`, `num_hidden_layers`,
//!   `num_attention_heads`, `num_key_value_heads` (default: the heads),
//!   `vocab_size`, `max_position_embeddings`, `rope_theta` (default 10000),
//!   `rms_norm_eps` (default 1e-6), `tie_word_embeddings` (default false), `bos_token_id`,
//!   `eos_token_id` (a number or a list: the first). `rope_scaling`, `attention_bias` and
//!   `mlp_bias` other than null/false are refused.
//! - `model.safetensors`, or `model.safetensors.index.json` whose `weight_map` names the
//!   shard of every tensor. F32, F16 and BF16 tensors are read (read with the
//!   `safetensors` crate, which validates the header and bounds).
//! - `tokenizer.json` (optional: without it the TVL file has no tokenizer): a byte-level
//!   BPE (`model.type` `BPE`, `vocab`, `merges` as `"a b"` strings or `["a", "b"]` pairs,
//!   `added_tokens`), with a `ByteLevel` pre-tokenizer (GPT-2 split) or a `Sequence` of
//!   `Digits` (individual digits) and `ByteLevel` (SmolLM's split); anything else is a
//!   typed [`ImportError::Unsupported`].
//! - `tokenizer_config.json` (optional): `chat_template` (a string, or a list of named
//!   templates: `default`), `add_bos_token`, and `bos_token` / `eos_token` when
//!   `config.json` has no ids. A `chat_template.jinja` file takes precedence.
//!
//! Tensor names map to GGUF's (`model.layers.N.self_attn.q_proj.weight` ->
//! `blk.N.attn_q.weight`, `mlp.gate_proj` -> `ffn_gate`, `lm_head.weight` ->
//! `output.weight`, ...). Hugging Face's q/k rows are in the half-split RoPE pairing;
//! they are permuted to the interleaved pairing (as llama.cpp's converter does), so
//! the file has `rope_style` Interleaved like every other TVL Llama.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde_json::Value as Json;
use tvl_format::{ModelConfig, NONE_ID, PreTokenizer, RopeStyle, TokenizerKind};

pub use crate::assemble::interleaved_to_half_split;
use crate::assemble::{Tables, Values, assemble, half_split_to_interleaved};
use crate::convert::{ARCH_LLAMA, Conversion, ConvertOptions, EOT_CANDIDATES};
pub use crate::error::HfError;
use crate::error::{ImportError, check_config};

// ---------------------------------------------------------------------------------
// JSON helpers.

fn read_json(path: &Path) -> Result<Json, ImportError> {
    let text = std::fs::read(path).map_err(|source| ImportError::Io {
        action: "cannot read",
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| {
        HfError::Json {
            path: path.to_path_buf(),
            source,
        }
        .into()
    })
}

fn read_json_opt(path: &Path) -> Result<Option<Json>, ImportError> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

fn printed(v: &Json) -> String {
    let mut s = v.to_string();
    if s.len() > 80 {
        let cut = (0..=80).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// One JSON document and the file it came from, for error messages.
struct Doc<'a> {
    path: &'a Path,
    json: &'a Json,
}

impl Doc<'_> {
    fn bad(&self, field: &str, expected: &'static str, v: &Json) -> ImportError {
        HfError::BadField {
            path: self.path.to_path_buf(),
            field: field.into(),
            expected,
            found: printed(v),
        }
        .into()
    }

    fn get(&self, field: &str) -> Option<&Json> {
        self.json.get(field).filter(|v| !v.is_null())
    }

    fn u32_opt(&self, field: &str) -> Result<Option<u32>, ImportError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| self.bad(field, "an integer below 2^32", v)),
        }
    }

    fn u32(&self, field: &str) -> Result<u32, ImportError> {
        self.u32_opt(field)?.ok_or_else(|| {
            HfError::MissingField {
                path: self.path.to_path_buf(),
                field: field.into(),
            }
            .into()
        })
    }

    fn f32_opt(&self, field: &str) -> Result<Option<f32>, ImportError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|x| Some(x as f32))
                .ok_or_else(|| self.bad(field, "a number", v)),
        }
    }

    fn bool_opt(&self, field: &str) -> Result<Option<bool>, ImportError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.bad(field, "a bool", v)),
        }
    }

    /// A token id: a number, or the first of a list of numbers.
    fn id_opt(&self, field: &str) -> Result<Option<u32>, ImportError> {
        let Some(v) = self.get(field) else {
            return Ok(None);
        };
        let one = v.as_array().map_or(Some(v), |a| a.first());
        match one {
            None => Ok(None),
            Some(x) => x
                .as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| self.bad(field, "a token id or a list of token ids", v)),
        }
    }

    /// A token string: a string or an object with `content`.
    fn token_str(&self, field: &str) -> Option<&str> {
        let v = self.get(field)?;
        v.as_str()
            .or_else(|| v.get("content").and_then(Json::as_str))
    }
}

// ---------------------------------------------------------------------------------
// Configuration.

fn model_config(doc: &Doc<'_>) -> Result<ModelConfig, ImportError> {
    let is_llama = doc
        .get("architectures")
        .and_then(Json::as_array)
        .is_some_and(|a| a.iter().any(|x| x.as_str() == Some("LlamaForCausalLM")))
        || doc.get("model_type").and_then(Json::as_str) == Some("llama");
    if !is_llama {
        let found = doc
            .get("architectures")
            .or_else(|| doc.get("model_type"))
            .map_or_else(|| "none given".to_string(), printed);
        return Err(ImportError::Unsupported {
            what: "architecture (LlamaForCausalLM)",
            value: found,
        });
    }
    for field in ["rope_scaling", "attention_bias", "mlp_bias"] {
        if let Some(v) = doc.get(field)
            && v != &Json::Bool(false)
        {
            return Err(ImportError::Unsupported {
                what: "config.json field",
                value: format!("{field} = {}", printed(v)),
            });
        }
    }
    let dim = doc.u32("hidden_size")?;
    let hidden_dim = doc.u32("intermediate_size")?;
    let n_layers = doc.u32("num_hidden_layers")?;
    let n_heads = doc.u32("num_attention_heads")?;
    let n_kv_heads = doc.u32_opt("num_key_value_heads")?.unwrap_or(n_heads);
    let vocab_size = doc.u32("vocab_size")?;
    let context_len = doc.u32("max_position_embeddings")?;
    let rope_theta = doc.f32_opt("rope_theta")?.unwrap_or(10000.0);
    let rms_eps = doc.f32_opt("rms_norm_eps")?.unwrap_or(1e-6);
    // Sizes out of range (0 heads, a width beyond 2^20) are the config check's to report.
    if n_heads != 0 && dim <= tvl_format::MAX_DIM && !dim.is_multiple_of(n_heads) {
        return Err(ImportError::InvalidConfig {
            reason: format!("hidden_size {dim} is not a multiple of num_attention_heads {n_heads}"),
        });
    }
    let head_dim = dim.checked_div(n_heads).unwrap_or(0);
    if let Some(hd) = doc.u32_opt("head_dim")?
        && hd != head_dim
    {
        return Err(ImportError::Unsupported {
            what: "head_dim other than hidden_size / num_attention_heads",
            value: hd.to_string(),
        });
    }
    let config = ModelConfig {
        arch: ARCH_LLAMA,
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
        rope_style: RopeStyle::Interleaved as u32,
        tied_output: u32::from(doc.bool_opt("tie_word_embeddings")?.unwrap_or(false)),
        bos_id: NONE_ID,
        eos_id: NONE_ID,
        eot_id: NONE_ID,
        add_bos: 0,
        tokenizer: TokenizerKind::None as u32,
        pretokenizer: PreTokenizer::Gpt2 as u32,
        unk_id: NONE_ID,
        ..ModelConfig::default()
    };
    check_config(&config, |field| {
        Some(
            match field {
                "dim" => "hidden_size",
                "hidden_dim" => "intermediate_size",
                "n_layers" => "num_hidden_layers",
                "n_heads" => "num_attention_heads",
                "n_kv_heads" => "num_key_value_heads",
                "head_dim" => "the head size hidden_size / num_attention_heads",
                "vocab_size" => "vocab_size",
                "context_len" => "max_position_embeddings",
                "rope_theta" => "rope_theta",
                "rms_eps" => "rms_norm_eps",
                _ => return None,
            }
            .to_string(),
        )
    })?;
    Ok(config)
}

// ---------------------------------------------------------------------------------
// Tokenizer.

fn pretokenizer(doc: &Doc<'_>) -> Result<PreTokenizer, ImportError> {
    let unsupported = |v: &Json| ImportError::Unsupported {
        what: "tokenizer.json pre_tokenizer (ByteLevel, or Digits + ByteLevel)",
        value: printed(v),
    };
    let Some(pre) = doc.get("pre_tokenizer") else {
        return Err(unsupported(&Json::Null));
    };
    let is_byte_level = |p: &Json| {
        p.get("type").and_then(Json::as_str) == Some("ByteLevel")
            && p.get("use_regex").and_then(Json::as_bool) != Some(false)
            && p.get("add_prefix_space").and_then(Json::as_bool) != Some(true)
    };
    let is_digits = |p: &Json| {
        p.get("type").and_then(Json::as_str) == Some("Digits")
            && p.get("individual_digits").and_then(Json::as_bool) == Some(true)
    };
    if is_byte_level(pre) {
        return Ok(PreTokenizer::Gpt2);
    }
    if pre.get("type").and_then(Json::as_str) == Some("Sequence")
        && let Some([a, b]) = pre
            .get("pretokenizers")
            .and_then(Json::as_array)
            .map(Vec::as_slice)
        && is_digits(a)
        && is_byte_level(b)
    {
        return Ok(PreTokenizer::SmolLm);
    }
    Err(unsupported(pre))
}

/// Read `tokenizer.json` (and `tokenizer_config.json`): fill the tokenizer fields of
/// `config` and give the tables.
fn tokenizer(
    dir: &Path,
    config_doc: &Doc<'_>,
    config: &mut ModelConfig,
) -> Result<Tables, ImportError> {
    let tc_path = dir.join("tokenizer_config.json");
    let tc_json = read_json_opt(&tc_path)?.unwrap_or(Json::Null);
    let tc = Doc {
        path: &tc_path,
        json: &tc_json,
    };
    let mut chat_template = match std::fs::read_to_string(dir.join("chat_template.jinja")) {
        Ok(t) => Some(t),
        Err(_) => match tc.get("chat_template") {
            None => None,
            Some(Json::String(s)) => Some(s.clone()),
            Some(Json::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Json::as_str)
                .map(str::to_string),
            Some(v) => return Err(tc.bad("chat_template", "a string or a list", v)),
        },
    };

    let tok_path = dir.join("tokenizer.json");
    let Some(tok_json) = read_json_opt(&tok_path)? else {
        return Ok(Tables {
            chat_template: chat_template.take(),
            ..Tables::default()
        });
    };
    let doc = Doc {
        path: &tok_path,
        json: &tok_json,
    };
    let empty = Json::Null;
    let model_json = doc.get("model").unwrap_or(&empty);
    let model = Doc {
        path: &tok_path,
        json: model_json,
    };
    match model.get("type").and_then(Json::as_str) {
        Some("BPE") => {}
        other => {
            return Err(ImportError::Unsupported {
                what: "tokenizer.json model type (BPE)",
                value: other.unwrap_or("none").to_string(),
            });
        }
    }
    let pre = pretokenizer(&doc)?;
    let vocab_size = config.vocab_size as usize;

    // id -> (string, type)
    let mut slots: Vec<Option<(Vec<u8>, u8)>> = vec![None; vocab_size];
    let mut place = |token: &str, id: u64, ty: u8, overwrite: bool| -> Result<(), ImportError> {
        let slot = usize::try_from(id)
            .ok()
            .and_then(|i| slots.get_mut(i))
            .ok_or_else(|| HfError::BadTokenId {
                token: token.into(),
                id,
                why: "not below config.json's vocab_size",
            })?;
        match slot {
            Some((s, _)) if !overwrite && s != token.as_bytes() => {
                return Err(HfError::BadTokenId {
                    token: token.into(),
                    id,
                    why: "another token has the same id",
                }
                .into());
            }
            _ => *slot = Some((token.as_bytes().to_vec(), ty)),
        }
        Ok(())
    };
    let vocab = model
        .get("vocab")
        .and_then(Json::as_object)
        .ok_or_else(|| model.bad("model.vocab", "an object of token -> id", &empty))?;
    for (token, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| model.bad("model.vocab", "integer ids", id))?;
        place(token, id, 1, false)?;
    }
    if let Some(added) = doc.get("added_tokens") {
        let list = added
            .as_array()
            .ok_or_else(|| doc.bad("added_tokens", "a list", added))?;
        for t in list {
            let (Some(id), Some(content)) = (
                t.get("id").and_then(Json::as_u64),
                t.get("content").and_then(Json::as_str),
            ) else {
                return Err(doc.bad("added_tokens", "entries with id and content", t));
            };
            let special = t.get("special").and_then(Json::as_bool).unwrap_or(false);
            // Control tokens are matched in text as special; user-defined ones too.
            place(content, id, if special { 3 } else { 4 }, true)?;
        }
    }
    let (tokens, types): (Vec<Vec<u8>>, Vec<u8>) = slots
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.unwrap_or_else(|| (format!("<unused{i}>").into_bytes(), 5)))
        .unzip();

    let mut merges = Vec::new();
    if let Some(m) = model.get("merges") {
        let list = m
            .as_array()
            .ok_or_else(|| model.bad("model.merges", "a list", m))?;
        merges.reserve(list.len());
        for e in list {
            let merge = match e {
                Json::String(s) => s.clone().into_bytes(),
                Json::Array(pair) => match pair.as_slice() {
                    [Json::String(a), Json::String(b)] => format!("{a} {b}").into_bytes(),
                    _ => return Err(model.bad("model.merges", "\"a b\" or [\"a\", \"b\"]", e)),
                },
                _ => return Err(model.bad("model.merges", "\"a b\" or [\"a\", \"b\"]", e)),
            };
            merges.push(merge);
        }
    }

    let find = |s: &str| {
        tokens
            .iter()
            .position(|t| t == s.as_bytes())
            .map(|i| i as u32)
    };
    let check = |id: u32, field: &str| -> Result<u32, ImportError> {
        if (id as usize) < vocab_size {
            Ok(id)
        } else {
            Err(config_doc.bad(field, "a token id inside the vocabulary", &Json::from(id)))
        }
    };
    let bos = match config_doc.id_opt("bos_token_id")? {
        Some(id) => Some(check(id, "bos_token_id")?),
        None => tc.token_str("bos_token").and_then(find),
    };
    let eos = match config_doc.id_opt("eos_token_id")? {
        Some(id) => Some(check(id, "eos_token_id")?),
        None => tc.token_str("eos_token").and_then(find),
    };
    let eot = EOT_CANDIDATES.iter().find_map(|c| find(c)).or(eos);
    // BOS is added when tokenizer_config says so, or when the post-processor puts a
    // special token first.
    let post_bos = doc
        .get("post_processor")
        .and_then(|p| p.get("single"))
        .and_then(Json::as_array)
        .and_then(|s| s.first())
        .is_some_and(|first| first.get("SpecialToken").is_some());
    let add_bos = tc.bool_opt("add_bos_token")?.unwrap_or(post_bos) && bos.is_some();

    config.tokenizer = TokenizerKind::ByteLevelBpe as u32;
    config.pretokenizer = pre as u32;
    config.bos_id = bos.unwrap_or(NONE_ID);
    config.eos_id = eos.unwrap_or(NONE_ID);
    config.eot_id = eot.unwrap_or(NONE_ID);
    config.add_bos = u32::from(add_bos);
    Ok(Tables {
        tokens,
        scores: Vec::new(),
        types,
        merges,
        chat_template,
    })
}

// ---------------------------------------------------------------------------------
// Weights.

/// A mapped safetensors file and its parsed header.
struct Shard {
    path: PathBuf,
    map: memmap2::Mmap,
    header_len: usize,
    meta: Metadata,
}

impl Shard {
    fn open(path: PathBuf) -> Result<Self, ImportError> {
        let io = |action| {
            let path = path.clone();
            move |source| ImportError::Io {
                action,
                path,
                source,
            }
        };
        let file = std::fs::File::open(&path).map_err(io("cannot open"))?;
        // SAFETY: a file mapping is only unsound if another process truncates or rewrites
        // the file while it is mapped. The header is validated by the safetensors crate
        // (offsets within the buffer, no overlaps) and every slice below is taken with
        // bounds checks; like every mmap-based loader we require that model files are not
        // modified while they are being converted.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io("cannot map"))?;
        let (header_len, meta) =
            SafeTensors::read_metadata(&map).map_err(|source| HfError::Safetensors {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            path,
            map,
            header_len,
            meta,
        })
    }

    /// f32 or f16 values of `name`, checked against `shape`.
    fn values(&self, name: &str, shape: &[u64]) -> Result<Values, ImportError> {
        let info = self.meta.info(name).ok_or_else(|| HfError::NotInShard {
            path: self.path.clone(),
            tensor: name.into(),
        })?;
        if info.shape.len() != shape.len()
            || info.shape.iter().zip(shape).any(|(&a, &b)| a as u64 != b)
        {
            return Err(HfError::Shape {
                tensor: name.into(),
                expected: shape.to_vec(),
                found: info.shape.clone(),
            }
            .into());
        }
        let (a, b) = info.data_offsets;
        let start = 8 + self.header_len;
        let bytes = self
            .map
            .get(start + a..start + b)
            .ok_or_else(|| HfError::Safetensors {
                path: self.path.clone(),
                source: SafeTensorError::MetadataIncompleteBuffer,
            })?;
        let halves = || bytes.chunks_exact(2).map(|c| [c[0], c[1]]);
        Ok(match info.dtype {
            Dtype::F32 => Values::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Dtype::F16 => Values::F16(halves().map(f16::from_le_bytes).collect()),
            // bf16 -> f32 is exact.
            Dtype::BF16 => Values::F32(halves().map(|h| bf16::from_le_bytes(h).to_f32()).collect()),
            other => {
                return Err(HfError::UnsupportedDtype {
                    tensor: name.into(),
                    dtype: format!("{other:?}"),
                }
                .into());
            }
        })
    }
}

/// All shards, and which holds each tensor.
struct Weights {
    shards: Vec<Shard>,
    index: HashMap<String, usize>,
}

impl Weights {
    fn open(dir: &Path) -> Result<Self, ImportError> {
        let single = dir.join("model.safetensors");
        if single.is_file() {
            let shard = Shard::open(single)?;
            let index = shard.meta.tensors().into_keys().map(|k| (k, 0)).collect();
            return Ok(Self {
                shards: vec![shard],
                index,
            });
        }
        let index_path = dir.join("model.safetensors.index.json");
        let Some(json) = read_json_opt(&index_path)? else {
            return Err(HfError::NoWeights {
                dir: dir.to_path_buf(),
            }
            .into());
        };
        let doc = Doc {
            path: &index_path,
            json: &json,
        };
        let map = doc
            .get("weight_map")
            .and_then(Json::as_object)
            .ok_or_else(|| doc.bad("weight_map", "an object of tensor -> file", &json))?;
        let mut files: Vec<String> = Vec::new();
        let mut index = HashMap::new();
        for (tensor, file) in map {
            let file = file
                .as_str()
                .ok_or_else(|| doc.bad("weight_map", "file names", file))?;
            // A shard is a file of this directory, never a path elsewhere.
            if Path::new(file).file_name().and_then(|f| f.to_str()) != Some(file) {
                return Err(doc.bad("weight_map", "plain file names", &Json::from(file)));
            }
            let at = match files.iter().position(|f| f == file) {
                Some(i) => i,
                None => {
                    files.push(file.to_string());
                    files.len() - 1
                }
            };
            index.insert(tensor.clone(), at);
        }
        let shards = files
            .into_iter()
            .map(|f| Shard::open(dir.join(f)))
            .collect::<Result<_, _>>()?;
        Ok(Self { shards, index })
    }

    /// Fail unless tensor `name` is present with `shape`: looks at the headers only.
    fn check_shape(&self, gguf_name: &str, name: &str, shape: &[u64]) -> Result<(), ImportError> {
        let info = self
            .index
            .get(name)
            .and_then(|&i| self.shards[i].meta.info(name))
            .ok_or_else(|| ImportError::MissingTensor {
                name: gguf_name.into(),
            })?;
        if info.shape.len() != shape.len()
            || info.shape.iter().zip(shape).any(|(&a, &b)| a as u64 != b)
        {
            return Err(HfError::Shape {
                tensor: name.into(),
                expected: shape.to_vec(),
                found: info.shape.clone(),
            }
            .into());
        }
        Ok(())
    }

    fn get(&self, name: &str, shape: &[u64]) -> Result<Option<Values>, ImportError> {
        match self.index.get(name) {
            None => Ok(None),
            Some(&i) => self.shards[i].values(name, shape).map(Some),
        }
    }
}

/// The Hugging Face name of a TVL (GGUF-named) tensor.
fn hf_name(gguf: &str) -> Option<String> {
    Some(match gguf {
        "token_embd.weight" => "model.embed_tokens.weight".into(),
        "output_norm.weight" => "model.norm.weight".into(),
        "output.weight" => "lm_head.weight".into(),
        _ => {
            let (layer, part) = gguf.strip_prefix("blk.")?.split_once('.')?;
            let hf = match part.strip_suffix(".weight")? {
                "attn_norm" => "input_layernorm",
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_output" => "self_attn.o_proj",
                "ffn_norm" => "post_attention_layernorm",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                _ => return None,
            };
            format!("model.layers.{layer}.{hf}.weight")
        }
    })
}

/// Convert the Hugging Face Llama directory `dir` into a TVL writer.
pub fn convert_dir(
    dir: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Conversion, ImportError> {
    let config_path = dir.join("config.json");
    let config_json = read_json(&config_path)?;
    let config_doc = Doc {
        path: &config_path,
        json: &config_json,
    };
    let mut config = model_config(&config_doc)?;
    let weights = Weights::open(dir)?;
    if config.tied_output == 0 && !weights.index.contains_key("lm_head.weight") {
        // No separate head in the checkpoint: it is tied (as transformers does).
        config.tied_output = 1;
    }
    // The embedding table first: its bytes bound `vocab_size` by the file size before the
    // tokenizer allocates a slot per token (a 200-byte config cannot claim 2^20 tokens).
    weights.check_shape(
        "token_embd.weight",
        "model.embed_tokens.weight",
        &[u64::from(config.vocab_size), u64::from(config.dim)],
    )?;
    let tables = tokenizer(dir, &config_doc, &mut config)?;
    let expected: HashMap<String, Vec<u64>> = tvl_format::arch::tensors(&config)
        .map(|t| (t.name, t.shape))
        .collect();
    let (heads, kv_heads, head_dim, dim) = (
        config.n_heads as usize,
        config.n_kv_heads as usize,
        config.head_dim as usize,
        config.dim as usize,
    );
    let tied = config.tied_output == 1;
    let mut fetch = |name: &str| -> Result<Option<Values>, ImportError> {
        if tied && name == "output.weight" {
            return Ok(None);
        }
        let (Some(hf), Some(shape)) = (hf_name(name), expected.get(name)) else {
            return Ok(None);
        };
        let Some(v) = weights.get(&hf, shape)? else {
            return Ok(None);
        };
        let n_heads = if name.ends_with(".attn_q.weight") {
            heads
        } else if name.ends_with(".attn_k.weight") {
            kv_heads
        } else {
            return Ok(Some(v));
        };
        Ok(Some(match v {
            Values::F32(w) => Values::F32(half_split_to_interleaved(&w, n_heads, head_dim, dim)),
            Values::F16(w) => Values::F16(half_split_to_interleaved(&w, n_heads, head_dim, dim)),
        }))
    };
    assemble(config, opts, &mut fetch, &tables, progress)
}

#[cfg(test)]
mod tests {
    use super::hf_name;

    #[test]
    fn names_map_to_hugging_face() {
        assert_eq!(
            hf_name("blk.3.ffn_gate.weight").as_deref(),
            Some("model.layers.3.mlp.gate_proj.weight")
        );
        assert_eq!(
            hf_name("blk.0.attn_k.weight").as_deref(),
            Some("model.layers.0.self_attn.k_proj.weight")
        );
        assert_eq!(hf_name("output.weight").as_deref(), Some("lm_head.weight"));
        assert_eq!(hf_name("blk.0.nope.weight"), None);
    }
}
