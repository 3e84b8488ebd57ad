#!/usr/bin/env bash
# Runs ON THE GPU MACHINE (Ubuntu 24.04, nvcc 13, no network), from the repo
# root, with .bundle carried (made here by scripts/device-bundle.sh):
#   bash scripts/device-build.sh            # unpack, configure, build, run GPU tests
#   bash scripts/device-build.sh --configure-only
# Unpacks the Debian 12 .debs into .bundle/prefix with `dpkg -x` (never into
# /), points CMake, pkg-config and the loader there, builds only what the
# GPU checks need, runs them and prints a PASS/FAIL table last. The full
# log goes to $OUT/device-build.log when $OUT is set. See docs/device.md.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PREFIX=$ROOT/.bundle/prefix
BUILD=${BUILD_DIR:-$ROOT/build-device}
ARCH=x86_64-linux-gnu
LOG=${OUT:-/tmp}/device-build.log
JOBS=${JOBS:-$(nproc)}
: >"$LOG"
declare -a SUMMARY=()
note() { echo "device-build: $*" | tee -a "$LOG"; }
step() {  # step NAME CMD...: run, log, remember PASS/FAIL
  local name=$1; shift
  note "== $name: $*"
  if "$@" >>"$LOG" 2>&1; then SUMMARY+=("PASS  $name"); return 0; fi
  SUMMARY+=("FAIL  $name (see $LOG)"); tail -n 40 "$LOG"; return 1
}
finish() {
  echo; echo "================ device-build summary ================"
  printf '%s\n' "${SUMMARY[@]}"
  echo "======================================================="
  printf '%s\n' "${SUMMARY[@]}" >>"$LOG"
  grep -q '^FAIL' <<<"$(printf '%s\n' "${SUMMARY[@]}")" && exit 1 || exit 0
}

# ---- 1. unpack
ls .bundle/debs/*.deb >/dev/null 2>&1 || { note "no .bundle/debs: run scripts/device-bundle.sh here and carry .bundle"; exit 2; }
rm -rf "$PREFIX" && mkdir -p "$PREFIX"
for deb in .bundle/debs/*.deb; do dpkg -x "$deb" "$PREFIX" || { note "dpkg -x $deb failed"; exit 1; }; done
# pkg-config files name prefix=/usr: rewrite to the bundle.
# (UCX writes "prefix = /usr", with spaces.)
find "$PREFIX" -name '*.pc' -exec sed -i -E -e "s#^(prefix|libdir|includedir) *= */usr#\1=$PREFIX/usr#" {} +
LIBDIRS="$PREFIX/usr/lib/$ARCH:$PREFIX/usr/lib/$ARCH/openblas-pthread"
export LD_LIBRARY_PATH="$LIBDIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LIBRARY_PATH="$LIBDIRS${LIBRARY_PATH:+:$LIBRARY_PATH}"
# CMake 4 rejects config files written for policy versions < 3.5 unless told.
export CMAKE_POLICY_VERSION_MINIMUM=3.5
export PKG_CONFIG_PATH="$PREFIX/usr/lib/$ARCH/pkgconfig:$PREFIX/usr/lib/$ARCH/openblas-pthread/pkgconfig:$PREFIX/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
SUMMARY+=("PASS  unpack $(ls .bundle/debs/*.deb | wc -l) debs into .bundle/prefix ($(du -sh "$PREFIX" | cut -f1))")

# ---- 2. what the machine has
{
  echo "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2)"
  echo "nvcc: $(nvcc --version 2>&1 | tail -1)"; echo "cmake: $(cmake --version | head -1)"
  echo "gcc: $(gcc --version | head -1)"; echo "mpicc: $(mpicc --showme:version 2>&1 | head -1)"
} | tee -a "$LOG"

# HDF5: use the system's if it has headers, else the bundled parallel one.
HDF5_ARGS=()
if ! ls /usr/include/hdf5.h /usr/include/hdf5/serial/hdf5.h /usr/include/hdf5/openmpi/hdf5.h >/dev/null 2>&1 \
   && ! command -v h5cc >/dev/null && ! command -v h5pcc >/dev/null; then
  note "no system HDF5 headers: using the bundled libhdf5-openmpi"
  HDF5_ARGS=(-DHDF5_C_COMPILER_EXECUTABLE=/nonexistent/h5cc
             -DHDF5_C_INCLUDE_DIR="$PREFIX/usr/include/hdf5/openmpi"
             -DHDF5_C_LIBRARY_hdf5="$PREFIX/usr/lib/$ARCH/libhdf5_openmpi.so"
             -DHDF5_C_LIBRARY_hdf5_hl="$PREFIX/usr/lib/$ARCH/libhdf5_openmpi_hl.so")
  export HDF5_ROOT="$PREFIX/usr"
fi

# ---- 3. configure
step "cmake configure" cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBATON_CUDA=ON \
  -DCMAKE_PREFIX_PATH="$PREFIX/usr;$PREFIX/usr/lib/$ARCH/cmake" \
  -DCMAKE_INCLUDE_PATH="$PREFIX/usr/include;$PREFIX/usr/include/$ARCH/openblas-pthread" \
  -DCMAKE_LIBRARY_PATH="$PREFIX/usr/lib/$ARCH;$PREFIX/usr/lib/$ARCH/openblas-pthread" \
  -DCBLAS_INCLUDE_DIR="$PREFIX/usr/include/$ARCH/openblas-pthread" "${HDF5_ARGS[@]}" || finish
[[ ${1:-} == --configure-only ]] && finish  # for testing the unpack half on a machine without a GPU

# ---- 4. GPU tests first (they matter most), then the CPU kernel tests, then baton
GPU_TESTS=$(cd "$ROOT" && ls tests/*/*_gpu_test.cc 2>/dev/null | xargs -n1 basename | sed 's/\.cc$//')
KERNEL_TESTS=$(cd "$ROOT" && ls tests/kernels/*_test.cc | xargs -n1 basename | sed 's/\.cc$//' | grep -v '_gpu_test$')
# shellcheck disable=SC2086
if step "build gpu tests" cmake --build "$BUILD" -j "$JOBS" --target $GPU_TESTS; then
  for t in $GPU_TESTS; do step "run $t" "$BUILD/$t" --gtest_brief=1; grep -E "SKIPPED|PASSED|FAILED|tests ran" "$LOG" | tail -n 3; done
fi
# shellcheck disable=SC2086
if step "build kernel tests" cmake --build "$BUILD" -j "$JOBS" --target $KERNEL_TESTS; then
  for t in $KERNEL_TESTS; do step "run $t" "$BUILD/$t" --gtest_brief=1; done
fi
step "build baton" cmake --build "$BUILD" -j "$JOBS" --target baton
finish
