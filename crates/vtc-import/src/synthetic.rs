//! Random-weight Llama models of a given shape, for benchmarks and tests: the
//! paper's workload is llama2.c's stories110M, whose weights cannot be downloaded here,
//! so a model of the same shape with seeded random weights stands in for timing.
//!
//! The tokenizer is byte-level BPE over the 94 printable ASCII characters (their GPT-2
//! byte-level form is the character itself) with no merges, `<|endoftext|>` as BOS/EOS,
//! and unused filler tokens up to the vocabulary size, so ASCII prompts work.

use std::path::{Path, PathBuf};

use tvl_format::{
    ModelConfig, NONE_ID, PreTokenizer, RopeStyle, TensorData, TokenizerKind, TvlWriter, arch,
    names,
};

use crate::convert::{
    ARCH_LLAMA, ConvertOptions, ConvertReport, MatrixSource, OutDType, add_matrix, write_atomically,
};
use crate::error::ImportError;

/// Shape and contents of a synthetic model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SyntheticSpec {
    /// Model width.
    pub dim: u32,
    /// Feed-forward width.
    pub hidden_dim: u32,
    /// Blocks.
    pub n_layers: u32,
    /// Query heads.
    pub n_heads: u32,
    /// Key/value heads.
    pub n_kv_heads: u32,
    /// Vocabulary size (at least 96).
    pub vocab_size: u32,
    /// Context length.
    pub context_len: u32,
    /// Element type of the matrices.
    pub dtype: OutDType,
    /// Rows per tile.
    pub tile_rows: usize,
    /// Random seed.
    pub seed: u64,
}

impl SyntheticSpec {
    /// llama2.c's stories110M shape: dim 768, hidden 2048, 12 layers, 12 heads,
    /// vocab 32000, context 1024.
    pub fn stories110m() -> Self {
        Self {
            dim: 768,
            hidden_dim: 2048,
            n_layers: 12,
            n_heads: 12,
            n_kv_heads: 12,
            vocab_size: 32000,
            context_len: 1024,
            dtype: OutDType::F32,
            tile_rows: 4,
            seed: 110,
        }
    }

    /// llama2.c's stories15M shape: dim 288, hidden 768, 6 layers, 6 heads, vocab 32000,
    /// context 256.
    pub fn stories15m() -> Self {
        Self {
            dim: 288,
            hidden_dim: 768,
            n_layers: 6,
            n_heads: 6,
            n_kv_heads: 6,
            context_len: 256,
            seed: 15,
            ..Self::stories110m()
        }
    }

    /// The shape by name: `stories110m` or `stories15m`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "stories110m" => Some(Self::stories110m()),
            "stories15m" => Some(Self::stories15m()),
            _ => None,
        }
    }

    fn config(&self) -> Result<ModelConfig, ImportError> {
        let bad = |reason: String| ImportError::InvalidOption { reason };
        if self.n_heads == 0
            || self.n_kv_heads == 0
            || !self.n_heads.is_multiple_of(self.n_kv_heads)
        {
            return Err(bad(format!(
                "{} kv heads do not divide {} heads",
                self.n_kv_heads, self.n_heads
            )));
        }
        if !self.dim.is_multiple_of(self.n_heads) || !(self.dim / self.n_heads).is_multiple_of(2) {
            return Err(bad(format!(
                "dim {} is not an even head dim times {} heads",
                self.dim, self.n_heads
            )));
        }
        if self.vocab_size < 96 {
            return Err(bad("the vocabulary needs at least 96 tokens".into()));
        }
        let config = ModelConfig {
            arch: ARCH_LLAMA,
            dim: self.dim,
            hidden_dim: self.hidden_dim,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.dim / self.n_heads,
            vocab_size: self.vocab_size,
            context_len: self.context_len,
            rope_theta: 10000.0,
            rms_eps: 1e-5,
            rope_style: RopeStyle::Interleaved as u32,
            tied_output: 0,
            bos_id: 0,
            eos_id: 0,
            eot_id: 0,
            add_bos: 1,
            tokenizer: TokenizerKind::ByteLevelBpe as u32,
            pretokenizer: PreTokenizer::Gpt2 as u32,
            unk_id: NONE_ID,
            tokenizer_flags: 0,
            ..ModelConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

/// SplitMix64 mapped to uniform floats in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Build the TVL writer of a synthetic model.
pub fn synthetic(spec: &SyntheticSpec) -> Result<TvlWriter, ImportError> {
    let c = spec.config()?;
    let mut rng = Rng(spec.seed);
    let mut w = TvlWriter::new(c);
    let v = c.vocab_size as usize;
    let opts = ConvertOptions {
        dtype: spec.dtype,
        tile_rows: spec.tile_rows,
        ..ConvertOptions::default()
    };
    let mut matrix = |w: &mut TvlWriter, name: &str, rows: usize, cols: usize| {
        // Uniform with the variance of N(0, 1/cols): activations keep their scale.
        let scale = (3.0 / cols as f32).sqrt();
        let vals: Vec<f32> = (0..rows * cols).map(|_| rng.next() * scale).collect();
        let head = name == "output.weight";
        add_matrix(w, name, rows, cols, MatrixSource::F32(vals), head, &opts).map(|_| ())
    };
    let ones = |n: usize| TensorData::F32(vec![1.0; n]);
    // Every tensor of the architecture's table, in its (forward-pass) order: the
    // random values are drawn in that order.
    for t in arch::tensors(&c) {
        let dims = t.shape.iter().map(|&x| x as usize).collect::<Vec<_>>();
        if let [rows, cols] = dims[..] {
            matrix(&mut w, &t.name, rows, cols)?;
        } else {
            // The norms: gains of 1.
            w.add_plain(&t.name, &dims, ones(dims.iter().product()))?;
        }
    }

    // Tokenizer: <|endoftext|>, printable ASCII, unused filler.
    let mut tokens: Vec<Vec<u8>> = vec![b"<|endoftext|>".to_vec()];
    let mut types = vec![3u8];
    tokens.extend((b'!'..=b'~').map(|b| vec![b]));
    types.extend(std::iter::repeat_n(1u8, 94));
    for i in tokens.len()..v {
        tokens.push(format!("<unused{i}>").into_bytes());
        types.push(5);
    }
    let mut offsets = vec![0u32];
    let mut blob = Vec::new();
    for t in &tokens {
        blob.extend_from_slice(t);
        offsets.push(blob.len() as u32);
    }
    w.add_plain(names::TOKENS, &[blob.len()], TensorData::U8(blob))?;
    w.add_plain(names::TOKEN_OFFSETS, &[v + 1], TensorData::U32(offsets))?;
    w.add_plain(names::TOKEN_TYPES, &[v], TensorData::U8(types))?;
    Ok(w)
}

/// Write a synthetic model to `output` (atomically).
pub fn write_synthetic(spec: &SyntheticSpec, output: &Path) -> Result<ConvertReport, ImportError> {
    let w = synthetic(spec)?;
    let bytes_written = write_atomically(output, |out| Ok(w.write_to(out)?))?;
    Ok(ConvertReport {
        output: PathBuf::from(output),
        config: spec.config()?,
        tensors: w.len(),
        bytes_written,
        rounded_tensors: Vec::new(),
    })
}
