//! The tensors of each architecture, as data: for a [`ModelConfig`], every weight the
//! model reads, in forward-pass order, with its name, shape and role. The importers
//! check and order what they write by this table, and the model looks its weights up
//! by it, so a name or a shape is spelled in one place.
//!
//! Only Llama ([`ARCH_LLAMA`]) so far. Another architecture adds rows (per-block
//! tensors such as q/k norms or biases) and flags to [`ModelConfig`], not new lists.

use crate::{ARCH_LLAMA, ModelConfig};

/// What a tensor is to the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The token embedding table `[vocab, dim]`, read by row (and the output head when
    /// tied).
    Embedding,
    /// An RMSNorm gain vector `[dim]`, plain f32.
    Norm,
    /// A weight matrix `[out, in]` of a block, multiplied by a vector.
    Matrix,
    /// The output head `[vocab, dim]`.
    Output,
}

/// Which weight of the graph a tensor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// `token_embd.weight`.
    TokenEmbd,
    /// `blk.N.attn_norm.weight`: RMSNorm before attention.
    AttnNorm,
    /// `blk.N.attn_q.weight`: query projection `[n_heads * head_dim, dim]`.
    AttnQ,
    /// `blk.N.attn_k.weight`: key projection `[n_kv_heads * head_dim, dim]`.
    AttnK,
    /// `blk.N.attn_v.weight`: value projection `[n_kv_heads * head_dim, dim]`.
    AttnV,
    /// `blk.N.attn_output.weight`: attention output projection `[dim, n_heads * head_dim]`.
    AttnOutput,
    /// `blk.N.ffn_norm.weight`: RMSNorm before the feed-forward block.
    FfnNorm,
    /// `blk.N.ffn_gate.weight`: SwiGLU gate `[hidden_dim, dim]`.
    FfnGate,
    /// `blk.N.ffn_up.weight`: SwiGLU up projection `[hidden_dim, dim]`.
    FfnUp,
    /// `blk.N.ffn_down.weight`: down projection `[dim, hidden_dim]`.
    FfnDown,
    /// `output_norm.weight`: the final RMSNorm.
    OutputNorm,
    /// `output.weight`: the output head (absent when tied to the embedding).
    Output,
}

/// The parts of one Llama block, in the order the forward pass reads them.
pub const LLAMA_BLOCK: [Part; 9] = [
    Part::AttnNorm,
    Part::AttnQ,
    Part::AttnK,
    Part::AttnV,
    Part::AttnOutput,
    Part::FfnNorm,
    Part::FfnGate,
    Part::FfnUp,
    Part::FfnDown,
];

impl Part {
    /// The tensor's name without layer and suffix: `attn_q` of `blk.N.attn_q.weight`,
    /// `token_embd` of `token_embd.weight`.
    pub fn stem(self) -> &'static str {
        match self {
            Self::TokenEmbd => "token_embd",
            Self::AttnNorm => "attn_norm",
            Self::AttnQ => "attn_q",
            Self::AttnK => "attn_k",
            Self::AttnV => "attn_v",
            Self::AttnOutput => "attn_output",
            Self::FfnNorm => "ffn_norm",
            Self::FfnGate => "ffn_gate",
            Self::FfnUp => "ffn_up",
            Self::FfnDown => "ffn_down",
            Self::OutputNorm => "output_norm",
            Self::Output => "output",
        }
    }

    /// The role of the part.
    pub fn role(self) -> Role {
        match self {
            Self::TokenEmbd => Role::Embedding,
            Self::AttnNorm | Self::FfnNorm | Self::OutputNorm => Role::Norm,
            Self::Output => Role::Output,
            _ => Role::Matrix,
        }
    }
}

/// One tensor a model needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// The tensor's name in a TVL file (GGUF's names: `blk.3.attn_q.weight`).
    pub name: String,
    /// Which weight it is.
    pub part: Part,
    /// The block it belongs to, `None` for the embedding, final norm and head.
    pub layer: Option<u32>,
    /// Dimensions, outermost first (`[out, in]` for a matrix, `cols` contiguous).
    pub shape: Vec<u64>,
    /// Whether the file must hold it (`output.weight` is optional: when
    /// [`ModelConfig::tied_output`] is 1 it must be absent, else present).
    pub required: bool,
}

impl TensorSpec {
    /// The role of the tensor.
    pub fn role(&self) -> Role {
        self.part.role()
    }
}

