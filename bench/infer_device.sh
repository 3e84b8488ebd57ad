#!/usr/bin/env bash
# Runs ON THE GPU MACHINE after scripts/device-build.sh built build-device:
# issue 13's device checks and benchmark in one call. (0) the decode's GPU
# parity tests (paged kernels, DecodeModel with CUDA graphs on and off), (1) greedy parity of
# `baton infer` with HF generate (scripts/infer_hf_parity.py: CPU f64, CUDA
# f32, CUDA bf16), (2) infer_bench at 1.3b over batch 1, 8, 64, 256 and at 8b
# batch 64 (prompts 128, 256 new tokens, greedy), (3) HF generate at 1.3b
# batch 64, eager and static cache + torch.compile. Tables to stdout; logs
# and JSON to $OUT (or /tmp/infer).
#   bash bench/infer_device.sh        # QUICK=1: without the CPU parity and HF generate
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build-device}
RES=${OUT:-/tmp/infer}
mkdir -p "$RES"
LIB=$PWD/.bundle/prefix/usr/lib/x86_64-linux-gnu
NV=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
export LD_LIBRARY_PATH=$LIB:$LIB/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for d in "$NV/cudnn/lib" "$NV/cuda_nvrtc/lib" "$NV/cu13/lib"; do [[ -d $d ]] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d; done
export LD_LIBRARY_PATH
cmake --build "$BUILD" -j "$(nproc)" --target baton infer_bench paged_attention_gpu_test model_decode_gpu_test \
  decode_graph_test >"$RES/build.log" 2>&1 || { tail -30 "$RES/build.log"; exit 1; }
run() {  # run NAME SECONDS CMD...
  local name=$1 limit=$2; shift 2
  echo "== $name: $*"
  timeout "$limit" "$@" >"$RES/$name.log" 2>&1; echo "   exit $?"
  grep -vE '^\s*$' "$RES/$name.log" | tail -n 12
}
run gpu_tests 300 ctest --test-dir "$BUILD" -R 'PagedGpu|DecodeGpu|DecodeGraph' --output-on-failure
[[ -n ${QUICK:-} ]] || run parity_cpu 120 python3 scripts/infer_hf_parity.py "$BUILD/baton" --device cpu --workdir "$RES/p_cpu"
run parity_cuda_f32 120 python3 scripts/infer_hf_parity.py "$BUILD/baton" --device cuda --dtype f32 --workdir "$RES/p_f32"
run parity_cuda_bf16 120 python3 scripts/infer_hf_parity.py "$BUILD/baton" --device cuda --dtype bf16 --workdir "$RES/p_bf16"
rm -rf "$RES"/p_*
run bench_1.3b 200 "$BUILD/infer_bench" --preset 1.3b --device cuda --batch 1,8,64,256 --prompt 128 --new 256 --json "$RES/infer_1.3b.json"
run bench_1.3b_eager 200 "$BUILD/infer_bench" --preset 1.3b --device cuda --batch 1,64 --prompt 128 --new 256 --cuda_graphs 0 --json "$RES/infer_1.3b_eager.json"
run bench_8b 120 "$BUILD/infer_bench" --preset 8b --device cuda --batch 64 --prompt 128 --new 256 --json "$RES/infer_8b.json"
[[ -n ${QUICK:-} ]] || run hf_1.3b 200 python3 bench/hf_generate_reference.py --preset 1.3b --batch 64 --prompt 128 --new 256 --modes eager --json "$RES/hf_1.3b.json"
(cd "$RES" && tar -czf infer_runs.tgz *.log *.json 2>/dev/null && rm -f *.log *.json)
