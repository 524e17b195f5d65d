#!/usr/bin/env bash
# The whole test suite, for both policies:
#  1. normal build (gcc, -Werror, jemalloc, internal invariants checked):
#     every Criterion suite;
#  2. ASan + UBSan build (clang): every suite, plus a short seeded run of
#     the libFuzzer targets (fuzz_api_clock, fuzz_api_lru, and
#     fuzz_features for clock, lru and frequency);
#  3. TSan build (gcc, ck_pr on compiler builtins, src/tsan.h annotations):
#     the concurrent suites (ctest label "concurrent");
# then checks the installed package (pkg-config and find_package) for both
# PURECACHE_EXACT_LRU settings. Set PC_TEST_SKIP_SANITIZERS=1 to run only
# step 1 and the install check (quick local iteration).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
pc_install_deps "${PC_BUILD_DEPS[@]}" "${PC_TEST_DEPS[@]}"
jobs=$(nproc)
common=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DPURECACHE_WERROR=ON)

echo ">> build and test (both policies)"
cmake -S . -B build/test "${common[@]}" -DPURECACHE_DEBUG=ON >/dev/null
cmake --build build/test -j"$jobs"
ctest --test-dir build/test --output-on-failure -j"$jobs"

if [ "${PC_TEST_SKIP_SANITIZERS:-0}" != 1 ]; then
    # Leak checking stays on (LeakSanitizer); a UBSan finding aborts.
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1

    echo ">> ASan + UBSan (clang): every suite, and the fuzz targets"
    cmake -S . -B build/asan "${common[@]}" -DCMAKE_C_COMPILER=clang \
        -DCMAKE_CXX_COMPILER=clang++ -DPURECACHE_SANITIZE=address \
        -DPURECACHE_FUZZ=ON -DPURECACHE_BUILD_BENCH=OFF \
        -DPURECACHE_BUILD_EXAMPLES=OFF >/dev/null
    cmake --build build/asan -j"$jobs"
    ctest --test-dir build/asan --output-on-failure -j"$jobs"

    echo ">> TSan (gcc): concurrent suites"
    cmake -S . -B build/tsan "${common[@]}" -DPURECACHE_SANITIZE=thread \
        -DPURECACHE_BUILD_BENCH=OFF -DPURECACHE_BUILD_EXAMPLES=OFF >/dev/null
    cmake --build build/tsan -j"$jobs"
    ctest --test-dir build/tsan --output-on-failure -j"$jobs" -L concurrent
fi

echo ">> install check"
tests/install/check.sh build/install-check
echo ">> all tests passed"
