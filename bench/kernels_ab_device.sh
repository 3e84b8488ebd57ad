#!/usr/bin/env bash
# Runs ON THE GPU MACHINE (carry .bundle): an A/B of kernel changes in one
# call. .bundle/ab_base/ holds the files as they were before (same paths,
# made here with `git show HEAD:path`); train_bench is built from them
# first, then from the working tree, and the two binaries are run in turn
# (base, new, base, new) with --profile for the 125m and 1.3b presets,
# after the GPU tests of the new build (op_parity_gpu_test, cuda_backend_gpu_test,
# cuda_allocator_gpu_test, model_gpu_test; nccl_gpu_mpitest under mpiexec,
# which skips with one GPU). Logs and JSON to /tmp/ab; the summary is
# printed, and the round-2 profiles and test logs are copied to $OUT when
# it is set (the device tool returns at most 8 files).
# Here, before the call: bash scripts/device-bundle.sh; mkdir -p
# .bundle/ab_base/kernels/cuda; git show HEAD:kernels/cuda/F >
# .bundle/ab_base/kernels/cuda/F for each changed F; carry .bundle and data.
#   bash bench/kernels_ab_device.sh [--quick]
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-$ROOT/build-device}
RES=/tmp/ab
mkdir -p "$RES"
JOBS=${JOBS:-$(nproc)}
ARCH=x86_64-linux-gnu
PREFIX=$ROOT/.bundle/prefix
SECONDS=0
stamp() { echo "[ab ${SECONDS}s] $*"; }

stamp "configure"
bash scripts/device-build.sh --configure-only >"$RES/configure.log" 2>&1 || { tail -n 30 "$RES/configure.log"; exit 1; }
export LD_LIBRARY_PATH="$PREFIX/usr/lib/$ARCH:$PREFIX/usr/lib/$ARCH/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

FILES=$(cd .bundle/ab_base && find . -type f | sed 's#^\./##')
SAVE=/tmp/ab_new && rm -rf "$SAVE" && mkdir -p "$SAVE"
for f in $FILES; do mkdir -p "$SAVE/$(dirname "$f")"; cp "$f" "$SAVE/$f"; cp ".bundle/ab_base/$f" "$f"; done
stamp "build base train_bench ($(echo $FILES | wc -w) files swapped)"
cmake --build "$BUILD" -j "$JOBS" --target train_bench >"$RES/build_base.log" 2>&1 || { tail -n 30 "$RES/build_base.log"; exit 1; }
cp "$BUILD/train_bench" /tmp/train_bench_base
for f in $FILES; do cp "$SAVE/$f" "$f"; done
stamp "build new"
cmake --build "$BUILD" -j "$JOBS" --target train_bench op_parity_gpu_test cuda_backend_gpu_test cuda_allocator_gpu_test model_gpu_test nccl_gpu_mpitest \
  >"$RES/build_new.log" 2>&1 || { tail -n 40 "$RES/build_new.log"; exit 1; }
cp "$BUILD/train_bench" /tmp/train_bench_new

stamp "GPU tests"
for t in op_parity_gpu_test cuda_backend_gpu_test cuda_allocator_gpu_test model_gpu_test; do
  "$BUILD/$t" --gtest_brief=1 >"$RES/$t.log" 2>&1; echo "$t: exit $? $(grep -E 'PASSED|FAILED' "$RES/$t.log" | tr '\n' ' ')"
  grep -E '^\[  FAILED|Failure' "$RES/$t.log" | head -n 5
done
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpiexec -n 2 --oversubscribe --bind-to none \
  "$BUILD/nccl_gpu_mpitest" --gtest_brief=1 >"$RES/nccl_gpu_mpitest.log" 2>&1
echo "nccl_gpu_mpitest (np 2, $(nvidia-smi -L | wc -l) GPU): exit $? $(grep -E 'PASSED|SKIPPED \]|FAILED' "$RES/nccl_gpu_mpitest.log" | head -n 3 | tr '\n' ' ')"

nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
if [[ ${1:-} == --quick ]]; then S=6; L=3; else S=20; L=8; fi
for preset in 125m 1.3b; do
  if [[ $preset == 125m ]]; then steps=$S; warm=3; else steps=$L; warm=2; fi
  for round in 1 2; do
    for v in base new; do
      stamp "$preset $v round $round"
      timeout 200 /tmp/train_bench_$v --preset $preset --warmup $warm --steps $steps --recompute none --profile \
        --json "$RES/${v}_${preset}_r$round.json" >"$RES/${v}_${preset}_r$round.txt" 2>&1
      grep -E '^\| baton' "$RES/${v}_${preset}_r$round.txt"
    done
  done
done
stamp "profiles (round 2)"
for preset in 125m 1.3b; do
  python3 - "$RES/base_${preset}_r2.txt" "$RES/new_${preset}_r2.txt" "$preset" <<'PY'
import re, sys
def rows(path):
    out, head = {}, ""
    for line in open(path):
        m = re.match(r"\| (.+?)\s+\|\s+(\d+) \|\s+([\d.]+) \|", line)
        if m: out[m.group(1)] = (int(m.group(2)), float(m.group(3)))
        if line.startswith("per-op profile") or line.startswith("GEMMs:"): head += line
    return out, head
b, hb = rows(sys.argv[1]); n, hn = rows(sys.argv[2])
print(f"== {sys.argv[3]}: base\n{hb}== new\n{hn}")
print(f"| op | calls | ms base | ms new |")
for k in sorted(set(b) | set(n), key=lambda k: -b.get(k, (0, 0))[1]):
    print(f"| {k} | {b.get(k, n.get(k))[0]} | {b.get(k, (0, 0))[1]:.3f} | {n.get(k, (0, 0))[1]:.3f} |")
PY
done
if [[ -n ${OUT:-} ]]; then
  cp "$RES"/new_125m_r2.txt "$RES"/new_1.3b_r2.txt "$RES"/base_125m_r2.txt "$RES"/base_1.3b_r2.txt \
     "$RES"/op_parity_gpu_test.log "$RES"/cuda_backend_gpu_test.log "$RES"/nccl_gpu_mpitest.log "$OUT"/ 2>/dev/null
fi
stamp "done"
