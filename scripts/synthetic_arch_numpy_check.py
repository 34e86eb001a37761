#!/usr/bin/env python3
"""Check the llama.cpp references of the tiny synthetic models against an independent float64
numpy forward pass, which spells out what llama.cpp computes for each architecture:

    python3 scripts/synthetic_arch_numpy_check.py      # needs `pip install gguf numpy`

Reads crates/vtc-model/tests/data/{qwen2,qwen3,llama3}-tiny.gguf (scripts/synthetic_arch_gguf.py)
and the -llamacpp.json next to them, runs every case on the recorded token sequence (prompt +
generated ids) and prints the max |logit difference| to llama.cpp over all rows. Writes nothing.

The forward pass (per token, causal attention over all earlier positions):
  x = token_embd[id]
  per layer: h = rmsnorm(x) * attn_norm;  q = Wq h (+ bq), k = Wk h (+ bk), v = Wv h (+ bv)
             qwen3: q, k per head = rmsnorm(head) * attn_{q,k}_norm (same eps)
             RoPE on q, k: qwen2 / qwen3 NEOX pairs (i, i + d/2); llama adjacent pairs (2i, 2i+1)
             theta_i = pos * base^(-2i/d) [/ rope_freqs[i] when the GGUF has rope_freqs]
             softmax(q k^T / sqrt(head_dim)) v, KV head = head // (n_head / n_kv)
             x += Wo attn;  x += Wdown (silu(Wgate h2) * Wup h2), h2 = rmsnorm(x) * ffn_norm
  logits = W_out (rmsnorm(x) * output_norm), W_out = output.weight or token_embd (tied)
rmsnorm(v) = v / sqrt(mean(v^2) + eps).
"""
import json
import os

import numpy as np
import gguf

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "vtc-model",
                    "tests", "data")


def load(path):
    r = gguf.GGUFReader(path)
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()

    def kv(key, default=None):
        f = r.fields.get(f"{arch}.{key}")
        return default if f is None else f.parts[-1][0].item()

    t = {}
    for x in r.tensors:
        shape = [int(n) for n in reversed(x.shape)]  # ggml ne reversed = numpy [rows, cols]
        t[x.name] = np.array(x.data, dtype=np.float64).reshape(shape)
    hp = dict(arch=arch, n_layer=kv("block_count"), dim=kv("embedding_length"),
              n_head=kv("attention.head_count"), n_kv=kv("attention.head_count_kv"),
              eps=kv("attention.layer_norm_rms_epsilon"), base=kv("rope.freq_base"))
    hp["head_dim"] = kv("attention.key_length", hp["dim"] // hp["n_head"])
    return hp, t


def rmsnorm(v, w, eps):
    return v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, base, neox, factors):
    # x: [T, H, d]
    d = x.shape[-1]
    inv = base ** (-np.arange(0, d, 2) / d)
    if factors is not None:
        inv = inv / factors
    ang = pos[:, None] * inv[None, :]                  # [T, d/2]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    if neox:
        a, b = x[..., : d // 2], x[..., d // 2:]
        return np.concatenate([a * c - b * s, a * s + b * c], axis=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def forward(hp, t, ids):
    T, hd, H, KV = len(ids), hp["head_dim"], hp["n_head"], hp["n_kv"]
    neox = hp["arch"] in ("qwen2", "qwen3")
    factors = t.get("rope_freqs.weight")
    pos = np.arange(T, dtype=np.float64)
    x = t["token_embd.weight"][ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(hp["n_layer"]):
        p = f"blk.{i}."
        h = rmsnorm(x, t[p + "attn_norm.weight"], hp["eps"])
        q, k, v = (h @ t[p + f"attn_{n}.weight"].T + t.get(p + f"attn_{n}.bias", 0)
                   for n in "qkv")
        q, k, v = q.reshape(T, H, hd), k.reshape(T, KV, hd), v.reshape(T, KV, hd)
        if p + "attn_q_norm.weight" in t:
            q = rmsnorm(q, t[p + "attn_q_norm.weight"], hp["eps"])
            k = rmsnorm(k, t[p + "attn_k_norm.weight"], hp["eps"])
        q, k = rope(q, pos, hp["base"], neox, factors), rope(k, pos, hp["base"], neox, factors)
        att = np.empty((T, H, hd))
        for hh in range(H):
            kh = hh // (H // KV)
            s = q[:, hh] @ k[:, kh].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            att[:, hh] = (s / s.sum(axis=1, keepdims=True)) @ v[:, kh]
        x = x + att.reshape(T, H * hd) @ t[p + "attn_output.weight"].T
        h = rmsnorm(x, t[p + "ffn_norm.weight"], hp["eps"])
        g = h @ t[p + "ffn_gate.weight"].T
        x = x + (g / (1 + np.exp(-g)) * (h @ t[p + "ffn_up.weight"].T)) @ t[p + "ffn_down.weight"].T
    out = t.get("output.weight", t["token_embd.weight"])
    return rmsnorm(x, t["output_norm.weight"], hp["eps"]) @ out.T


def main():
    for stem in ("qwen2-tiny", "qwen3-tiny", "llama3-tiny"):
        hp, t = load(os.path.join(DATA, f"{stem}.gguf"))
        with open(os.path.join(DATA, f"{stem}-llamacpp.json")) as f:
            ref = json.load(f)
        worst = 0.0
        for c in ref["cases"]:
            logits = forward(hp, t, np.array(c["tokens"]))
            worst = max(worst, float(np.max(np.abs(logits - np.array(c["logits"])))))
        print(f"{stem} ({hp['arch']}, head_dim {hp['head_dim']}): numpy float64 vs llama.cpp "
              f"max |logit diff| {worst:.3g}")


if __name__ == "__main__":
    main()
