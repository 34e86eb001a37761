//! Test helpers: a small GGUF writer, a deterministic PRNG, reference dequantizers
//! written independently of the crate, and the golden-data locator.
#![allow(dead_code)]

use std::path::PathBuf;

use half::f16;

/// GGUF value type ids.
pub mod vt {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
}

/// ggml type ids.
pub mod gt {
    pub const F32: u32 = 0;
    pub const F16: u32 = 1;
    pub const Q4_0: u32 = 2;
    pub const Q4_1: u32 = 3;
    pub const Q8_0: u32 = 8;
    pub const Q6_K: u32 = 14;
    pub const BF16: u32 = 30;
}

pub fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend(v.to_le_bytes());
}

pub fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend(v.to_le_bytes());
}

pub fn put_str(b: &mut Vec<u8>, s: &str) {
    put_u64(b, s.len() as u64);
    b.extend(s.as_bytes());
}

/// A GGUF file under construction: metadata pairs as raw encoded values, tensors
/// with their data. `build` lays out the header, the tensor table, the padding and
/// the data section with offsets in order.
#[derive(Clone)]
pub struct GgufBuilder {
    pub version: u32,
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
    pub fn new() -> Self {
        Self::default()
    }

    /// A key with an already encoded value of type `ty`.
    pub fn raw(&mut self, key: &str, ty: u32, value: Vec<u8>) -> &mut Self {
        self.kv.retain(|(k, ..)| k != key);
        self.kv.push((key.to_string(), ty, value));
        self
    }

    pub fn remove(&mut self, key: &str) -> &mut Self {
        self.kv.retain(|(k, ..)| k != key);
        self
    }

    pub fn u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.raw(key, vt::U32, v.to_le_bytes().to_vec())
    }

    pub fn f32(&mut self, key: &str, v: f32) -> &mut Self {
        self.raw(key, vt::F32, v.to_le_bytes().to_vec())
    }

    pub fn bool(&mut self, key: &str, v: bool) -> &mut Self {
        self.raw(key, vt::BOOL, vec![v as u8])
    }

    pub fn str(&mut self, key: &str, v: &str) -> &mut Self {
        let mut b = Vec::new();
        put_str(&mut b, v);
        self.raw(key, vt::STRING, b)
    }

    pub fn str_array(&mut self, key: &str, v: &[&str]) -> &mut Self {
        let mut b = Vec::new();
        put_u32(&mut b, vt::STRING);
        put_u64(&mut b, v.len() as u64);
        for s in v {
            put_str(&mut b, s);
        }
        self.raw(key, vt::ARRAY, b)
    }

    pub fn f32_array(&mut self, key: &str, v: &[f32]) -> &mut Self {
        let mut b = Vec::new();
        put_u32(&mut b, vt::F32);
        put_u64(&mut b, v.len() as u64);
        for x in v {
            b.extend(x.to_le_bytes());
        }
        self.raw(key, vt::ARRAY, b)
    }

    pub fn i32_array(&mut self, key: &str, v: &[i32]) -> &mut Self {
        let mut b = Vec::new();
        put_u32(&mut b, vt::I32);
        put_u64(&mut b, v.len() as u64);
        for x in v {
            b.extend(x.to_le_bytes());
        }
        self.raw(key, vt::ARRAY, b)
    }

    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, data: Vec<u8>) -> &mut Self {
        self.tensors.retain(|(n, ..)| n != name);
        self.tensors
            .push((name.to_string(), dims.to_vec(), ty, data));
        self
    }

    pub fn remove_tensor(&mut self, name: &str) -> &mut Self {
        self.tensors.retain(|(n, ..)| n != name);
        self
    }

    pub fn tensor_data(&self, name: &str) -> Option<&[u8]> {
        self.tensors
            .iter()
            .find(|t| t.0 == name)
            .map(|t| t.3.as_slice())
    }

    pub fn build(&self) -> Vec<u8> {
        let align = self.alignment as usize;
        let mut b = b"GGUF".to_vec();
        put_u32(&mut b, self.version);
        put_u64(&mut b, self.tensors.len() as u64);
        put_u64(&mut b, self.kv.len() as u64);
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

/// xorshift64*: deterministic test data without extra dependencies.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Random but valid data for `n` elements of ggml type `ty` (finite f16 scales).
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
        _ => panic!("no generator for type {ty}"),
    }
    b
}

