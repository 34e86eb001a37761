#!/usr/bin/env bash
# llamacpp-logits.sh: build (if missing or older than its source) and run llama-vtc-logits,
# the reference-logits program in scripts/llamacpp_logits.cpp (llama.cpp's public API only).
#
#     scripts/llamacpp-build.sh                          # once: llama.cpp's static libraries
#     scripts/llamacpp-logits.sh MODEL.gguf IN.json OUT.json
#
# IN.json / OUT.json formats and the run settings (one batch for the prompt, greedy
# generation, flash attention off, F32 KV cache, no repacking) are described at the top of
# scripts/llamacpp_logits.cpp.
#
# The binary is compiled with g++ -O2 -std=c++17 against the static libraries in
# $LLAMACPP_DIR/build-<ver> (src/libllama.a, ggml/src/libggml.a, libggml-cpu.a,
# libggml-base.a; OpenMP, as llama.cpp was built with GGML_OPENMP=ON) and written to
# $LLAMACPP_DIR/bin/llama-vtc-logits. LLAMACPP_DIR defaults to
# ${VTC_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/vtc}/llama.cpp, as in scripts/llamacpp-build.sh.
# Env: LLAMACPP_DIR, LLAMA_CPP_PYTHON_VERSION (default 0.3.36), CXX (default g++),
#      VTC_LLAMA_THREADS (default 2), VTC_LLAMA_VERBOSE=1 for llama.cpp's info log.
# Runs under `nice -n 19` (the machine is shared).
set -euo pipefail

VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
. "$(dirname "${BASH_SOURCE[0]}")/vtc-home.sh"
DIR=${LLAMACPP_DIR:-$vtc_home/llama.cpp}
BUILD=$DIR/build-$VERSION
LLAMA_SRC=$DIR/src/llama_cpp_python-$VERSION/vendor/llama.cpp
SRC_CPP=$(cd "$(dirname "$0")" && pwd)/llamacpp_logits.cpp
BIN=$DIR/bin/llama-vtc-logits

log() { printf '[llamacpp-logits] %s\n' "$*" >&2; }

LIBS=("$BUILD/src/libllama.a" "$BUILD/ggml/src/libggml.a" "$BUILD/ggml/src/libggml-cpu.a"
      "$BUILD/ggml/src/libggml-base.a")
for l in "${LIBS[@]}"; do
    [[ -f $l ]] || { log "$l missing: run scripts/llamacpp-build.sh first"; exit 1; }
done

rebuild=0
[[ -x $BIN && $BIN -nt $SRC_CPP ]] || rebuild=1
for l in "${LIBS[@]}"; do [[ $rebuild == 1 || $l -nt $BIN ]] && rebuild=1; done
if [[ $rebuild == 1 ]]; then
    log "compiling $SRC_CPP -> $BIN"
    mkdir -p "$DIR/bin"
    nice -n 19 "${CXX:-g++}" -std=c++17 -O2 -o "$BIN.tmp" "$SRC_CPP" \
        -I"$LLAMA_SRC/include" -I"$LLAMA_SRC/ggml/include" -I"$LLAMA_SRC/vendor" \
        "${LIBS[@]}" -fopenmp -lpthread -ldl -lm
    mv "$BIN.tmp" "$BIN"
fi

exec nice -n 19 "$BIN" "$@"
