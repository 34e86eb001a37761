#!/usr/bin/env bash
# llamacpp-build.sh: build llama.cpp's `llama-bench`, `llama-quantize`, `llama-tokenize` and
# `llama-server` (CPU backend only; LLAMACPP_TARGETS overrides the list),
# so VTC can be compared with llama.cpp on the same machine and the same model.
#
# Where the source comes from: this machine only reaches package registries, so the
# llama.cpp tree is the one vendored in the PyPI sdist of `llama-cpp-python`
# (vendor/llama.cpp). The version is pinned below together with the sdist's sha256 and the
# upstream llama.cpp commit / build number it vendors:
#
#   llama-cpp-python 0.3.36  ->  ggml-org/llama.cpp@0c1e57098 (release b11312),
#                               ggml 0.25.3
#
# The commit is read from the sdist's CHANGELOG.md ("update llama.cpp to
# ggml-org/llama.cpp@<sha>"). The sdist has no .git, so llama.cpp's own cmake would report
# build_commit "unknown" and build_number 0; we pass both in with -DLLAMA_BUILD_COMMIT /
# -DLLAMA_BUILD_NUMBER so `llama-bench` prints them. The build number (b11312) is not in the
# sdist: it comes from public references to that release tag and can't be checked offline.
# (ggml's own cmake runs `git rev-parse` on the vendored tree; the sdist ships a partial
# .git, so it prints "ggml commit: 0c1e570-dirty". That string is only ggml's version
# string. The "dirty" comes from files missing from the sdist, not from local changes.)
#
# How: the sdist is fetched with `pip download --no-binary llama-cpp-python --no-deps` (pip
# builds the package metadata in an isolated env, which takes about 30 s; nothing is
# compiled then). It is checked against its sha256 and unpacked, then configured with
# GGML_NATIVE=ON (-march=native: on an AVX2 CPU the build uses AVX2/FMA/F16C), no GPU
# backends, no OpenSSL/HTTP, static libraries, and only the two targets are built
# (`nice -n 19`, JOBS=2 by default, because the machine is shared). If no cmake is on PATH,
# a pinned cmake wheel is installed from PyPI into a private venv in the cache dir. Nothing
# is installed system-wide.
#
# Idempotent: a second run re-uses the sdist, the source tree and the build dir. cmake only
# rebuilds what changed, so a second run takes seconds.
#
# Layout (LLAMACPP_DIR, default ${VTC_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/vtc}/llama.cpp,
# the same cache dir as the VTC models; see crates/vtc-import/src/fetch.rs, vtc_home()):
#   sdist/llama_cpp_python-<ver>.tar.gz   the downloaded sdist
#   src/llama_cpp_python-<ver>/            unpacked; llama.cpp is in vendor/llama.cpp
#   build-<ver>/                           cmake build dir (binaries in build-<ver>/bin)
#   venv/                                  only if cmake had to be installed
#   bin/llama-bench, bin/llama-quantize    symlinks to the current build
#   BUILD_INFO.txt                         versions, flags and the CPU features used
#
# Usage:  scripts/llamacpp-build.sh            # prints the llama-bench and llama-quantize paths last
# Env:    LLAMACPP_DIR, JOBS (default 2), LLAMA_CPP_PYTHON_VERSION (+ LLAMA_CPP_PYTHON_SHA256,
#         LLAMACPP_BUILD_NUMBER for a version other than the pinned one),
#         CMAKE (a cmake binary to use).
# Then:   scripts/llamacpp-models.sh makes the Q8_0 / F32 GGUFs for the benchmarks.
set -euo pipefail

PINNED_VERSION=0.3.36
PINNED_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
PINNED_BUILD_NUMBER=11312
CMAKE_PIP_VERSION=3.31.10

VERSION=${LLAMA_CPP_PYTHON_VERSION:-$PINNED_VERSION}
if [[ $VERSION == "$PINNED_VERSION" ]]; then
    SHA256=${LLAMA_CPP_PYTHON_SHA256:-$PINNED_SHA256}
    BUILD_NUMBER=${LLAMACPP_BUILD_NUMBER:-$PINNED_BUILD_NUMBER}
else
    SHA256=${LLAMA_CPP_PYTHON_SHA256:-}
    BUILD_NUMBER=${LLAMACPP_BUILD_NUMBER:-0}
fi
JOBS=${JOBS:-2}

