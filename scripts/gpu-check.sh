#!/usr/bin/env bash
# The GPU check in one command, on a machine with an NVIDIA GPU and a CUDA `torch` for python3 (no
# network needed): builds the addon against that torch into build/ (every core; with a CUDA
# compiler on the PATH the quantized layers' CUDA row kernels, native/kernels/quant_cuda.cu, are
# built in), runs the CUDA tests, then the benchmarks. Each step prints its time; the logs go to
# $OUT when it is set, else to ./gpu-check-out/. Every step is cut off so that the whole check ends
# within GPU_CHECK_BUDGET seconds (570).
#   bash scripts/gpu-check.sh
# Two ways, by what the machine has:
# - Node.js and this project's node_modules: the build through cmake-js, `vitest run test/cuda.test.ts
#   test/cuda-models.test.ts` (quantized LLaMA through those kernels and QLoRA included),
#   `npm run bench -- models --device cuda`, `npm run bench -- salmonn --device cuda`, the quantized
#   decoding bench on the GPU (bench/quant_cuda.cjs) and on this machine's CPU (`npm run bench --
#   quant`, 1.1B, with llama.cpp beside it when node-llama-cpp is installed).
# - Node.js alone (a lent machine, where node_modules cannot be brought): node-addon-api's headers
#   found by Node (node_modules/node-addon-api or NODE_PATH) and Node's own headers
#   (NODE_INCLUDE, or $npm_config_nodedir/include/node, or beside the node binary): the build with
#   plain CMake and Ninja, `node scripts/cuda-smoke.cjs cuda` (each model on the GPU against its CPU
#   result; the quantized LLaMA and a QLoRA step against transformers / peft's fixture) and the
#   GPU decoding bench, 1.1B and 7B shapes (bench/quant_cuda.cjs, beside PyTorch in bfloat16).
# - No Node.js on the machine: NODE_XZ names a Node.js binary compressed with xz (`xz -9e -c
#   "$(command -v node)"`, about 24 MB for Node 20), unpacked (Python's lzma) into a temporary folder
#   put first on the PATH.
# A step whose prerequisite is missing is skipped with a message saying what is missing.
# Exit status: 0 every step ran and passed; 1 a step failed; 2 no CUDA torch (nothing ran);
# 3 no step failed but some were skipped.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
LOGS=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$LOGS"
BUDGET=${GPU_CHECK_BUDGET:-570}
PY=${EMOTORCH_PYTHON:-python3}
START=$SECONDS
: >"$LOGS/summary.txt"
failed=0
skipped=0

say() { printf '%s\n' "$*" | tee -a "$LOGS/summary.txt"; }
skip() {  # skip NAME WHY…
  skipped=1
  local name=$1
  shift
  say "-- $name: skipped: $*"
}
# run NAME LOG CAP COMMAND…: COMMAND (a program or an exported function) with its output on the
# terminal and in $LOGS/LOG, cut off after CAP seconds or when the check's budget runs out, whichever
# comes first.
run() {
  local name=$1 log=$2 cap=$3
  shift 3
  local left=$((BUDGET - (SECONDS - START)))
  if [ "$left" -lt 20 ]; then
    skip "$name" "the check's ${BUDGET} s are spent"
    return 1
  fi
  local limit=$((cap < left ? cap : left)) t0=$SECONDS rc
  say "== $name (at most ${limit} s; log: $LOGS/$log)"
  timeout --kill-after=10 "$limit" bash -c '"$@"' bash "$@" 2>&1 | tee "$LOGS/$log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 0 ]; then
    say "-- $name: ok in $((SECONDS - t0)) s"
    return 0
  fi
  failed=1
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then say "-- $name: FAILED: cut off after $((SECONDS - t0)) s"
  else say "-- $name: FAILED (exit status $rc) after $((SECONDS - t0)) s"; fi
  return 1
}
# The steps that are more than one command (exported: run starts them in a new bash under timeout).
# shellcheck disable=SC2317  # (invoked indirectly, through run)
build_addon() {
  # configure every time: scripts/libtorch.js runs again, so a build/ configured against another
  # libtorch (a CPU one) switches to this one
  LIBTORCH="$LT" node_modules/.bin/cmake-js configure --log-level warn &&
    LIBTORCH="$LT" node_modules/.bin/cmake-js build --log-level warn -p "$(nproc)" &&
    readelf -d build/Release/emotorch.node | grep -E 'NEEDED.*(torch|c10)' &&
    if readelf -d build/Release/emotorch.node | grep -q 'libtorch_cuda.so'; then echo "OK: build/Release/emotorch.node links libtorch_cuda"
    else echo "build/Release/emotorch.node does not link libtorch_cuda"; false; fi
}
# shellcheck disable=SC2317
cuda_tests() {
  # the addon must see the device itself, or the tests would skip (and pass)
  node -e "const b = require('./build/Release/emotorch.node'), n = b.cudaDeviceCount();
    console.log('the addon: libtorch ' + b.versions().libtorch + ', ' + n + ' CUDA device(s)'); process.exit(n > 0 ? 0 : 1)" &&
    node_modules/.bin/vitest run test/cuda.test.ts test/cuda-models.test.ts
}
# shellcheck disable=SC2317
build_lean() {
  # plain CMake (no cmake-js): Node's headers given, node-addon-api's found by CMakeLists through Node
  rm -rf build/CMakeCache.txt build/CMakeFiles &&
    LIBTORCH="$LT" cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_JS_INC="$NODE_INC" ${CUDACXX:+-DCMAKE_CUDA_COMPILER="$CUDACXX"} &&
    cmake --build build -j "$(nproc)" &&
    if readelf -d build/Release/emotorch.node | grep -q 'libtorch_cuda.so'; then echo "OK: build/Release/emotorch.node links libtorch_cuda"
    else echo "build/Release/emotorch.node does not link libtorch_cuda"; false; fi
}
# shellcheck disable=SC2317
smoke() {
  node -e "const b = require('./build/Release/emotorch.node'), n = b.cudaDeviceCount();
    console.log('the addon: libtorch ' + b.versions().libtorch + ', ' + n + ' CUDA device(s)'); process.exit(n > 0 ? 0 : 1)" &&
    node scripts/cuda-smoke.cjs cuda
}
# shellcheck disable=SC2317
build_ts() { node_modules/.bin/tsc -p tsconfig.build.json && node scripts/esm-wrapper.js; }
export -f build_addon build_lean smoke cuda_tests build_ts

