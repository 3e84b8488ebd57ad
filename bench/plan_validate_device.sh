#!/usr/bin/env bash
# Runs ON THE GPU MACHINE after scripts/device-build.sh built build-device:
# the device rows of docs/plan.md's validation table: a Llama-2-7B-shaped
# model (seq 4096) on one H200 with full and with no recompute, and 1.3B
# with two ranks sharing the GPU (pp=2 1f1b, pp=2 zb-h1, tp=2 + sp). Each
# `baton train` writes its metrics; the memory is nvidia-smi's peak, sampled
# every 0.2 s (it includes the CUDA context and the allocator's reserve).
# Prints one line per run: median tokens/s over steps > 5 and peak MiB.
#   bash bench/plan_validate_device.sh
set -uo pipefail
cd "$(dirname "$0")/.."
B=${BUILD_DIR:-build-device}/baton
RES=${OUT:-/tmp/planval}
mkdir -p "$RES"
LIB=$PWD/.bundle/prefix/usr/lib/x86_64-linux-gnu
NV=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
export LD_LIBRARY_PATH=$LIB:$LIB/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for d in "$NV/cudnn/lib" "$NV/cuda_nvrtc/lib" "$NV/cu13/lib"; do [[ -d $d ]] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d; done
export LD_LIBRARY_PATH
S7="model.layers=32 model.dim=4096 model.heads=32 model.kv_heads=32 model.ffn_dim=11008 train.seq_len=4096 train.micro_batch_size=1 train.global_batch_size=4"
run() {  # run NAME LIMIT CMD...: median tokens/s of steps > 5 from $RES/NAME.jsonl, and peak MiB
  local name=$1 limit=$2; shift 2
  ( while sleep 0.2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done ) >"$RES/mem.$name" &
  local p=$!
  timeout "$limit" "$@" output.metrics="$RES/$name.jsonl" >"$RES/$name.log" 2>&1
  local rc=$?
  kill $p 2>/dev/null
  python3 - "$RES/$name.jsonl" "$name" "$rc" "$(sort -n "$RES/mem.$name" | tail -1)" <<'PY'
import json, statistics, sys
path, name, rc, mem = sys.argv[1:]
try:
    r = [json.loads(l) for l in open(path)]
    t = [x["tokens_per_s"] for x in r if "tokens_per_s" in x and x.get("step", 0) > 5]
    print(f"{name:14} exit {rc}  median tokens/s {statistics.median(t):,.0f}  peak {mem} MiB")
except Exception as e:
    print(f"{name:14} exit {rc}  no metrics ({e}); peak {mem} MiB")
PY
  tail -n 2 "$RES/$name.log"
}
C=bench/configs/llama-1.3b.toml
[[ -n ${SKIP_7B:-} ]] || run 7b_full 200 $B train --config $C --set $S7 recompute.policy=full train.steps=12 output.progress=lines
[[ -n ${SKIP_7B:-} ]] || run 7b_none 200 $B train --config $C --set $S7 recompute.policy=none train.steps=12 output.progress=lines
M="mpiexec -n 2 --allow-run-as-root --oversubscribe --mca pml ob1 --mca btl self,vader,tcp --mca osc ^ucx"
run pp2_1f1b 150 $M $B train --config $C --set train.global_batch_size=8 train.steps=20 parallel.pp=2 train.share_gpus=true output.progress=lines
run pp2_zbh1 150 $M $B train --config $C --set train.global_batch_size=8 train.steps=20 parallel.pp=2 parallel.schedule=zb-h1 train.share_gpus=true output.progress=lines
run tp2_sp 150 $M $B train --config $C --set train.global_batch_size=8 train.steps=20 parallel.tp=2 parallel.sequence_parallel=true train.share_gpus=true output.progress=lines
(cd "$RES" && tar -czf planval.tgz *.log *.jsonl mem.* 2>/dev/null && rm -f *.log *.jsonl mem.*)
