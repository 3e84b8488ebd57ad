#!/usr/bin/env bash
# Runs ON THE GPU MACHINE (one GPU is enough) after scripts/device-build.sh
# configured build-device: tensor parallelism on CUDA. Builds only its
# targets, then
#   1. op_parity_gpu_test, vocab-parallel ops only: the CUDA vocab-parallel
#      cross-entropy kernels against the CPU ones;
#   2. tp_gpu_mpitest under mpiexec -n 2: the device tp collectives and a
#      tp=2 model (SP off/on, fp32/bf16) against the single-rank CUDA run;
#   3. model_gpu_test (the one-GPU model, whose init and loss code changed);
#   4. baton train on the tiny job, 20 steps: one rank vs tp=2 (SP off and
#      on) with both ranks on GPU 0 (CUDA_VISIBLE_DEVICES=0, so the tp
#      collectives are host-staged), and tp=2 × pp=2 on 4 ranks (1f1b),
#      fp32 judged at 1e-5 relative per step,
#      bf16 at 1e-2; the launcher's "tp collectives:" line is printed.
# With TP_NCCL=1 and two GPUs, step 4 also runs tp=2 with a GPU per rank
# (the NCCL path). TRAIN_DEVICE=cpu dry-runs step 4 on a machine without a
# GPU. Every run is under `timeout` (exit 124: a hang). Prints a PASS/FAIL
# table last; exit 1 on any FAIL.
#   bash scripts/device-tp.sh
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-$ROOT/build-device}
ARCH=x86_64-linux-gnu
PREFIX=$ROOT/.bundle/prefix
export LD_LIBRARY_PATH="$PREFIX/usr/lib/$ARCH:$PREFIX/usr/lib/$ARCH/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
MPI=(mpiexec --allow-run-as-root --oversubscribe --bind-to none --mca pml ob1 --mca btl self,vader,tcp
     --mca osc ^ucx -x LD_LIBRARY_PATH)
RES=${OUT:-/tmp}/tp
rm -rf "$RES" && mkdir -p "$RES"
declare -a SUMMARY=()
verdict() { if [[ $2 == 0 ]]; then SUMMARY+=("PASS  $1"); else SUMMARY+=("FAIL  $1 (exit $2)"); fi; }
nvidia-smi --query-gpu=index,name --format=csv,noheader

t0=$SECONDS
cmake --build "$BUILD" -j "$(nproc)" --target op_parity_gpu_test tp_gpu_mpitest model_gpu_test baton \
  >"$RES/build.log" 2>&1
rc=$?; verdict "build ($((SECONDS - t0)) s)" $rc
if [[ $rc != 0 ]]; then grep -E "error|FAILED" "$RES/build.log" | head -40; fi

