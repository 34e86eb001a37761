#!/usr/bin/env python3
"""Reference dequantizations by gguf-py (an implementation independent of ggml's C and
of VTC) for crates/vtc-import/tests/dequant_gguf_py.rs.

Writes, into crates/vtc-import/tests/data/:
  * kquant-blocks.gguf: one 2-row tensor of 2 blocks per row for each block type
    (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K), random quant bytes under awkward
    f16 fields (negative, subnormal, the largest finite, zero, tiny minimums);
  * gguf-py-dequant.json: for every tensor of that file, gguf-py's dequantized values
    as f32 bit patterns; and for every block-quantized tensor of the Gemma 3 270M
    Q4_K_M GGUF (given as argv[1]), the sha256 of gguf-py's dequantized f32 values
    (little-endian), so the real file is checked without committing its 250 MB.

Usage: python3 scripts/gguf_dequant_fixture.py ~/.cache/vtc/gemma-3-270m-q4_k_m.gguf
(needs `pip install gguf==0.19.0 numpy`).
"""
import hashlib
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "vtc-import", "tests", "data")
TYPES = [T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q4_K, T.Q5_K, T.Q6_K]
# Offset of the f16 fields in a block, and how many: Q6_K has d last.
FIELDS = {T.Q8_0: (0, 1), T.Q4_0: (0, 1), T.Q4_1: (0, 2), T.Q5_0: (0, 1), T.Q5_1: (0, 2),
          T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208, 1)}
AWKWARD = [1.0, -0.5, 65504.0, 6e-8, 0.0, -3.0e-5, 0.0625, -65504.0]


def synthetic(rng):
    blocks = {}
    for t in TYPES:
        elems, nbytes = gguf.GGML_QUANT_SIZES[t]
        rows, per_row = 2, 2
        raw = rng.integers(0, 256, size=(rows * per_row, nbytes), dtype=np.uint8)
        at, nf = FIELDS[t]
        for b in range(rows * per_row):
            for k in range(nf):
                v = np.float16(AWKWARD[(b * nf + k + int(t)) % len(AWKWARD)])
                raw[b, at + 2 * k: at + 2 * k + 2] = np.frombuffer(v.tobytes(), dtype=np.uint8)
        blocks[t] = (raw.reshape(rows, per_row * nbytes), rows, per_row * elems)
    return blocks


def main():
    gemma = sys.argv[1]
    rng = np.random.default_rng(20261207)
    blocks = synthetic(rng)
    path = os.path.join(HERE, "kquant-blocks.gguf")
    w = gguf.GGUFWriter(path, "vtc-fixture")
    for t, (raw, rows, cols) in blocks.items():
        w.add_tensor(t.name.lower(), raw, raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    out = {"generator": "scripts/gguf_dequant_fixture.py", "gguf_version": gguf.__version__ if hasattr(gguf, "__version__") else "0.19.0",
           "synthetic": {}, "gemma3": {}}
    r = gguf.GGUFReader(path)
    for t in r.tensors:
        vals = dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32).reshape(-1)
        out["synthetic"][t.name] = {"type": t.tensor_type.name, "bits": [int(x) for x in vals.view(np.uint32)]}
    g = gguf.GGUFReader(gemma)
    for t in g.tensors:
        if t.tensor_type not in TYPES:
            continue
        vals = dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32).reshape(-1)
        out["gemma3"][t.name] = {"type": t.tensor_type.name, "n": int(vals.size),
                                 "sha256": hashlib.sha256(vals.astype("<f4").tobytes()).hexdigest()}
    with open(os.path.join(HERE, "gguf-py-dequant.json"), "w") as f:
        json.dump(out, f, indent=0)
        f.write("\n")
    print(f"{len(out['synthetic'])} synthetic tensors, {len(out['gemma3'])} Gemma tensors")


if __name__ == "__main__":
    main()
