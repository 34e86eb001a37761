//! The one validation of a [`ModelConfig`]: what every reader of a model file may
//! assume, and what every importer checks before it writes one.

use crate::{ModelConfig, RopeStyle};

/// Architecture id of Llama (and the Llama-shaped models: SmolLM2, TinyLlama, the
/// llama2.c stories models).
pub const ARCH_LLAMA: u32 = 1;

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
    /// or 1. The tokenizer fields are checked where the tokenizer is built.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, value: &dyn std::fmt::Display, why| {
            Err(ConfigError {
                field,
                value: value.to_string(),
                why,
            })
        };
        if self.arch != ARCH_LLAMA {
            return bad("arch", &self.arch, "only 1 (llama) is supported");
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
    }

    #[test]
    fn names_the_field_at_fault() {
        type Patch = fn(&mut ModelConfig);
        let cases: [(&str, Patch); 14] = [
            ("arch", |c| c.arch = 0),
            ("arch", |c| c.arch = 7),
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