finish() {
  say "== total: $((SECONDS - START)) s; logs in $LOGS"
  if [ "$failed" -ne 0 ]; then exit 1; fi
  if [ "$skipped" -ne 0 ]; then exit 3; fi
  exit 0
}

# a Node.js binary brought compressed, where the machine has none
if ! command -v node >/dev/null && [ -n "${NODE_XZ:-}" ]; then
  NODE_DIR=$(mktemp -d)
  trap 'rm -rf "$NODE_DIR"' EXIT
  if "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$NODE_XZ" "$NODE_DIR/node" &&
    chmod +x "$NODE_DIR/node" && "$NODE_DIR/node" --version >/dev/null; then
    export PATH="$NODE_DIR:$PATH"
  else
    echo "NODE_XZ=$NODE_XZ: could not unpack a working node binary from it" | tee -a "$LOGS/summary.txt"
  fi
fi

# ---- the machine and its torch ----------------------------------------------------------------------
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout')"
  echo "cpus: $(nproc)"
  if command -v nvidia-smi >/dev/null; then nvidia-smi -L; else echo "nvidia-smi: not found"; fi
  if command -v nvcc >/dev/null; then echo "nvcc: $(nvcc --version | tail -1)"; else echo "nvcc: not found (not needed: no .cu sources)"; fi
  echo "cmake: $(command -v cmake >/dev/null && cmake --version | head -1 || echo 'not found')"
  echo "ninja: $(command -v ninja >/dev/null && ninja --version || echo 'not found')"
  echo "node: $(command -v node >/dev/null && node --version || echo 'not found')"
} 2>&1 | tee "$LOGS/env.txt"

# torch's folder, its CUDA version ('' for a CPU build) and whether it sees a device, one per line
TORCH_PY='import os, torch
print(os.path.dirname(torch.__file__)); print(torch.__version__)
print(torch.version.cuda or ""); print(int(torch.cuda.is_available()))'
if ! TORCH_INFO=$("$PY" -c "$TORCH_PY" 2>>"$LOGS/env.txt"); then
  say "refused: no torch for $PY (import torch failed; see $LOGS/env.txt). This check builds against a CUDA" \
    "torch for python3: install one (EMOTORCH_PYTHON names another interpreter)."
  exit 2
fi
{ read -r LT; read -r TORCH_VERSION; read -r TORCH_CUDA; read -r TORCH_GPU; } <<<"$TORCH_INFO"
export LT
echo "torch: $TORCH_VERSION at $LT (CUDA ${TORCH_CUDA:-none}; device visible: $TORCH_GPU)" | tee -a "$LOGS/env.txt"
if [ -z "$TORCH_CUDA" ] || [ ! -f "$LT/lib/libtorch_cuda.so" ]; then
  say "refused: $PY's torch $TORCH_VERSION at $LT is a CPU build (no CUDA, no lib/libtorch_cuda.so). This check" \
    "needs a CUDA torch: pip install torch from a CUDA index (https://download.pytorch.org/whl/cu126 …)."
  exit 2
