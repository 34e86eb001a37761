#!/usr/bin/env bash
# Build scripts/quant_fixture_k.c against llama.cpp's libggml-base.a (from
# scripts/llamacpp-build.sh) and write crates/tvl-format/tests/data/llamacpp-quant-kblocks.json:
# the encodings of llama.cpp's own reference quantizers, checked bit for bit by
# crates/tvl-format/tests/quantizers.rs.
#
#   scripts/quant-fixture-k.sh            # LLAMACPP_VERSION=0.3.36 by default
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ver=${LLAMACPP_VERSION:-0.3.36}
cache=${VTC_LLAMACPP_CACHE:-$HOME/.cache/vtc/llama.cpp}
ggml=$cache/src/llama_cpp_python-$ver/vendor/llama.cpp/ggml
lib=$cache/build-$ver/ggml/src/libggml-base.a
[ -f "$lib" ] || { echo "no $lib: run scripts/llamacpp-build.sh first" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# -ffp-contract=off: the harness's own float arithmetic (the inputs) is not contracted
# either; the quantizers are libggml-base's, compiled for baseline x86-64 (no FMA).
cc -O2 -std=gnu11 -ffp-contract=off -I"$ggml/include" -I"$ggml/src" \
    "$root/scripts/quant_fixture_k.c" "$lib" -lm -lpthread -fopenmp -lstdc++ -o "$tmp/fixture"
out=$root/crates/tvl-format/tests/data/llamacpp-quant-kblocks.json
"$tmp/fixture" "$out"
echo "wrote $out ($(wc -c <"$out") bytes, $(grep -c '"case"' "$out") rows)"
