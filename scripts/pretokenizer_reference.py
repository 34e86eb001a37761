#!/usr/bin/env python3
"""Write crates/vtc-model/tests/data/pretokenizer-llama-tokenize.json: 230 varied
strings and the ids llama.cpp's `llama-tokenize` gives for them with SmolLM2's byte-level
BPE vocabulary (49,152 tokens and its merges) under the Qwen2 (`tokenizer.ggml.pre =
"qwen2"`) and the Llama 3 (`"llama-bpe"`) pre-tokenizers, so VTC's splits are checked
against an independent implementation.

    pip install gguf numpy                  # gguf-py (0.19) reads and writes the GGUFs
    scripts/llamacpp-build.sh               # builds llama-tokenize
    ${PYTHON:-python3} scripts/pretokenizer_reference.py [SmolLM2-135M-Instruct.Q4_1.gguf]

The SmolLM2 GGUF (default: $VTC_HOME/SmolLM2-135M-Instruct.Q4_1.gguf) is copied twice
into $VTC_HOME (not the repository), every key and tensor kept, with only
`tokenizer.ggml.pre` changed (and a few token strings, see NEW below): SmolLM2-pre-qwen2.gguf
and SmolLM2-pre-llama-bpe.gguf.
llama.cpp gives "llama-bpe" its Llama 3 rule that a pre-token which is itself a token is
taken whole (`ignore_merges`); "qwen2" merges every pre-token.

Each string is written to a file and tokenized with `llama-tokenize -f FILE --ids
--no-escape` (the file is read verbatim), special tokens parsed (the default). SmolLM2
asks for no BOS (`tokenizer.ggml.add_bos_token = false`), so none is added. Strings
with a byte SmolLM2 has no token for are left out: llama.cpp drops such a byte after the
merges and VTC before them (see `Tokenizer::encode`), which is not what is tested here.
"""
import json
import os
import random
import subprocess
import sys
import tempfile

import gguf
from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

home = os.environ.get("VTC_HOME") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vtc")
src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(home, "SmolLM2-135M-Instruct.Q4_1.gguf")
tokenize = os.environ.get("LLAMA_TOKENIZE") or os.path.join(home, "llama.cpp/bin/llama-tokenize")
out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                        "crates/vtc-model/tests/data/pretokenizer-llama-tokenize.json")
PRES = ["qwen2", "llama-bpe"]


