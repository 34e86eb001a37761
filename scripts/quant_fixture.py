#!/usr/bin/env python3
"""Write crates/tvl-format/tests/data/llamacpp-quant-blocks.json: f32 blocks and their
Q8_0 / Q4_0 / Q4_1 encodings by gguf-py's quantizers (a numpy port of llama.cpp's
reference `quantize_row_*_ref`), so the Rust quantizers are checked against an
implementation that is not ours.

    pip install gguf==0.19.0 numpy
    python3 scripts/quant_fixture.py
"""
import json
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

rng = np.random.default_rng(20261127)
blocks = []
blocks += list(rng.standard_normal((64, 32)).astype(np.float32))
blocks += list((rng.random((32, 32)) * 2 - 1).astype(np.float32) * np.float32(1e-3))
blocks += list((rng.standard_normal((32, 32)) * 50).astype(np.float32))
# Exact ties for Q8_0 (amax 127 -> scale 1) and small integers.
tie = np.zeros(32, np.float32)
tie[0] = 127.0
tie[1:9] = [0.5, 1.5, -2.5, -0.5, 2.5, 126.5, -126.5, 3.5]
blocks.append(tie)
blocks.append(rng.integers(-8, 8, 32).astype(np.float32))
blocks.append(np.zeros(32, np.float32))
blocks.append(np.full(32, 0.25, np.float32))
blocks.append(np.full(32, -3.0, np.float32))
neg = -np.abs(rng.standard_normal(32)).astype(np.float32)
blocks.append(neg)
blocks.append(np.abs(rng.standard_normal(32)).astype(np.float32))
x = np.stack(blocks).astype(np.float32)

out = {
    "source": "gguf-py 0.19.0 gguf.quants.quantize (llama.cpp reference quantizers)",
    "blocks": [[int(v) for v in row.view(np.uint32)] for row in x],
}
for name, t in [("q8_0", T.Q8_0), ("q4_0", T.Q4_0), ("q4_1", T.Q4_1)]:
    q = quants.quantize(x, t)
    out[name] = [bytes(row).hex() for row in q]

path = os.path.join(os.path.dirname(__file__), "..", "crates", "tvl-format", "tests", "data",
                    "llamacpp-quant-blocks.json")
with open(path, "w") as f:
    json.dump(out, f, indent=0)
print(f"wrote {len(blocks)} blocks to {os.path.normpath(path)}")
