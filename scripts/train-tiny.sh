#!/usr/bin/env bash
# The default job: sets up and builds, tokenizes the fortunes corpus (a
# Debian package of real English text) once, then trains the tiny model in
# examples/tiny.toml on the CPU. Extra arguments go to `baton train`,
# e.g. --set train.steps=100.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
if [ ! -f data/fortunes.idx ]; then
  mkdir -p data
  # A folder expands to its text files (skipping fortune's *.dat indexes and *.u8 links).
  ./build/baton data tokenize --input /usr/share/games/fortunes --output data/fortunes
fi
# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine
# spinning threads starve the one doing the work (measured: 20x slower).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
exec ./build/baton train --config examples/tiny.toml "$@"
