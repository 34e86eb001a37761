//! The tensors of each architecture, as data: for a [`ModelConfig`], every weight the
//! model reads, in forward-pass order, with its name, shape and role. The importers
//! check and order what they write by this table, and the model looks its weights up
//! by it, so a name or a shape is spelled in one place.
//!
//! Every architecture ([`crate::Arch`]) is the Llama block plus what its
//! [`block_flags`] add: the table is the same function of the config for all of them.

use crate::{Arch, ModelConfig, block_flags};

/// What a tensor is to the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The token embedding table `[vocab, dim]`, read by row (and the output head when
    /// tied).
    Embedding,
    /// An RMSNorm gain vector (`[dim]`, or `[head_dim]` for the q/k norms), plain f32.
    Norm,
    /// A bias vector added to a projection's output, plain f32.
    Bias,
    /// The RoPE frequency divisors `[head_dim / 2]`, plain f32.
    RopeFreqs,
    /// A weight matrix `[out, in]` of a block, multiplied by a vector.
    Matrix,
    /// The output head `[vocab, dim]`.
    Output,
}

/// Which weight of the graph a tensor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// `rope_freqs.weight`: RoPE frequency divisors ([`block_flags::ROPE_FREQS`]).
    RopeFreqs,
    /// `token_embd.weight`.
    TokenEmbd,
    /// `blk.N.attn_norm.weight`: RMSNorm before attention.
    AttnNorm,
    /// `blk.N.attn_q.weight`: query projection `[n_heads * head_dim, dim]`.
    AttnQ,
    /// `blk.N.attn_q.bias`: query bias ([`block_flags::QKV_BIAS`]).
    AttnQBias,
    /// `blk.N.attn_k.weight`: key projection `[n_kv_heads * head_dim, dim]`.
    AttnK,
    /// `blk.N.attn_k.bias`: key bias ([`block_flags::QKV_BIAS`]).
    AttnKBias,
    /// `blk.N.attn_v.weight`: value projection `[n_kv_heads * head_dim, dim]`.
    AttnV,
    /// `blk.N.attn_v.bias`: value bias ([`block_flags::QKV_BIAS`]).
    AttnVBias,
    /// `blk.N.attn_q_norm.weight`: per-head query RMSNorm ([`block_flags::QK_NORM`]).
    AttnQNorm,
    /// `blk.N.attn_k_norm.weight`: per-head key RMSNorm ([`block_flags::QK_NORM`]).
    AttnKNorm,
    /// `blk.N.attn_output.weight`: attention output projection `[dim, n_heads * head_dim]`.
    AttnOutput,
    /// `blk.N.post_attention_norm.weight`: RMSNorm of the attention output
    /// ([`block_flags::POST_ATTN_NORM`]).
    PostAttnNorm,
    /// `blk.N.ffn_norm.weight`: RMSNorm before the feed-forward block.
    FfnNorm,
    /// `blk.N.ffn_gate.weight`: gate projection `[hidden_dim, dim]`.
    FfnGate,
    /// `blk.N.ffn_up.weight`: up projection `[hidden_dim, dim]`.
    FfnUp,
    /// `blk.N.ffn_down.weight`: down projection `[dim, hidden_dim]`.
    FfnDown,
    /// `blk.N.post_ffw_norm.weight`: RMSNorm of the feed-forward output
    /// ([`block_flags::POST_FFN_NORM`]).
    PostFfnNorm,
    /// `output_norm.weight`: the final RMSNorm.
    OutputNorm,
    /// `output.weight`: the output head (absent when tied to the embedding).
    Output,
}

/// Every part a block may have, in the order the forward pass reads them, with the
/// [`block_flags`] bit that adds it (0: always there).
const BLOCK: [(Part, u32); 16] = [
    (Part::AttnNorm, 0),
    (Part::AttnQ, 0),
    (Part::AttnQBias, block_flags::QKV_BIAS),
    (Part::AttnK, 0),
    (Part::AttnKBias, block_flags::QKV_BIAS),
    (Part::AttnV, 0),
    (Part::AttnVBias, block_flags::QKV_BIAS),
    (Part::AttnQNorm, block_flags::QK_NORM),
    (Part::AttnKNorm, block_flags::QK_NORM),
    (Part::AttnOutput, 0),
    (Part::PostAttnNorm, block_flags::POST_ATTN_NORM),
    (Part::FfnNorm, 0),
    (Part::FfnGate, 0),
    (Part::FfnUp, 0),
    (Part::FfnDown, 0),
    (Part::PostFfnNorm, block_flags::POST_FFN_NORM),
];

/// The parts of one Llama block (no [`block_flags`]), in the order the forward pass
/// reads them.
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

