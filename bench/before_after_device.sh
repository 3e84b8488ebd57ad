#!/usr/bin/env bash
# Runs ON THE GPU MACHINE: the speed of two trees side by side in one call,
# so that a refactor's "no slower" claim compares runs on the same GPU,
# same clocks, same minute. BEFORE is a `git archive` tarball of the older
# commit carried as .before/src.tar (made here by
#   git archive -o .before/src.tar <commit>
# and named in `carry` with .bundle and data); AFTER is this tree.
# For each tree: train_bench --preset 125m|1.3b (the model's own step) and
# `baton train` on bench/configs/llama-{125m,1.3b}.toml (the command's step,
# fortunes data), runs interleaved before/after. The table is printed last;
# logs and JSON go to $OUT (or /tmp/ba).
#   bash bench/before_after_device.sh
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RES=${OUT:-/tmp/ba}
mkdir -p "$RES"
OLD=/tmp/before
rm -rf "$OLD" && mkdir -p "$OLD" && tar -xf .before/src.tar -C "$OLD" || { echo "no .before/src.tar"; exit 2; }
ln -sfn "$ROOT/.bundle" "$OLD/.bundle"
ln -sfn "$ROOT/data" "$OLD/data"
cp -r bench/configs "$OLD/bench/" 2>/dev/null
# Configure both (the unpack into .bundle/prefix happens twice, one after the other).
BUILD_DIR=$ROOT/build-device bash scripts/device-build.sh --configure-only >"$RES/cfg_after.log" 2>&1 || { tail -30 "$RES/cfg_after.log"; exit 1; }
(cd "$OLD" && BUILD_DIR=$OLD/build-device bash scripts/device-build.sh --configure-only) >"$RES/cfg_before.log" 2>&1 || { tail -30 "$RES/cfg_before.log"; exit 1; }
LIB=$ROOT/.bundle/prefix/usr/lib/x86_64-linux-gnu
NV=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
export LD_LIBRARY_PATH=$LIB:$LIB/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for d in "$NV/cudnn/lib" "$NV/cuda_nvrtc/lib" "$NV/cu13/lib"; do [[ -d $d ]] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d; done
export LD_LIBRARY_PATH
J=$(( $(nproc) / 2 ))
cmake --build "$ROOT/build-device" -j $J --target baton train_bench >"$RES/build_after.log" 2>&1 &
cmake --build "$OLD/build-device" -j $J --target baton train_bench >"$RES/build_before.log" 2>&1
wait
for t in "$ROOT" "$OLD"; do [[ -x $t/build-device/baton && -x $t/build-device/train_bench ]] || { echo "build failed in $t"; tail -20 "$RES"/build_*.log; exit 1; }; done
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader | tee "$RES/gpu.txt"

bench() {  # bench TAG TREE PRESET
  local tag=$1 tree=$2 p=$3 steps
  if [[ $p == 125m ]]; then steps=(--warmup 3 --steps 10); else steps=(--warmup 2 --steps 5); fi
  (cd "$tree" && timeout 200 build-device/train_bench --preset "$p" "${steps[@]}" --json "$RES/tb_${tag}_$p.json") >"$RES/tb_${tag}_$p.txt" 2>&1
  local n=40; [[ $p == 1.3b ]] && n=20
  (cd "$tree" && rm -rf "runs/bench-$p" && timeout 200 build-device/baton train --config "bench/configs/llama-$p.toml" \
     --set train.steps=$n output.progress=lines) >"$RES/train_${tag}_$p.txt" 2>&1
  cp "$tree/runs/bench-$p/metrics.jsonl" "$RES/train_${tag}_$p.jsonl" 2>/dev/null
  echo "== $tag $p: train_bench exit / baton train done"; tail -n 2 "$RES/train_${tag}_$p.txt"
}
for p in 125m 1.3b; do bench before "$OLD" $p; bench after "$ROOT" $p; done
# The tiny job on the GPU, 30 steps: the same losses before and after?
for tag in before after; do
  tree=$ROOT; [[ $tag == before ]] && tree=$OLD
  (cd "$tree" && rm -rf runs/ba-tiny && timeout 120 build-device/baton train --config examples/tiny.toml --set train.device=cuda \
     train.steps=30 train.eval_every=10 checkpoint.dir= output.metrics=runs/ba-tiny/metrics.jsonl output.progress=lines) >"$RES/train_${tag}_tiny.txt" 2>&1
  cp "$tree/runs/ba-tiny/metrics.jsonl" "$RES/train_${tag}_tiny.jsonl" 2>/dev/null
done
python3 - "$RES" <<'PY'
import json, sys
res = sys.argv[1]
def curve(tag):
    try:
        return [(r.get("step"), r.get("loss"), r.get("grad_norm"), r.get("val_loss")) for r in map(json.loads, open(f"{res}/train_{tag}_tiny.jsonl")) if "step" in r or "val_loss" in r]
    except Exception as e:
        return str(e)
b, a = curve("before"), curve("after")
print("tiny job on cuda, 30 steps:", "identical losses, grad norms and val losses" if b == a and isinstance(b, list) and b else f"DIFFERENT\nbefore {b}\nafter  {a}")
PY

echo; echo "================ before / after (tokens/s) ================"
(cd "$RES" && tar -czf runs.tgz tb_* train_* build_*.log cfg_*.log 2>/dev/null && rm -f tb_* train_* build_*.log cfg_*.log)
python3 - "$RES" <<'PY'
import json, sys, glob, statistics, re
res = sys.argv[1]
import tarfile, os, tempfile
d = tempfile.mkdtemp(); tarfile.open(f"{res}/runs.tgz").extractall(d); res = d
def tb(tag, p):
    try:
        j = json.load(open(f"{res}/tb_{tag}_{p}.json"))
        return round(j["results"][0]["tokens_per_s"])
    except Exception:
        return None
def tr(tag, p):
    try:
        rows = [json.loads(l) for l in open(f"{res}/train_{tag}_{p}.jsonl")]
    except Exception:
        return None
    t = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r and r.get("step", 0) > 5]
    return round(statistics.median(t)) if t else None
print(f"{'preset':8} {'what':22} {'before':>12} {'after':>12} {'after/before':>13}")
for p in ("125m", "1.3b"):
    for name, f in (("train_bench", tb), ("baton train (median)", tr)):
        b, a = f("before", p), f("after", p)
        r = f"{float(a)/float(b):.3f}" if a and b else "-"
        print(f"{p:8} {name:22} {str(b):>12} {str(a):>12} {r:>13}")
PY
