#!/usr/bin/env python3
"""Write three tiny random-weight GGUFs for the architectures VTC learns from llama.cpp
(Qwen2, Qwen3, Llama 3 RoPE scaling) and llama.cpp's logits for them:

    crates/vtc-model/tests/data/qwen2-tiny.gguf    qwen2-tiny-llamacpp.json
    crates/vtc-model/tests/data/qwen3-tiny.gguf    qwen3-tiny-llamacpp.json
    crates/vtc-model/tests/data/llama3-tiny.gguf   llama3-tiny-llamacpp.json

Run (needs `pip install gguf numpy`; llama.cpp's vendored gguf-py also works via
PYTHONPATH=$VTC_HOME/llama.cpp/src/llama_cpp_python-0.3.36/vendor/llama.cpp/gguf-py):

    scripts/llamacpp-build.sh                         # llama.cpp b11312 (static libs)
    python3 scripts/synthetic_arch_gguf.py            # GGUFs + references + sanity numbers
    python3 scripts/synthetic_arch_gguf.py --gguf-only   # only the three GGUFs

The GGUFs are deterministic (seeded numpy RNG, np.random.default_rng(SEED + arch index));
all tensors F32. Shapes: 2 layers, dim 64, 4 heads, 2 KV heads (GQA), FFN hidden 160
(SwiGLU: ffn_gate / ffn_up / ffn_down), vocab 288, context_length 256.

  qwen2-tiny:  general.architecture "qwen2"; head_dim 16 (= dim / heads); q/k/v biases
               (blk.N.attn_{q,k,v}.bias, normal * 0.5); untied output (output.weight);
               rms eps 1e-6, rope freq_base 1e6.
  qwen3-tiny:  "qwen3"; head_dim 32 set by qwen3.attention.key_length / value_length (and
               qwen3.rope.dimension_count), NOT dim / heads = 16, so q is [128, 64] and
               attn_output [64, 128] (numpy [out, in]); QK-norm: blk.N.attn_q_norm.weight and
               attn_k_norm.weight of 32, 1 + 0.1 * normal, an RMSNorm over each head's 32
               values before RoPE; no biases; tied output (no output.weight); rms eps 1e-5,
               freq_base 1e4.
  llama3-tiny: "llama"; head_dim 16; rope_freqs.weight (f32, [head_dim / 2] = [8]) computed as
               llama.cpp's converter does for rope_type "llama3" (conversion/llama.py,
               generate_extra_tensors) with rope_theta 1e4, factor 8, low_freq_factor 1,
               high_freq_factor 4, original_max_position_embeddings 64, so that wavelengths
               above 16 positions are scaled; the four parameters are also stored as
               vtc.llama3.factor / low_freq_factor / high_freq_factor (f32) and
               vtc.llama3.original_context_length (u32) so a test can recompute the factors.
               llama.cpp divides each RoPE frequency by its factor (theta_i = pos *
               base^(-2i/d) / rope_freqs[i]). Untied output; rms eps 1e-5.

RoPE pairing: llama.cpp's "llama" arch rotates adjacent pairs (x[2i], x[2i+1]) ("normal"
RoPE) on the weights as stored (its HF converter permutes q/k so that this is right for HF
checkpoints); "qwen2" / "qwen3" use NEOX RoPE (x[i], x[i + d/2]). The weights here are random,
so nothing is permuted: a VTC loader must apply the pairing the arch implies to these files as
they are.

Shapes follow ggml: a numpy array [rows, cols] is written with ne = [cols, rows], so a matrix
is stored as numpy [out, in] (y = W x), the layout llama.cpp expects (token_embd [vocab, dim]).
Weight scales: matrices normal / sqrt(fan_in), token_embd normal / sqrt(dim) (O(1) logits
also with tied output), norms 1 + 0.1 * normal.

Tokenizer (only so that llama.cpp loads the file; the references feed ids): SentencePiece
("llama") vocabulary <unk> 0, <s> 1, </s> 2 (control), the 256 byte tokens <0x00>..<0xFF> (type
6, BYTE), then 29 normal word pieces; bos 1, eos 2, add_bos true.

References (scripts/llamacpp-logits.sh, llama.cpp b11312): two cases of seeded random ids in
[3, 288), lengths 48 and 97, fed as they are (no BOS), n_predict 8, top_k 8, full logits
rows for every fed position (prompt + 8 generated tokens: 56 and 105 rows).

Sanity (that a test on these files can fail): the script runs llama.cpp also on variants
written to a temp dir and prints the max |logit| difference to the reference over all rows
along the reference's own token sequence (the variant gets the full prompt + generated ids as
its prompt, so the positions are the same):
  llama3-tiny without rope_freqs.weight, qwen2-tiny with the q/k/v biases zeroed, qwen3-tiny
  with the QK-norm weights set to 1. The numbers of the committed run are in
  crates/vtc-model/tests/data/README.md.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "crates", "vtc-model", "tests", "data")
SEED = 20261207

N_LAYER, DIM, N_HEAD, N_KV, FF, VOCAB, CTX = 2, 64, 4, 2, 160, 288, 256
LLAMA3 = dict(rope_theta=10000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_context_length=64)


def llama3_rope_factors(head_dim, base, factor, low_freq_factor, high_freq_factor, old_ctx):
    """conversion/llama.py generate_extra_tensors (rope_type llama3), in float32 as there
    (torch float32 tensors there, numpy float32 scalars here)."""
    f32 = np.float32
    freqs = f32(1.0) / (f32(base) ** (np.arange(0, head_dim, 2, dtype=np.float32) / f32(head_dim)))
    low_freq_wavelen = old_ctx / low_freq_factor
    high_freq_wavelen = old_ctx / high_freq_factor
    out = []
    for freq in freqs:
        wavelen = f32(2 * math.pi) / freq
        if wavelen < high_freq_wavelen:
            out.append(f32(1))
        elif wavelen > low_freq_wavelen:
            out.append(f32(factor))
        else:
            smooth = (f32(old_ctx) / wavelen - f32(low_freq_factor)) / f32(high_freq_factor - low_freq_factor)
            out.append(f32(1) / ((f32(1) - smooth) / f32(factor) + smooth))
    return np.array(out, dtype=np.float32)


def vocab():
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    words = ["\u2581the", "\u2581a", "\u2581of", "\u2581and", "\u2581to", "\u2581in", "\u2581is",
             "\u2581it", "\u2581that", "\u2581was", "\u2581on", "\u2581for", "\u2581with",
             "\u2581as", "\u2581he", "\u2581she", "\u2581at", "\u2581by", "\u2581be", "\u2581this",
             "\u2581", "e", "t", "a", "o", "n", "s", "er", "ing"]
    toks += words
    assert len(toks) == VOCAB, len(toks)
    types = [2, 3, 3] + [6] * 256 + [1] * len(words)  # UNKNOWN, CONTROL, BYTE, NORMAL
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(words))]
    return toks, scores, types


def make_tensors(arch, rng):
    """name -> float32 numpy array, in a fixed generation order."""
    head_dim = 32 if arch == "qwen3" else DIM // N_HEAD
    nq, nkv = N_HEAD * head_dim, N_KV * head_dim

    def mat(out_f, in_f):
        return (rng.standard_normal((out_f, in_f)) / math.sqrt(in_f)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    t = {"token_embd.weight": mat(VOCAB, DIM)}
    for i in range(N_LAYER):
        p = f"blk.{i}."
        t[p + "attn_norm.weight"] = norm(DIM)
        t[p + "attn_q.weight"] = mat(nq, DIM)
        t[p + "attn_k.weight"] = mat(nkv, DIM)
        t[p + "attn_v.weight"] = mat(nkv, DIM)
        if arch == "qwen2":
            t[p + "attn_q.bias"] = (0.5 * rng.standard_normal(nq)).astype(np.float32)
            t[p + "attn_k.bias"] = (0.5 * rng.standard_normal(nkv)).astype(np.float32)
            t[p + "attn_v.bias"] = (0.5 * rng.standard_normal(nkv)).astype(np.float32)
        if arch == "qwen3":
            t[p + "attn_q_norm.weight"] = norm(head_dim)
            t[p + "attn_k_norm.weight"] = norm(head_dim)
        t[p + "attn_output.weight"] = mat(DIM, nq)
        t[p + "ffn_norm.weight"] = norm(DIM)
        t[p + "ffn_gate.weight"] = mat(FF, DIM)
        t[p + "ffn_up.weight"] = mat(FF, DIM)
        t[p + "ffn_down.weight"] = mat(DIM, FF)
    t["output_norm.weight"] = norm(DIM)
    if arch != "qwen3":
        t["output.weight"] = mat(VOCAB, DIM)
    if arch == "llama":
        t["rope_freqs.weight"] = llama3_rope_factors(
            head_dim, LLAMA3["rope_theta"], LLAMA3["factor"], LLAMA3["low_freq_factor"],
            LLAMA3["high_freq_factor"], LLAMA3["original_context_length"])
    return head_dim, t


ARCHS = {  # file stem -> (arch, rms eps, rope base)
    "qwen2-tiny": ("qwen2", 1e-6, 1e6),
    "qwen3-tiny": ("qwen3", 1e-5, 1e4),
    "llama3-tiny": ("llama", 1e-5, LLAMA3["rope_theta"]),
}


def write_gguf(path, stem, tensors, head_dim):
    arch, eps, base = ARCHS[stem]
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"vtc {stem} (random weights, scripts/synthetic_arch_gguf.py)")
    w.add_context_length(CTX)
    w.add_embedding_length(DIM)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_layer_norm_rms_eps(eps)
    w.add_rope_freq_base(base)
    w.add_rope_dimension_count(head_dim)
    if arch == "qwen3":
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_vocab_size(VOCAB)
    if arch == "llama":
        w.add_float32("vtc.llama3.factor", LLAMA3["factor"])
        w.add_float32("vtc.llama3.low_freq_factor", LLAMA3["low_freq_factor"])
        w.add_float32("vtc.llama3.high_freq_factor", LLAMA3["high_freq_factor"])
        w.add_uint32("vtc.llama3.original_context_length", LLAMA3["original_context_length"])
    toks, scores, types = vocab()
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    for name, a in tensors.items():
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def build(stem, out_dir, variant=None):
    arch = ARCHS[stem][0]
    rng = np.random.default_rng(SEED + list(ARCHS).index(stem))
    head_dim, t = make_tensors(arch, rng)
    if variant == "no_rope_freqs":
        del t["rope_freqs.weight"]
    elif variant == "zero_bias":
        for k in t:
            if k.endswith(".bias"):
                t[k] = np.zeros_like(t[k])
    elif variant == "unit_qk_norm":
        for k in t:
            if k.endswith("_q_norm.weight") or k.endswith("_k_norm.weight"):
                t[k] = np.ones_like(t[k])
    path = os.path.join(out_dir, f"{stem}.gguf")
    write_gguf(path, stem, t, head_dim)
    return path, t


def run_llamacpp(model, spec, out_path):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
        in_path = f.name
    try:
        subprocess.run([os.path.join(HERE, "llamacpp-logits.sh"), model, in_path, out_path],
                       check=True)
    finally:
        os.unlink(in_path)
    with open(out_path) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf-only", action="store_true")
    args = ap.parse_args()

    paths = {}
    for stem in ARCHS:
        paths[stem], t = build(stem, DATA)
        print(f"{stem}: {os.path.getsize(paths[stem])} bytes, {len(t)} tensors")
        if stem == "llama3-tiny":
            print("  rope_freqs (llama3 factors):", " ".join(f"{x:.9g}" for x in t["rope_freqs.weight"]))
    if args.gguf_only:
        return

    sanity = {"llama3-tiny": "no_rope_freqs", "qwen2-tiny": "zero_bias", "qwen3-tiny": "unit_qk_norm"}
    for stem in ARCHS:
        rng = np.random.default_rng(SEED + 100 + list(ARCHS).index(stem))
        cases = [{"name": f"random{n}", "tokens": [int(x) for x in rng.integers(3, VOCAB, n)]}
                 for n in (48, 97)]
        spec = {"n_predict": 8, "top_k": 8, "full": True, "cases": cases}
        ref = run_llamacpp(paths[stem], spec,
                           os.path.join(DATA, f"{stem}-llamacpp.json"))
        with tempfile.TemporaryDirectory() as tmp:
            vpath, _ = build(stem, tmp, sanity[stem])
            vspec = {"n_predict": 0, "top_k": 8, "full": True,
                     "cases": [{"name": c["name"], "tokens": c["tokens"]} for c in ref["cases"]]}
            var = run_llamacpp(vpath, vspec, os.path.join(tmp, "out.json"))
        diff = max(float(np.max(np.abs(np.array(a["logits"]) - np.array(b["logits"]))))
                   for a, b in zip(ref["cases"], var["cases"]))
        scale = max(float(np.max(np.abs(np.array(a["logits"])))) for a in ref["cases"])
        margin = min(min(a["margin"][a["n_prompt"] - 1:]) for a in ref["cases"])
        print(f"{stem}: max |logit| {scale:.3f}; min greedy margin {margin:.4f}; "
              f"{sanity[stem]}: max |logit diff| {diff:.4f}")


if __name__ == "__main__":
    main()
