//! One token through the Llama graph: embedding, `n_layers` x (attention with RoPE and
//! grouped-query KV cache, SwiGLU feed-forward), final norm, output head. Every
//! operation goes through the [`Backend`]; this file only sequences them.

use vtc_kernels::{Backend, Matrix, Q8Vec};

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
        prepare(be, &[&lw.wq, &lw.wk, &lw.wv], &s.xb, &mut s.xq);
        linear(be, &lw.wq, &s.xb, &s.xq, &mut s.q);
        linear(be, &lw.wk, &s.xb, &s.xq, &mut s.k);
        linear(be, &lw.wv, &s.xb, &s.xq, &mut s.v);
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
        prepare(be, &[&lw.wo], &s.attn_out, &mut s.xq);
        linear(be, &lw.wo, &s.attn_out, &s.xq, &mut s.proj);
        be.add(&mut s.x, &s.proj);
        // Feed-forward.
        be.rmsnorm(&mut s.xb, &s.x, lw.ffn_norm, cfg.rms_eps);
        prepare(be, &[&lw.w_gate, &lw.w_up], &s.xb, &mut s.xq);
        linear(be, &lw.w_gate, &s.xb, &s.xq, &mut s.hb);
        linear(be, &lw.w_up, &s.xb, &s.xq, &mut s.hb2);
        be.swiglu(&mut s.hb, &s.hb2);
        prepare(be, &[&lw.w_down], &s.hb, &mut s.xq);
        linear(be, &lw.w_down, &s.hb, &s.xq, &mut s.proj);
        be.add(&mut s.x, &s.proj);
    }
    be.rmsnorm(&mut s.xb, &s.x, w.output_norm, cfg.rms_eps);
    prepare(be, &[&w.output], &s.xb, &mut s.xq);
    linear(be, &w.output, &s.xb, &s.xq, &mut s.logits);
}

/// Quantize `x` into `xq` once if any of the matrices about to read it is quantized.
#[inline]
fn prepare<B: Backend + ?Sized>(be: &B, readers: &[&Matrix<'_>], x: &[f32], xq: &mut Q8Vec) {
    if readers.iter().any(|m| m.is_quantized()) {
        be.quantize_q8(x, xq);
    }
}

/// `y = W x`: float matrices read `x`, quantized ones its int8 form `xq` (which
/// [`prepare`] filled from the same `x`).
#[inline]
fn linear<B: Backend + ?Sized>(be: &B, w: &Matrix<'_>, x: &[f32], xq: &Q8Vec, y: &mut [f32]) {
    if w.is_quantized() {
        be.matvec_q8(w, xq, y);
    } else {
        be.matvec(w, x, y);
    }
}
