#!/usr/bin/env python3
"""Float64 reference for `vtc perplexity`: a Llama forward pass in numpy, independent of
the Rust runtime, and the same perplexity definition.

Model: read from a GGUF file with the `gguf` package; every tensor is dequantized with
`gguf.quants.dequantize` (bit-exact with ggml: F32/F16/Q8_0/Q4_0/Q4_1 -> float32), then
cast to float64, and all math is float64: RMSNorm (eps from the file), RoPE on the GGUF
q/k weights with llama.cpp's "normal" convention (adjacent pairs (2i, 2i+1), theta from
the file), causal grouped-query attention (query head h uses kv head h // (n_head /
n_head_kv)), SwiGLU feed-forward, final RMSNorm and the output head (`output.weight`, or
the embedding table when the file has none). A window is run as one batch.

Perplexity (identical to crates/vtc-model/src/perplexity.rs): the token ids (read from
`vtc perplexity --dump-ids`, i.e. produced by our tokenizer, so tokenization is not
re-implemented here) are cut into consecutive, non-overlapping windows of CTX tokens; a
last partial window counts if it has at least 2 tokens. Each window is run from an empty
cache; every token after the window's first is scored by -log softmax(logits of the
previous position)[token] (float64 log-sum-exp, maximum subtracted). The result is
exp(nll_sum / tokens_scored).

Usage:
  # Check the forward pass against ../shared/golden (synthetic GQA logits and SmolLM2's
  # top-5 teacher-forced logits):
  python3 scripts/perplexity_reference.py validate [--golden DIR] [--smollm2 GGUF]
  # Compute a reference and merge it into a JSON file under NAME:
  python3 scripts/perplexity_reference.py compute --gguf M.gguf --ids IDS.json --ctx N \
      [--max-tokens K] --name NAME --out REF.json [--note TEXT] [--set KEY=JSON ...]
"""

import argparse
import hashlib
import json
import os
import shlex
import sys
import time
from importlib import metadata

import numpy as np
import gguf
from gguf import quants

VERSION = "1"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Llama:
    """A Llama-architecture GGUF, dequantized to float64."""

    def __init__(self, path):
        r = gguf.GGUFReader(path)
        arch = r.fields["general.architecture"].contents()
        if arch != "llama":
            raise SystemExit(f"{path}: architecture {arch!r}, expected llama")

        def meta(key, default=None):
            f = r.fields.get(f"{arch}.{key}")
            return default if f is None else f.contents()

        self.n_layers = int(meta("block_count"))
        self.dim = int(meta("embedding_length"))
        self.n_heads = int(meta("attention.head_count"))
        self.n_kv_heads = int(meta("attention.head_count_kv", self.n_heads))
        self.head_dim = int(meta("attention.key_length", self.dim // self.n_heads))
        rope_dim = int(meta("rope.dimension_count", self.head_dim))
        if rope_dim != self.head_dim:
            raise SystemExit(f"partial RoPE ({rope_dim} of {self.head_dim}) is not supported")
        # The file stores float32; use exactly that value, widened.
        self.theta = float(np.float32(meta("rope.freq_base", 10000.0)))
        self.eps = float(np.float32(meta("attention.layer_norm_rms_epsilon")))
        self.context_len = int(meta("context_length"))
        self.w = {}
        self.types = {}
        for t in r.tensors:
            a = quants.dequantize(t.data, t.tensor_type)
            shape = tuple(int(d) for d in reversed(t.shape))  # numpy order: (rows, cols)
            self.w[t.name] = np.asarray(a, dtype=np.float32).reshape(shape).astype(np.float64)
            self.types[t.name] = t.tensor_type.name
        self.output = self.w.get("output.weight", self.w["token_embd.weight"])
        self.vocab = self.output.shape[0]
        hd = self.head_dim
        self.inv_freq = self.theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)

    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, n_heads):
        """x: (T, n_heads * head_dim); rotate adjacent pairs (2i, 2i+1) of every head."""
        t = x.shape[0]
        x = x.reshape(t, n_heads, self.head_dim // 2, 2)
        ang = np.arange(t, dtype=np.float64)[:, None] * self.inv_freq[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., 0], x[..., 1]
        out = np.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1)
        return out.reshape(t, n_heads * self.head_dim)

    def forward(self, ids, rows=None):
        """Logits (len(rows), vocab) for a sequence starting at position 0 from an empty
        cache; rows selects the positions whose logits are wanted (default: all)."""
        w = self.w
        t = len(ids)
        hd, nh, nkv = self.head_dim, self.n_heads, self.n_kv_heads
        group = nh // nkv
        x = w["token_embd.weight"][np.asarray(ids)]
        mask = np.triu(np.full((t, t), -np.inf), k=1)
        for l in range(self.n_layers):
            p = f"blk.{l}."
            h = self.rmsnorm(x, w[p + "attn_norm.weight"])
            q = self.rope(h @ w[p + "attn_q.weight"].T, nh).reshape(t, nh, hd)
            k = self.rope(h @ w[p + "attn_k.weight"].T, nkv).reshape(t, nkv, hd)
            v = (h @ w[p + "attn_v.weight"].T).reshape(t, nkv, hd)
            out = np.empty((t, nh, hd))
            for head in range(nh):
                kv = head // group
                s = q[:, head, :] @ k[:, kv, :].T / np.sqrt(hd) + mask
                s = np.exp(s - s.max(axis=1, keepdims=True))
                s /= s.sum(axis=1, keepdims=True)
                out[:, head, :] = s @ v[:, kv, :]
            x = x + out.reshape(t, nh * hd) @ w[p + "attn_output.weight"].T
            h = self.rmsnorm(x, w[p + "ffn_norm.weight"])
            g = h @ w[p + "ffn_gate.weight"].T
            u = h @ w[p + "ffn_up.weight"].T
            x = x + (g / (1.0 + np.exp(-g)) * u) @ w[p + "ffn_down.weight"].T
        if rows is not None:
            x = x[rows]
        return self.rmsnorm(x, w["output_norm.weight"]) @ self.output.T


