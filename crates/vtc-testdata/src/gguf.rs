//! GGUF files built in memory: a small writer, random but valid tensor data of the ggml
//! types the importer reads, and a complete tiny Llama.

use half::f16;

use crate::Rng;

/// GGUF value type ids.
pub mod vt {
    /// `uint8`.
    pub const U8: u32 = 0;
    /// `int8`.
    pub const I8: u32 = 1;
    /// `uint32`.
    pub const U32: u32 = 4;
    /// `int32`.
    pub const I32: u32 = 5;
    /// `float32`.
    pub const F32: u32 = 6;
    /// `bool`.
    pub const BOOL: u32 = 7;
    /// `string` (u64 length, bytes).
    pub const STRING: u32 = 8;
    /// `array` (u32 element type, u64 count, elements).
    pub const ARRAY: u32 = 9;
    /// `uint64`.
    pub const U64: u32 = 10;
}

/// ggml tensor type ids.
pub mod gt {
    /// `F32`.
    pub const F32: u32 = 0;
    /// `F16`.
    pub const F16: u32 = 1;
    /// `Q4_0`: blocks of 32, f16 scale + 16 bytes of nibbles.
    pub const Q4_0: u32 = 2;
    /// `Q4_1`: blocks of 32, f16 scale and minimum + 16 bytes of nibbles.
    pub const Q4_1: u32 = 3;
    /// `Q8_0`: blocks of 32, f16 scale + 32 i8.
    pub const Q8_0: u32 = 8;
    /// `Q5_0`: blocks of 32, f16 scale + 4 bytes of 5th bits + 16 bytes of nibbles.
    pub const Q5_0: u32 = 6;
    /// `Q5_1`: blocks of 32, f16 scale and minimum + 5th bits + nibbles.
    pub const Q5_1: u32 = 7;
    /// `Q2_K` (read by no generator here: for "unsupported type" cases).
    pub const Q2_K: u32 = 10;
    /// `Q4_K`: blocks of 256, 144 bytes.
    pub const Q4_K: u32 = 12;
    /// `Q5_K`: blocks of 256, 176 bytes.
    pub const Q5_K: u32 = 13;
    /// `Q6_K`: blocks of 256, 210 bytes.
    pub const Q6_K: u32 = 14;
    /// `BF16`.
    pub const BF16: u32 = 30;
}

/// Appends `v` little-endian.
pub fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend(v.to_le_bytes());
}

/// Appends `v` little-endian.
pub fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend(v.to_le_bytes());
}

/// Appends a GGUF string: u64 length, then the bytes.
pub fn put_str(b: &mut Vec<u8>, s: &str) {
    put_u64(b, s.len() as u64);
    b.extend(s.as_bytes());
}

/// The fixed start of a GGUF file: magic `GGUF`, `version`, the tensor count and the
/// metadata key count.
pub fn preamble(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    put_u32(&mut b, version);
    put_u64(&mut b, n_tensors);
    put_u64(&mut b, n_kv);
    b
}

