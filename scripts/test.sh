#!/usr/bin/env bash
# The test command: sets up, builds and runs the whole suite with ctest
# (single-rank tests, multi-rank tests under mpiexec; GPU tests skip
# without a GPU). .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
# Open MPI refuses root and oversubscription by default; CI runs as root on 2 cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
# Tests run in parallel on few cores: idle OpenMP threads must sleep, not spin.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
