#!/usr/bin/env bash
# Instructions per CLOCK get hit with an 8-byte key, counted by callgrind.
#
# Runs `purecache-bench --callgrind-get N` under valgrind with collection
# switched on only inside bench_get_loop: N pc_get calls of one present
# 8-byte key, through the pointer dlsym returned for the CLOCK library.
# Prints Ir / N, and the same without the loop's own instructions (the
# loop function's self cost: counter, argument set-up, indirect call).
# The same for a cache of the frequency policy (CLOCK build,
# PC_POLICY_FREQUENCY; --callgrind-peer frequency): its read path is
# CLOCK's with a use count instead of a reference bit, so the two should
# match.
# For scale it then counts the raw ck_hs peer's get (hash, ck_hs_get,
# compare callback, copy; called through the harness's peer vtable) the
# same way: the floor under any read path built on ck_hs_get.
#
# usage: bench/callgrind-get.sh [path/to/purecache-bench] [N]
# CALLGRIND_ANNOTATE=1 also prints the per-function breakdown.
set -euo pipefail
bin=${1:-build/release/bench/purecache-bench}
n=${2:-1000000}
command -v valgrind >/dev/null || {
    echo "callgrind-get: valgrind not installed (apt-get install valgrind)" >&2
    exit 1
}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

count() { # label toggle-function args...
    local label=$1 fn=$2
    shift 2
    valgrind --tool=callgrind --toggle-collect="$fn" \
        --callgrind-out-file="$out/cg.out" "$bin" "$@" >/dev/null 2>"$out/log" \
        || { cat "$out/log" >&2; exit 1; }
    local ir self
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$out/cg.out")
    self=$(callgrind_annotate --inclusive=no "$out/cg.out" 2>/dev/null |
        awk -v fn="$fn" '!done && ($0 ~ ":" fn " " || $0 ~ ":" fn "$") {gsub(",", "", $1); print $1; done = 1}')
    awk -v ir="$ir" -v self="${self:-0}" -v n="$n" -v l="$label" 'BEGIN {
        printf "callgrind-get: %-35s %6.1f instructions per get (%.1f without the loop)\n",
            l, ir / n, (ir - self) / n
    }'
    if [ -n "${CALLGRIND_ANNOTATE:-}" ]; then
        callgrind_annotate --inclusive=no "$out/cg.out" | grep -E '^ *[0-9,]+ ' | head -12
    fi
}
count "clock pc_get hit, 8-byte key:" bench_get_loop --callgrind-get "$n"
count "frequency pc_get hit, 8-byte key:" bench_get_loop --callgrind-get "$n" --callgrind-peer frequency
count "raw ck_hs get (ceiling peer):" bench_peer_get_loop --callgrind-get "$n" --callgrind-peer ck_hs
