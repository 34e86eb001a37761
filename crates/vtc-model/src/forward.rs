//! The graph of every architecture (TVL spec section 4a): embedding, `n_layers` x
//! (attention with RoPE and grouped-query KV cache, gated feed-forward), final norm,
//! output head, with what the config adds (QKV biases, QK-norm, post-norms, GELU
//! gate, embedding and attention scales, sliding-window layers, scaled RoPE
//! frequencies). One function, [`forward`],
//! runs a pass of any rows: a decode step is a pass of one token, a prompt chunk a pass
//! of consecutive tokens of one sequence, a serving step one token of each of several
//! sequences. Every operation goes through the [`Backend`]; this file only sequences
//! them.

use vtc_kernels::{Backend, Matrix, Q8Vec};

use crate::{Config, Gate, KvCache, LayerWeights, Scratch, Weights};

/// Tokens per batch of [`Session::prefill`](crate::Session::prefill) and
/// [`Session::score`](crate::Session::score): a longer prompt runs in chunks of this
/// many. Large enough that the weights are read a few times per prompt at most, small
/// enough that a batch's activations stay in the L2 cache.
pub const BATCH: usize = 64;

/// One token of a pass: which sequence's cache it belongs to and its position there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// Index of the sequence's cache in the `caches` of [`forward`].
    pub seq: usize,
    /// Token id.
    pub token: u32,
    /// Position of the token in its sequence.
    pub pos: usize,
}

/// Which logits a pass computes, and where they go.
#[derive(Debug)]
pub enum Logits<'a> {
    /// None: the pass only fills the KV caches (a prompt chunk before the last).
    None,
    /// Only the last row's, `[vocab]` (prefill).
    Last(&'a mut [f32]),
    /// Every row's, `[rows][vocab]` (decode, scoring, a serving step).
    All(&'a mut [f32]),
    /// The rows listed (ascending), `[listed][vocab]` (a serving step that mixes
    /// decode rows with prompt chunks, whose inner rows need none).
    Rows(&'a [usize], &'a mut [f32]),
}

/// Which logits a caller of [`forward`] wants, before it has the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    None,
    Last,
    All,
}

impl Want {
    /// The [`Logits`] of a pass of `rows` tokens into the front of `buf`.
    pub(crate) fn logits(self, buf: &mut [f32], rows: usize, vocab: usize) -> Logits<'_> {
        match self {
            Self::None => Logits::None,
            Self::Last => Logits::Last(&mut buf[..vocab]),
            Self::All => Logits::All(&mut buf[..rows * vocab]),
        }
    }
}

/// Run `rows` through the graph as one pass: each weight matrix is read once for all
/// of them (one token: [`Backend::matvecs`]; more: [`Backend::matmul`]), and each row
/// attends to positions `..= pos` of its own cache `caches[row.seq]`, whose earlier
/// positions must already be filled (by earlier passes, or by earlier rows of this
/// pass: every row's key and value are written before any row attends). Every row
/// goes through the same operations whatever else is in the pass, so its logits are
/// bit for bit those of running it alone.
///
/// The caller guarantees `0 < rows.len() <= s.capacity`, every token
/// `< cfg.vocab_size`, every `seq < caches.len()`, every `pos < caches[seq].max_seq
/// <= s.max_seq`, rows of one sequence in position order, and a `Logits` buffer of the
/// right length (`Session` and `Slots` check them and return typed errors).
pub fn forward<B: Backend + ?Sized>(
    be: &B,
    cfg: &Config,
    w: &Weights<'_>,
    s: &mut Scratch,
    caches: &mut [KvCache],
    rows: &[Row],
    logits: Logits<'_>,
) {
    let (n, dim, vocab) = (rows.len(), cfg.dim, cfg.vocab_size);
    assert!(n > 0 && n <= s.capacity, "pass of {n} rows");
    for (i, r) in rows.iter().enumerate() {
        let x = &mut s.act.x[i * dim..(i + 1) * dim];
        w.token_embd.row_into(r.token as usize, x);
        if let Some(scale) = cfg.embed_scale {
            x.iter_mut().for_each(|v| *v *= scale);
        }
    }
    for (l, lw) in w.layers.iter().enumerate() {
        block(be, cfg, lw, l, s, caches, rows);
    }
    let (a, xq) = (&mut s.act, &mut s.xq[..]);
    // The final norm of each row that wants logits into the front rows of `xb`, then
    // one product of the head for all of them.
    let mut k = 0;
    let mut norm = |r: usize| {
        let (x, xb) = (
            &a.x[r * dim..(r + 1) * dim],
            &mut a.xb[k * dim..(k + 1) * dim],
        );
        be.rmsnorm(xb, x, w.output_norm, cfg.rms_eps);
        k += 1;
    };
    let out = match logits {
        Logits::None => return,
        Logits::Last(out) => {
            norm(n - 1);
            out
        }
        Logits::All(out) => {
            (0..n).for_each(&mut norm);
            out
        }
        Logits::Rows(rows, out) => {
            assert!(rows.windows(2).all(|p| p[0] < p[1]), "rows ascending");
            rows.iter().for_each(|&r| norm(r));
            out
        }
    };
    assert_eq!(out.len(), k * vocab, "logits buffer");
    project(be, &a.xb[..k * dim], &mut xq[..k], &mut [(&w.output, out)]);
}

