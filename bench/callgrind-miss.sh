#!/usr/bin/env bash
# Instructions per cache-aside miss: a get that misses, then the put of
# that key into a full cache, which evicts. Counted by callgrind for the
# purecache policies (clock, frequency, lru) and the mutex-lru peer, on
# the same keys.
#
# Runs `purecache-bench --callgrind-miss N --callgrind-peer P` under
# valgrind with collection switched on only inside bench_miss_loop: the
# cache (capacity C, the harness's --capacity, default 100000) is filled
# with 2C distinct keys and settled by C more misses outside the count,
# then N keys it has never seen go through get (miss) + put (evicts), each
# call through the harness's peer vtable. The harness checks that no get
# hit and, for purecache, that exactly N entries were evicted, and fails
# otherwise. Prints Ir / N per peer, and the same without the loop's own
# instructions (bench_miss_loop's self cost), then the target: CLOCK's
# count without the loop <= mutex-lru's (frequency and lru: no target,
# their ratio to mutex-lru for scale).
#
# usage: bench/callgrind-miss.sh [path/to/purecache-bench] [N] [harness options]
# e.g.   bench/callgrind-miss.sh build/release/bench/purecache-bench 200000 --capacity 10000
# CALLGRIND_ANNOTATE=1 also prints the per-function breakdown.
set -euo pipefail
bin=${1:-build/release/bench/purecache-bench}
n=${2:-200000}
shift $(($# > 2 ? 2 : $#))
command -v valgrind >/dev/null || {
    echo "callgrind-miss: valgrind not installed (apt-get install valgrind)" >&2
    exit 1
}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fn=bench_miss_loop

count() { # peer extra-args... ; writes "<with loop> <without loop>" to $out/res-<peer>
    local peer=$1
    shift
    valgrind --tool=callgrind --toggle-collect="$fn" \
        --callgrind-out-file="$out/cg-$peer.out" \
        "$bin" --callgrind-miss "$n" --callgrind-peer "$peer" "$@" \
        >"$out/stdout-$peer" 2>"$out/log-$peer" ||
        { cat "$out/stdout-$peer" "$out/log-$peer" >&2; exit 1; }
    local ir self
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$out/cg-$peer.out")
    self=$(callgrind_annotate --inclusive=no "$out/cg-$peer.out" 2>/dev/null |
        awk -v fn="$fn" '!done && ($0 ~ ":" fn " " || $0 ~ ":" fn "$") {gsub(",", "", $1); print $1; done = 1}')
    awk -v ir="$ir" -v self="${self:-0}" -v n="$n" 'BEGIN {
        printf "%.1f %.1f\n", ir / n, (ir - self) / n
    }' >"$out/res-$peer"
}

declare -A with without
for peer in clock frequency lru mutex-lru; do
    count "$peer" "$@"
    read -r with[$peer] without[$peer] <"$out/res-$peer"
    printf "callgrind-miss: %-10s get miss + put that evicts: %7.1f instructions (%.1f without the loop)\n" \
        "$peer" "${with[$peer]}" "${without[$peer]}"
    sed 's/^/  /' "$out/stdout-$peer"
    if [ -n "${CALLGRIND_ANNOTATE:-}" ]; then
        callgrind_annotate --inclusive=no "$out/cg-$peer.out" | grep -E '^ *[0-9,]+ ' | sed -n 1,12p
    fi
done
awk -v c="${without[clock]}" -v m="${without[mutex-lru]}" -v l="${without[lru]}" \
    -v f="${without[frequency]}" 'BEGIN {
    printf "callgrind-miss: target clock <= mutex-lru: %.1f vs %.1f (%.2fx)  %s\n",
        c, m, c / m, c <= m ? "MET" : "MISSED"
    printf "callgrind-miss: (frequency, no target: %.1f, %.2fx mutex-lru, %.2fx clock)\n",
        f, f / m, f / c
    printf "callgrind-miss: (lru, no target: %.1f, %.2fx mutex-lru)\n", l, l / m
}'