. "$(dirname "${BASH_SOURCE[0]}")/vtc-home.sh"
DIR=${LLAMACPP_DIR:-$vtc_home/llama.cpp}
mkdir -p "$DIR/sdist" "$DIR/src" "$DIR/bin"
DIR=$(cd "$DIR" && pwd)

log() { printf '[llamacpp-build] %s\n' "$*" >&2; }

# --- 1. the sdist ------------------------------------------------------------------------
SDIST=$DIR/sdist/llama_cpp_python-$VERSION.tar.gz
if [[ ! -f $SDIST ]]; then
    log "downloading llama-cpp-python==$VERSION sdist with pip into $DIR/sdist"
    tmp=$(mktemp -d "$DIR/sdist/.dl.XXXXXX")
    # --no-binary for this package only: `--no-binary :all:` would also force pip to build
    # the build dependencies (cmake, ninja) from source just to read the metadata.
    python3 -m pip download "llama-cpp-python==$VERSION" --no-binary llama-cpp-python \
        --no-deps -d "$tmp" >&2
    mv "$tmp/llama_cpp_python-$VERSION.tar.gz" "$SDIST"
    rm -rf "$tmp"
fi
actual_sha=$(sha256sum "$SDIST" | cut -d' ' -f1)
if [[ -n $SHA256 && $actual_sha != "$SHA256" ]]; then
    log "sha256 mismatch for $SDIST: got $actual_sha, want $SHA256"
    exit 1
fi

# --- 2. unpack ---------------------------------------------------------------------------
SRC=$DIR/src/llama_cpp_python-$VERSION
LLAMA_SRC=$SRC/vendor/llama.cpp
if [[ ! -f $SRC/.unpacked ]]; then
    log "unpacking $SDIST"
    rm -rf "$SRC"
    tar -xzf "$SDIST" -C "$DIR/src"
    touch "$SRC/.unpacked"
fi
[[ -f $LLAMA_SRC/CMakeLists.txt ]] || { log "no vendor/llama.cpp in $SRC"; exit 1; }
# The vendored commit: the sdist carries the submodule's git HEAD file (full sha), and its
# CHANGELOG names it too ("- feat: update llama.cpp to ggml-org/llama.cpp@0c1e57098" under
# the first "## [x.y.z]"). Read as plain files; git is not run.
head_file=$SRC/.git/modules/vendor/llama.cpp/HEAD
FULL_COMMIT=$(grep -Eo '^[0-9a-f]{40}$' "$head_file" 2>/dev/null || true)
CL_COMMIT=$(awk '/^## \[[0-9]/{n++} n==1 && match($0, /llama\.cpp@[0-9a-f]+/) {
             print substr($0, RSTART+10, RLENGTH-10); exit }' "$SRC/CHANGELOG.md")
if [[ -n $FULL_COMMIT && -n $CL_COMMIT && $FULL_COMMIT != "$CL_COMMIT"* ]]; then
    log "warning: vendor HEAD $FULL_COMMIT does not match CHANGELOG llama.cpp@$CL_COMMIT"
fi
COMMIT=${FULL_COMMIT:0:9}   # 9 hex digits, as in the CHANGELOG and the b<N>-<sha> tags
COMMIT=${COMMIT:-${CL_COMMIT:-unknown}}

# --- 3. cmake ----------------------------------------------------------------------------
cmake_ok() {  # cmake >= 3.14 (llama.cpp's minimum)
    local v
    v=$("$1" --version 2>/dev/null | awk 'NR==1{print $3}') || return 1
    [[ -n $v ]] && printf '3.14\n%s\n' "$v" | sort -V -C
}
if [[ -n ${CMAKE:-} ]]; then
    :
elif command -v cmake >/dev/null && cmake_ok "$(command -v cmake)"; then
    CMAKE=$(command -v cmake)
elif [[ -x $DIR/venv/bin/cmake ]] && cmake_ok "$DIR/venv/bin/cmake"; then
    CMAKE=$DIR/venv/bin/cmake
else
    log "no cmake found; installing cmake==$CMAKE_PIP_VERSION from PyPI into $DIR/venv"
    python3 -m venv "$DIR/venv"
    "$DIR/venv/bin/python" -m pip install --quiet "cmake==$CMAKE_PIP_VERSION" >&2
    CMAKE=$DIR/venv/bin/cmake
fi
cmake_ok "$CMAKE" || { log "$CMAKE is not a usable cmake (need >= 3.14)"; exit 1; }
log "cmake: $CMAKE ($("$CMAKE" --version | head -1))"