/// One transformer block over the rows of a pass: attention (norm, q/k/v projections
/// and biases, QK-norm, RoPE, cache write, causal attention, output projection,
/// post-norm, residual), then the feed-forward (norm, gate and up projections, gated
/// activation, down projection, post-norm, residual). The optional steps run when the
/// layer has their weights.
fn block<B: Backend + ?Sized>(
    be: &B,
    cfg: &Config,
    lw: &LayerWeights<'_>,
    l: usize,
    s: &mut Scratch,
    caches: &mut [KvCache],
    rows: &[Row],
) {
    let n = rows.len();
    let (hd, dim, qd, kvd, hid) = (
        cfg.head_dim,
        cfg.dim,
        cfg.q_dim(),
        cfg.kv_dim(),
        cfg.hidden_dim,
    );
    let Scratch {
        act: a,
        xq,
        att,
        att_rows,
        cos,
        sin,
        inv_freq,
        inv_freq_local,
        ..
    } = s;
    let xq = &mut xq[..n];
    let (x, xb) = (&mut a.x[..n * dim], &mut a.xb[..n * dim]);
    let (q, k, v) = (&mut a.q[..n * qd], &mut a.k[..n * kvd], &mut a.v[..n * kvd]);
    let attn_out = &mut a.attn_out[..n * qd];

    // Attention.
    rmsnorm_rows(be, xb, x, lw.attn_norm, cfg);
    project(
        be,
        xb,
        xq,
        &mut [(&lw.wq, &mut *q), (&lw.wk, &mut *k), (&lw.wv, &mut *v)],
    );
    for (y, bias) in [
        (&mut *q, lw.q_bias),
        (&mut *k, lw.k_bias),
        (&mut *v, lw.v_bias),
    ] {
        if let Some(b) = bias {
            y.chunks_exact_mut(b.len()).for_each(|row| be.add(row, b));
        }
    }
    for (y, gain) in [(&mut *q, lw.q_norm), (&mut *k, lw.k_norm)] {
        if let Some(g) = gain {
            // Every head of every row, through `attn_out` (free until attention).
            let tmp = &mut attn_out[..y.len()];
            rmsnorm_rows(be, tmp, y, g, cfg);
            y.copy_from_slice(tmp);
        }
    }
    let inv_freq = if cfg.is_local(l) {
        inv_freq_local
    } else {
        inv_freq
    };
    for (i, r) in rows.iter().enumerate() {
        rope_angles(inv_freq, cos, sin, r.pos);
        be.rope(&mut q[i * qd..(i + 1) * qd], hd, cos, sin, cfg.rope_style);
        be.rope(&mut k[i * kvd..(i + 1) * kvd], hd, cos, sin, cfg.rope_style);
        let cache = &mut caches[r.seq];
        for h in 0..cfg.n_kv_heads {
            let at = cache.offset(cfg, l, h) + r.pos * hd;
            let from = i * kvd + h * hd;
            cache.keys[at..at + hd].copy_from_slice(&k[from..from + hd]);
            cache.values[at..at + hd].copy_from_slice(&v[from..from + hd]);
        }
    }
    attention(be, cfg, l, (att, *att_rows), caches, rows, q, attn_out);
    let proj = &mut a.proj[..n * dim];
    project(be, attn_out, xq, &mut [(&lw.wo, &mut *proj)]);
    residual(be, cfg, x, proj, xb, lw.post_attn_norm);

    // Feed-forward.
    rmsnorm_rows(be, xb, x, lw.ffn_norm, cfg);
    let (gate, up) = (&mut a.hb[..n * hid], &mut a.hb2[..n * hid]);
    project(be, xb, xq, &mut [(&lw.w_gate, &mut *gate), (&lw.w_up, up)]);
    match cfg.gate {
        Gate::Silu => be.swiglu(gate, up),
        Gate::Gelu => be.geglu(gate, up),
    }
    project(be, gate, xq, &mut [(&lw.w_down, &mut *proj)]);
    residual(be, cfg, x, proj, xb, lw.post_ffn_norm);
}

