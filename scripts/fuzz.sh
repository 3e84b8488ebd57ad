#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang under ASan/UBSan in
# build-fuzz and runs each for SECONDS seconds (default 60) on its corpus
# (fuzz-corpus/<name>, seeded from the repository's own examples). Exits
# non-zero when a fuzzer finds a crash (a hang too with FUZZ_HANGS_FAIL=1);
# the reproducer lands in fuzz-artifacts/<name>/. Usage: scripts/fuzz.sh [SECONDS] [NAME...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(config_fuzz idx_fuzz checkpoint_fuzz infer_line_fuzz)
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install -y clang libclang-rt-14-dev)"; exit 2; }

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Release -DBATON_FUZZ=ON -DBATON_CUDA=OFF \
  "${launcher[@]}" >/dev/null
cmake --build build-fuzz -j"${FUZZ_JOBS:-2}" --target "${names[@]}"

# Seeds: the example configs, a tokenized dataset's index, a checkpoint, JSONL prompts.
seed() {  # seed NAME FILE...
  mkdir -p "fuzz-corpus/$1"
  shift_name=$1; shift
  for f in "$@"; do [ -f "$f" ] && cp -f "$f" "fuzz-corpus/$shift_name/" || true; done
}
seed config_fuzz examples/*.toml
mkdir -p fuzz-corpus/idx_fuzz fuzz-corpus/checkpoint_fuzz fuzz-corpus/infer_line_fuzz
for f in tests/data/*.idx; do  # 2 bytes of .bin size, then the index
  [ -f "$f" ] || continue
  { printf '\x00\x10'; cat "$f"; } > "fuzz-corpus/idx_fuzz/$(basename "$f")"
done
printf '{"id": 1, "prompt": "hello", "max_tokens": 8}' > fuzz-corpus/infer_line_fuzz/baton.jsonl
printf '{"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "hi", "max_tokens": 4}}' \
  > fuzz-corpus/infer_line_fuzz/openai.jsonl

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for n in "${names[@]}"; do
  mkdir -p "fuzz-artifacts/$n"
  [ "$n" = checkpoint_fuzz ] && export BATON_FUZZ_SEED="$PWD/fuzz-corpus/checkpoint_fuzz"
  log="fuzz-artifacts/$n/log.txt"
  max_len=8192
  [ "$n" = checkpoint_fuzz ] && max_len=32768  # the seed checkpoint is ~11 KB of HDF5
  if build-fuzz/tests/fuzz/"$n" -max_total_time="$seconds" -max_len=$max_len -timeout=20 -rss_limit_mb=4096 \
       -artifact_prefix="fuzz-artifacts/$n/" "fuzz-corpus/$n" >"$log" 2>&1; then
    result=ok
  elif grep -q "ERROR: libFuzzer: timeout" "$log"; then
    # A hang (one input ran past -timeout): HDF5 1.10 looped in H5HG_read on
    # a damaged global heap until the layout check refused such heaps
    # (checkpoints/h5_layout_check.h). Fails only on request.
    result=HANG; [ "${FUZZ_HANGS_FAIL:-0}" = 1 ] && status=1
  else
    result=CRASH; status=1
  fi
  unset BATON_FUZZ_SEED
  runs=$(grep -Eo '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  echo "fuzz: $n: $result, ${runs:-0} executions in ${seconds} s (log $log)"
  [ $result = ok ] || tail -30 "$log"
done
exit $status
