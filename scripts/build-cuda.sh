#!/usr/bin/env bash
# Builds the addon against a CUDA libtorch (the CUDA wheel of torch==2.14.1) into build-cuda/,
# to check that the CUDA build compiles and links (libtorch_cuda kept with --no-as-needed).
# Running it needs a CUDA machine with the NVIDIA runtime libraries; building does not.
#   bash scripts/build-cuda.sh            # installs the wheel into .libtorch-cuda/ once
#   LIBTORCH_CUDA=/path/to/libtorch bash scripts/build-cuda.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LT=${LIBTORCH_CUDA:-$PWD/.libtorch-cuda/torch}
if [ ! -f "$LT/lib/libtorch_cuda.so" ]; then
  echo "installing torch==2.14.1 (CUDA) into .libtorch-cuda/ (no dependencies: the build only needs its headers and libraries)"
  python3 -m pip install --no-deps --no-compile --disable-pip-version-check --target "$PWD/.libtorch-cuda" torch==2.14.1
  LT=$PWD/.libtorch-cuda/torch
fi
# NCCL (native/distributed/nccl.cc) needs nccl.h and the CUDA runtime headers: the nvidia-nccl-* and
# nvidia-cuda-runtime-* wheels this torch requires (versions from its METADATA), next to it.
SITE=$(dirname "$LT")
if [ ! -f "$SITE/nvidia/nccl/include/nccl.h" ] && ls "$SITE"/torch-*.dist-info/METADATA >/dev/null 2>&1; then
  REQS=$(sed -n 's/^Requires-Dist: \(nvidia-\(nccl\|cuda-runtime\)[^;]*\).*/\1/p' "$SITE"/torch-*.dist-info/METADATA | tr -d ' ')
  if [ -n "$REQS" ]; then
    echo "installing for NCCL: $REQS"
    # shellcheck disable=SC2086
    python3 -m pip install --no-deps --no-compile --disable-pip-version-check --target "$SITE" $REQS
  fi
fi
echo "nvcc: $(command -v nvcc >/dev/null && nvcc --version | tail -1 || echo 'not found (not needed: no .cu sources yet)')"
LIBTORCH="$LT" node scripts/libtorch.js
LIBTORCH="$LT" npx cmake-js compile --out build-cuda --log-level warn -p "$(nproc)"
readelf -d build-cuda/Release/emotorch.node | grep -E 'NEEDED|RUNPATH'
readelf -d build-cuda/Release/emotorch.node | grep -q 'libtorch_cuda.so' && echo "OK: build-cuda/Release/emotorch.node links libtorch_cuda"
if nm -DC build-cuda/Release/emotorch.node | grep -q 'ProcessGroupNCCL'; then echo "OK: the NCCL backend is built in"; else echo "note: no NCCL backend (nccl.h not found)"; fi