/// `x += y`, or with a post-norm `x += rmsnorm(y)` (through `tmp`, rows of `x`).
#[inline]
fn residual<B: Backend + ?Sized>(
    be: &B,
    cfg: &Config,
    x: &mut [f32],
    y: &[f32],
    tmp: &mut [f32],
    post_norm: Option<&[f32]>,
) {
    match post_norm {
        Some(g) => {
            rmsnorm_rows(be, tmp, y, g, cfg);
            be.add(x, tmp);
        }
        None => be.add(x, y),
    }
}

/// The attention of every row in layer `l`: for each head, scores of the row's query
/// against the cached keys of its positions `..= pos` (on a local layer only the
/// last `sliding_window` of them), softmax, weighted sum of the
/// cached values, into the row of `out`. Every (row, head) pair is independent, so up
/// to `att_rows` rows at a time run as chunks of `att` (the head's output, then its
/// scores) spread over the backend's threads ([`Backend::for_each_chunk`]).
#[allow(clippy::too_many_arguments)]
fn attention<B: Backend + ?Sized>(
    be: &B,
    cfg: &Config,
    l: usize,
    (att, att_rows): (&mut [f32], usize),
    caches: &[KvCache],
    rows: &[Row],
    q: &[f32],
    out: &mut [f32],
) {
    let (hd, heads, qd) = (cfg.head_dim, cfg.n_heads, cfg.q_dim());
    for (g, group) in rows.chunks(att_rows).enumerate() {
        let first = g * att_rows;
        let seen = |r: &Row| cfg.first_seen(l, r.pos)..r.pos + 1;
        let longest = group.iter().map(|r| seen(r).len()).max().unwrap_or(0);
        let chunk = hd + longest;
        let scratch = &mut att[..group.len() * heads * chunk];
        be.for_each_chunk(scratch, chunk, &|i, c| {
            let (r, h) = (i / heads, i % heads);
            let (row, seen) = (&group[r], seen(&group[r]));
            let cache = &caches[row.seq];
            let at = cache.offset(cfg, l, h / cfg.group_size());
            let span = at + seen.start * hd..at + seen.end * hd;
            let (head_out, scores) = c.split_at_mut(hd);
            let scores = &mut scores[..seen.len()];
            let qh = (first + r) * qd + h * hd;
            be.attn_scores(
                &q[qh..qh + hd],
                &cache.keys[span.clone()],
                hd,
                cfg.attn_scale,
                scores,
            );
            be.softmax(scores);
            be.attn_values(scores, &cache.values[span], hd, head_out);
        });
        let outs = out[first * qd..(first + group.len()) * qd].chunks_exact_mut(hd);
        for (o, c) in outs.zip(scratch.chunks_exact(chunk)) {
            o.copy_from_slice(&c[..hd]);
        }
    }
}

/// The RoPE cosines and sines of position `pos` for the inverse frequencies
/// `inv_freq`.
#[inline]
fn rope_angles(inv_freq: &[f64], cos: &mut [f32], sin: &mut [f32], pos: usize) {
    for (i, f) in inv_freq.iter().enumerate() {
        let angle = pos as f64 * f;
        cos[i] = angle.cos() as f32;
        sin[i] = angle.sin() as f32;
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

/// The products of one input: `y = W x` for every `(W, y)` and every row of `x`
/// (`xq.len()` rows). A quantized matrix reads the rows' int8 form, quantized here
/// once into `xq`; a float one reads `x`. One row runs all the products together
/// ([`Backend::matvecs`]: one fork on a threaded backend), more rows one
/// [`Backend::matmul`] (or `matmul_q8`) per matrix, each weight read once for all rows;
/// both give each row the bits of its matvec.
#[inline]
fn project<B: Backend + ?Sized>(
    be: &B,
    x: &[f32],
    xq: &mut [Q8Vec],
    products: &mut [(&Matrix<'_>, &mut [f32])],
) {
    if products.iter().any(|(m, _)| m.is_quantized()) {
        let k = x.len() / xq.len();
        for (q, xi) in xq.iter_mut().zip(x.chunks_exact(k)) {
            be.quantize_q8(xi, q);
        }
    }
    if let [xq] = xq {
        be.matvecs(x, xq, products);
        return;
    }
    for (w, y) in products.iter_mut() {
        if w.is_quantized() {
            be.matmul_q8(w, xq, y);
        } else {
            be.matmul(w, x, y);
        }
    }
}
