#!/usr/bin/env bash
# The whole test suite: install dependencies, build both policies, run every
# Criterion suite through ctest, then check the installed package (pkg-config
# and find_package) for both PURECACHE_EXACT_LRU settings.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
pc_install_deps "${PC_BUILD_DEPS[@]}"
jobs=$(nproc)

echo ">> build and test (both policies)"
cmake -S . -B build/test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPURECACHE_WERROR=ON >/dev/null
cmake --build build/test -j"$jobs"
ctest --test-dir build/test --output-on-failure -j"$jobs"

echo ">> install check"
tests/install/check.sh build/install-check
echo ">> all tests passed"
