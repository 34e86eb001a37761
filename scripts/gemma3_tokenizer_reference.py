#!/usr/bin/env python3
"""Write crates/vtc-model/tests/data/gemma3-llama-tokenize.json: a few hundred varied
strings and the ids llama.cpp's `llama-tokenize` gives for them with the Gemma 3 270M
vocabulary (SentencePiece, 262,144 tokens, byte fallback, no dummy prefix, BOS added),
so VTC's tokenizer is checked against an independent implementation.

    scripts/llamacpp-build.sh            # builds llama-tokenize
    python3 scripts/gemma3_tokenizer_reference.py GEMMA.gguf

Each string is written to a file and tokenized with `llama-tokenize -f FILE --ids`
(the file is read verbatim; escapes are off with --no-escape), once with special
tokens parsed (llama-tokenize's default) and, for every fourth string, once with
`--no-parse-special`. Both runs add BOS, as the model asks. User-defined tokens (newline
and space runs, HTML tags) are split out in both modes; control tokens only when parsed.
"""
import json
import os
import random
import subprocess
import sys
import tempfile

gguf = sys.argv[1]
home = os.environ.get("VTC_HOME") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vtc")
tokenize = os.environ.get("LLAMA_TOKENIZE") or os.path.join(home, "llama.cpp/bin/llama-tokenize")
out_path = os.path.join(os.path.dirname(__file__), "..",
                        "crates/vtc-model/tests/data/gemma3-llama-tokenize.json")

base = [
    "", " ", "  ", "\n", "\n\n\n", "\t", " \t \n ", "a", "A", "Hello", "Hello world",
    " Hello world", "Hello world ", "Hello  world", "Hello   world\n", "hello\nworld",
    "The quick brown fox jumps over the lazy dog.",
    "Photosynthesis is the process",
    "It's 3:45 pm on 2026-12-07; pi = 3.14159265358979.",
    "1234567890 00 007 1,000,000 1e-9 -42 +7",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "fn main() {\n\tprintln!(\"{}\", x);\n}\n",
    "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
    "<table><tr><td>1</td><td>2</td></tr></table>",
    "<b>bold</b> <i>it</i> <s>strike</s> <code>x = 1</code>",
    "<h1>Title</h1>\n<div><span>a</span></div>",
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "<bos><eos><pad><unk><mask>", "<unused0><unused99>", "<start_of_image>",
    "<0x41> <0x0A> <0xFF>", "<", ">", "</", "<<>>", "< b >", "<b", "b>",
    "\u2581", "a\u2581b", "\u2581\u2581x",
    "café naïve façade résumé Ångström", "Straße Größe", "Ελληνικά κείμενο",
    "Русский текст, съешь же ещё этих мягких булок.", "עברית מימין לשמאל",
    "العربية نص", "हिन्दी पाठ", "中文文本测试", "日本語のテキストです。", "한국어 텍스트",
    "ภาษาไทย", "emoji 😀👍🏽🇫🇷 👨‍👩‍👧", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛", "\u00a0nbsp\u00a0", "zero\u200bwidth",
    "\u4e00\u9fff\U00020000\U0002a6d6", "\ue000\uf8ff private use", "\U0010fffd",
    "tab\tseparated\tvalues", "CRLF\r\nline\r\n", "trailing newline\n",
    "multiple\n\n\n\nnewlines", "spaces" + " " * 40 + "end", "\t" * 35,
    "a" * 100, "ab" * 50, "The the THE tHe", "don't won't can't I'm you're",
    "https://example.com/path?q=1&r=2#frag", "user@example.org", "#hashtag @mention $100 50%",
    "C:\\Windows\\System32", "~/.cache/vtc/llama.cpp", "x^2 + y^2 = z^2; ∀x∈ℝ: x² ≥ 0",
    "“smart quotes” ‘single’ — em–dash … ellipsis", "«guillemets» ¿qué? ¡sí!",
]

rng = random.Random(20261207)
pieces = [w for s in base for w in s.split(" ") if w] + [" ", "  ", "\n", "\t", "<b>", "</td>",
                                                         "<start_of_turn>", "<end_of_turn>"]
strings = list(base)
while len(strings) < 300:
    n = rng.randint(1, 12)
    s = ""
    for _ in range(n):
        s += rng.choice(pieces) + rng.choice(["", " ", " ", "  ", "\n", ""])
    strings.append(s)


def run(text, parse_special):
    with tempfile.NamedTemporaryFile("wb", delete=False) as f:
        f.write(text.encode("utf-8"))
        path = f.name
    try:
        args = [tokenize, "-m", gguf, "-f", path, "--ids", "--log-disable", "--no-escape"]
        if not parse_special:
            args.append("--no-parse-special")
        r = subprocess.run(args, capture_output=True, check=True)
    finally:
        os.unlink(path)
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


cases = []
for i, s in enumerate(strings):
    case = {"text": s, "ids": run(s, True)}
    if i % 4 == 0:
        case["ids_no_special"] = run(s, False)
    cases.append(case)
    print(f"{i + 1}/{len(strings)}", file=sys.stderr, end="\r")

build = open(os.path.join(home, "llama.cpp/BUILD_INFO.txt")).readline().strip()
with open(out_path, "w") as f:
    json.dump({"source": "llama-tokenize of llama.cpp (" + build + ")",
               "model": "gemma-3-270m-q4_k_m.gguf (sha256 a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818)",
               "cases": cases}, f, ensure_ascii=False, indent=0)
print(f"\nwrote {out_path}: {len(cases)} strings", file=sys.stderr)