/// The tensors a model of config `c` needs, in forward-pass order: the embedding, each
/// block's tensors in the order they are used, the final norm, the output head. Lazy
/// over the layers: a hostile `n_layers` costs nothing until a tensor is found missing.
/// Empty for an architecture without weights (`arch` 0) or unknown to this version.
pub fn tensors(c: &ModelConfig) -> impl Iterator<Item = TensorSpec> + use<> {
    let d = u64::from(c.dim);
    let q = u64::from(c.n_heads) * u64::from(c.head_dim);
    let kv = u64::from(c.n_kv_heads) * u64::from(c.head_dim);
    let h = u64::from(c.hidden_dim);
    let v = u64::from(c.vocab_size);
    let n_layers = if c.arch == ARCH_LLAMA { c.n_layers } else { 0 };
    let global = move |part: Part, shape: Vec<u64>, required: bool| TensorSpec {
        name: format!("{}.weight", part.stem()),
        part,
        layer: None,
        shape,
        required,
    };
    let head: Vec<TensorSpec> = if c.arch == ARCH_LLAMA {
        vec![global(Part::TokenEmbd, vec![v, d], true)]
    } else {
        Vec::new()
    };
    let tail: Vec<TensorSpec> = if c.arch == ARCH_LLAMA {
        vec![
            global(Part::OutputNorm, vec![d], true),
            global(Part::Output, vec![v, d], false),
        ]
    } else {
        Vec::new()
    };
    let layers = (0..n_layers).flat_map(move |l| {
        LLAMA_BLOCK.map(|part| {
            let shape = match part {
                Part::AttnNorm | Part::FfnNorm => vec![d],
                Part::AttnQ => vec![q, d],
                Part::AttnK | Part::AttnV => vec![kv, d],
                Part::AttnOutput => vec![d, q],
                Part::FfnGate | Part::FfnUp => vec![h, d],
                _ => vec![d, h],
            };
            TensorSpec {
                name: format!("blk.{l}.{}.weight", part.stem()),
                part,
                layer: Some(l),
                shape,
                required: true,
            }
        })
    });
    head.into_iter().chain(layers).chain(tail)
}

/// Where a tensor named `name` comes in the forward-pass order of [`tensors`] (a sort
/// key: the embedding, block by block, the final norm, the head), or `None` for a name
/// the architecture does not read. Computed from the name, without walking the table.
pub fn forward_position(c: &ModelConfig, name: &str) -> Option<u64> {
    if c.arch != ARCH_LLAMA {
        return None;
    }
    let per_layer = LLAMA_BLOCK.len() as u64;
    let after_blocks = 1 + u64::from(c.n_layers) * per_layer;
    let stem = name.strip_suffix(".weight")?;
    match stem {
        "token_embd" => return Some(0),
        "output_norm" => return Some(after_blocks),
        "output" => return Some(after_blocks + 1),
        _ => {}
    }
    let (layer, stem) = stem.strip_prefix("blk.")?.split_once('.')?;
    // Canonical decimal only: "blk.01.attn_q.weight" is not a name of the table.
    if !layer.bytes().all(|b| b.is_ascii_digit()) || (layer.len() > 1 && layer.starts_with('0')) {
        return None;
    }
    let layer: u32 = layer.parse().ok().filter(|&l| l < c.n_layers)?;
    let i = LLAMA_BLOCK.iter().position(|p| p.stem() == stem)? as u64;
    Some(1 + u64::from(layer) * per_layer + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama() -> ModelConfig {
        ModelConfig {
            arch: ARCH_LLAMA,
            dim: 64,
            hidden_dim: 176,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 16,
            vocab_size: 256,
            context_len: 64,
            ..ModelConfig::default()
        }
    }

    #[test]
    fn llama_tensors_in_forward_order() {
        let c = llama();
        let all: Vec<TensorSpec> = tensors(&c).collect();
        assert_eq!(all.len(), 3 + 2 * 9);
        assert_eq!(all[0].name, "token_embd.weight");
        assert_eq!(all[0].shape, [256, 64]);
        assert_eq!(all[1].name, "blk.0.attn_norm.weight");
        assert_eq!(all[2].name, "blk.0.attn_q.weight");
        assert_eq!(all[2].shape, [64, 64]);
        assert_eq!(all[3].shape, [32, 64]);
        assert_eq!(all[5].shape, [64, 64]);
        assert_eq!(all[9].shape, [64, 176]);
        assert_eq!(all[10].name, "blk.1.attn_norm.weight");
        assert_eq!(all[19].name, "output_norm.weight");
        assert_eq!(all[20].name, "output.weight");
        assert!(!all[20].required && all[..20].iter().all(|t| t.required));
        assert_eq!(all[20].role(), Role::Output);
        assert_eq!(all[19].role(), Role::Norm);
        for (i, t) in all.iter().enumerate() {
            assert_eq!(forward_position(&c, &t.name), Some(i as u64), "{}", t.name);
        }
        for name in [
            "blk.2.attn_q.weight",
            "blk.01.attn_q.weight",
            "blk.0.attn_q",
            "blk.0.nope.weight",
            "rope_freqs.weight",
        ] {
            assert_eq!(forward_position(&c, name), None, "{name}");
        }
    }

    #[test]
    fn lazy_over_layers_and_empty_without_weights() {
        let c = ModelConfig {
            n_layers: u32::MAX,
            ..llama()
        };
        assert_eq!(tensors(&c).nth(1).unwrap().name, "blk.0.attn_norm.weight");
        let tables_only = ModelConfig { arch: 0, ..llama() };
        assert_eq!(tensors(&tables_only).count(), 0);
    }
}
