#!/usr/bin/env bash
# Runs ON THE GPU MACHINE, from the repo root, in a tree where
# scripts/device-build.sh has configured (and built) build-device: builds
# only attention_bench and cuda_backend_gpu_test (cuDNN attention is linked
# where CMake found cuDNN: the toolkit, CUDNN_ROOT or PyTorch's wheel),
# then runs
#   1. attention_bench: per shape, FA2 and cuDNN against fp32 references
#      (rel err of out, lse, dq, dk, dv), bwd bitwise repeat, fwd/bwd ms and
#      TF/s side by side, the cuDNN plan (engine, workspace, build ms);
#   2. cuda_backend_gpu_test, attention cases only (the op table with cuDNN
#      forced against the CPU kernel, FA2 likewise, status conversion).
# One line per result at the end; exit status 1 if either failed. One call:
#   bash bench/cudnn_attention_device.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp}
BUILD=${BUILD_DIR:-build-device}
LIB=$PWD/.bundle/prefix/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$LIB:$LIB/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LIBRARY_PATH=$LIB:$LIB/openblas-pthread${LIBRARY_PATH:+:$LIBRARY_PATH}
export CMAKE_POLICY_VERSION_MINIMUM=3.5
# As scripts/device-build.sh sets them, for the re-configure CMake does when CMakeLists.txt changed.
P=$PWD/.bundle/prefix
export PKG_CONFIG_PATH="$P/usr/lib/x86_64-linux-gnu/pkgconfig:$P/usr/lib/x86_64-linux-gnu/openblas-pthread/pkgconfig:$P/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# cuDNN's runtime-compiled engines need NVRTC; the wheel's cuDNN sits beside its own.
TORCH_NV=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
for d in /usr/local/cuda/lib64 "$TORCH_NV/cudnn/lib" "$TORCH_NV/cuda_nvrtc/lib" "$TORCH_NV/cu13/lib"; do
  [[ -d $d ]] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d
done
export LD_LIBRARY_PATH
echo "cuDNN candidates:"; ls /usr/local/cuda/include/cudnn_graph.h /usr/local/cuda/lib64/libcudnn.so.9 \
  "$TORCH_NV"/cudnn/lib/libcudnn.so.9 2>&1 | sed 's/^/  /'
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
cmake "$BUILD" >"$OUT/cudnn-configure.log" 2>&1 || tail -n 30 "$OUT/cudnn-configure.log"
grep -E "^CUDNN_(INCLUDE_DIR|LIBRARY):" "$BUILD/CMakeCache.txt"
if ! cmake --build "$BUILD" -j "$(nproc)" --target attention_bench cuda_backend_gpu_test \
    >"$OUT/cudnn-build.log" 2>&1; then
  grep -E "error|Error" -A3 "$OUT/cudnn-build.log" | head -n 60; echo "BUILD FAILED"; exit 1
fi
ldd "$BUILD/attention_bench" | grep -E "cudnn|cudart"
# cuDNN's own warnings (why an engine refused a graph) go to a file, shown on failure.
CUDNN_LOGLEVEL_DBG=2 CUDNN_LOGDEST_DBG="$OUT/cudnn_warnings.log" \
  timeout 170 "$BUILD/attention_bench" --json "$OUT/attention_bench.json" 2>&1 | tee "$OUT/attention_bench.txt"
bench_rc=${PIPESTATUS[0]}
if [[ $bench_rc != 0 && -s $OUT/cudnn_warnings.log ]]; then
  echo "cuDNN warnings (unique):"; grep -E "Warning|Error|Reason" "$OUT/cudnn_warnings.log" | sed -E 's/^\s+//' \
    | sort | uniq -c | sort -rn | head -n 25
fi
timeout 120 "$BUILD/cuda_backend_gpu_test" --gtest_filter='*Attention*:CudaCheck.*' \
  >"$OUT/cuda_backend_gpu_test.log" 2>&1
test_rc=$?
grep -E "^cudnn (fwd|bwd)|^\[ +(OK|FAILED|PASSED|SKIPPED) +\]|Failure|error/budget|worst|Unimplemented|CUDNN_STATUS" \
  "$OUT/cuda_backend_gpu_test.log" | head -n 60
echo "attention_bench rc=$bench_rc  cuda_backend_gpu_test rc=$test_rc"
[[ $bench_rc == 0 && $test_rc == 0 ]]
