#!/usr/bin/env bash
# Fetches, HERE (Debian 12, network), the Debian packages that baton needs
# and the GPU machine (Ubuntu 24.04, no network) lacks, into .bundle/debs
# (ignored by git, carried by the device call). scripts/device-build.sh
# unpacks them there with `dpkg -x` into .bundle/prefix. See docs/device.md.
#
# The list is the dependency closure from `apt-cache depends`, minus what
# the device already has (libc6, libstdc++6, Open MPI, libcurl, libssl, zlib,
# libibverbs/librdmacm/libnuma of its UCX runtime). Build-only deps of the
# -dev packages (zlib1g-dev, libjpeg-dev, ...) are skipped: we link nothing
# from them. Keep it under 40 MB: the carry limit is 64 MiB for everything.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  # Abseil 20220623 (headers + CMake config, shared libs)
  libabsl-dev libabsl20220623
  # GoogleTest/gmock 1.12 (static libs + CMake config; sources in googletest)
  libgtest-dev libgmock-dev
  # toml++ 3.3 (compiled library) and nlohmann-json 3.11 (header-only)
  libtomlplusplus-dev libtomlplusplus3 nlohmann-json3-dev
  # OpenBLAS (pthread flavour: cblas.h and libopenblas.so) + Fortran runtime
  libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread libgfortran5 libquadmath0
  # UCX 1.13 headers and pkg-config files (the device has only the runtime)
  libucx-dev libucx0
  # ICU 72 (runtime/bpe_tokenizer.cc, pretokenizer.cc); the device's ICU 74
  # has another soname, so the runtime library travels too
  libicu-dev libicu72
  # parallel HDF5 1.10 (openmpi), used only if the device has no HDF5 headers
  libhdf5-openmpi-dev libhdf5-openmpi-103-1 libhdf5-openmpi-hl-100 libaec0 libsz2
)

mkdir -p .bundle/debs
cd .bundle/debs
missing=()
for p in "${PACKAGES[@]}"; do
  if ! ls "${p}"_*.deb >/dev/null 2>&1; then missing+=("$p"); fi
done
if ((${#missing[@]})); then
  echo "device-bundle: downloading ${missing[*]}"
  apt-get download "${missing[@]}"
fi
cd ../..
echo "device-bundle: $(ls .bundle/debs/*.deb | wc -l) packages, $(du -sh .bundle/debs | cut -f1) in .bundle/debs"
# An unpacked prefix from a local --configure-only test must not travel.
rm -rf .bundle/prefix