/// A GGUF file under construction: metadata pairs as raw encoded values, tensors
/// with their data. `build` lays out the header, the tensor table, the padding and
/// the data section with offsets in order.
#[derive(Clone)]
pub struct GgufBuilder {
    /// The format version written (3 unless changed).
    pub version: u32,
    /// `general.alignment` as the layout uses it (32 unless changed; the key itself is
    /// not written unless set).
    pub alignment: u64,
    kv: Vec<(String, u32, Vec<u8>)>,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

impl Default for GgufBuilder {
    fn default() -> Self {
        Self {
            version: 3,
            alignment: 32,
            kv: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

impl GgufBuilder {
    /// Version 3, alignment 32, no metadata, no tensors.
    pub fn new() -> Self {
        Self::default()
    }

    /// A key with an already encoded value of type `ty` (replacing the key if present:
    /// it then moves to the end).
    pub fn raw(&mut self, key: &str, ty: u32, value: Vec<u8>) -> &mut Self {
        self.kv.retain(|(k, ..)| k != key);
        self.kv.push((key.to_string(), ty, value));
        self
    }

    /// Renames every key starting with `from` to start with `to` instead (another
    /// architecture's prefix: `llama.` to `gemma3.`), in place.
    pub fn rename_prefix(&mut self, from: &str, to: &str) -> &mut Self {
        for (k, ..) in &mut self.kv {
            if let Some(rest) = k.strip_prefix(from) {
                *k = format!("{to}{rest}");
            }
        }
        self
    }

    /// Drops a key (no-op when absent).
    pub fn remove(&mut self, key: &str) -> &mut Self {
        self.kv.retain(|(k, ..)| k != key);
        self
    }

    /// A `uint32` value.
    pub fn u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.raw(key, vt::U32, v.to_le_bytes().to_vec())
    }

    /// A `float32` value.
    pub fn f32(&mut self, key: &str, v: f32) -> &mut Self {
        self.raw(key, vt::F32, v.to_le_bytes().to_vec())
    }

    /// A `bool` value.
    pub fn bool(&mut self, key: &str, v: bool) -> &mut Self {
        self.raw(key, vt::BOOL, vec![v as u8])
    }

    /// A `string` value.
    pub fn str(&mut self, key: &str, v: &str) -> &mut Self {
        let mut b = Vec::new();
        put_str(&mut b, v);
        self.raw(key, vt::STRING, b)
    }

    /// An array of strings.
    pub fn str_array(&mut self, key: &str, v: &[&str]) -> &mut Self {
        let mut b = Vec::new();
        put_u32(&mut b, vt::STRING);
        put_u64(&mut b, v.len() as u64);
        for s in v {
            put_str(&mut b, s);
        }
        self.raw(key, vt::ARRAY, b)
    }

    /// An array of `float32`.
    pub fn f32_array(&mut self, key: &str, v: &[f32]) -> &mut Self {
        let mut b = Vec::new();
        put_u32(&mut b, vt::F32);
        put_u64(&mut b, v.len() as u64);
        for x in v {
            b.extend(x.to_le_bytes());
        }
        self.raw(key, vt::ARRAY, b)
    }

    /// An array of `int32`.
    pub fn i32_array(&mut self, key: &str, v: &[i32]) -> &mut Self {
        let mut b = Vec::new();
        put_u32(&mut b, vt::I32);
        put_u64(&mut b, v.len() as u64);
        for x in v {
            b.extend(x.to_le_bytes());
        }
        self.raw(key, vt::ARRAY, b)
    }

    /// The hyperparameters of a Llama of shape `t` (architecture `llama`, context
    /// length, sizes, rope dimension, rope base 10000, RMS eps 1e-5), in that order.
    pub fn llama(&mut self, t: &Tiny, context_length: u32) -> &mut Self {
        self.str("general.architecture", "llama")
            .u32("llama.context_length", context_length)
            .u32("llama.embedding_length", t.dim as u32)
            .u32("llama.feed_forward_length", t.hidden as u32)
            .u32("llama.block_count", t.layers as u32)
            .u32("llama.attention.head_count", t.heads as u32)
            .u32("llama.attention.head_count_kv", t.kv_heads as u32)
            .u32("llama.rope.dimension_count", t.head_dim as u32)
            .f32("llama.rope.freq_base", 10000.0)
            .f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    }

    /// A tensor with GGUF dims (`[in, out]`, fastest first), ggml type `ty` and its
    /// data (replacing a tensor of that name: it then moves to the end).
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, data: Vec<u8>) -> &mut Self {
        self.tensors.retain(|(n, ..)| n != name);
        self.tensors
            .push((name.to_string(), dims.to_vec(), ty, data));
        self
    }

    /// Drops a tensor (no-op when absent).
    pub fn remove_tensor(&mut self, name: &str) -> &mut Self {
        self.tensors.retain(|(n, ..)| n != name);
        self
    }

    /// The data of a tensor, as given to [`tensor`](Self::tensor).
    pub fn tensor_data(&self, name: &str) -> Option<&[u8]> {
        self.tensors
            .iter()
            .find(|t| t.0 == name)
            .map(|t| t.3.as_slice())
    }

    /// The file: preamble, metadata, tensor table, padding to the alignment, then each
    /// tensor's data padded to the alignment.
    pub fn build(&self) -> Vec<u8> {
        let align = self.alignment as usize;
        let mut b = preamble(
            self.version,
            self.tensors.len() as u64,
            self.kv.len() as u64,
        );
        for (k, ty, v) in &self.kv {
            put_str(&mut b, k);
            put_u32(&mut b, *ty);
            b.extend(v);
        }
        let mut offset = 0usize;
        for (name, dims, ty, data) in &self.tensors {
            put_str(&mut b, name);
            put_u32(&mut b, dims.len() as u32);
            for d in dims {
                put_u64(&mut b, *d);
            }
            put_u32(&mut b, *ty);
            put_u64(&mut b, offset as u64);
            offset = (offset + data.len()).div_ceil(align) * align;
        }
        b.resize(b.len().div_ceil(align) * align, 0);
        for (.., data) in &self.tensors {
            b.extend(data);
            b.resize(b.len().div_ceil(align) * align, 0);
        }
        b
    }
}

/// Random but valid data for `n` elements of ggml type `ty` (finite f16 scales).
/// Panics for a type without a generator.
pub fn random_data(rng: &mut Rng, ty: u32, n: usize) -> Vec<u8> {
    let scale = |rng: &mut Rng| f16::from_f32(rng.unit() * 0.05).to_le_bytes();
    let mut b = Vec::new();
    match ty {
        gt::F32 => (0..n).for_each(|_| b.extend(rng.unit().to_le_bytes())),
        gt::F16 => (0..n).for_each(|_| b.extend(f16::from_f32(rng.unit()).to_le_bytes())),
        gt::BF16 => {
            (0..n).for_each(|_| b.extend(((rng.unit().to_bits() >> 16) as u16).to_le_bytes()))
        }
        gt::Q8_0 => (0..n / 32).for_each(|_| {
            b.extend(scale(rng));
            b.extend(rng.bytes(32));
        }),
        gt::Q4_0 => (0..n / 32).for_each(|_| {
            b.extend(scale(rng));
            b.extend(rng.bytes(16));
        }),
        gt::Q4_1 => (0..n / 32).for_each(|_| {
            b.extend(scale(rng));
            b.extend(scale(rng));
            b.extend(rng.bytes(16));
        }),
        // The other block types: their f16 fields (first, or last for Q6_K) and
        // random quant bytes.
        gt::Q5_0 | gt::Q5_1 | gt::Q4_K | gt::Q5_K | gt::Q6_K => {
            let (elems, fields, quants) = match ty {
                gt::Q5_0 => (32, 1, 20),
                gt::Q5_1 => (32, 2, 20),
                gt::Q4_K => (256, 2, 140),
                gt::Q5_K => (256, 2, 172),
                _ => (256, 1, 208),
            };
            for _ in 0..n / elems {
                if ty == gt::Q6_K {
                    b.extend(rng.bytes(quants));
                    b.extend(scale(rng));
                } else {
                    (0..fields).for_each(|_| b.extend(scale(rng)));
                    b.extend(rng.bytes(quants));
                }
            }
        }
        _ => panic!("no generator for type {ty}"),
    }
    b
}

/// Shape of a tiny Llama.
pub struct Tiny {
    /// Embedding width.
    pub dim: u64,
    /// Feed-forward width.
    pub hidden: u64,
    /// Blocks.
    pub layers: u64,
    /// Query heads.
    pub heads: u64,
    /// Key/value heads.
    pub kv_heads: u64,
    /// Width of a head.
    pub head_dim: u64,
    /// Tokens.
    pub vocab: u64,
}

/// The shape of [`tiny_llama`]: dim 64, hidden 96, 2 layers, 4 heads of 16, 2 kv heads,
/// 40 tokens.
pub const TINY: Tiny = Tiny {
    dim: 64,
    hidden: 96,
    layers: 2,
    heads: 4,
    kv_heads: 2,
    head_dim: 16,
    vocab: 40,
};

/// Names and GGUF dims (`[in, out]`) of the tensors of a Llama of this shape, in
/// GGUF order (embedding, final norm, output when `with_output`, then per block).
pub fn llama_tensors(t: &Tiny, with_output: bool) -> Vec<(String, Vec<u64>)> {
    let q = t.heads * t.head_dim;
    let kv = t.kv_heads * t.head_dim;
    let mut v = vec![
        ("token_embd.weight".to_string(), vec![t.dim, t.vocab]),
        ("output_norm.weight".to_string(), vec![t.dim]),
    ];
    if with_output {
        v.push(("output.weight".to_string(), vec![t.dim, t.vocab]));
    }
    for l in 0..t.layers {
        for (n, d) in [
            ("attn_norm", vec![t.dim]),
            ("attn_q", vec![t.dim, q]),
            ("attn_k", vec![t.dim, kv]),
            ("attn_v", vec![t.dim, kv]),
            ("attn_output", vec![q, t.dim]),
            ("ffn_norm", vec![t.dim]),
            ("ffn_gate", vec![t.dim, t.hidden]),
            ("ffn_up", vec![t.dim, t.hidden]),
            ("ffn_down", vec![t.hidden, t.dim]),
        ] {
            v.push((format!("blk.{l}.{n}.weight"), d));
        }
    }
    v
}

/// Adds every tensor of a Llama of shape `t` with random data from `rng`: matrices of
/// ggml type `ty`, norms F32.
pub fn add_llama_tensors(g: &mut GgufBuilder, t: &Tiny, ty: u32, with_output: bool, rng: &mut Rng) {
    for (name, dims) in llama_tensors(t, with_output) {
        let n = dims.iter().product::<u64>() as usize;
        let ty = if dims.len() == 1 { gt::F32 } else { ty };
        let data = random_data(rng, ty, n);
        g.tensor(&name, &dims, ty, data);
    }
}

/// A complete tiny Llama GGUF of shape [`TINY`] (context 128): matrices of ggml type
/// `ty`, norms F32, random data from `seed`, a gpt2 tokenizer of 40 tokens `tok0`..
/// with the merges `t o`, `to k`, BOS 1, EOS 2.
pub fn tiny_llama(ty: u32, seed: u64, with_output: bool) -> GgufBuilder {
    let t = &TINY;
    let mut rng = Rng(seed.max(1));
    let mut g = GgufBuilder::new();
    g.llama(t, 128)
        .str("tokenizer.ggml.model", "gpt2")
        .str("tokenizer.ggml.pre", "default");
    let tokens: Vec<String> = (0..t.vocab).map(|i| format!("tok{i}")).collect();
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    g.str_array("tokenizer.ggml.tokens", &tokens)
        .i32_array("tokenizer.ggml.token_type", &vec![1; t.vocab as usize])
        .str_array("tokenizer.ggml.merges", &["t o", "to k"])
        .u32("tokenizer.ggml.bos_token_id", 1)
        .u32("tokenizer.ggml.eos_token_id", 2);
    add_llama_tensors(&mut g, t, ty, with_output, &mut rng);
    g
}
