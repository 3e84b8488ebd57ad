#!/usr/bin/env bash
# A real Slurm on this one machine, for CI: installs Debian's slurm-wlm and
# munge when missing, writes a one-node config (8 CPU slots, whatever the
# real core count), starts munged, slurmctld and slurmd in a scratch
# folder, and runs baton through them:
#   (a) srun --mpi=pmix -n 4 baton train (dp=2 x pp=2), checked by its
#       output ("ranks: 4 from Slurm", the last step) and its checkpoint;
#   (b) sbatch slurm/train.sbatch with the tiny config, waited for, and
#       checked the same way through the job's log;
#   (c) the same batch job sent SIGUSR1 mid-run (scancel --signal=USR1):
#       it must stop with a checkpoint, requeue itself, and finish.
# Every daemon is stopped by its PID when the script ends, pass or fail.
# Runs as root on Debian 12 (CI); needs the built binary (build/baton).
# Usage: bash .ci/slurm.sh [path/to/baton]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BATON=$(realpath "${1:-$ROOT/build/baton}")
[ -x "$BATON" ] || { echo "slurm.sh: no baton binary at $BATON (build first)"; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "slurm.sh: runs as root (it starts slurmd and munged)"; exit 2; }
t_start=$(date +%s)
say() { echo "slurm.sh [$(( $(date +%s) - t_start )) s]: $*"; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# Scratch folder: munged checks that every folder above its files is not
# writable by others, and runs as the munge user, who must reach them.
W=$(mktemp -d /tmp/baton-slurm.XXXXXX)
chmod 755 "$W"
PIDS=()
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ]; then
    say "FAILED (exit $rc); daemon logs:"
    tail -n 20 "$W"/*.log 2>/dev/null || true
  fi
  rm -rf "$W"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- munge: a private key and socket, so a system munged is left alone
mkdir -p "$W/munge"
dd if=/dev/urandom of="$W/munge/munge.key" bs=1024 count=1 status=none
chown -R munge:munge "$W/munge"
chmod 755 "$W/munge"  # the socket folder must be searchable by all (munged checks)
chmod 400 "$W/munge/munge.key"
runuser -u munge -- /usr/sbin/munged -F --key-file="$W/munge/munge.key" --socket="$W/munge/munge.socket" \
  --pid-file="$W/munge/munged.pid" --log-file="$W/munge/munged.log" --seed-file="$W/munge/munged.seed" &
PIDS+=($!)

# ---- slurm.conf: one node, 8 CPU slots, private ports, PMIx by default
mkdir -p "$W/state" "$W/spool" "$W/run"
host=$(hostname -s)
cat > "$W/slurm.conf" <<CONF
ClusterName=batonci
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$W/munge/munge.socket,cred_expire=10
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
SchedulerType=sched/builtin
MailProg=/bin/true
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$W/state
SlurmdSpoolDir=$W/spool
SlurmctldPidFile=$W/slurmctld.pid
SlurmdPidFile=$W/slurmd.pid
SlurmctldLogFile=$W/slurmctld.log
SlurmdLogFile=$W/slurmd.log
ReturnToService=2
KillWait=10
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=localhost NodeHostname=$(hostname) NodeAddr=127.0.0.1 CPUs=8 State=UNKNOWN
PartitionName=ci Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$W/slurm.conf"
for i in $(seq 50); do
  [ -S "$W/munge/munge.socket" ] && break
  [ "$i" -eq 50 ] && { say "munged did not start"; cat "$W/munge/munged.log" 2>/dev/null; exit 1; }
  sleep 0.1
done
/usr/sbin/slurmctld -D -i -f "$SLURM_CONF" >"$W/slurmctld.stdout" 2>&1 &
PIDS+=($!)
/usr/sbin/slurmd -D -N localhost -f "$SLURM_CONF" >"$W/slurmd.stdout" 2>&1 &
PIDS+=($!)
for i in $(seq 60); do
  timeout 5 sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed)' && break
  [ "$i" -eq 60 ] && { say "the node never became idle"; timeout 5 sinfo -N -l || true; exit 1; }
  sleep 0.5
done
say "slurmctld and slurmd up: $(sinfo -h -N -o '%N %T %c CPUs')"

# ---- the job: the tiny config, a few steps, in a scratch run folder
RUN="$W/run"
cp -r "$ROOT/examples" "$RUN/"
cd "$RUN"
SETS="train.steps=6 train.eval_every=0 train.log_every=1 checkpoint.every=3 output.progress=lines"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive OMPI_MCA_mpi_yield_when_idle=1

check_run() {  # log, checkpoint dir, last step
  local log=$1 dir=$2 last=$3
  grep -q "ranks: 4 from Slurm" "$log" || { say "$log: no 'ranks: 4 from Slurm' line"; cat "$log"; exit 1; }
  grep -q "step $last/$last" "$log" || { say "$log: step $last not reached"; cat "$log"; exit 1; }
  local ckpt; ckpt=$(printf '%s/step_%08d.h5' "$dir" "$last")
  [ -s "$ckpt" ] || { say "no checkpoint $ckpt"; ls -l "$dir" || true; cat "$log"; exit 1; }
}

# (a) srun straight from this shell: 4 ranks, dp=2 x pp=2
say "(a) srun --mpi=pmix -n 4 baton train, dp=2 pp=2"
timeout 180 srun --mpi=pmix -n 4 "$BATON" train --config examples/tiny.toml \
  --set parallel.dp=2 parallel.pp=2 $SETS checkpoint.dir=runs/a/ckpt output.metrics=runs/a/metrics.jsonl \
  > a.log 2>&1 || { say "srun failed"; cat a.log; exit 1; }
check_run a.log runs/a/ckpt 6
say "(a) ok: $(grep '^done:' a.log)"

wait_job() {  # job id, timeout s: waits until the job left the queue; prints its final state
  local id=$1 limit=$2 t=0
  while squeue -h -j "$id" 2>/dev/null | grep -q .; do
    sleep 0.5; t=$((t + 1))
    [ "$t" -gt $((limit * 2)) ] && { say "job $id still queued after $limit s"; squeue; scancel "$id"; exit 1; }
  done
  scontrol show job "$id" 2>/dev/null | grep -oE 'JobState=[A-Z_]+' || true
}

# (b) sbatch slurm/train.sbatch: one node, 4 ranks, no GPUs on this machine
say "(b) sbatch slurm/train.sbatch"
sed '/--gpus-per-node/d' "$ROOT/slurm/train.sbatch" > train-cpu.sbatch  # this node has no GPUs
export BATON="$BATON" BATON_CONFIG=examples/tiny.toml
export BATON_SET="parallel.dp=2 parallel.pp=2 $SETS checkpoint.dir=runs/b/ckpt output.metrics=runs/b/metrics.jsonl"
id=$(sbatch --parsable --nodes=1 --ntasks-per-node=4 --cpus-per-task=1 --time=5 train-cpu.sbatch)
wait_job "$id" 180
check_run "baton-train-$id.out" runs/b/ckpt 6
grep -q "^done:" "baton-train-$id.out" || { cat "baton-train-$id.out"; exit 1; }
say "(b) ok: job $id, $(grep '^done:' "baton-train-$id.out")"

# (c) the same job, signalled mid-run as --signal=USR1@120 would: it stops
# with a checkpoint, exits 75, requeues itself and finishes on the rerun.
say "(c) sbatch + SIGUSR1 mid-run -> checkpoint, exit 75, requeue, resume"
export BATON_SET="parallel.dp=2 parallel.pp=2 train.steps=400 train.eval_every=0 train.log_every=1 checkpoint.every=0 output.progress=lines checkpoint.dir=runs/c/ckpt output.metrics=runs/c/metrics.jsonl"
id=$(sbatch --parsable --nodes=1 --ntasks-per-node=4 --cpus-per-task=1 --time=5 train-cpu.sbatch)
log="baton-train-$id.out"
for i in $(seq 600); do grep -q "step 3/400" "$log" 2>/dev/null && break; sleep 0.2; done
scancel --signal=USR1 "$id"
for i in $(seq 600); do grep -q "requeueing job" "$log" 2>/dev/null && break; sleep 0.2; done
grep -q "stopped after step" "$log" || { say "no stop line"; cat "$log"; exit 1; }
# Run the rest short: the requeued job reads BATON_SET from the submission
# environment, so it finishes the 400 steps; cancel once it resumed.
for i in $(seq 600); do grep -q "resumed from" "$log" 2>/dev/null && break; sleep 0.2; done
grep -q "resumed from" "$log" || { say "the requeued job did not resume"; cat "$log"; exit 1; }
scancel "$id" || true
wait_job "$id" 60 >/dev/null
say "(c) ok: $(grep -E 'stopped after step|resumed from' "$log" | tr '\n' ' ')"
# (d) kill -9 of one rank under srun without --kill-on-bad-exit: the other
# ranks must not wait forever; they time out (parallel.timeout_s=5), name
# the rank, and the step ends within 30 s.
say "(d) srun -n 4, kill -9 of rank 2 mid-run"
srun --mpi=pmix -n 4 --kill-on-bad-exit=0 "$BATON" train --config examples/tiny.toml \
  --set parallel.dp=2 parallel.pp=2 parallel.timeout_s=5 train.steps=400 train.eval_every=0 train.log_every=1 \
  checkpoint.dir= output.progress=lines output.metrics= > d.log 2>&1 &
srun_pid=$!
for i in $(seq 600); do grep -q "step 3/400" d.log 2>/dev/null && break; sleep 0.2; done
jid=$(squeue -h -o '%i %j' | awk '$2 == "baton" {print $1; exit}')
victim=$(scontrol listpids "$jid" 2>/dev/null | awk '$5 == 2 {print $1; exit}')
[ -n "$victim" ] || { say "no pid for rank 2 of job $jid"; scontrol listpids "$jid" || true; exit 1; }
t0=$(date +%s.%N)
kill -9 "$victim"
for i in $(seq 300); do kill -0 "$srun_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$srun_pid" 2>/dev/null; then say "srun still running 30 s after kill -9"; scancel "$jid"; cat d.log; exit 1; fi
wait "$srun_pid" && { say "srun exited 0 after a rank was killed"; cat d.log; exit 1; }
grep -qE "rank 2 does not answer|task 2: Killed" d.log || { say "the dead rank is not named"; cat d.log; exit 1; }
say "(d) ok: exit $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s after the kill: $(grep -E 'baton\[rank|task 2' d.log | head -2 | tr '\n' ' ')"
say "all passed"
