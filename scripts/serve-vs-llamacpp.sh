#!/usr/bin/env bash
# vtc serve and llama-server side by side under the same load (scripts/serve-load.py),
# one after the other in one run, on loopback. Both get the same thread count and 8
# slots. Prints the JSON lines of serve-load.py (label vtc / llama-server).
#
#   scripts/serve-vs-llamacpp.sh [THREADS=2] [ROUNDS=2]
# Env: VTC_MODEL (default ~/.cache/vtc/smollm2-135m-instruct.q4_1.tvl), GGUF (default
# ~/.cache/vtc/SmolLM2-135M-Instruct.Q4_1.gguf), LLAMA_SERVER (default the build of
# scripts/llamacpp-build.sh), LLAMA_EXTRA (e.g. "--repack 0" on AMX CPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
rounds=${2:-2}
model=${VTC_MODEL:-$HOME/.cache/vtc/smollm2-135m-instruct.q4_1.tvl}
gguf=${GGUF:-$HOME/.cache/vtc/SmolLM2-135M-Instruct.Q4_1.gguf}
llama=${LLAMA_SERVER:-$(ls -d "$HOME"/.cache/vtc/llama.cpp/build-*/bin/llama-server | tail -1)}
port_vtc=18181
port_llama=18182

wait_up() {
  for _ in $(seq 1 300); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$1/health', timeout=1)" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  echo "server on port $1 did not come up" >&2
  return 1
}

cargo build --release -q -p vtc-cli
echo "# uptime: $(uptime)" >&2
./target/release/vtc serve --model "$model" --port $port_vtc --slots 8 --ctx 2048 -t "$threads" 2>/tmp/serve-vtc.log &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
wait_up $port_vtc
python3 scripts/serve-load.py --url http://127.0.0.1:$port_vtc --label vtc --rounds "$rounds"
kill -TERM $pid; wait $pid || true

# shellcheck disable=SC2086
"$llama" -m "$gguf" --port $port_llama -np 8 -c 8192 -t "$threads" ${LLAMA_EXTRA:-} >/tmp/serve-llama.log 2>&1 &
pid=$!
wait_up $port_llama
python3 scripts/serve-load.py --url http://127.0.0.1:$port_llama --label llama-server --rounds "$rounds"
kill -TERM $pid; wait $pid || true
echo "# uptime: $(uptime)" >&2
