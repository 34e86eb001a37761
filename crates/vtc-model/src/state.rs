//! Everything a forward pass writes: activations and the KV cache, allocated once per
//! session so the decode loop never allocates.

use vtc_kernels::Q8Vec;

use crate::Config;

/// The activation buffers of the graph for `rows` tokens, one row per token: the
/// single token of a decode step ([`RunState::act`], one row) or a batch of
/// consecutive tokens ([`BatchState::act`], `capacity` rows). Row `i` of a buffer is
/// `[i * width..(i + 1) * width]`.
#[derive(Clone, Debug)]
pub struct Activations {
    /// Residual stream, `[rows][dim]`.
    pub x: Vec<f32>,
    /// Normalized input of a sub-block, `[rows][dim]`.
    pub xb: Vec<f32>,
    /// Concatenated attention heads' output, `[rows][q_dim]`.
    pub attn_out: Vec<f32>,
    /// Projection output added back to the residual, `[rows][dim]`.
    pub proj: Vec<f32>,
    /// Queries, `[rows][q_dim]`.
    pub q: Vec<f32>,
    /// Keys of the token's position, `[rows][kv_dim]`.
    pub k: Vec<f32>,
    /// Values of the token's position, `[rows][kv_dim]`.
    pub v: Vec<f32>,
    /// Feed-forward gate, `[rows][hidden_dim]`.
    pub hb: Vec<f32>,
    /// Feed-forward up projection, `[rows][hidden_dim]`.
    pub hb2: Vec<f32>,
}

impl Activations {
    /// Zeroed buffers for `rows` tokens of `cfg`.
    pub fn new(cfg: &Config, rows: usize) -> Self {
        let buf = |width: usize| vec![0.0; rows * width];
        Self {
            x: buf(cfg.dim),
            xb: buf(cfg.dim),
            attn_out: buf(cfg.q_dim()),
            proj: buf(cfg.dim),
            q: buf(cfg.q_dim()),
            k: buf(cfg.kv_dim()),
            v: buf(cfg.kv_dim()),
            hb: buf(cfg.hidden_dim),
            hb2: buf(cfg.hidden_dim),
        }
    }
}

/// Length of a [`Q8Vec`] with room for the widest input of a product.
fn q8_width(cfg: &Config) -> usize {
    cfg.dim
        .max(cfg.hidden_dim)
        .max(cfg.q_dim())
        .next_multiple_of(32)
}

/// Activation buffers and the KV cache of one sequence.
#[derive(Clone, Debug)]
pub struct RunState {
    /// The current token's activations (one row).
    pub act: Activations,
    /// Attention scratch, one chunk per head of `head_dim + positions` floats (the
    /// head's output, then its scores), `[n_heads][head_dim + max_seq]` at most.
    pub att: Vec<f32>,
    /// RoPE cosines for the current position, `[head_dim / 2]`.
    pub cos: Vec<f32>,
    /// RoPE sines for the current position, `[head_dim / 2]`.
    pub sin: Vec<f32>,
    /// RoPE inverse frequencies, `theta^(-2i / head_dim)`, `[head_dim / 2]`.
    pub inv_freq: Vec<f64>,
    /// Output logits, `[vocab]`.
    pub logits: Vec<f32>,
    /// Keys, `[layer][kv_head][position][head_dim]`: one head's keys are contiguous.
    pub key_cache: Vec<f32>,
    /// Values, same layout as the keys.
    pub value_cache: Vec<f32>,
    /// The input of the current product quantized to int8 blocks (for quantized
    /// matrices), with room for the widest input.
    pub xq: Q8Vec,
    /// Positions the cache can hold.
    pub max_seq: usize,
}

impl RunState {
    /// Buffers for `cfg` with room for `max_seq` positions.
    pub fn new(cfg: &Config, max_seq: usize) -> Self {
        let hd = cfg.head_dim;
        let cache = cfg.n_layers * cfg.n_kv_heads * max_seq * hd;
        Self {
            act: Activations::new(cfg, 1),
            att: vec![0.0; cfg.n_heads * (hd + max_seq)],
            cos: vec![0.0; hd / 2],
            sin: vec![0.0; hd / 2],
            inv_freq: (0..hd / 2)
                .map(|i| (cfg.rope_theta as f64).powf(-2.0 * i as f64 / hd as f64))
                .collect(),
            logits: vec![0.0; cfg.vocab_size],
            key_cache: vec![0.0; cache],
            value_cache: vec![0.0; cache],
            xq: Q8Vec::new(q8_width(cfg)),
            max_seq,
        }
    }

    /// Start of the cached keys (or values) of `kv_head` in `layer`.
    #[inline]
    pub fn cache_base(&self, cfg: &Config, layer: usize, kv_head: usize) -> usize {
        Self::cache_offset(cfg, self.max_seq, layer, kv_head)
    }

    /// [`RunState::cache_base`] for a cache of `max_seq` positions.
    #[inline]
    pub fn cache_offset(cfg: &Config, max_seq: usize, layer: usize, kv_head: usize) -> usize {
        (layer * cfg.n_kv_heads + kv_head) * max_seq * cfg.head_dim
    }
}

/// Activation buffers of a batch of up to `capacity` consecutive tokens run through
/// the graph together ([`forward_batch`](crate::forward_batch)): the [`Activations`]
/// of [`RunState`] with one row per token, so every weight matrix is read once per
/// batch. Allocated once per session, on its first batched run.
#[derive(Clone, Debug)]
pub struct BatchState {
    /// Every token's activations, `capacity` rows.
    pub act: Activations,
    /// Each token's product input quantized to int8 blocks (for quantized matrices).
    pub xq: Vec<Q8Vec>,
    /// Logits of every token of the batch, `[capacity][vocab]`, when asked for
    /// ([`Logits::All`](crate::Logits::All)); allocated on first use.
    pub logits: Vec<f32>,
    /// Tokens per batch.
    pub capacity: usize,
}

impl BatchState {
    /// Buffers for batches of up to `capacity` tokens of `cfg`.
    pub fn new(cfg: &Config, capacity: usize) -> Self {
        Self {
            act: Activations::new(cfg, capacity),
            xq: (0..capacity).map(|_| Q8Vec::new(q8_width(cfg))).collect(),
            logits: Vec::new(),
            capacity,
        }
    }
}