/// The parts of one block of a model with these [`block_flags`], in forward order.
pub fn block_parts(flags: u32) -> impl Iterator<Item = Part> {
    BLOCK
        .into_iter()
        .filter(move |&(_, bit)| bit == 0 || flags & bit != 0)
        .map(|(p, _)| p)
}

impl Part {
    /// The tensor's name without layer and suffix: `attn_q` of `blk.N.attn_q.weight`
    /// (and of `blk.N.attn_q.bias`), `token_embd` of `token_embd.weight`.
    pub fn stem(self) -> &'static str {
        match self {
            Self::RopeFreqs => "rope_freqs",
            Self::TokenEmbd => "token_embd",
            Self::AttnNorm => "attn_norm",
            Self::AttnQ | Self::AttnQBias => "attn_q",
            Self::AttnK | Self::AttnKBias => "attn_k",
            Self::AttnV | Self::AttnVBias => "attn_v",
            Self::AttnQNorm => "attn_q_norm",
            Self::AttnKNorm => "attn_k_norm",
            Self::AttnOutput => "attn_output",
            Self::PostAttnNorm => "post_attention_norm",
            Self::FfnNorm => "ffn_norm",
            Self::FfnGate => "ffn_gate",
            Self::FfnUp => "ffn_up",
            Self::FfnDown => "ffn_down",
            Self::PostFfnNorm => "post_ffw_norm",
            Self::OutputNorm => "output_norm",
            Self::Output => "output",
        }
    }

    /// The name's suffix: `bias` for the biases, `weight` for everything else.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::AttnQBias | Self::AttnKBias | Self::AttnVBias => "bias",
            _ => "weight",
        }
    }

    /// The role of the part.
    pub fn role(self) -> Role {
        match self {
            Self::TokenEmbd => Role::Embedding,
            Self::RopeFreqs => Role::RopeFreqs,
            Self::AttnNorm
            | Self::AttnQNorm
            | Self::AttnKNorm
            | Self::PostAttnNorm
            | Self::FfnNorm
            | Self::PostFfnNorm
            | Self::OutputNorm => Role::Norm,
            Self::AttnQBias | Self::AttnKBias | Self::AttnVBias => Role::Bias,
            Self::Output => Role::Output,
            Self::AttnQ
            | Self::AttnK
            | Self::AttnV
            | Self::AttnOutput
            | Self::FfnGate
            | Self::FfnUp
            | Self::FfnDown => Role::Matrix,
        }
    }

    /// The part's shape in a model of config `c`.
    fn shape(self, c: &ModelConfig) -> Vec<u64> {
        let d = u64::from(c.dim);
        let hd = u64::from(c.head_dim);
        let q = u64::from(c.n_heads) * hd;
        let kv = u64::from(c.n_kv_heads) * hd;
        let h = u64::from(c.hidden_dim);
        let v = u64::from(c.vocab_size);
        match self {
            Self::RopeFreqs => vec![hd / 2],
            Self::TokenEmbd | Self::Output => vec![v, d],
            Self::AttnNorm
            | Self::PostAttnNorm
            | Self::FfnNorm
            | Self::PostFfnNorm
            | Self::OutputNorm => vec![d],
            Self::AttnQNorm | Self::AttnKNorm => vec![hd],
            Self::AttnQ => vec![q, d],
            Self::AttnQBias => vec![q],
            Self::AttnK | Self::AttnV => vec![kv, d],
            Self::AttnKBias | Self::AttnVBias => vec![kv],
            Self::AttnOutput => vec![d, q],
            Self::FfnGate | Self::FfnUp => vec![h, d],
            Self::FfnDown => vec![d, h],
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

/// The tensors a model of config `c` needs, in forward-pass order: the RoPE
/// frequency divisors (with [`block_flags::ROPE_FREQS`]), the embedding, each block's
/// tensors in the order they are used ([`block_parts`]), the final norm, the output
/// head. Lazy over the layers: a hostile `n_layers` costs nothing until a tensor is
/// found missing. Empty for an architecture without weights (`arch` 0) or unknown to
/// this version.
pub fn tensors(c: &ModelConfig) -> impl Iterator<Item = TensorSpec> + use<> {
    let c = *c;
    let known = Arch::from_u32(c.arch).is_some();
    let n_layers = if known { c.n_layers } else { 0 };
    let global = move |part: Part, required: bool| TensorSpec {
        name: format!("{}.{}", part.stem(), part.suffix()),
        part,
        layer: None,
        shape: part.shape(&c),
        required,
    };
    let mut head = Vec::new();
    let mut tail = Vec::new();
    if known {
        if c.block_flags & block_flags::ROPE_FREQS != 0 {
            head.push(global(Part::RopeFreqs, true));
        }
        head.push(global(Part::TokenEmbd, true));
        tail.push(global(Part::OutputNorm, true));
        tail.push(global(Part::Output, false));
    }
    let layers = (0..n_layers).flat_map(move |l| {
        block_parts(c.block_flags).map(move |part| TensorSpec {
            name: format!("blk.{l}.{}.{}", part.stem(), part.suffix()),
            part,
            layer: Some(l),
            shape: part.shape(&c),
            required: true,
        })
    });
    head.into_iter().chain(layers).chain(tail)
}

/// Where a tensor named `name` comes in the forward-pass order of [`tensors`] (a sort
/// key: the frequency divisors, the embedding, block by block, the final norm, the
/// head), or `None` for a name the architecture does not read. Computed from the name,
/// without walking the table.
pub fn forward_position(c: &ModelConfig, name: &str) -> Option<u64> {
    Arch::from_u32(c.arch)?;
    let block: Vec<Part> = block_parts(c.block_flags).collect();
    let per_layer = block.len() as u64;
    let freqs = u64::from(c.block_flags & block_flags::ROPE_FREQS != 0);
    let after_blocks = freqs + 1 + u64::from(c.n_layers) * per_layer;
    match name {
        "rope_freqs.weight" if freqs == 1 => return Some(0),
        "token_embd.weight" => return Some(freqs),
        "output_norm.weight" => return Some(after_blocks),
        "output.weight" => return Some(after_blocks + 1),
        _ => {}
    }
    let (layer, rest) = name.strip_prefix("blk.")?.split_once('.')?;
    // Canonical decimal only: "blk.01.attn_q.weight" is not a name of the table.
    if !layer.bytes().all(|b| b.is_ascii_digit()) || (layer.len() > 1 && layer.starts_with('0')) {
        return None;
    }
    let layer: u32 = layer.parse().ok().filter(|&l| l < c.n_layers)?;
    let (stem, suffix) = rest.rsplit_once('.')?;
    let i = block
        .iter()
        .position(|p| p.stem() == stem && p.suffix() == suffix)? as u64;
    Some(freqs + 1 + u64::from(layer) * per_layer + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama() -> ModelConfig {
        ModelConfig {
            arch: crate::ARCH_LLAMA,
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

    #[test]
    fn block_flags_add_their_tensors_in_forward_order() {
        let c = ModelConfig {
            arch: Arch::Gemma3 as u32,
            block_flags: block_flags::ALL,
            tied_output: 1,
            ..llama()
        };
        let all: Vec<TensorSpec> = tensors(&c).collect();
        assert_eq!(all.len(), 4 + 2 * 16);
        assert_eq!(all[0].name, "rope_freqs.weight");
        assert_eq!(
            (all[0].shape.clone(), all[0].role()),
            (vec![8], Role::RopeFreqs)
        );
        assert_eq!(all[1].name, "token_embd.weight");
        let blk0: Vec<&str> = all[2..18].iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            blk0,
            [
                "blk.0.attn_norm.weight",
                "blk.0.attn_q.weight",
                "blk.0.attn_q.bias",
                "blk.0.attn_k.weight",
                "blk.0.attn_k.bias",
                "blk.0.attn_v.weight",
                "blk.0.attn_v.bias",
                "blk.0.attn_q_norm.weight",
                "blk.0.attn_k_norm.weight",
                "blk.0.attn_output.weight",
                "blk.0.post_attention_norm.weight",
                "blk.0.ffn_norm.weight",
                "blk.0.ffn_gate.weight",
                "blk.0.ffn_up.weight",
                "blk.0.ffn_down.weight",
                "blk.0.post_ffw_norm.weight",
            ]
        );
        assert_eq!(
            (all[4].shape.clone(), all[4].role()),
            (vec![64], Role::Bias)
        );
        assert_eq!(all[6].shape, [32]);
        assert_eq!(
            (all[9].shape.clone(), all[9].role()),
            (vec![16], Role::Norm)
        );
        assert_eq!(all[34].name, "output_norm.weight");
        for (i, t) in all.iter().enumerate() {
            assert_eq!(forward_position(&c, &t.name), Some(i as u64), "{}", t.name);
        }
        // A part of another flag set is not in this table.
        let qwen2 = ModelConfig {
            block_flags: block_flags::QKV_BIAS,
            ..c
        };
        for name in [
            "rope_freqs.weight",
            "blk.0.attn_q_norm.weight",
            "blk.0.attn_q_norm.bias",
        ] {
            assert_eq!(forward_position(&qwen2, name), None, "{name}");
        }
        assert_eq!(
            forward_position(&qwen2, "blk.1.attn_v.bias"),
            Some(1 + 12 + 6)
        );
    }
}
