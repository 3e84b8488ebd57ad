#!/usr/bin/env bash
# Installs what baton needs on Debian 12 (only what is missing), configures
# and builds. Idempotent: a second run only rebuilds what changed.
# Usage: bash scripts/setup.sh [build-dir]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}

pkgs=(cmake ninja-build g++ pkg-config git
      libabsl-dev googletest libgmock-dev libopenblas-dev
      libopenmpi-dev openmpi-bin libucx-dev libhdf5-openmpi-dev hdf5-tools
      libtomlplusplus-dev nlohmann-json3-dev libicu-dev
      fortunes fortunes-min)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "baton setup: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -f "$build/build.ninja" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" -j"$(nproc)"
