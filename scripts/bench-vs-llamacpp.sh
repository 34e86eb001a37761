#!/usr/bin/env bash
# bench-vs-llamacpp.sh: VTC and llama.cpp side by side, on this machine, in one run, on the
# same model (SmolLM2-135M-Instruct from the same Q4_1 GGUF), with llama-bench's workloads.
#
#   scripts/bench-vs-llamacpp.sh [-r ROUNDS] [-t "1 2"] [-d "q4_1 q8_0 f16 f32 q4_k_m"] [-p 64] [-n 128]
#                                [--busy] [-o results.jsonl]
#
# What runs: ROUNDS rounds (default 3); in each round, for every dtype and thread count,
# `llama-bench -m GGUF -p P -n N -t T -r 1 -o jsonl` and then
# `vtc bench -m TVL -p P -n N -t T --json`, back to back, so both engines see the same
# machine state (the machine is shared and noisy: interleaving is fairer than one engine's
# runs after the other's). The summary is the median over the rounds of each engine's
# tok/s, and the ratio VTC / llama.cpp.
#
#   pp P  = a prompt of P tokens processed as one batch (llama-bench: one decode call of P
#           random tokens; vtc: Session::prefill, batches of up to 64 tokens)
#   tg N  = N tokens generated one at a time from an empty cache
#
# Models: llama.cpp reads the GGUFs of scripts/llamacpp-models.sh (Q4_1 = the published
# file; Q8_0, F16, F32 and Q4_K_M = llama-quantize --allow-requantize of it); VTC reads the
# TVL conversions of the same Q4_1 GGUF that `vtc` itself uses (q4_1: lossless; q8_0:
# requantized by llama.cpp's rule; f16: dequantized and rounded; f32: dequantized), and for
# q4_k_m (`-d q4_k_m`) `vtc convert --dtype keep` of llama.cpp's own Q4_K_M GGUF, so both
# engines read the same bits; made on first use.
#
# AMX: on a CPU with AMX tiles (amx_tile in /proc/cpuinfo) llama.cpp build b11312
# segfaults in its AMX repacking path, so the script detects it and runs llama-bench
# with `--repack 0` there (and says so); elsewhere llama-bench runs with its defaults.
#
# VTC_BIN=path: the vtc binary to measure (default: a release build of this tree, built
# here), e.g. a build of the previous main for a before/after comparison.
#
# --busy: one busy process pinned to CPU 1 (`taskset -c 1 yes > /dev/null`) for the whole
# run, as an edge device running other work (issue 5's contention test).
#
# Needs: scripts/llamacpp-build.sh and scripts/llamacpp-models.sh run first (this script
# runs them if their outputs are missing), a release build of vtc (built here), python3.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3
THREADS="1 2"
DTYPES="q4_1 q8_0 f16 f32"
PROMPT=64
GEN=128
BUSY=0
OUT=""
while [[ $# -gt 0 ]]; do
    case $1 in
        -r) ROUNDS=$2; shift 2 ;;
        -t) THREADS=$2; shift 2 ;;
        -d) DTYPES=$2; shift 2 ;;
        -p) PROMPT=$2; shift 2 ;;
        -n) GEN=$2; shift 2 ;;
        -o) OUT=$2; shift 2 ;;
        --busy) BUSY=1; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

. "$(dirname "${BASH_SOURCE[0]}")/vtc-home.sh"
VTC_HOME=$vtc_home
LLAMACPP_DIR=${LLAMACPP_DIR:-$VTC_HOME/llama.cpp}
LLAMA_BENCH=$LLAMACPP_DIR/bin/llama-bench
MODELS=$LLAMACPP_DIR/models
[[ -x $LLAMA_BENCH ]] || scripts/llamacpp-build.sh >&2
[[ -e $MODELS/SmolLM2-135M-Instruct.F32.gguf && -e $MODELS/SmolLM2-135M-Instruct.F16.gguf \
   && -e $MODELS/SmolLM2-135M-Instruct.Q4_K_M.gguf ]] ||
    scripts/llamacpp-models.sh >&2
LLAMA_ARGS=()
if grep -qw amx_tile /proc/cpuinfo; then
    echo "this CPU has AMX: llama-bench runs with --repack 0 (its AMX path segfaults here)" >&2
    LLAMA_ARGS=(--repack 0)
fi

if [[ -n ${VTC_BIN:-} ]]; then
    VTC=$VTC_BIN
else
    cargo build --release -q -p vtc-cli
    VTC=target/release/vtc
fi
OUT=${OUT:-$(mktemp /tmp/bench-vs-llamacpp.XXXXXX.jsonl)}
: > "$OUT"

