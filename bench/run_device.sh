#!/usr/bin/env bash
# Runs ON THE GPU MACHINE after `bash scripts/device-build.sh` (or its
# --configure-only half) has configured build-device: builds train_bench
# and runs it next to the PyTorch reference (bench/torch_reference.py) for
# the 125m and 1.3b presets, about 6 minutes in all. Tables go to stdout;
# JSON and logs to $OUT (or /tmp/bench). The side-by-side table is printed last.
#   bash bench/run_device.sh [--quick]     # --quick: fewer steps, no torch.compile
# train_bench is built through its CMake target when the top-level
# CMakeLists.txt has one; otherwise with the compile and link lines of
# model_gpu_test (same flags and libraries), so this works before the lead
# adds the target.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-$ROOT/build-device}
RES=${OUT:-/tmp/bench}
mkdir -p "$RES"
ARCH=x86_64-linux-gnu
PREFIX=$ROOT/.bundle/prefix
export LD_LIBRARY_PATH="$PREFIX/usr/lib/$ARCH:$PREFIX/usr/lib/$ARCH/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
QUICK=${1:-}
JOBS=${JOBS:-$(nproc)}

build_bench() {
  if ninja -C "$BUILD" -t targets all 2>/dev/null | grep -q '^train_bench:'; then
    cmake --build "$BUILD" -j "$JOBS" --target train_bench && return 0
  fi
  echo "run_device: no train_bench target; building it with model_gpu_test's flags"
  cmake --build "$BUILD" -j "$JOBS" --target model_gpu_test || return 1
  local cc link
  cc=$(ninja -C "$BUILD" -t commands model_gpu_test | grep -F 'model_gpu_test.cc.o -c' | tail -1)
  link=$(ninja -C "$BUILD" -t commands model_gpu_test | tail -1)
  [[ -n $cc && -n $link ]] || { echo "run_device: cannot read model_gpu_test's commands"; return 1; }
  cc=${cc//CMakeFiles\/model_gpu_test.dir\/tests\/runtime\/model_gpu_test.cc.o/train_bench.o}
  cc=${cc//tests\/runtime\/model_gpu_test.cc/bench\/train_bench.cc}
  link=${link//CMakeFiles\/model_gpu_test.dir\/tests\/runtime\/model_gpu_test.cc.o/train_bench.o}
  link=${link//-o model_gpu_test/-o train_bench}
  (cd "$BUILD" && eval "$cc" && eval "$link")
}

build_bench 2>&1 | tail -n 20 | tee "$RES/build_bench.log"
[[ -x $BUILD/train_bench ]] || { echo "run_device: train_bench did not build"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv | tee "$RES/gpu.txt"

if [[ $QUICK == --quick ]]; then STEPS_S=6; STEPS_L=3; MODES="eager"; else STEPS_S=10; STEPS_L=5; MODES="eager,compile"; fi
run() {  # run NAME CMD...: output to $RES/NAME.log, shown as it goes
  echo "== $*"
  timeout 240 "${@:2}" 2>&1 | tee "$RES/$1.log" | grep -vE '^\s*$' | tail -n 15
}
run baton_125m "$BUILD/train_bench" --preset 125m --warmup 3 --steps $STEPS_S --recompute all --json "$RES/baton_125m.json"
run torch_125m python3 bench/torch_reference.py --preset 125m --warmup 3 --steps $STEPS_S --modes $MODES --json "$RES/torch_125m.json"
run baton_1.3b "$BUILD/train_bench" --preset 1.3b --warmup 2 --steps $STEPS_L --recompute all --json "$RES/baton_1.3b.json"
run torch_1.3b python3 bench/torch_reference.py --preset 1.3b --warmup 2 --steps $STEPS_L --modes $MODES --json "$RES/torch_1.3b.json"

echo; echo "================ side by side (tokens/s; MFU against each run's own GEMM peak) ================"
python3 - "$RES" <<'PY'
import json, os, sys
res = sys.argv[1]
for preset in ("125m", "1.3b"):
    rows = []
    try:
        b = json.load(open(os.path.join(res, f"baton_{preset}.json")))
        for r in b["results"]:
            rows.append((f"baton ({r['recompute']})", r["tokens_per_s"], r["mfu"], r["peak_gib"]))
        print(f"{preset}: baton first step at {b['time_to_first_step_s']:.2f} s, GEMM peak {b['gemm_peak_tflops']:.0f} TFLOP/s")
    except Exception as e:
        print(f"{preset}: baton: no result ({e})")
    try:
        t = json.load(open(os.path.join(res, f"torch_{preset}.json")))
        for r in t["results"]:
            rows.append((f"torch {r['mode']}", r["tokens_per_s"], r["mfu"], r["peak_gib"]))
    except Exception as e:
        print(f"{preset}: torch: no result ({e})")
    ref = {n: v for n, v, _, _ in rows}
    comp = ref.get("torch compile") or ref.get("torch eager")
    print(f"| {'preset':6} | {'impl':22} | {'tokens/s':>10} | {'MFU':>6} | {'peak GiB':>8} | {'vs torch':>8} |")
    for n, v, m, p in rows:
        ratio = f"{v / comp:.2f}x" if comp else "-"
        print(f"| {preset:6} | {n:22} | {v:10.0f} | {m:6.3f} | {p:8.2f} | {ratio:>8} |")
PY
