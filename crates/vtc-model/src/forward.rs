//! One token through the Llama graph: embedding, `n_layers` x (attention with RoPE and
//! grouped-query KV cache, SwiGLU feed-forward), final norm, output head. Every
//! operation goes through the [`Backend`]; this file only sequences them.

use vtc_kernels::Backend;

use crate::{Config, RunState, Weights};

/// Run `token` at position `pos` (which must be `< state.max_seq`, and every earlier
/// position must already be in the cache); the logits land in `state.logits`.
///
/// The caller guarantees `token < cfg.vocab_size` and `pos < state.max_seq`
/// (`Session` checks both and returns typed errors).
pub fn forward<B: Backend + ?Sized>(
    be: &B,
    cfg: &Config,
    w: &Weights<'_>,
    s: &mut RunState,
    token: u32,
    pos: usize,
) {
    let hd = cfg.head_dim;
    let scale = 1.0 / (hd as f32).sqrt();
    w.token_embd.row_into(token as usize, &mut s.x);
    for (i, f) in s.inv_freq.iter().enumerate() {
        let angle = pos as f64 * f;
        s.cos[i] = angle.cos() as f32;
        s.sin[i] = angle.sin() as f32;
    }
    for (l, lw) in w.layers.iter().enumerate() {
        // Attention.
        be.rmsnorm(&mut s.xb, &s.x, lw.attn_norm, cfg.rms_eps);
        be.matvec(&lw.wq, &s.xb, &mut s.q);
        be.matvec(&lw.wk, &s.xb, &mut s.k);
        be.matvec(&lw.wv, &s.xb, &mut s.v);
        be.rope(&mut s.q, hd, &s.cos, &s.sin, cfg.rope_style);
        be.rope(&mut s.k, hd, &s.cos, &s.sin, cfg.rope_style);
        for h in 0..cfg.n_kv_heads {
            let at = s.cache_base(cfg, l, h) + pos * hd;
            s.key_cache[at..at + hd].copy_from_slice(&s.k[h * hd..(h + 1) * hd]);
            s.value_cache[at..at + hd].copy_from_slice(&s.v[h * hd..(h + 1) * hd]);
        }
        let n = pos + 1;
        for h in 0..cfg.n_heads {
            let base = s.cache_base(cfg, l, h / cfg.group_size());
            let keys = &s.key_cache[base..base + n * hd];
            let values = &s.value_cache[base..base + n * hd];
            let att = &mut s.att[..n];
            be.attn_scores(&s.q[h * hd..(h + 1) * hd], keys, hd, scale, att);
            be.softmax(att);
            be.attn_values(att, values, hd, &mut s.attn_out[h * hd..(h + 1) * hd]);
        }
        be.matvec(&lw.wo, &s.attn_out, &mut s.proj);
        be.add(&mut s.x, &s.proj);
        // Feed-forward.
        be.rmsnorm(&mut s.xb, &s.x, lw.ffn_norm, cfg.rms_eps);
        be.matvec(&lw.w_gate, &s.xb, &mut s.hb);
        be.matvec(&lw.w_up, &s.xb, &mut s.hb2);
        be.swiglu(&mut s.hb, &s.hb2);
        be.matvec(&lw.w_down, &s.hb, &mut s.proj);
        be.add(&mut s.x, &s.proj);
    }
    be.rmsnorm(&mut s.xb, &s.x, w.output_norm, cfg.rms_eps);
    be.matvec(&w.output, &s.xb, &mut s.logits);
}