gguf_of() { case $1 in q4_k_m) echo Q4_K_M ;; q4_1) echo Q4_1 ;; q8_0) echo Q8_0 ;; f16) echo F16 ;; f32) echo F32 ;; *) echo "$1" | tr a-z A-Z ;; esac; }
tvl_of() {
    local tvl=$VTC_HOME/smollm2-135m-instruct.$1.tvl
    if [[ ! -e $tvl && $1 == q4_k_m ]]; then
        # llama.cpp's K-quant mix, kept tensor by tensor (lossless).
        "$VTC" convert "$MODELS/SmolLM2-135M-Instruct.Q4_K_M.gguf" "$tvl" --dtype keep >&2
    elif [[ ! -e $tvl ]]; then
        "$VTC" convert "$VTC_HOME/SmolLM2-135M-Instruct.Q4_1.gguf" "$tvl" --dtype "$1" >&2
    fi
    echo "$tvl"
}

BUSY_PID=""
cleanup() { [[ -n $BUSY_PID ]] && kill "$BUSY_PID" 2>/dev/null || true; }
trap cleanup EXIT
if [[ $BUSY == 1 ]]; then
    taskset -c 1 yes > /dev/null &
    BUSY_PID=$!
    echo "busy process $BUSY_PID pinned to CPU 1" >&2
fi

echo "vtc: $VTC" >&2
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq 1 "$ROUNDS"); do
    for d in $DTYPES; do
        gguf=$MODELS/SmolLM2-135M-Instruct.$(gguf_of "$d").gguf
        tvl=$(tvl_of "$d")
        for t in $THREADS; do
            echo "round $round: $d, $t thread(s)" >&2
            "$LLAMA_BENCH" -m "$gguf" -p "$PROMPT" -n "$GEN" -t "$t" -r 1 "${LLAMA_ARGS[@]}" -o jsonl 2>/dev/null |
                python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    test = "pp%d" % r["n_prompt"] if r["n_gen"] == 0 else "tg%d" % r["n_gen"]
    print(json.dumps({"engine": "llama.cpp", "round": int(sys.argv[1]), "dtype": sys.argv[2],
                      "threads": r["n_threads"], "test": test, "tok_s": r["avg_ts"],
                      "build": r["build_commit"]}))' "$round" "$d" >> "$OUT"
            "$VTC" bench -m "$tvl" -p "$PROMPT" -n "$GEN" -t "$t" --json 2>/dev/null |
                python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(json.dumps({"engine": "vtc", "round": int(sys.argv[1]), "dtype": sys.argv[2],
                      "threads": r["threads"], "test": r["test"], "tok_s": r["tok_s"],
                      "backend": r["backend"], "bandwidth_gb_s": r.get("bandwidth_gb_s"),
                      "max_step_ms": r.get("max_step_ms"), "median_step_ms": r.get("median_step_ms"),
                      "limit_tok_s": r.get("limit_tok_s"), "fraction_of_limit": r.get("fraction_of_limit")}))' "$round" "$d" >> "$OUT"
        done
    done
done

echo "results: $OUT" >&2
python3 - "$OUT" "$BUSY" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
busy = sys.argv[2] == "1"
key = lambda r: (r["dtype"], r["threads"], r["test"])
keys = sorted({key(r) for r in rows}, key=lambda k: (k[0], k[2], k[1]))
print(f"| model | test | threads | llama.cpp tok/s | VTC tok/s | VTC / llama.cpp | VTC of the limit (tg) |{' (busy core)' if busy else ''}")
print("|---|---|---|---|---|---|---|")
for k in keys:
    med = {}
    for eng in ("llama.cpp", "vtc"):
        v = [r["tok_s"] for r in rows if key(r) == k and r["engine"] == eng]
        med[eng] = (statistics.median(v), min(v), max(v)) if v else None
    l, v = med["llama.cpp"], med["vtc"]
    cell = lambda m: f"{m[0]:.1f} ({m[1]:.1f}-{m[2]:.1f})" if m else "-"
    ratio = f"{v[0] / l[0]:.2f}x" if l and v else "-"
    fr = [r["fraction_of_limit"] for r in rows
          if key(r) == k and r["engine"] == "vtc" and r.get("fraction_of_limit")]
    of_limit = f"{100 * statistics.median(fr):.0f}%" if fr and k[2].startswith("tg") else "-"
    print(f"| SmolLM2 {k[0]} | {k[2]} | {k[1]} | {cell(l)} | {cell(v)} | {ratio} | {of_limit} |")
EOF
