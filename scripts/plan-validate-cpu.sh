#!/usr/bin/env bash
# Checks `baton plan` against real CPU runs of examples/tiny.toml under
# mpiexec. Per layout it prints the planner's prediction next to:
#  - CPU seconds per step per rank (user+sys of a 25-step run less a 5-step
#    run, over 20 steps, mean over ranks): what a rank costs on a core of
#    its own, robust to a shared, loaded machine; predicted as step time
#    less the pipeline's idle share, with every rank on its own core;
#  - wall seconds per step (median of steps 6-25 in the metrics JSONL), on
#    this machine's cores as they are (load printed);
#  - peak RSS of the largest rank less an idle run's, against the predicted
#    bytes per rank.
# Usage: scripts/plan-validate-cpu.sh [BUILD_DIR] [PROFILE.json]   (a markdown table on stdout)
# PLAN_LAYOUTS overrides the layouts: lines of "RANKS section.key=value...".
set -euo pipefail
build=${1:-build}
profile=${2:-/tmp/plan-cpu-profile.json}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive OMPI_MCA_mpi_yield_when_idle=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
[ -f "$profile" ] || "$build/baton" plan --calibrate --out "$profile" --cores "$(nproc)" >&2
dedicated=$(mktemp --suffix=.json)
python3 -c "import json,sys; p=json.load(open('$profile')); p['concurrent_ranks']=0; json.dump(p, open('$dedicated','w'))"
out=$(mktemp -d)
common="train.eval_every=0 checkpoint.dir= output.progress=lines train.log_every=1"

# One run: prints "sum_cpu_seconds max_rss_kib".
run() {  # ranks steps metrics sets...
  local ranks=$1 steps=$2 metrics=$3; shift 3
  rm -f "$out"/res.*
  timeout 600 mpiexec -n "$ranks" --bind-to none sh -c "/usr/bin/time -f '%U %S %M' -o $out/res.\$OMPI_COMM_WORLD_RANK \
    $build/baton train --config examples/tiny.toml --set $common train.steps=$steps output.metrics=$metrics $*" \
    </dev/null >/dev/null 2>&1 || true
  cat "$out"/res.* | awk '{c += $1 + $2; if ($3 > m) m = $3} END {printf "%.3f %d\n", c, m}'
}

default_layouts="1 parallel.dp=1
1 recompute.policy=full
2 parallel.dp=2
2 parallel.dp=2 parallel.zero=1
2 parallel.pp=2
2 parallel.pp=2 parallel.schedule=zb-h1
2 parallel.pp=2 parallel.schedule=interleaved parallel.virtual_stages=2
2 parallel.tp=2
4 parallel.dp=2 parallel.pp=2
4 parallel.pp=4
"
read -r _ base_kib < <(run 1 1 "" model.layers=1 model.dim=8 model.heads=2 model.kv_heads=2 model.ffn_dim=8)
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| layout | ranks | CPU s/step/rank predicted | measured | error | wall ms/step predicted | measured | error | MB/rank predicted | measured | error |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
while read -r ranks sets; do
  [ -z "$ranks" ] && continue
  read -r cpu5 _ < <(run "$ranks" 5 "" $sets)
  read -r cpu25 rss < <(run "$ranks" 25 "$out/m.jsonl" $sets)
  wall=$(python3 -c "
import json, statistics
rows = [json.loads(l) for l in open('$out/m.jsonl') if '\"tokens_per_s\"' in l]
print('%.3f' % statistics.median(16 * 128 / r['tokens_per_s'] for r in rows[5:]))")
  plan() { "$build/baton" plan --config examples/tiny.toml --gpus "$ranks" --gpu "$1" --json --top 1 --set $sets; }
  ded=$(plan "$dedicated" | python3 -c "import json,sys; c=json.load(sys.stdin)['config_layout']; print(c['step_s'] - c['bubble'] * c['pipeline_s'], c['peak_bytes'] / 1e6, c['layout'].replace(' ', '_'))")
  shared=$(plan "$profile" | python3 -c "import json,sys; print(json.load(sys.stdin)['config_layout']['step_s'])")
  python3 - $ded $shared $cpu5 $cpu25 $rss $base_kib $wall $ranks <<'PY'
import sys
busy, mb, layout, shared, c5, c25, rss, base, wall, ranks = sys.argv[1:]
busy, mb, shared, c5, c25, rss, base, wall, ranks = map(float, (busy, mb, shared, c5, c25, rss, base, wall, ranks))
cpu = (c25 - c5) / 20 / ranks
mmb = (rss - base) * 1024 / 1e6
e = lambda p, m: "%+.0f %%" % (100 * (p / m - 1))
print("| %s | %d | %.4f | %.4f | %s | %.1f | %.1f | %s | %.1f | %.1f | %s |" % (
    layout.replace('_', ' '), ranks, busy, cpu, e(busy, cpu), 1e3 * shared, 1e3 * wall, e(shared, wall), mb, mmb, e(mb, mmb)))
PY
done <<<"${PLAN_LAYOUTS:-$default_layouts}"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$out" "$dedicated"
