#!/usr/bin/env bash
# The main job: install dependencies, build, run the demo/benchmark harness on
# its default workload. Extra arguments go to the harness.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
pc_install_deps "${PC_BUILD_DEPS[@]}"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DPURECACHE_BUILD_TESTS=OFF >/dev/null
cmake --build build/release -j"$(nproc)"
for policy in clock lru; do
    ./build/release/examples/purecache-demo-"$policy" "$(nproc)" 2000000 "$@"
done
