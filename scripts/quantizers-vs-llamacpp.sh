#!/usr/bin/env bash
# quantizers-vs-llamacpp.sh: `vtc convert --dtype T` of the SmolLM2 Q4_1 GGUF against
# `llama-quantize --allow-requantize --pure` of the same file to the same type (converted
# with `--dtype keep`), tensor by tensor: every matrix both give the same type (the K
# types' fallbacks included) must have the same bytes.
#
#   scripts/quantizers-vs-llamacpp.sh [TYPES...]     (default: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K)
#
# Needs scripts/llamacpp-build.sh run first (llama-quantize) and the default model in
# $VTC_HOME (any `vtc` command fetches it). The tied output head differs by design in
# --pure mode (llama.cpp quantizes it like the rest; VTC gives it Q8_0 / Q6_K) and is
# reported as skipped.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
home=${VTC_HOME:-$HOME/.cache/vtc}
quantize=$home/llama.cpp/bin/llama-quantize
src=$home/SmolLM2-135M-Instruct.Q4_1.gguf
cargo build --release -q -p vtc-cli --manifest-path "$root/Cargo.toml"
vtc=$root/target/release/vtc
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K)
fail=0
for T in "${types[@]}"; do
    t=$(echo "$T" | tr 'A-Z' 'a-z')
    "$quantize" --allow-requantize --pure "$src" "$tmp/ref.gguf" "$T" 1 > "$tmp/quantize.log" 2>&1
    "$vtc" convert "$tmp/ref.gguf" "$tmp/ref.tvl" --dtype keep > /dev/null
    "$vtc" convert "$src" "$tmp/ours.tvl" --dtype "$t" > /dev/null
    python3 - "$vtc" "$tmp/ours.tvl" "$tmp/ref.tvl" "$T" <<'PY' || fail=1
import subprocess, sys
vtc, ours, ref, T = sys.argv[1:]
def table(p):
    out = subprocess.run([vtc, "inspect", p], capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 7 and f[2].startswith("blocks"):
            rows[f[0]] = (f[1], int(f[4]), int(f[5]))
    return rows
a, b = table(ours), table(ref)
da, db = open(ours, "rb").read(), open(ref, "rb").read()
same, diff, skipped, types = 0, [], [], {}
for name, (ty, off, n) in a.items():
    if name not in b or b[name][0] != ty:
        skipped.append(name)
        continue
    types[ty] = types.get(ty, 0) + 1
    _, off2, n2 = b[name]
    if da[off:off + n] == db[off2:off2 + n2]:
        same += 1
    else:
        diff.append(name)
print(f"{T}: {same} matrices bit-identical {types}, {len(diff)} differ, skipped {skipped}")
sys.exit(1 if diff or not same else 0)
PY
done
exit $fail
