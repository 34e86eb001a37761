#!/usr/bin/env python3
"""Write crates/vtc-model/tests/data/gemma3-llamacpp-q4_k_m.json and
gemma3-llamacpp-f32.json: llama.cpp's logits for Gemma 3 270M on five prompts, so VTC's
Gemma 3 forward pass is checked against an independent implementation.

    scripts/llamacpp-build.sh                                 # llama.cpp b11312 (static libs)
    python3 scripts/gemma3_logits_reference.py [GEMMA_Q4_K_M.gguf]

GEMMA_Q4_K_M.gguf defaults to $VTC_HOME/gemma-3-270m-q4_k_m.gguf (VTC_HOME as in
scripts/llamacpp-build.sh: VTC_HOME, else $XDG_CACHE_HOME/vtc, else ~/.cache/vtc). Needs only
the Python standard library here (the logits come from scripts/llamacpp-logits.sh, which
compiles scripts/llamacpp_logits.cpp against llama.cpp); the F32 model is made once with

    llama-quantize --allow-requantize gemma-3-270m-q4_k_m.gguf \
        $VTC_HOME/llama.cpp/models/gemma-3-270m-q4_k_m-dequant-f32.gguf F32

(every tensor dequantized to f32 by llama.cpp: the same weights as the Q4_K_M file, so the two
references differ only by the arithmetic, quantized dot products vs f32 ones).

Prompts (all given as text, tokenized by llama.cpp with BOS and special-token parsing):
English prose, Python code, a numbered list with numbers, a French sentence, and a long prompt
(several paragraphs, 678 tokens with BOS) that is longer than Gemma 3's 512-token sliding
window, so the SWA layers' mask matters (in llama.cpp a query at position i sees key j iff
0 <= i - j < 512 on the sliding layers; every 6th layer is global).

Settings (see scripts/llamacpp_logits.cpp): the prompt as one batch with logits for every
position, then greedy generation (argmax, lowest id on ties, no stop at EOS); flash attention
off, F32 KV cache, no weight repacking, n_ctx = n_batch = n_ubatch = prompt + n_predict rounded
up to 256, swa_full (b11312's default; with n_ubatch = n_ctx the SWA cache would be n_ctx cells
anyway). q4_k_m: n_predict 24, top_k 8; f32: n_predict 16, top_k 8; no full logits rows
(Gemma's vocabulary is 262,144).

Each file: {"model", "llama_cpp", "kv_cache", "n_predict", "top_k", "n_vocab", "cases":
[{"name", "text", "n_prompt", "tokens" (prompt + generated), "top" ([[id, logit] x 8] per fed
position), "margin" (top1 - top2 per position)}]}; rows are for positions 0 .. n_prompt +
n_predict - 1 (the last generated token is fed too).

The script prints, per prompt, whether the Q4_K_M and F32 greedy continuations agree (over the
first 16 tokens). Result of the committed run (llama.cpp b11312, AVX2, 2 threads): see the
README entry in crates/vtc-model/tests/data/README.md.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "crates", "vtc-model", "tests", "data")

if os.environ.get("VTC_HOME"):
    home = os.environ["VTC_HOME"]
elif os.environ.get("XDG_CACHE_HOME", "").startswith("/"):
    home = os.path.join(os.environ["XDG_CACHE_HOME"], "vtc")
else:
    home = os.path.expanduser("~/.cache/vtc")
llamacpp_dir = os.environ.get("LLAMACPP_DIR") or os.path.join(home, "llama.cpp")

q4 = sys.argv[1] if len(sys.argv) > 1 else os.path.join(home, "gemma-3-270m-q4_k_m.gguf")
f32 = os.path.join(llamacpp_dir, "models", "gemma-3-270m-q4_k_m-dequant-f32.gguf")

LONG = """\
The old lighthouse stood at the end of a narrow spit of rock, where the sea had been \
working patiently for a thousand years to separate it from the mainland. Its keeper, a man \
named Tobias Fenwick, had lived there for thirty-one winters. He kept a logbook in which he \
recorded, every evening, the direction of the wind, the height of the swell, the number of \
ships that had passed, and one sentence about something he had noticed that day. Most of \
the sentences were about birds. Some were about the colour of the water before a storm, \
which he described as "the green of an old bottle held up to a candle."

In the spring of the year the railway reached the town, a young surveyor arrived with a \
theodolite, a notebook of his own, and instructions to determine whether the lighthouse \
could be replaced by an automatic lamp. He stayed for nine days. On the first day he \
measured the tower: eighty-four feet from the foundation stone to the gallery rail, with \
one hundred and twelve steps in the spiral stair. On the second day he measured the \
distance to the nearest reef, and on the third he measured the keeper, silently, while \
they ate a supper of bread, smoked fish and tea.

"You will write that I am not necessary," said Tobias, on the fourth evening.

