#!/usr/bin/env bash
# The default job: sets up and builds, then trains the tiny model in
# examples/tiny.toml on the CPU (the first run tokenizes its corpus, the
# Debian package `fortunes`, into data/). Extra arguments go to `baton train`,
# e.g. --set train.steps=100.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine
# spinning threads starve the one doing the work (measured: 20x slower).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
exec ./build/baton train --config examples/tiny.toml "$@"