fn h(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Element `j` of a ggml tensor, straight from the block formulas (independent of the
/// crate's implementation).
pub fn ref_element(ty: u32, b: &[u8], j: usize) -> f32 {
    let (blk, k) = (j / 32, j % 32);
    let nib = |qs: &[u8]| -> u8 {
        if k < 16 {
            qs[k] & 0x0F
        } else {
            qs[k - 16] >> 4
        }
    };
    match ty {
        gt::F32 => f32::from_le_bytes(b[4 * j..4 * j + 4].try_into().unwrap()),
        gt::F16 => h(b, 2 * j),
        gt::BF16 => f32::from_bits((u16::from_le_bytes([b[2 * j], b[2 * j + 1]]) as u32) << 16),
        gt::Q8_0 => {
            let x = &b[34 * blk..34 * blk + 34];
            f32::from(x[2 + k] as i8) * h(x, 0)
        }
        gt::Q4_0 => {
            let x = &b[18 * blk..18 * blk + 18];
            f32::from(nib(&x[2..]) as i8 - 8) * h(x, 0)
        }
        gt::Q4_1 => {
            let x = &b[20 * blk..20 * blk + 20];
            f32::from(nib(&x[4..])) * h(x, 0) + h(x, 2)
        }
        _ => panic!("no reference for type {ty}"),
    }
}

/// Shape of a tiny Llama used by several tests.
pub struct Tiny {
    pub dim: u64,
    pub hidden: u64,
    pub layers: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub vocab: u64,
}

pub const TINY: Tiny = Tiny {
    dim: 64,
    hidden: 96,
    layers: 2,
    heads: 4,
    kv_heads: 2,
    head_dim: 16,
    vocab: 40,
};

/// Names and GGUF dims (`[in, out]`) of the tensors of a Llama of this shape.
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

/// A complete tiny Llama GGUF: matrices of ggml type `ty`, norms F32, a gpt2
/// tokenizer of `vocab` tokens.
pub fn tiny_llama(ty: u32, seed: u64, with_output: bool) -> GgufBuilder {
    let t = &TINY;
    let mut rng = Rng(seed.max(1));
    let mut g = GgufBuilder::new();
    g.str("general.architecture", "llama")
        .u32("llama.context_length", 128)
        .u32("llama.embedding_length", t.dim as u32)
        .u32("llama.feed_forward_length", t.hidden as u32)
        .u32("llama.block_count", t.layers as u32)
        .u32("llama.attention.head_count", t.heads as u32)
        .u32("llama.attention.head_count_kv", t.kv_heads as u32)
        .u32("llama.rope.dimension_count", t.head_dim as u32)
        .f32("llama.rope.freq_base", 10000.0)
        .f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        .str("tokenizer.ggml.model", "gpt2")
        .str("tokenizer.ggml.pre", "default");
    let tokens: Vec<String> = (0..t.vocab).map(|i| format!("tok{i}")).collect();
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    g.str_array("tokenizer.ggml.tokens", &tokens)
        .i32_array("tokenizer.ggml.token_type", &vec![1; t.vocab as usize])
        .str_array("tokenizer.ggml.merges", &["t o", "to k"])
        .u32("tokenizer.ggml.bos_token_id", 1)
        .u32("tokenizer.ggml.eos_token_id", 2);
    for (name, dims) in llama_tensors(t, with_output) {
        let n = dims.iter().product::<u64>() as usize;
        let ty = if dims.len() == 1 { gt::F32 } else { ty };
        let data = random_data(&mut rng, ty, n);
        g.tensor(&name, &dims, ty, data);
    }
    g
}

/// The shared golden directory: `$VTC_GOLDEN`, else `../../../shared/golden` from this
/// crate. Panics (failing the test) with a clear message if it is missing.
pub fn golden_dir() -> PathBuf {
    let dir = std::env::var_os("VTC_GOLDEN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden")
        });
    assert!(
        dir.is_dir(),
        "golden data directory {} is missing: it holds the reference models and outputs \
         these tests compare against (set VTC_GOLDEN to its location)",
        dir.display()
    );
    dir
}
