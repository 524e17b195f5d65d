#!/usr/bin/env bash
# Installs the Debian packages purecache needs, only if any is missing.
# Sourced by main.sh and test.sh; usage: pc_install_deps pkg...
pc_install_deps() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; return 1; }
        sudo="sudo"
    fi
    echo ">> installing: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The benchmark harness (bench/) builds by default, so its peers' packages
# are build dependencies too: oneTBB and libcuckoo (C++ peers, hence g++),
# zlib (trace reader).
PC_BUILD_DEPS=(build-essential cmake pkg-config libck-dev libjemalloc-dev
               libcriterion-dev zlib1g-dev g++ libtbb-dev libcuckoo-dev)
# Only the test command needs these: clang for libFuzzer, and its sanitizer
# runtimes (ASan, UBSan, libFuzzer) from libclang-rt-14-dev.
PC_TEST_DEPS=(clang libclang-rt-14-dev)
# The Redis tier (src/redis/, purecache_redis): hiredis to build it, and a
# redis-server (plus redis-cli) that its tests and bench start themselves.
PC_BUILD_DEPS+=(libhiredis-dev)
PC_TEST_DEPS+=(redis-server redis-tools)
PC_BENCH_DEPS=(redis-server)
# What the main job needs on top: gnuplot for the PNGs, valgrind for
# bench/callgrind-get.sh (instructions per get).
PC_BENCH_DEPS+=(gnuplot-nox valgrind)
