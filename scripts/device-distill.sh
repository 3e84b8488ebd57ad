#!/bin/bash
# Issue 14's demonstration on one GPU, after scripts/device-build.sh built
# build-device: a teacher (8 layers, dim 512) trained on the fortunes
# corpus, then three students for the same steps, tokens and seed:
#   distill-random   4 layers, dim 256, random init, online distillation
#   distill-layers   4 layers, dim 512, init from teacher layers 0 2 4 6 (depth pruning)
#   scratch-256 / scratch-512   the same two students, cross-entropy only
# and a table of val loss, top-1 accuracy and top-1 agreement with the
# teacher (baton eval on each final checkpoint). Logs and metrics under $OUT.
# Usage: bash scripts/device-distill.sh [TEACHER_STEPS] [STUDENT_STEPS]
# (BATON=path DEVICE=cpu: a smoke run elsewhere; ALPHA, TEMP: the loss, default 0.5, 2.0)
set -euo pipefail
TSTEPS=${1:-2000}
SSTEPS=${2:-1000}
OUT=${OUT:-/tmp/distill-out}
mkdir -p "$OUT"
B=${BATON:-./build-device/baton}
[ -x "$B" ] || { echo "build-device/baton missing: run scripts/device-build.sh first" >&2; exit 2; }
RUN=runs/distill-demo
COMMON=(train.seq_len=256 train.micro_batch_size=16 train.global_batch_size=32 train.eval_every=250
        train.eval_batches=12 train.log_every=100 train.device=\"${DEVICE:-cuda}\" checkpoint.every=0 checkpoint.keep=1)
TEACHER=(model.layers=8 model.dim=512 model.heads=8 model.kv_heads=4 model.ffn_dim=1376)
S256=(model.layers=4 model.dim=256 model.heads=4 model.kv_heads=2 model.ffn_dim=688)
S512=(model.layers=4 model.dim=512 model.heads=8 model.kv_heads=4 model.ffn_dim=1376)

job() {  # name command config steps sets...
  local name=$1 cmd=$2 cfg=$3 steps=$4; shift 4
  echo "== $name"
  "$B" "$cmd" --config "$cfg" --set "${COMMON[@]}" train.steps="$steps" \
    checkpoint.dir=\"$RUN/$name\" output.metrics=\"$OUT/$name.metrics.jsonl\" "$@" 2>&1 | tee "$OUT/$name.log" | tail -4
}

job teacher train examples/tiny.toml "$TSTEPS" "${TEACHER[@]}" train.lr=1e-3 train.min_lr=1e-4
T=$RUN/teacher/step_$(printf %08d "$TSTEPS").h5
D=(teacher.checkpoint=\"$T\" distill.mode=\"online\" distill.alpha=${ALPHA:-0.5} distill.temperature=${TEMP:-2.0})
job distill-random distill examples/distill.toml "$SSTEPS" "${S256[@]}" "${D[@]}" student.init=\"random\" student.layers_from=[]
job distill-layers distill examples/distill.toml "$SSTEPS" "${S512[@]}" "${D[@]}" student.init=\"teacher-layers\" student.layers_from=[]
job scratch-256 train examples/tiny.toml "$SSTEPS" "${S256[@]}"
job scratch-512 train examples/tiny.toml "$SSTEPS" "${S512[@]}"

printf '\n%-16s %10s %10s %10s\n' run val_loss top1_acc agreement | tee "$OUT/table.txt"
for name in teacher distill-random distill-layers scratch-256 scratch-512; do
  ck=$RUN/$name/step_$(printf %08d "$([ $name = teacher ] && echo "$TSTEPS" || echo "$SSTEPS")").h5
  "$B" eval --checkpoint "$ck" --data data/fortunes --teacher "$T" --batches 12 --json "$OUT/$name.eval.json" > "$OUT/$name.eval.log" 2>&1
  python3 -c "import json,sys; j=json.load(open('$OUT/$name.eval.json')); m=j.get('model',j); \
print('%-16s %10.4f %10.4f %10.4f' % ('$name', m['val_loss'], m['top1_acc'], j.get('agreement', float('nan'))))" | tee -a "$OUT/table.txt"
done
