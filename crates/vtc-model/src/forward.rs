//! The Llama graph: embedding, `n_layers` x (attention with RoPE and grouped-query KV
//! cache, SwiGLU feed-forward), final norm, output head; for one token ([`forward`],
//! decode) or a batch of consecutive tokens ([`forward_batch`], prompt processing).
//! Every operation goes through the [`Backend`]; this file only sequences them.

use vtc_kernels::{Backend, Matrix, Q8Vec};

use crate::{BatchState, Config, RunState, Weights};

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
    w.token_embd.row_into(token as usize, &mut s.act.x);
    rope_angles(s, pos);
    for (l, lw) in w.layers.iter().enumerate() {
        // Attention.
        be.rmsnorm(&mut s.act.xb, &s.act.x, lw.attn_norm, cfg.rms_eps);
        prepare(be, &[&lw.wq, &lw.wk, &lw.wv], &s.act.xb, &mut s.xq);
        be.matvecs(
            &s.act.xb,
            &s.xq,
            &mut [
                (&lw.wq, &mut s.act.q),
                (&lw.wk, &mut s.act.k),
                (&lw.wv, &mut s.act.v),
            ],
        );
        be.rope(&mut s.act.q, hd, &s.cos, &s.sin, cfg.rope_style);
        be.rope(&mut s.act.k, hd, &s.cos, &s.sin, cfg.rope_style);
        for h in 0..cfg.n_kv_heads {
            let at = s.cache_base(cfg, l, h) + pos * hd;
            s.key_cache[at..at + hd].copy_from_slice(&s.act.k[h * hd..(h + 1) * hd]);
            s.value_cache[at..at + hd].copy_from_slice(&s.act.v[h * hd..(h + 1) * hd]);
        }
        attention(be, cfg, s, l, pos, Row::Decode);
        prepare(be, &[&lw.wo], &s.act.attn_out, &mut s.xq);
        linear(be, &lw.wo, &s.act.attn_out, &s.xq, &mut s.act.proj);
        be.add(&mut s.act.x, &s.act.proj);
        // Feed-forward.
        be.rmsnorm(&mut s.act.xb, &s.act.x, lw.ffn_norm, cfg.rms_eps);
        prepare(be, &[&lw.w_gate, &lw.w_up], &s.act.xb, &mut s.xq);
        be.matvecs(
            &s.act.xb,
            &s.xq,
            &mut [(&lw.w_gate, &mut s.act.hb), (&lw.w_up, &mut s.act.hb2)],
        );
        be.swiglu(&mut s.act.hb, &s.act.hb2);
        prepare(be, &[&lw.w_down], &s.act.hb, &mut s.xq);
        linear(be, &lw.w_down, &s.act.hb, &s.xq, &mut s.act.proj);
        be.add(&mut s.act.x, &s.act.proj);
    }
    be.rmsnorm(&mut s.act.xb, &s.act.x, w.output_norm, cfg.rms_eps);
    prepare(be, &[&w.output], &s.act.xb, &mut s.xq);
    linear(be, &w.output, &s.act.xb, &s.xq, &mut s.logits);
}

/// Tokens per batch of [`Session::prefill`](crate::Session::prefill) and
/// [`Session::score`](crate::Session::score): a longer prompt runs in chunks of this
/// many. Large enough that the weights are read a few times per prompt at most, small
/// enough that a batch's activations stay in the L2 cache.
pub const BATCH: usize = 64;

/// Which logits a batched run computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// None: the batch only fills the KV cache (a prompt chunk before the last).
    None,
    /// Only the last token's, into `RunState::logits` (prefill).
    Last,
    /// Every token's, into `BatchState::logits` (scoring, perplexity).
    All,
}

