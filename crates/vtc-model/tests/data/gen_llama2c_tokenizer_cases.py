#!/usr/bin/env python3
"""Generate llama2c-tokenizer-cases.json: texts and the ids llama2.c's run.c encodes them to.

An independent re-implementation of run.c's build_tokenizer() and encode() (karpathy/llama2.c,
MIT), straight from its C: tokenizer.bin is `i32 max_token_length`, then per token `f32 score,
i32 len, bytes`; encode() puts BOS (1), then (for non-empty text) the token of " " (the dummy
prefix), then each UTF-8 code point's token or, failing that, its bytes as ids `byte + 3`; then
it repeatedly merges the adjacent pair whose concatenation is a token of the highest score
(the first such pair on ties) until none is left.

Usage: python3 gen_llama2c_tokenizer_cases.py ../../../../../shared/data/llama2c-tokenizer.bin
(writes llama2c-tokenizer-cases.json beside this script). Deterministic (seeded).
"""
import json
import os
import random
import struct
import sys


def load(path):
    b = open(path, "rb").read()
    (max_len,) = struct.unpack_from("<i", b, 0)
    at, vocab, scores = 4, [], []
    while at < len(b):
        score, n = struct.unpack_from("<fi", b, at)
        at += 8
        vocab.append(b[at : at + n])
        scores.append(score)
        at += n
    return vocab, scores


def encode(text, vocab, scores, lookup):
    tokens = [1]  # BOS
    if text:
        tokens.append(lookup[b" "])
    for ch in text:
        s = ch.encode("utf-8")
        if s in lookup:
            tokens.append(lookup[s])
        else:
            tokens.extend(byte + 3 for byte in s)
    while True:
        best_score, best_id, best_idx = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            merged = vocab[tokens[i]] + vocab[tokens[i + 1]]
            j = lookup.get(merged)
            if j is not None and scores[j] > best_score:
                best_score, best_id, best_idx = scores[j], j, i
        if best_idx == -1:
            break
        tokens[best_idx : best_idx + 2] = [best_id]
    return tokens


TEXTS = [
    ("empty", ""),
    ("stories", "Once upon a time"),
    ("prose", "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends."),
    ("dialogue", '"Can I have some?" asked Tom.\n"Yes," said Mom. "But only one!"\n'),
    ("leading-space", "  two leading spaces and trailing  "),
    ("whitespace", "a\tb\n\nc   d\r\n e"),
    ("numbers", "In 2023, 3.14159 and 1,000,000 were 42% of 7/8."),
    ("code", "fn main() {\n    println!(\"{}\", x + 1); // comment\n}"),
    ("accents", "Café crème brûlée à la française, naïve façade, Größe, Ærø."),
    ("cyrillic-greek", "Привет, мир! Καλημέρα κόσμε."),
    ("cjk", "我们的故事从前有一个小女孩。日本語のテキスト。한국어 문장."),
    ("emoji", "I love 🐶 and 🍕! 👩‍👩‍👧 ✨"),
    ("rare-bytes", "\u0001\u007f\u00a0\u2028\U0001f9ff\U00010000"),
    ("punctuation-runs", "...!!!???---___***###"),
    ("single-char", "x"),
    ("single-space", " "),
]


def main():
    vocab, scores = load(sys.argv[1])
    lookup = {}
    for i, t in enumerate(vocab):
        lookup.setdefault(t, i)
    rng = random.Random(7)
    alphabet = (
        list("abcdefghijklmnopqrstuvwxyz ABCXYZ 0123456789 .,;:!?'\"()-\n\t")
        + list("éèàüößçñ") + list("的一是不了人我在") + ["🙂", "🚀", "\u00a0", "\u200b"]
    )
    cases = [{"name": n, "text": t} for n, t in TEXTS]
    for k in range(60):
        n = rng.randint(1, 40)
        cases.append({"name": f"random-{k}", "text": "".join(rng.choice(alphabet) for _ in range(n))})
    for c in cases:
        c["ids"] = encode(c["text"], vocab, scores, lookup)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "llama2c-tokenizer-cases.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
