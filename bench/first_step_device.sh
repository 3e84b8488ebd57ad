#!/usr/bin/env bash
# Runs ON THE GPU MACHINE after scripts/device-build.sh configured and built
# build-device (that script also runs every *_gpu_test, among them
# philox_init_gpu_test: the device weight draw against the host's, bit for
# bit, and model_gpu_test's CPU-vs-CUDA initial weights). Measures launch to
# first step with the weights drawn on the GPU (runtime/param_init_device.h):
# train_bench at 1.3b twice (the first process cold) and at 125m; then runs
# the examples/llama-{125m,1.3b}.toml jobs for 20 steps with `baton train`,
# sampling nvidia-smi's memory.used, for the figures those files state.
# Needs data/fortunes.{bin,idx} carried (made here by `baton data tokenize
# --input /usr/share/games/fortunes --output data/fortunes`). Output to
# stdout; logs to $OUT (or /tmp/first_step).
#   bash bench/first_step_device.sh
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build-device}
RES=${OUT:-/tmp/first_step}
mkdir -p "$RES"
LIB=$PWD/.bundle/prefix/usr/lib/x86_64-linux-gnu
NV=/opt/torch/.venv/lib/python3.12/site-packages/nvidia  # cuDNN and NVRTC where the toolkit has none
export LD_LIBRARY_PATH=$LIB:$LIB/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for d in "$NV/cudnn/lib" "$NV/cuda_nvrtc/lib" "$NV/cu13/lib"; do [[ -d $d ]] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d; done
export LD_LIBRARY_PATH
cmake --build "$BUILD" -j "$(nproc)" --target train_bench baton >"$RES/build.log" 2>&1 \
  || { tail -n 30 "$RES/build.log"; exit 1; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
for p in 1.3b 1.3b 125m; do
  timeout 200 "$BUILD/train_bench" --preset $p --warmup 2 --steps 5 >"$RES/tb_$p.txt" 2>&1
  echo "== train_bench --preset $p: exit $?"
  grep -E 'launch to first step|^\| baton' "$RES/tb_$p.txt"
done
for p in 125m 1.3b; do
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$RES/mem_$p.txt" &
  smi=$!
  rm -rf "runs/llama-$p"
  timeout 240 "$BUILD/baton" train --config "examples/llama-$p.toml" --set train.steps=20 train.eval_every=0 \
    train.log_every=5 checkpoint.dir='""' output.progress=lines >"$RES/train_$p.txt" 2>&1
  echo "== baton train examples/llama-$p.toml (20 steps): exit $?"
  kill "$smi"; wait "$smi" 2>/dev/null
  tail -n 3 "$RES/train_$p.txt"
  echo "nvidia-smi memory.used peak: $(sort -n "$RES/mem_$p.txt" | tail -1) MiB"
done