/// Run `tokens` at positions `pos, pos + 1, ...` as one batch: each weight matrix is
/// read once for all of them ([`Backend::matmul`]), attention is causal (token `i`
/// attends to positions `..= pos + i`). Every token goes through the same operations
/// as in [`forward`], so the logits are bit for bit those of running the tokens one at
/// a time.
///
/// The caller guarantees `0 < tokens.len() <= b.capacity`, every token
/// `< cfg.vocab_size` and `pos + tokens.len() <= state.max_seq` (`Session` checks them
/// and returns typed errors).
#[allow(clippy::too_many_arguments)]
pub fn forward_batch<B: Backend + ?Sized>(
    be: &B,
    cfg: &Config,
    w: &Weights<'_>,
    s: &mut RunState,
    b: &mut BatchState,
    tokens: &[u32],
    pos: usize,
    logits: Logits,
) {
    let n = tokens.len();
    assert!(n > 0 && n <= b.capacity, "batch of {n} tokens");
    let (hd, dim, qd, kvd, hid) = (
        cfg.head_dim,
        cfg.dim,
        cfg.q_dim(),
        cfg.kv_dim(),
        cfg.hidden_dim,
    );
    let (a, xq) = (&mut b.act, &mut b.xq[..n]);
    for (i, &t) in tokens.iter().enumerate() {
        w.token_embd
            .row_into(t as usize, &mut a.x[i * dim..(i + 1) * dim]);
    }
    for (l, lw) in w.layers.iter().enumerate() {
        // Attention.
        rmsnorm_rows(be, &mut a.xb[..n * dim], &a.x[..n * dim], lw.attn_norm, cfg);
        prepare_rows(be, &[&lw.wq, &lw.wk, &lw.wv], &a.xb[..n * dim], xq);
        linear_rows(be, &lw.wq, &a.xb[..n * dim], xq, &mut a.q[..n * qd]);
        linear_rows(be, &lw.wk, &a.xb[..n * dim], xq, &mut a.k[..n * kvd]);
        linear_rows(be, &lw.wv, &a.xb[..n * dim], xq, &mut a.v[..n * kvd]);
        for i in 0..n {
            rope_angles(s, pos + i);
            be.rope(
                &mut a.q[i * qd..(i + 1) * qd],
                hd,
                &s.cos,
                &s.sin,
                cfg.rope_style,
            );
            be.rope(
                &mut a.k[i * kvd..(i + 1) * kvd],
                hd,
                &s.cos,
                &s.sin,
                cfg.rope_style,
            );
            for h in 0..cfg.n_kv_heads {
                let at = s.cache_base(cfg, l, h) + (pos + i) * hd;
                let from = i * kvd + h * hd;
                s.key_cache[at..at + hd].copy_from_slice(&a.k[from..from + hd]);
                s.value_cache[at..at + hd].copy_from_slice(&a.v[from..from + hd]);
            }
        }
        for i in 0..n {
            let row = Row::Batch {
                q: &a.q[i * qd..(i + 1) * qd],
                out: &mut a.attn_out[i * qd..(i + 1) * qd],
            };
            attention(be, cfg, s, l, pos + i, row);
        }
        prepare_rows(be, &[&lw.wo], &a.attn_out[..n * qd], xq);
        linear_rows(
            be,
            &lw.wo,
            &a.attn_out[..n * qd],
            xq,
            &mut a.proj[..n * dim],
        );
        be.add(&mut a.x[..n * dim], &a.proj[..n * dim]);
        // Feed-forward.
        rmsnorm_rows(be, &mut a.xb[..n * dim], &a.x[..n * dim], lw.ffn_norm, cfg);
        prepare_rows(be, &[&lw.w_gate, &lw.w_up], &a.xb[..n * dim], xq);
        linear_rows(be, &lw.w_gate, &a.xb[..n * dim], xq, &mut a.hb[..n * hid]);
        linear_rows(be, &lw.w_up, &a.xb[..n * dim], xq, &mut a.hb2[..n * hid]);
        be.swiglu(&mut a.hb[..n * hid], &a.hb2[..n * hid]);
        prepare_rows(be, &[&lw.w_down], &a.hb[..n * hid], xq);
        linear_rows(be, &lw.w_down, &a.hb[..n * hid], xq, &mut a.proj[..n * dim]);
        be.add(&mut a.x[..n * dim], &a.proj[..n * dim]);
    }
    match logits {
        Logits::None => {}
        Logits::Last => {
            s.act.x.copy_from_slice(&a.x[(n - 1) * dim..n * dim]);
            be.rmsnorm(&mut s.act.xb, &s.act.x, w.output_norm, cfg.rms_eps);
            prepare(be, &[&w.output], &s.act.xb, &mut s.xq);
            linear(be, &w.output, &s.act.xb, &s.xq, &mut s.logits);
        }
        Logits::All => {
            let vocab = cfg.vocab_size;
            b.logits.resize(b.capacity * vocab, 0.0);
            rmsnorm_rows(
                be,
                &mut a.xb[..n * dim],
                &a.x[..n * dim],
                w.output_norm,
                cfg,
            );
            prepare_rows(be, &[&w.output], &a.xb[..n * dim], xq);
            linear_rows(
                be,
                &w.output,
                &a.xb[..n * dim],
                xq,
                &mut b.logits[..n * vocab],
            );
        }
    }
}