# --- 4. configure and build --------------------------------------------------------------
BUILD=$DIR/build-$VERSION
CMAKE_FLAGS=(
    -DCMAKE_BUILD_TYPE=Release
    -DBUILD_SHARED_LIBS=OFF          # self-contained binaries
    -DGGML_NATIVE=ON                 # -march=native (AVX2/FMA/F16C where the CPU has them)
    -DGGML_CPU=ON
    -DGGML_BACKEND_DL=OFF
    -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_OPENCL=OFF -DGGML_SYCL=OFF -DGGML_HIP=OFF
    -DGGML_METAL=OFF -DGGML_RPC=OFF -DGGML_BLAS=OFF
    -DGGML_OPENMP=ON -DGGML_OPENMP_FETCH=OFF
    -DLLAMA_OPENSSL=OFF              # (LLAMA_CURL is gone in this version)
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF
    -DLLAMA_BUILD_COMMIT="$COMMIT"
    -DLLAMA_BUILD_NUMBER="$BUILD_NUMBER"
)
if [[ ! -f $BUILD/CMakeCache.txt || ! -f $BUILD/.configured ]] \
   || [[ $(cat "$BUILD/.configured") != "${CMAKE_FLAGS[*]}" ]]; then
    log "configuring $LLAMA_SRC -> $BUILD"
    rm -f "$BUILD/.configured"
    nice -n 19 "$CMAKE" -S "$LLAMA_SRC" -B "$BUILD" "${CMAKE_FLAGS[@]}" >&2
    printf '%s' "${CMAKE_FLAGS[*]}" > "$BUILD/.configured"
fi

# llama-tokenize is the tokenizer reference (issue 18), llama-server the serving one (issue
# 19); ggml-base's static library holds the reference quantizers (scripts/kquant_fixture.sh).
TARGETS=(${LLAMACPP_TARGETS:-llama-bench llama-quantize llama-tokenize llama-server})
log "building ${TARGETS[*]} (nice -n 19, -j$JOBS)"
start=$(date +%s)
nice -n 19 "$CMAKE" --build "$BUILD" --config Release -j "$JOBS" --target "${TARGETS[@]}" >&2
log "build step took $(( $(date +%s) - start )) s"

BENCH=$BUILD/bin/llama-bench
QUANT=$BUILD/bin/llama-quantize
for t in "${TARGETS[@]}"; do
    [[ -x $BUILD/bin/$t ]] || { log "$t missing in $BUILD/bin"; exit 1; }
    ln -sfn "$BUILD/bin/$t" "$DIR/bin/$t"
done

# --- 5. record what was built ------------------------------------------------------------
native_flags=$(grep -o -- '-march=native' "$BUILD/CMakeCache.txt" "$BUILD"/ggml/src/CMakeFiles/ggml-cpu.dir/flags.make 2>/dev/null | head -1 | cut -d: -f2 || true)
# What -march=native turns on here (the compiler's own view of this CPU).
cpu_feats=$(echo | "${CC:-cc}" -march=native -dM -E - 2>/dev/null \
    | grep -oE '__(AVX2|AVX512F|AVX|FMA|F16C|SSE3|SSSE3|SSE4_1|SSE4_2|BMI2|AVXVNNI)__' \
    | tr -d _ | sort -u | tr '\n' ' ' || true)
{
    echo "llama-cpp-python: $VERSION (sdist sha256 $actual_sha)"
    echo "llama.cpp commit: ${FULL_COMMIT:-$COMMIT}  build number: $BUILD_NUMBER (llama-bench: build_commit $COMMIT)"
    echo "ggml version:     $(awk '/set\(GGML_VERSION_(MAJOR|MINOR|PATCH)/{gsub(/\)/,"",$2); printf "%s%s", s, $2; s="."}' "$LLAMA_SRC/ggml/CMakeLists.txt")"
    echo "cmake:            $("$CMAKE" --version | head -1)"
    echo "compiler:         $(grep '^CMAKE_CXX_COMPILER:' "$BUILD/CMakeCache.txt" | cut -d= -f2) ($(c++ --version | head -1))"
    echo "cpu:              $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "native features:  ${cpu_feats:-?} ${native_flags:+($native_flags)}"
    echo "cmake flags:      ${CMAKE_FLAGS[*]}"
    echo "llama-bench:      $BENCH"
    echo "llama-quantize:   $QUANT"
} > "$DIR/BUILD_INFO.txt"
cat "$DIR/BUILD_INFO.txt" >&2

echo "$BENCH"
echo "$QUANT"