def byte_level_char(b):
    """GPT-2's byte-to-unicode mapping."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    if b in printable:
        return chr(b)
    return chr(256 + [x for x in range(256) if x not in printable].index(b))


reader = gguf.GGUFReader(src)
tokens = reader.get_field("tokenizer.ggml.tokens").contents()
types = reader.get_field("tokenizer.ggml.token_type").contents()
merges = reader.get_field("tokenizer.ggml.merges").contents()
vocab = set(tokens)
missing = {b for b in range(256) if byte_level_char(b) not in vocab}

# SmolLM2 has only single-digit number tokens, and every token is what the merges make
# of its text, so on its own it would not tell Qwen2's one-digit pieces from Llama 3's
# three-digit ones, nor show Llama 3's whole-token rule. So a few tokens get new strings
# no merge makes: tokens that are the result of a late merge and part of none, their
# merges dropped. The test makes the same change (the "vocab_changes" of the output).
NEW = ["123", "456", "789", "000", "12", "99", "zyzzyva", "\u0120zyzzyva"]
assert not vocab & set(NEW)
index = {t: i for i, t in reversed(list(enumerate(tokens)))}
parts = {p for m in merges for p in m.split(" ", 1)}
renamed = {}
for m in reversed(merges):
    if len(renamed) == len(NEW):
        break
    joined = m.replace(" ", "", 1)
    i = index[joined]
    if joined not in parts and types[i] == 1 and i not in renamed:
        renamed[i] = NEW[len(renamed)]
old_strings = {tokens[i] for i in renamed}
dropped = [m for m in merges if m.replace(" ", "", 1) in old_strings]
new_tokens = [renamed.get(i, t) for i, t in enumerate(tokens)]
new_merges = [m for m in merges if m not in set(dropped)]
vocab = set(new_tokens)

paths = {}
for pre in PRES:
    path = os.path.join(home, f"SmolLM2-pre-{pre}.gguf")
    paths[pre] = path
    arch = reader.get_field("general.architecture").contents()
    writer = gguf.GGUFWriter(path + ".part", arch=arch, endianess=reader.endianess)
    array = gguf.GGUFValueType.ARRAY
    copy_with_new_metadata(reader, writer, {
        "tokenizer.ggml.pre": MetadataDetails(gguf.GGUFValueType.STRING, pre),
        "tokenizer.ggml.tokens": MetadataDetails(array, new_tokens, sub_type=gguf.GGUFValueType.STRING),
        "tokenizer.ggml.merges": MetadataDetails(array, new_merges, sub_type=gguf.GGUFValueType.STRING),
    }, [])
    os.replace(path + ".part", path)
    print(f"wrote {path}", file=sys.stderr)

base = [
    "", " ", "  ", "   ", "\n", "\n\n\n", "\t", "\t\t", " \t \n ", "a", "A", "Hello",
    "Hello world", " Hello world", "Hello world ", "Hello  world", "Hello   world\n",
    "hello\nworld", "hello \nworld", "hello\n world", "hello \n \n world", "a\n\n b",
    "The quick brown fox jumps over the lazy dog.",
    "It's 3:45 pm on 2026-12-07; pi = 3.14159265358979.",
    "1234567890 00 007 1,000,000 1e-9 -42 +7",
    "12345678", "1,234,567", "123456789012", "1 12 123 1234 12345", "x1234y", "v2.0.13",
    "$1234.56", "10%", "2^10=1024", "0x1F3A", "١٢٣٤٥ ٦٧", "²³¹ ½¾ Ⅻ ⅷ",
    "I'M", "you'LL", "don't", "DON'T", "we'Ve", "she'D", "they'RE", "it'S", "'s", "'S",
    "'t'", "''s", "' s", "'x", "'ll'", "I'm he's they'll we've you're it'd can't",
    "'ſ long s", "rock 'n' roll", "'12", "'\n",
    "CRLF\r\nline\r\n", "a\r\n\r\nb", "\r", "\r\r\n", " \r\n ", "x \r\n\t y",
    "tab\tseparated\tvalues", "\tindented\n\t\tmore", "trailing newline\n",
    "multiple\n\n\n\nnewlines", "spaces" + " " * 20 + "end", "\t" * 12, "end   ",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "fn main() {\n\tprintln!(\"{}\", x);\n}\n",
    "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
    "<table><tr><td>1</td></tr></table>", "...!!!???", " ...\n\n", "--\n", "!\r\n",
    "a,b;c.d", "(x)", "[[1, 2], [3]]", "{\"key\": \"value\"}", "#!/bin/sh\n",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>",
    "café naïve façade résumé Ångström", "Straße Größe", "Ελληνικά κείμενο",
    "Русский текст, съешь же ещё этих мягких булок.", "עברית מימין לשמאל",
    "العربية نص", "हिन्दी पाठ", "中文文本测试", "日本語のテキストです。", "한국어 텍스트",
    "ภาษาไทย", "e\u0301 combining a\u0308", "\u0301x", "emoji 😀👍🏽 👨‍👩‍👧", "😀😀 😀",
    "\u00a0nbsp\u00a0", "a\u3000b", "x\u2028y", "zero\u200bwidth",
    "https://example.com/path?q=1&r=2#frag", "user@example.org", "#hashtag @mention $100 50%",
    "C:\\Windows\\System32", "~/.cache/vtc/llama.cpp", "x^2 + y^2 = z^2; ∀x∈ℝ: x² ≥ 0",
    "“smart quotes” ‘single’ — em–dash … ellipsis", "«guillemets» ¿qué? ¡sí!",
    "a" * 60, "ab" * 30, "The the THE tHe", " .x", " .\n", ".Hello", "\tHello", "\nHello",
    "1Hello", "Hello1", " 1", "  1", "a 1 b", "x\n1", "the year 1999.",
    "000123456789", "12:00 99 bottles", "1299", "9912", "123 456 789 000", "x123", " 123",
    "zyzzyva", " zyzzyva", "Zyzzyva zyzzyvas zyzzyva.", "'zyzzyva", "\tzyzzyva",
]

rng = random.Random(20261207)
pieces = [w for s in base for w in s.split(" ") if w] + [" ", "  ", "\n", "\t", "\r\n",
                                                         "'s", "'LL", "123", "4567"]
strings = list(base)
while len(strings) < 230:
    n = rng.randint(1, 10)
    s = ""
    for _ in range(n):
        s += rng.choice(pieces) + rng.choice(["", " ", " ", "  ", "\n", "", "\r\n", "\t"])
    strings.append(s)

kept = [s for s in strings if not missing & set(s.encode("utf-8"))]
print(f"{len(strings) - len(kept)} strings left out (a byte without a token)", file=sys.stderr)


def run(path, text):
    with tempfile.NamedTemporaryFile("wb", delete=False) as f:
        f.write(text.encode("utf-8"))
        name = f.name
    try:
        args = [tokenize, "-m", path, "-f", name, "--ids", "--log-disable", "--no-escape"]
        r = subprocess.run(args, capture_output=True, check=True)
    finally:
        os.unlink(name)
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


cases = []
for pre in PRES:
    for i, s in enumerate(kept):
        cases.append({"pre": pre, "text": s, "ids": run(paths[pre], s)})
    print(f"{pre}: {len(kept)} strings", file=sys.stderr)

build = open(os.path.join(home, "llama.cpp/BUILD_INFO.txt")).readline().strip()
with open(out_path, "w") as f:
    json.dump({"source": "llama-tokenize of llama.cpp (" + build + ")",
               "model": "SmolLM2-135M-Instruct.Q4_1.gguf's vocabulary and merges, with "
                        "vocab_changes applied and tokenizer.ggml.pre replaced by each case's \"pre\"",
               "vocab_changes": {"tokens": {str(i): t for i, t in sorted(renamed.items())},
                                 "dropped_merges": dropped},
               "cases": cases}, f, ensure_ascii=False, indent=0)
print(f"\nwrote {out_path}: {len(cases)} cases", file=sys.stderr)
