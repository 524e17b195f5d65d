#!/usr/bin/env bash
# The main job: install dependencies, build in Release, run the benchmark
# harness (purecache-bench) on its default workload, then count
# instructions per CLOCK get, and per miss + evicting put, with callgrind.
# A few minutes on 2 cores.
# Extra arguments go to the harness (e.g. --traces all, --threads 1,2,4);
# results land in bench-out/ (CSV, gnuplot PNGs) besides the stdout table.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
pc_install_deps "${PC_BUILD_DEPS[@]}" "${PC_BENCH_DEPS[@]}"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DPURECACHE_BUILD_TESTS=OFF >/dev/null
cmake --build build/release -j"$(nproc)"
mkdir -p bench-out
./build/release/bench/purecache-bench "$@" | tee bench-out/report.txt
echo
bash bench/callgrind-get.sh build/release/bench/purecache-bench 1000000 |
    tee bench-out/callgrind-get.txt
echo
bash bench/callgrind-miss.sh build/release/bench/purecache-bench 200000 |
    tee bench-out/callgrind-miss.txt
