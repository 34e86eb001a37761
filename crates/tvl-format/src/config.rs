//! The one validation of a [`ModelConfig`]: what every reader of a model file may
//! assume, and what every importer checks before it writes one.

use crate::{ModelConfig, RopeStyle, block_flags};

/// Architecture id of Llama (and the Llama-shaped models: SmolLM2, TinyLlama, the
/// llama2.c stories models, Llama 3).
pub const ARCH_LLAMA: u32 = 1;

/// The model family a file's `arch` field names. The id tells tools and users what the
/// model is; the graph itself is read from the config's fields ([`block_flags`], the
/// scales, the sliding window), never from the id, so one forward pass runs them all.
///
/// [`block_flags`]: crate::block_flags
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Arch {
    /// Llama, SmolLM2, TinyLlama, Llama 3 (GGUF `llama`).
    Llama = 1,
    /// Qwen2 / Qwen2.5 (GGUF `qwen2`): QKV biases, half-split RoPE.
    Qwen2 = 2,
    /// Qwen3 (GGUF `qwen3`): QK-norm, half-split RoPE.
    Qwen3 = 3,
    /// Gemma 3 (GGUF `gemma3`): QK-norm, post-norms, GELU gate, scaled embedding,
    /// sliding-window layers with their own RoPE base.
    Gemma3 = 4,
}

impl Arch {
    /// Decode the config field (0, tables only, and unknown ids are `None`).
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Llama,
            2 => Self::Qwen2,
            3 => Self::Qwen3,
            4 => Self::Gemma3,
            _ => return None,
        })
    }

    /// The architecture's name in GGUF's `general.architecture`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Gemma3 => "gemma3",
        }
    }

    /// The architecture of a GGUF `general.architecture` name.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Llama, Self::Qwen2, Self::Qwen3, Self::Gemma3]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Largest value accepted for any size field: far above real models, low enough that
/// products of a few of them cannot overflow `usize` (or `u64`) on 64-bit hosts.
pub const MAX_DIM: u32 = 1 << 20;

/// Most transformer blocks, and most query heads, a model may have.
pub const MAX_LAYERS_OR_HEADS: u32 = 4096;

/// A [`ModelConfig`] field a model cannot run with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("config field {field} = {value}: {why}")]
pub struct ConfigError {
    /// The field, as [`ModelConfig`] names it.
    pub field: &'static str,
    /// The value found.
    pub value: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl ModelConfig {
    /// Check every field a model needs (`arch` 0, a tables-only file, is not a model
    /// and fails here): `arch` known; every size in 1..=2^20; at most 4096 layers and
    /// heads; `n_kv_heads` divides `n_heads`; `head_dim` even (RoPE rotates pairs);
    /// `rope_theta` and `rms_eps` finite and > 0; `rope_style` known; `tied_output` 0
    /// or 1; `block_flags` only known bits; `embed_scale`, `attn_scale` and
    /// `rope_theta_local` finite and >= 0; `sliding_window` at most 2^20; `swa_pattern`
    /// at most 4096. The tokenizer fields are checked where the tokenizer is built.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, value: &dyn std::fmt::Display, why| {
            Err(ConfigError {
                field,
                value: value.to_string(),
                why,
            })
        };
        if Arch::from_u32(self.arch).is_none() {
            return bad(
                "arch",
                &self.arch,
                "unknown architecture (1 llama, 2 qwen2, 3 qwen3, 4 gemma3)",
            );
        }
        for (field, v) in [
            ("dim", self.dim),
            ("hidden_dim", self.hidden_dim),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
            ("context_len", self.context_len),
        ] {
            if v == 0 || v > MAX_DIM {
                return bad(field, &v, "must be in 1..=2^20");
            }
        }
        for (field, v) in [("n_layers", self.n_layers), ("n_heads", self.n_heads)] {
            if v > MAX_LAYERS_OR_HEADS {
                return bad(field, &v, "must be at most 4096");
            }
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad("n_kv_heads", &self.n_kv_heads, "must divide n_heads");
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad("head_dim", &self.head_dim, "must be even for RoPE");
        }
        for (field, v) in [("rope_theta", self.rope_theta), ("rms_eps", self.rms_eps)] {
            if !(v.is_finite() && v > 0.0) {
                return bad(field, &v, "must be finite and > 0");
            }
        }
        if RopeStyle::from_u32(self.rope_style).is_none() {
            return bad("rope_style", &self.rope_style, "unknown value");
        }
        if self.tied_output > 1 {
            return bad("tied_output", &self.tied_output, "must be 0 or 1");
        }
        if self.block_flags & !block_flags::ALL != 0 {
            return bad(
                "block_flags",
                &self.block_flags,
                "has a bit this reader does not know",
            );
        }
        for (field, v) in [
            ("embed_scale", self.embed_scale),
            ("attn_scale", self.attn_scale),
            ("rope_theta_local", self.rope_theta_local),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, &v, "must be finite and >= 0 (0: the default)");
            }
        }
        if self.sliding_window > MAX_DIM {
            return bad(
                "sliding_window",
                &self.sliding_window,
                "must be at most 2^20",
            );
        }
        if self.swa_pattern > MAX_LAYERS_OR_HEADS {
            return bad("swa_pattern", &self.swa_pattern, "must be at most 4096");
        }
        Ok(())
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
        good().validate().unwrap();
        let gemma_like = ModelConfig {
            arch: Arch::Gemma3 as u32,
            block_flags: block_flags::ALL,
            embed_scale: 8.0,
            attn_scale: 0.25,
            sliding_window: 16,
            swa_pattern: 6,
            rope_theta_local: 10000.0,
            ..good()
        };
        gemma_like.validate().unwrap();
        for a in [Arch::Llama, Arch::Qwen2, Arch::Qwen3, Arch::Gemma3] {
            assert_eq!(Arch::from_u32(a as u32), Some(a));
            assert_eq!(Arch::from_name(a.name()), Some(a));
        }
        assert_eq!(Arch::from_name("mistral"), None);
    }

    #[test]
    fn names_the_field_at_fault() {
        type Patch = fn(&mut ModelConfig);
        let cases: [(&str, Patch); 20] = [
            ("arch", |c| c.arch = 0),
            ("arch", |c| c.arch = 5),
            ("block_flags", |c| c.block_flags = 64),
            ("embed_scale", |c| c.embed_scale = -1.0),
            ("attn_scale", |c| c.attn_scale = f32::NAN),
            ("rope_theta_local", |c| c.rope_theta_local = f32::INFINITY),
            ("sliding_window", |c| c.sliding_window = u32::MAX),
            ("swa_pattern", |c| c.swa_pattern = 4097),
            ("n_heads", |c| c.n_heads = 0),
            ("n_layers", |c| c.n_layers = 5000),
            ("n_heads", |c| c.n_heads = 8192),
            ("n_kv_heads", |c| c.n_kv_heads = 3),
            ("head_dim", |c| c.head_dim = 15),
            ("rms_eps", |c| c.rms_eps = f32::NAN),
            ("rms_eps", |c| c.rms_eps = -1.0),
            ("rope_theta", |c| c.rope_theta = f32::INFINITY),
            ("rope_style", |c| c.rope_style = 9),
            ("dim", |c| c.dim = u32::MAX),
            ("context_len", |c| c.context_len = 0),
            ("tied_output", |c| c.tied_output = 2),
        ];
        for (field, patch) in cases {
            let mut c = good();
            patch(&mut c);
            let e = c.validate().expect_err(field);
            assert_eq!(e.field, field, "{e}");
            assert!(e.to_string().contains(field), "{e}");
        }
    }
}