"I will write what I find," said the surveyor. "That is all I am paid to do."

The keeper nodded and handed him the logbook. The surveyor read it by the light of the \
great lamp, turning the pages slowly. There were entries about fog that arrived in the \
afternoon and left before midnight, about a schooner that had signalled for help in 1871, \
about a seal that had slept on the landing stage for eleven days in a row. There was an \
entry about the surveyor himself: "A young man came today who counts everything and sees \
very little. Perhaps he will learn."

On the fifth day it rained, and the two men stayed indoors. The surveyor explained how the \
automatic lamps worked: a clockwork mechanism, a reservoir of oil, a flashing shutter that \
could run for a month without attention. Tobias asked what the lamp would do if a ship ran \
aground in the night and the crew needed someone to row out to them. The surveyor did not \
answer, because there was no answer in his instructions.

On the sixth and seventh days the weather cleared. They walked along the rocks at low tide \
and the keeper showed him the places where wrecks had broken apart, the iron ribs of a \
collier still visible beneath the weed. The surveyor began, without quite deciding to, to \
write sentences in his notebook that were not measurements. He wrote about the way the \
light swept across the water, about the gulls, about the sound the wind made in the \
gallery rail, a low note like someone humming through closed lips.

When he left, on the morning of the ninth day, he shook the keeper's hand and said nothing \
about his report. It reached the harbour board in the autumn. It recommended, in careful \
language, that the lighthouse be kept as it was for the present, and it ended with a \
paragraph that the chairman read aloud twice, because nobody on the board could remember \
a surveyor ever writing anything like it before. The paragraph began:"""

CASES = [
    {"name": "prose", "text": "The history of the printing press begins in the fifteenth "
     "century, when a goldsmith in Mainz"},
    {"name": "code", "text": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"
     "    if n < 2:\n        return n\n"},
    {"name": "list", "text": "Shopping list:\n1. 12 eggs\n2. 3 loaves of bread\n3. 2.5 kg of "
     "potatoes\n4."},
    {"name": "french", "text": "Le petit village se trouve au bord de la rivière, et chaque "
     "matin les habitants"},
    {"name": "long", "text": LONG},
]


def run(model, n_predict, out_path):
    spec = {"n_predict": n_predict, "top_k": 8, "full": False, "cases": CASES}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f, ensure_ascii=False)
        in_path = f.name
    try:
        subprocess.run([os.path.join(HERE, "llamacpp-logits.sh"), model, in_path, out_path],
                       check=True)
    finally:
        os.unlink(in_path)
    with open(out_path) as f:
        return json.load(f)


def main():
    if not os.path.exists(f32):
        quantize = os.path.join(llamacpp_dir, "bin", "llama-quantize")
        os.makedirs(os.path.dirname(f32), exist_ok=True)
        print(f"making {f32}", file=sys.stderr)
        subprocess.run(["nice", "-n", "19", quantize, "--allow-requantize", q4, f32 + ".tmp",
                        "F32"], check=True, stdout=subprocess.DEVNULL)
        os.replace(f32 + ".tmp", f32)

    a = run(q4, 24, os.path.join(DATA, "gemma3-llamacpp-q4_k_m.json"))
    b = run(f32, 16, os.path.join(DATA, "gemma3-llamacpp-f32.json"))
    for ca, cb in zip(a["cases"], b["cases"]):
        assert ca["tokens"][:ca["n_prompt"]] == cb["tokens"][:cb["n_prompt"]]
        n = ca["n_prompt"]
        ga, gb = ca["tokens"][n:n + 16], cb["tokens"][n:]
        same = next((i for i, (x, y) in enumerate(zip(ga, gb)) if x != y), len(gb))
        print(f"{ca['name']:7s} n_prompt {n:4d}: q4_k_m and f32 greedy agree for "
              f"{same}/{len(gb)} tokens; min margin q4_k_m {min(ca['margin'][n - 1:]):.3f}, "
              f"f32 {min(cb['margin'][n - 1:]):.3f}")
        # Along the shared path (every position both files have the same fed tokens for):
        # how often the top-1 ids differ, and the largest |q4_k_m - f32| logit among ids in
        # both top-8 lists.
        rows = n + same if same < len(gb) else len(cb["top"])
        diff_top1 = sum(ca["top"][p][0][0] != cb["top"][p][0][0] for p in range(rows))
        dl = 0.0
        for p in range(rows):
            fa = dict((i, l) for i, l in ca["top"][p])
            dl = max([dl] + [abs(fa[i] - l) for i, l in cb["top"][p] if i in fa])
        print(f"        top-1 differs at {diff_top1}/{rows} shared positions; "
              f"max |logit diff| among shared top-8 ids {dl:.3f}")
    long_case = next(c for c in a["cases"] if c["name"] == "long")
    assert long_case["n_prompt"] > 600, long_case["n_prompt"]


if __name__ == "__main__":
    main()