def windows(n_tokens, ctx):
    """Consecutive non-overlapping [start, end) windows of ctx tokens; a last partial window
    only if it has at least 2 tokens."""
    out = []
    for start in range(0, n_tokens, ctx):
        end = min(start + ctx, n_tokens)
        if end - start >= 2:
            out.append((start, end))
    return out


def nll_of_window(model, ids):
    """Sum of -log p(ids[i] | ids[:i]) for i = 1..len-1, float64."""
    logits = model.forward(ids[:-1])  # the last token is scored, never run
    m = logits.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
    targets = np.asarray(ids[1:])
    return float(np.sum(lse - logits[np.arange(len(targets)), targets]))


def perplexity(model, ids, ctx, log=None):
    if ctx < 2 or ctx > model.context_len:
        raise SystemExit(f"ctx {ctx} must be in 2..={model.context_len}")
    if len(ids) < 2:
        raise SystemExit("perplexity needs at least 2 tokens")
    if max(ids) >= model.vocab:
        raise SystemExit(f"token id {max(ids)} is outside the vocabulary of {model.vocab}")
    ws = windows(len(ids), ctx)
    nll_sum, scored = 0.0, 0
    for i, (a, b) in enumerate(ws):
        t = time.time()
        nll_sum += nll_of_window(model, ids[a:b])
        scored += b - a - 1
        if log:
            log(f"window {i + 1}/{len(ws)}: {b - a} tokens, running ppl "
                f"{np.exp(nll_sum / scored):.6f} ({time.time() - t:.1f} s)")
    return {
        "perplexity": float(np.exp(nll_sum / scored)),
        "nll_sum": nll_sum,
        "tokens_scored": scored,
        "windows": len(ws),
    }


def validate(args):
    golden = args.golden
    worst = {}
    # 1. Synthetic GQA model: full float64 logits.
    j = json.load(open(os.path.join(golden, "synthetic-gqa/logits.json")))
    m = Llama(os.path.join(golden, "synthetic-gqa/model.f32.gguf"))
    got = m.forward(j["tokens"])
    want = np.asarray(j["logits"])
    neox = np.asarray(j["logits_neox"])
    worst["synthetic_logits_max_abs_err"] = float(np.abs(got - want).max())
    worst["synthetic_vs_neox_max_abs_diff"] = float(np.abs(got - neox).max())
    print(f"synthetic-gqa: max |logit - golden| = {worst['synthetic_logits_max_abs_err']:.3e} "
          f"(vs the NeoX variant: {worst['synthetic_vs_neox_max_abs_diff']:.3e})")
    ok = worst["synthetic_logits_max_abs_err"] < 1e-9 and worst["synthetic_vs_neox_max_abs_diff"] > 1e-3
    # 2. SmolLM2: teacher-forced top-5 logits of the float64 reference and its full
    #    first-token vectors (stored as float32).
    ref = json.load(open(os.path.join(golden, "smollm2-reference.json")))
    if args.smollm2 is None:
        print("smollm2: skipped (no --smollm2 GGUF given)")
        return ok
    digest = sha256(args.smollm2)
    if digest != ref["model_sha256"]:
        raise SystemExit(f"{args.smollm2}: sha256 {digest}, the golden file is for {ref['model_sha256']}")
    m = Llama(args.smollm2)
    top5_err, first_err, argmax_bad = 0.0, 0.0, 0
    for k, p in enumerate(ref["prompts"]):
        seq = p["prompt_ids"] + p["gen_ids"][:-1]
        n = len(p["prompt_ids"])
        logits = m.forward(seq, rows=np.arange(n - 1, len(seq)))
        for i, step in enumerate(p["steps"]):
            for tok, val in step["top5"]:
                top5_err = max(top5_err, abs(logits[i, tok] - val))
            if step["margin12"] > 1e-6 and int(np.argmax(logits[i])) != p["gen_ids"][i]:
                argmax_bad += 1
        first = np.fromfile(os.path.join(golden, f"smollm2-first-logits-p{k}.f32"), dtype="<f4")
        first_err = max(first_err, float(np.abs(logits[0] - first.astype(np.float64)).max()))
    worst["smollm2_top5_max_abs_err"] = float(top5_err)
    worst["smollm2_first_logits_max_abs_err_vs_f32"] = first_err
    print(f"smollm2: teacher-forced top-5 max |logit - golden| = {top5_err:.3e} over "
          f"{sum(len(p['steps']) for p in ref['prompts'])} steps; full first-token vectors "
          f"(golden rounded to f32) {first_err:.3e}; argmax mismatches {argmax_bad}")
    ok = ok and top5_err < 1e-9 and first_err < 1e-4 and argmax_bad == 0
    print("validation", "PASSED" if ok else "FAILED")
    return ok


