//! The model configuration, checked once at load so the forward pass can trust it.

use tvl_format::{ModelConfig, RopeStyle};

use crate::ModelError;

/// Llama hyper-parameters, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Model width.
    pub dim: usize,
    /// Feed-forward hidden width.
    pub hidden_dim: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention: each serves `n_heads / n_kv_heads`
    /// query heads).
    pub n_kv_heads: usize,
    /// Dimension of one head.
    pub head_dim: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Trained context length.
    pub context_len: usize,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE pairing convention of the q/k weights.
    pub rope_style: RopeStyle,
    /// Output head is the embedding table.
    pub tied_output: bool,
}

impl Config {
    /// Validate a file's config record (through [`ModelConfig::validate`], the one
    /// check every importer also runs before it writes a file).
    pub fn from_tvl(c: &ModelConfig) -> Result<Self, ModelError> {
        c.validate().map_err(|e| ModelError::Config {
            field: e.field,
            value: e.value,
            why: e.why,
        })?;
        let size = |v: u32| v as usize;
        Ok(Config {
            dim: size(c.dim),
            hidden_dim: size(c.hidden_dim),
            n_layers: size(c.n_layers),
            n_heads: size(c.n_heads),
            n_kv_heads: size(c.n_kv_heads),
            head_dim: size(c.head_dim),
            vocab_size: size(c.vocab_size),
            context_len: size(c.context_len),
            rope_theta: c.rope_theta,
            rms_eps: c.rms_eps,
            rope_style: RopeStyle::from_u32(c.rope_style).unwrap_or(RopeStyle::Interleaved),
            tied_output: c.tied_output == 1,
        })
    }

    /// Width of the concatenated query heads.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of the concatenated key (or value) heads.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Query heads per key/value head.
    pub fn group_size(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ModelConfig {
        ModelConfig {
            arch: 1,
            dim: 64,
            hidden_dim: 176,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 16,
            vocab_size: 256,
            context_len: 64,
            rope_theta: 10000.0,
            rms_eps: 1e-5,
            ..ModelConfig::default()
        }
    }

    #[test]
    fn accepts_a_valid_config() {
        let c = Config::from_tvl(&good()).unwrap();
        assert_eq!((c.q_dim(), c.kv_dim(), c.group_size()), (64, 32, 2));
    }

    #[test]
    fn rejects_out_of_range_values() {
        type Patch = Box<dyn Fn(&mut ModelConfig)>;
        let cases: Vec<(&str, Patch)> = vec![
            ("arch", Box::new(|c| c.arch = 7)),
            ("n_heads", Box::new(|c| c.n_heads = 0)),
            ("n_kv_heads", Box::new(|c| c.n_kv_heads = 3)),
            ("head_dim", Box::new(|c| c.head_dim = 15)),
            ("rms_eps", Box::new(|c| c.rms_eps = f32::NAN)),
            ("rms_eps", Box::new(|c| c.rms_eps = -1.0)),
            ("rope_theta", Box::new(|c| c.rope_theta = f32::INFINITY)),
            ("rope_style", Box::new(|c| c.rope_style = 9)),
            ("dim", Box::new(|c| c.dim = u32::MAX)),
            ("tied_output", Box::new(|c| c.tied_output = 2)),
        ];
        for (field, patch) in cases {
            let mut c = good();
            patch(&mut c);
            match Config::from_tvl(&c) {
                Err(ModelError::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected a config error, got {other:?}"),
            }
        }
    }
}
