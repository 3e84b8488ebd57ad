#!/usr/bin/env bash
# Runs ON THE GPU MACHINE, from the repo root, with .bundle carried: builds
# and runs the CUDA parity test (cuda_backend_gpu_test, which holds the
# attention cases), then the attention micro-benchmark and its PyTorch
# reference side by side. Logs and JSON go to $OUT. One device call:
#   bash bench/attention_device.sh
# Only the one test target is built (scripts/device-build.sh --configure-only
# sets up the bundle and configures build-device), to fit a short lease.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp}
LIB=$PWD/.bundle/prefix/usr/lib/x86_64-linux-gnu
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
( nvcc -O3 -std=c++20 -arch=sm_90 -I. bench/attention_bench.cu -o /tmp/attention_bench \
    >"$OUT/bench-build.log" 2>&1; echo "bench build rc=$?" >>"$OUT/bench-build.log" ) &
bash scripts/device-build.sh --configure-only >"$OUT/configure.log" 2>&1 || tail -n 30 "$OUT/configure.log"
export LD_LIBRARY_PATH=$LIB:$LIB/openblas-pthread LIBRARY_PATH=$LIB:$LIB/openblas-pthread
cmake --build build-device -j "$(nproc)" --target cuda_backend_gpu_test >"$OUT/test-build.log" 2>&1 \
  || tail -n 40 "$OUT/test-build.log"
wait
timeout 150 build-device/cuda_backend_gpu_test >"$OUT/cuda_backend_gpu_test.log" 2>&1
echo "cuda_backend_gpu_test rc=$?"
grep -E "^\[ +(OK|FAILED|PASSED|SKIPPED) +\]|Failure|error/budget|rel err" "$OUT/cuda_backend_gpu_test.log" | tail -n 40
tail -n 3 "$OUT/bench-build.log"
timeout 100 /tmp/attention_bench --json "$OUT/attention_bench.json" 2>&1 | tee "$OUT/attention_bench.txt"
PYTHONUNBUFFERED=1 timeout 120 python3 bench/attention_reference.py --json "$OUT/attention_reference.json" \
  2>&1 | tee "$OUT/attention_reference.txt"