/// Where the query and the output of one token's attention are.
enum Row<'a> {
    /// `q` and `attn_out` of `RunState::act` (decode).
    Decode,
    /// A row of a batch.
    Batch { q: &'a [f32], out: &'a mut [f32] },
}

/// The attention of one token at `pos` in layer `l`: for every head, scores against
/// the cached keys of positions `..= pos`, softmax, weighted sum of the cached values.
/// The heads are independent, so they run as chunks of `s.att` (output, then scores)
/// spread over the backend's threads ([`Backend::for_each_chunk`]).
fn attention<B: Backend + ?Sized>(
    be: &B,
    cfg: &Config,
    s: &mut RunState,
    l: usize,
    pos: usize,
    row: Row<'_>,
) {
    let (hd, seen) = (cfg.head_dim, pos + 1);
    let scale = 1.0 / (hd as f32).sqrt();
    let max_seq = s.max_seq;
    let base = |h: usize| RunState::cache_offset(cfg, max_seq, l, h / cfg.group_size());
    let chunk = hd + seen;
    let scratch = &mut s.att[..cfg.n_heads * chunk];
    let (q, out) = match row {
        Row::Decode => (&s.act.q[..], &mut s.act.attn_out[..]),
        Row::Batch { q, out } => (q, out),
    };
    let (keys, values) = (&s.key_cache, &s.value_cache);
    be.for_each_chunk(scratch, chunk, &|h, c| {
        let (head_out, att) = c.split_at_mut(hd);
        let at = base(h);
        be.attn_scores(
            &q[h * hd..(h + 1) * hd],
            &keys[at..at + seen * hd],
            hd,
            scale,
            att,
        );
        be.softmax(att);
        be.attn_values(att, &values[at..at + seen * hd], hd, head_out);
    });
    for (o, c) in out.chunks_exact_mut(hd).zip(scratch.chunks_exact(chunk)) {
        o.copy_from_slice(&c[..hd]);
    }
}

/// The RoPE cosines and sines of position `pos` into `s.cos`, `s.sin`.
#[inline]
fn rope_angles(s: &mut RunState, pos: usize) {
    for (i, f) in s.inv_freq.iter().enumerate() {
        let angle = pos as f64 * f;
        s.cos[i] = angle.cos() as f32;
        s.sin[i] = angle.sin() as f32;
    }
}

/// [`Backend::rmsnorm`] of every row of `x` (rows of `weight.len()`).
#[inline]
fn rmsnorm_rows<B: Backend + ?Sized>(
    be: &B,
    out: &mut [f32],
    x: &[f32],
    weight: &[f32],
    cfg: &Config,
) {
    let d = weight.len();
    for (o, xi) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        be.rmsnorm(o, xi, weight, cfg.rms_eps);
    }
}

/// [`prepare`] for every row of `x` (`xq.len()` rows).
#[inline]
fn prepare_rows<B: Backend + ?Sized>(be: &B, readers: &[&Matrix<'_>], x: &[f32], xq: &mut [Q8Vec]) {
    if readers.iter().any(|m| m.is_quantized()) {
        let k = x.len() / xq.len();
        for (q, xi) in xq.iter_mut().zip(x.chunks_exact(k)) {
            be.quantize_q8(xi, q);
        }
    }
}

/// [`linear`] for every row of `x`: one [`Backend::matmul`] (or `matmul_q8`).
#[inline]
fn linear_rows<B: Backend + ?Sized>(
    be: &B,
    w: &Matrix<'_>,
    x: &[f32],
    xq: &[Q8Vec],
    y: &mut [f32],
) {
    if w.is_quantized() {
        be.matmul_q8(w, xq, y);
    } else {
        be.matmul(w, x, y);
    }
}

/// Quantize `x` into `xq` once if any of the matrices about to read it is quantized.
#[inline]
fn prepare<B: Backend + ?Sized>(be: &B, readers: &[&Matrix<'_>], x: &[f32], xq: &mut Q8Vec) {
    if readers.iter().any(|m| m.is_quantized()) {
        be.quantize_q8(x, xq);
    }
}

/// `y = W x`: a float matrix reads `x`, a quantized one its int8 form `xq` (which
/// [`prepare`] filled from the same `x`); [`Backend::matvecs`] with one product.
#[inline]
fn linear<B: Backend + ?Sized>(be: &B, w: &Matrix<'_>, x: &[f32], xq: &Q8Vec, y: &mut [f32]) {
    be.matvecs(x, xq, &mut [(w, y)]);
}
