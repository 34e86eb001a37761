//! Everything a forward pass writes: the KV cache of each sequence ([`KvCache`]) and the
//! scratch buffers of a pass ([`Scratch`]), allocated once so the decode loop never
//! allocates.

use vtc_kernels::Q8Vec;

use crate::{Config, Weights};

/// The activation buffers of the graph for up to `rows` tokens, one row per token (a
/// decode step's single token, a prompt chunk, or one token of each of several
/// sequences). Row `i` of a buffer is `[i * width..(i + 1) * width]`.
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

/// Floats of attention scratch one parallel region may use: rows of a pass share a
/// region ([`Scratch::att_rows`] of them) while their scores fit in this many
/// (16 MiB).
const ATT_BUDGET: usize = 1 << 22;

/// The keys and values of one sequence, `[layer][kv_head][position][head_dim]`: one
/// head's keys are contiguous, so attention reads them front to back.
#[derive(Clone, Debug)]
pub struct KvCache {
    /// Keys.
    pub keys: Vec<f32>,
    /// Values, same layout as the keys.
    pub values: Vec<f32>,
    /// Positions the cache can hold.
    pub max_seq: usize,
}

impl KvCache {
    /// A zeroed cache of `max_seq` positions for `cfg`.
    pub fn new(cfg: &Config, max_seq: usize) -> Self {
        let len = cfg.n_layers * cfg.n_kv_heads * max_seq * cfg.head_dim;
        Self {
            keys: vec![0.0; len],
            values: vec![0.0; len],
            max_seq,
        }
    }

    /// Start of the cached keys (or values) of `kv_head` in `layer`.
    #[inline]
    pub fn offset(&self, cfg: &Config, layer: usize, kv_head: usize) -> usize {
        (layer * cfg.n_kv_heads + kv_head) * self.max_seq * cfg.head_dim
    }
}

/// The scratch buffers of a pass of up to `capacity` tokens through the graph
/// ([`forward`](crate::forward)), whatever sequences they belong to: activations,
/// quantized inputs, attention scores and the RoPE angles. Allocated once (a session
/// keeps one of capacity 1 for decoding and one for prompt chunks).
#[derive(Clone, Debug)]
pub struct Scratch {
    /// Every token's activations, `capacity` rows.
    pub act: Activations,
    /// Each token's product input quantized to int8 blocks (for quantized matrices).
    pub xq: Vec<Q8Vec>,
    /// Attention scratch: for each of up to `att_rows` tokens and each head, a chunk of
    /// `head_dim + positions` floats (the head's output, then its scores).
    pub att: Vec<f32>,
    /// Tokens whose attention runs as one parallel region.
    pub att_rows: usize,
    /// RoPE cosines of the current token's position, `[head_dim / 2]`.
    pub cos: Vec<f32>,
    /// RoPE sines of the current token's position, `[head_dim / 2]`.
    pub sin: Vec<f32>,
    /// RoPE inverse frequencies of the global layers, `theta^(-2i / head_dim) / f_i`
    /// (`f_i` the file's frequency divisors, else 1), `[head_dim / 2]`.
    pub inv_freq: Vec<f64>,
    /// The same for the local (sliding-window) layers, with their own base.
    pub inv_freq_local: Vec<f64>,
    /// Tokens per pass.
    pub capacity: usize,
    /// Longest cache the attention scratch has room for.
    pub max_seq: usize,
}

impl Scratch {
    /// Buffers for passes of up to `capacity` tokens (at least 1) of `cfg` over caches
    /// of up to `max_seq` positions; the RoPE tables from `cfg` and `w.rope_freqs`.
    pub fn new(cfg: &Config, w: &Weights<'_>, capacity: usize, max_seq: usize) -> Self {
        let capacity = capacity.max(1);
        let hd = cfg.head_dim;
        let per_row = cfg.n_heads * (hd + max_seq);
        let att_rows = (ATT_BUDGET / per_row).clamp(1, capacity);
        Self {
            act: Activations::new(cfg, capacity),
            xq: (0..capacity).map(|_| Q8Vec::new(q8_width(cfg))).collect(),
            att: vec![0.0; att_rows * per_row],
            att_rows,
            cos: vec![0.0; hd / 2],
            sin: vec![0.0; hd / 2],
            inv_freq: inv_freq(cfg.rope_theta, hd, w.rope_freqs),
            inv_freq_local: inv_freq(cfg.rope_theta_local, hd, w.rope_freqs),
            capacity,
            max_seq,
        }
    }
}

/// `theta^(-2i / head_dim) / f_i` for the pairs `i` of a head.
fn inv_freq(theta: f32, hd: usize, divisors: Option<&[f32]>) -> Vec<f64> {
    (0..hd / 2)
        .map(|i| {
            let f = divisors.map_or(1.0, |d| f64::from(d[i]));
            f64::from(theta).powf(-2.0 * i as f64 / hd as f64) / f
        })
        .collect()
}
