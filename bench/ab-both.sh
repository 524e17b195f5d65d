#!/usr/bin/env bash
# An A/B of two builds of the CLOCK library, read in both orders.
#
# `purecache-bench --lib-b` runs a second build beside the first in one
# process (peers clock-b and frequency-b), and the run's ratios compare
# neighbouring moments of a noisy machine. But the second library's place
# is not neutral: the frequency policy ran 1.03-1.09x as `--lib-b` with
# the very same .so (clock 0.99-1.03x; README, "What the frequency
# policy's ghost costs"), enough to pass for a gain. So this script runs
# ROUNDS pairs of processes, one with OLD as the first library and NEW as
# `--lib-b`, one the other way round, and for each cell (distribution,
# mix, thread count) and policy prints:
#   new/old  sqrt(r1 / r2): the change, the position's bias cancelled
#   bias     sqrt(r1 * r2): what the second place alone is worth
# where r1 is the geometric mean over rounds of (B's median / A's median)
# in the processes with NEW second, and r2 the same with OLD second.
#
# usage: bench/ab-both.sh OLD.so NEW.so [ROUNDS] [harness options]
#   e.g. bench/ab-both.sh /tmp/old/build/libpurecache.so \
#            build/release/libpurecache.so 3 --threads 1 --mixes put,aside
# The harness is build/release/bench/purecache-bench unless PC_BENCH names
# another. Defaults passed to it (later options override): both policies,
# threads 1, both distributions, mixes put and aside, 7 runs of 0.3 s, no
# hit-ratio, variant, RSS or trace sections.
set -euo pipefail
[ $# -ge 2 ] || {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}
old=$1 new=$2
rounds=${3:-3}
shift $(($# > 2 ? 3 : 2))
bench=${PC_BENCH:-build/release/bench/purecache-bench}
for f in "$old" "$new" "$bench"; do
    [ -e "$f" ] || { echo "ab-both: $f: not found" >&2; exit 2; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# One process: order 1 (NEW second) or 2 (OLD second); appends
# "round order dist mix peer threads median" lines to $out/rows.
one() {
    local r=$1 o=$2 a=$3 b=$4
    "$bench" --lib-clock "$a" --lib-b "$b" \
        --peers clock,clock-b,frequency,frequency-b --threads 1 \
        --dists uniform,zipf --mixes put,aside --runs 7 --duration 0.3 \
        --hit-ops 0 --variant-dists none --rss-bytes 0 --traces none \
        --no-plot --out "$out/bench" "${@:5}" >"$out/log" 2>&1 ||
        { cat "$out/log" >&2; exit 1; }
    awk -v r="$r" -v o="$o" '
        /^== / { d = $2; m = $0; sub(/.*mix /, "", m); split(m, a, " "); mx = a[1] }
        /^  (clock|frequency)(-b)? +[0-9]+ +[0-9.]+ +\(/ {
            print r, o, d, mx, $1, $2, $3 }' "$out/log" >>"$out/rows"
}

: >"$out/rows"
for r in $(seq "$rounds"); do
    echo "ab-both: round $r/$rounds" >&2
    one "$r" 1 "$old" "$new" "$@"
    one "$r" 2 "$new" "$old" "$@"
done
awk -v rounds="$rounds" '
    { v[$3 SUBSEP $4 SUBSEP $6 SUBSEP $2 SUBSEP $1 SUBSEP $5] = $7
      c = $3 SUBSEP $4 SUBSEP $6
      if (!(c in cell)) { cell[c] = 1; keys[++n] = c } }
    END {
        printf "%-12s %-6s %3s  %-10s %8s %8s   %s\n", "dist", "mix", "thr",
            "policy", "new/old", "bias", "per round: order 1 | order 2 (B / A)"
        for (i = 1; i <= n; i++) {
            split(keys[i], k, SUBSEP)
            for (p = 1; p <= 2; p++) {
                pol = p == 1 ? "clock" : "frequency"
                l1 = l2 = 0; c1 = c2 = 0; s1 = s2 = ""
                for (r = 1; r <= rounds; r++) {
                    for (o = 1; o <= 2; o++) {
                        key = k[1] SUBSEP k[2] SUBSEP k[3] SUBSEP o SUBSEP r
                        a = v[key SUBSEP pol]; b = v[key SUBSEP pol "-b"]
                        if (a <= 0 || b <= 0)
                            continue
                        if (o == 1) { l1 += log(b / a); c1++; s1 = s1 sprintf(" %.2f", b / a) }
                        else { l2 += log(b / a); c2++; s2 = s2 sprintf(" %.2f", b / a) }
                    }
                }
                if (c1 == 0 || c2 == 0)
                    continue
                g1 = exp(l1 / c1); g2 = exp(l2 / c2)
                printf "%-12s %-6s %3s  %-10s %8.3f %8.3f  %s |%s\n", k[1], k[2],
                    k[3], pol, sqrt(g1 / g2), sqrt(g1 * g2), s1, s2
            }
        }
    }' "$out/rows"