fi
say "torch $TORCH_VERSION (CUDA $TORCH_CUDA) at $LT"

# ---- build ------------------------------------------------------------------------------------------
built=0
lean=0
node_prefix=$(dirname "$(dirname "$(command -v node 2>/dev/null || echo /none/bin/node)")")
if ! command -v node >/dev/null; then
  skip "build" "no node on PATH: the build, the tests and the benchmarks need Node.js >= 18"
elif [ -x node_modules/.bin/cmake-js ] && [ -d node_modules/node-addon-api ] && [ -x node_modules/.bin/vitest ]; then
  if ! command -v cmake >/dev/null; then
    skip "build" "no cmake on PATH"
  else
    # cmake-js takes Node's headers from npm's nodedir, else downloads them (no network there): the
    # running node's own headers, where it has them
    if [ -z "${npm_config_nodedir:-}" ] && [ -f "$node_prefix/include/node/node.h" ]; then export npm_config_nodedir=$node_prefix; fi
    run "build (cmake-js, against $LT, -j$(nproc))" build.log 360 build_addon && built=1
  fi
else
  # Node.js alone
  lean=1
  NODE_INC=${NODE_INCLUDE:-}
  for d in "${npm_config_nodedir:+$npm_config_nodedir/include/node}" "$node_prefix/include/node"; do
    if [ -z "$NODE_INC" ] && [ -n "$d" ] && [ -f "$d/node_api.h" ]; then NODE_INC=$d; fi
  done
  export NODE_INC
  if [ -z "$NODE_INC" ] || [ ! -f "$NODE_INC/node_api.h" ]; then
    skip "build" "no node_modules, and no Node headers (node_api.h) in NODE_INCLUDE, \$npm_config_nodedir/include/node or $node_prefix/include/node"
  elif ! node -e "require.resolve('node-addon-api')" 2>/dev/null; then
    skip "build" "no node_modules, and Node finds no node-addon-api (node_modules/node-addon-api or NODE_PATH)"
  elif ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
    skip "build" "no cmake or ninja on PATH"
  else
    if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDACXX=/usr/local/cuda/bin/nvcc; fi
    run "build (CMake + Ninja, Node.js alone, against $LT, -j$(nproc))" build.log 300 build_lean && built=1
  fi
fi

# ---- the CUDA tests ---------------------------------------------------------------------------------
if [ "$built" -ne 1 ]; then
  skip "CUDA tests" "no addon built for this torch (see the build step)"
elif [ "$TORCH_GPU" != 1 ]; then
  skip "CUDA tests" "torch sees no CUDA device (nvidia-smi, CUDA_VISIBLE_DEVICES): the tests would skip"
elif [ "$lean" -eq 1 ]; then
  run "CUDA smoke check (node scripts/cuda-smoke.cjs cuda)" tests.log 150 smoke
else
  run "CUDA tests (vitest run test/cuda.test.ts test/cuda-models.test.ts)" tests.log 200 cuda_tests
fi

# ---- the benchmarks ---------------------------------------------------------------------------------
if [ "$built" -ne 1 ]; then
  skip "benchmarks" "no addon built for this torch (see the build step)"
elif [ "$TORCH_GPU" != 1 ]; then
  skip "benchmarks" "torch sees no CUDA device"
else
  # the GPU decoding bench needs the addon alone (bench/quant_cuda.cjs, beside PyTorch bfloat16)
  # (an H200: 1.1B about 100 s with PyTorch's row; the 7B's two formats and PyTorch's about 150 s)
  run "GPU decoding, 1.1B: bfloat16, int8, q8_0, q4_0, nf4 (node bench/quant_cuda.cjs)" bench-quant-cuda.log 200 \
    node bench/quant_cuda.cjs --device cuda --case 1.1b --tokens 64
  if [ "$lean" -eq 1 ]; then
    run "GPU decoding, 7B: bfloat16, nf4 (node bench/quant_cuda.cjs)" bench-quant-cuda-7b.log 200 \
      node bench/quant_cuda.cjs --device cuda --case 7b --formats bfloat16,nf4 --tokens 32
  elif run "build:ts (dist/ for the npm benchmarks)" build-ts.log 120 build_ts; then
    run "npm run bench -- models --device cuda" bench-models.log 150 node bench/run.mjs models --device cuda
    run "npm run bench -- salmonn --device cuda" bench-salmonn.log 120 node bench/run.mjs salmonn --device cuda
    run "npm run bench -- quant (CPU: bf16, int8, q4_0)" bench-quant.log 200 node bench/run.mjs quant --quants bfloat16,int8,q4_0 --trials 1 --no-reference
  fi
fi
finish
