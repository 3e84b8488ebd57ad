#!/usr/bin/env bash
# Runs ON THE GPU MACHINE after scripts/device-build.sh configured
# build-device: builds train_bench and runs the matrix this session's
# numbers come from, for the 125m and 1.3b presets: recompute none / full /
# selective with the default kernels (the op table's attention rule), then
# recompute none with FA2 forced (--attention flash) and with GEMM
# autotuning (--gemm-autotune), then one profiled step. Tables to stdout;
# each run's output and JSON to $OUT (or /tmp/bench). The PyTorch side is
# bench/torch_reference.py (bench/run_device.sh runs both).
#   bash bench/train_matrix_device.sh
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build-device}
RES=${OUT:-/tmp/bench}
mkdir -p "$RES"
LIB=$PWD/.bundle/prefix/usr/lib/x86_64-linux-gnu
NV=/opt/torch/.venv/lib/python3.12/site-packages/nvidia  # cuDNN and NVRTC where the toolkit has none
export LD_LIBRARY_PATH=$LIB:$LIB/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for d in "$NV/cudnn/lib" "$NV/cuda_nvrtc/lib" "$NV/cu13/lib"; do [[ -d $d ]] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d; done
export LD_LIBRARY_PATH
cmake --build "$BUILD" -j "$(nproc)" --target train_bench >"$RES/build_train_bench.log" 2>&1 \
  || { tail -n 30 "$RES/build_train_bench.log"; exit 1; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
run() {  # run NAME ARGS...
  local name=$1; shift
  timeout 240 "$BUILD/train_bench" "$@" --json "$RES/$name.json" >"$RES/$name.txt" 2>&1
  echo "== $name ($*): exit $?"
  grep -E '^\| baton|^recompute .* vs|launch to first step|^GEMMs|^\| (attention|gemm|rmsnorm|adamw)' "$RES/$name.txt"
}
for p in 125m 1.3b; do
  if [[ $p == 125m ]]; then steps=(--warmup 3 --steps 10); else steps=(--warmup 2 --steps 5); fi
  run "${p}_all" --preset $p "${steps[@]}" --recompute all
  run "${p}_flash" --preset $p "${steps[@]}" --attention flash
  run "${p}_autotune" --preset $p "${steps[@]}" --gemm-autotune
  run "${p}_profile" --preset $p --warmup 2 --steps 3 --profile
done