if [[ $rc == 0 ]]; then
  timeout 120 "$BUILD/op_parity_gpu_test" --gtest_filter='*RowMax*:*RowSumExp*:*PickTargets*:*VocabParallel*' 2>&1 \
    | tee "$RES/op_parity_gpu_test.log" | grep -vE "^\[ +(RUN|OK) "
  verdict "op_parity_gpu_test (vocab-parallel ops)" "${PIPESTATUS[0]}"
  timeout 180 "${MPI[@]}" -n 2 "$BUILD/tp_gpu_mpitest" 2>&1 | tee "$RES/tp_gpu_mpitest.log" | grep -vE "^\[ +(RUN|OK) "
  verdict "tp_gpu_mpitest (np 2)" "${PIPESTATUS[0]}"
  timeout 120 "$BUILD/model_gpu_test" --gtest_brief=1 2>&1 | tail -n 15
  verdict model_gpu_test "${PIPESTATUS[0]}"

  if [[ ! -e data/fortunes.idx && ! -e /usr/share/games/fortunes ]]; then
    SUMMARY+=("SKIP  tp train: no data/fortunes.idx (carry \"data\") and no /usr/share/games/fortunes")
    TRAIN=0
  else
    TRAIN=1
  fi
  COMMON=(train.steps=20 train.device=\"${TRAIN_DEVICE:-cuda}\" train.eval_every=0 output.progress=\"lines\" train.log_every=5
          checkpoint.every=0 checkpoint.resume=\"none\")
  run() {  # run NAME RANKS SETS...
    local name=$1 ranks=$2; shift 2
    local sets=("${COMMON[@]}" output.metrics=\"$RES/$name.jsonl\" checkpoint.dir=\"$RES/$name.ckpt\" "$@")
    if [[ $ranks == 1 ]]; then
      CUDA_VISIBLE_DEVICES=${GPU1:-0} timeout 120 "$BUILD/baton" train --config examples/tiny.toml --set "${sets[@]}" \
        >"$RES/$name.log" 2>&1
    else
      timeout 120 "${MPI[@]}" -n "$ranks" "$BUILD/baton" train --config examples/tiny.toml --set "${sets[@]}" train.share_gpus=true >"$RES/$name.log" 2>&1
    fi
    local rc=$?
    echo "$name: exit $rc"; grep -E "tp collectives|error" "$RES/$name.log"; tail -n 2 "$RES/$name.log"
    verdict "train $name" $rc
  }
  for prec in fp32 bf16; do
    [[ $TRAIN == 1 ]] || break
    run "gpu1_$prec" 1 train.precision=\"$prec\"
    CUDA_VISIBLE_DEVICES=0 run "tp2_staged_$prec" 2 train.precision=\"$prec\" parallel.tp=2
    CUDA_VISIBLE_DEVICES=0 run "tp2_staged_sp_$prec" 2 train.precision=\"$prec\" parallel.tp=2 \
      parallel.sequence_parallel=true
    # tp inside pipeline stages: 4 ranks on GPU 0, activations between stages through host memory.
    CUDA_VISIBLE_DEVICES=0 run "tp2_pp2_staged_$prec" 4 train.precision=\"$prec\" parallel.tp=2 parallel.pp=2 \
      parallel.schedule=\"1f1b\"
    if [[ ${TP_NCCL:-0} == 1 ]]; then
      run "tp2_nccl_$prec" 2 train.precision=\"$prec\" parallel.tp=2
      run "tp2_nccl_sp_$prec" 2 train.precision=\"$prec\" parallel.tp=2 parallel.sequence_parallel=true
    fi
  done
  [[ $TRAIN == 1 ]] && python3 - "$RES" "${TP_NCCL:-0}" >"$RES/compare.txt" <<'PY'
import json, sys
res, nccl = sys.argv[1], sys.argv[2] == "1"
def curve(name):
    try:
        return [json.loads(l)["loss"] for l in open(f"{res}/{name}.jsonl") if '"loss"' in l]
    except OSError:
        return []
ok = True
print("| run | vs | steps | max rel loss diff (step) | tolerance | verdict |\n|---|---|---|---|---|---|")
for prec, tol in (("fp32", 1e-5), ("bf16", 1e-2)):
    ref = curve(f"gpu1_{prec}")
    names = [f"tp2_staged_{prec}", f"tp2_staged_sp_{prec}", f"tp2_pp2_staged_{prec}"] + ([f"tp2_nccl_{prec}", f"tp2_nccl_sp_{prec}"] if nccl else [])
    for name in names:
        got = curve(name)
        rel = [abs(a - b) / abs(a) for a, b in zip(ref, got)]
        d = max(rel, default=float("nan"))
        at = rel.index(d) + 1 if rel else 0
        good = len(got) == len(ref) == 20 and d <= tol
        ok &= good
        print(f"| {name} | gpu1_{prec} | {len(got)} | {d:.3g} ({at}) | {tol:g} | {'PASS' if good else 'FAIL'} |")
        if not good:
            print("  ref:", " ".join(f"{x:.6f}" for x in ref))
            print("  got:", " ".join(f"{x:.6f}" for x in got))
print("tp train:", "PASS" if ok else "FAIL")
PY
  if [[ $TRAIN == 1 ]]; then
    cat "$RES/compare.txt"
    grep -q "tp train: PASS" "$RES/compare.txt"; verdict "tp train losses vs one GPU" $?
  fi
fi

echo; echo "================ device-tp summary ================"
printf '%s\n' "${SUMMARY[@]}"
echo "==================================================="
grep -q '^FAIL' <<<"$(printf '%s\n' "${SUMMARY[@]}")" && exit 1 || exit 0
