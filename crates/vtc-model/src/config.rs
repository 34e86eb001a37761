//! The model configuration, checked once at load so the forward pass can trust it.

use tvl_format::{Arch, ModelConfig, RopeStyle, block_flags};

use crate::ModelError;

/// The activation of the feed-forward gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// SiLU (SwiGLU: Llama, Qwen).
    Silu,
    /// GELU, tanh approximation (GeGLU: Gemma).
    Gelu,
}

/// The hyper-parameters of a model, validated: the Llama block's sizes and what the
/// file's architecture adds to it (TVL spec section 4a).
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The model family (informational: the graph follows the fields below).
    pub arch: Arch,
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
    /// The feed-forward gate's activation.
    pub gate: Gate,
    /// Factor on each embedding row before the first block, if any.
    pub embed_scale: Option<f32>,
    /// Factor on the query-key dot products.
    pub attn_scale: f32,
    /// Tokens a local layer attends to (its own included), if the model has local
    /// layers.
    pub sliding_window: Option<usize>,
    /// Local-layer pattern: with `P > 0` layer `l` is local unless `l % P == P - 1`;
    /// 0: every layer is local.
    pub swa_pattern: usize,
    /// RoPE base frequency of the local layers.
    pub rope_theta_local: f32,
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
        let or = |v: f32, default: f32| if v == 0.0 { default } else { v };
        Ok(Config {
            arch: Arch::from_u32(c.arch).unwrap_or(Arch::Llama),
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
            gate: if c.block_flags & block_flags::GELU != 0 {
                Gate::Gelu
            } else {
                Gate::Silu
            },
            embed_scale: (c.embed_scale != 0.0).then_some(c.embed_scale),
            attn_scale: or(c.attn_scale, 1.0 / (c.head_dim as f32).sqrt()),
            sliding_window: (c.sliding_window != 0).then_some(size(c.sliding_window)),
            swa_pattern: size(c.swa_pattern),
            rope_theta_local: or(c.rope_theta_local, c.rope_theta),
        })
    }

    /// Whether layer `l` attends through the sliding window (a *local* layer).
    pub fn is_local(&self, l: usize) -> bool {
        self.sliding_window.is_some()
            && (self.swa_pattern == 0 || l % self.swa_pattern != self.swa_pattern - 1)
    }

    /// The first cached position a token at `pos` of layer `l` attends to.
    pub fn first_seen(&self, l: usize, pos: usize) -> usize {
        match self.sliding_window {
            Some(w) if self.is_local(l) => (pos + 1).saturating_sub(w),
            _ => 0,
        }
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
        assert_eq!(
            (c.gate, c.embed_scale, c.attn_scale),
            (Gate::Silu, None, 0.25)
        );
        assert!((0..4).all(|l| !c.is_local(l) && c.first_seen(l, 100) == 0));
    }

    #[test]
    fn sliding_window_pattern() {
        let c = Config::from_tvl(&ModelConfig {
            arch: Arch::Gemma3 as u32,
            sliding_window: 4,
            swa_pattern: 3,
            attn_scale: 0.5,
            embed_scale: 8.0,
            rope_theta_local: 100.0,
            block_flags: block_flags::GELU,
            ..good()
        })
        .unwrap();
        assert_eq!(
            (c.gate, c.embed_scale, c.attn_scale),
            (Gate::Gelu, Some(8.0), 0.5)
        );
        assert_eq!((c.rope_theta, c.rope_theta_local), (10000.0, 100.0));
        let local: Vec<bool> = (0..7).map(|l| c.is_local(l)).collect();
        assert_eq!(local, [true, true, false, true, true, false, true]);
        // Positions pos - 3 ..= pos on a local layer (a window of 4), all on a global one.
        assert_eq!(
            [c.first_seen(0, 2), c.first_seen(0, 3), c.first_seen(0, 9)],
            [0, 0, 6]
        );
        assert_eq!(c.first_seen(2, 9), 0);
        let all_local = Config::from_tvl(&ModelConfig {
            sliding_window: 4,
            ..good()
        })
        .unwrap();
        assert!((0..5).all(|l| all_local.is_local(l)));
        assert_eq!(all_local.rope_theta_local, all_local.rope_theta);
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