def write_json(path, doc):
    """Indented JSON, with each case's id list on one line."""
    ids = {}
    for name, case in doc.get("cases", {}).items():
        ids[name] = case["ids"]
        case["ids"] = f"@ids:{name}@"
    text = json.dumps(doc, indent=1)
    for name, v in ids.items():
        text = text.replace(json.dumps(f"@ids:{name}@"), json.dumps(v))
        doc["cases"][name]["ids"] = v
    with open(path, "w") as f:
        f.write(text + "\n")


def compute(args):
    doc = json.load(open(args.ids))
    ids = [int(t) for t in doc["ids"]]
    if args.max_tokens is not None:
        ids = ids[: args.max_tokens]
    t0 = time.time()
    m = Llama(args.gguf)
    print(f"loaded {args.gguf} in {time.time() - t0:.1f} s; {len(ids)} tokens, ctx {args.ctx}",
          file=sys.stderr)
    t1 = time.time()
    r = perplexity(m, ids, args.ctx, log=lambda s: print(s, file=sys.stderr))
    case = {
        "model": os.path.basename(args.gguf),
        "model_sha256": sha256(args.gguf),
        "tensor_types": sorted(set(m.types.values())),
        "ctx": args.ctx,
        "tokens": len(ids),
        **r,
        "ids_source": "vtc perplexity --dump-ids (VTC's tokenizer; "
        f"add_bos={doc.get('add_bos')}, special tokens not parsed) of {doc.get('file')}"
        + (f", first {args.max_tokens} ids" if args.max_tokens is not None else ""),
        "ids": ids,
        "seconds": round(time.time() - t1, 1),
    }
    if args.note:
        case["note"] = args.note
    for kv in args.set or []:
        key, _, value = kv.partition("=")
        case[key] = json.loads(value)
    out = {}
    if os.path.exists(args.out):
        out = json.load(open(args.out))
    out.setdefault("definition", __doc__.split("Usage:")[0].strip().split("\n\n", 2)[2])
    out["script"] = "scripts/perplexity_reference.py"
    out["script_version"] = VERSION
    out["env"] = {"python": sys.version.split()[0], "numpy": np.__version__,
                  "gguf": metadata.version("gguf")}
    out.setdefault("cases", {})[args.name] = {
        "command": "python3 scripts/perplexity_reference.py " + shlex.join(sys.argv[1:]),
        **case,
    }
    write_json(args.out, out)
    print(json.dumps({k: v for k, v in case.items() if k != "ids"}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="check the forward pass against ../shared/golden")
    here = os.path.dirname(os.path.abspath(__file__))
    v.add_argument("--golden", default=os.path.join(here, "../../shared/golden"))
    v.add_argument("--smollm2", help="SmolLM2-135M-Instruct.Q4_1.gguf")
    c = sub.add_parser("compute", help="compute a perplexity reference")
    c.add_argument("--gguf", required=True)
    c.add_argument("--ids", required=True, help="JSON from vtc perplexity --dump-ids")
    c.add_argument("--ctx", type=int, required=True)
    c.add_argument("--max-tokens", type=int, help="use only the first K ids")
    c.add_argument("--name", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--note")
    c.add_argument("--set", action="append", metavar="KEY=JSON",
                   help="record an extra field in the case (repeatable)")
    args = ap.parse_args()
    if args.cmd == "validate":
        sys.exit(0 if validate(args) else 1)
    compute(args)


if __name__ == "__main__":
    main()
