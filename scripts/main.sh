#!/usr/bin/env bash
# The main job: install dependencies, build in Release, run the benchmark
# harness (purecache-bench) on its default workload, then count
# instructions per get, and per miss + evicting put, with callgrind, and
# run the Redis tier's bench (purecache-redis-bench) against a throwaway
# redis-server. About eleven minutes on 2 cores, 44 s of them the replay
# of every shared trace (--traces small replays the short ones only).
# Extra arguments go to the harness (e.g. --traces small, --threads 1,2,4);
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

# One count over every target, printed last: the harness's table (its
# tally line), the trace checks' violations (each a target missed: the
# table does not count them), the instruction target callgrind-miss.sh
# checks, and the Redis bench's three targets when it runs.
print_total() {
    local met missed v
    met=$(sed -n 's/^  tally: \([0-9]*\) met, \([0-9]*\) missed.*/\1/p' bench-out/report.txt)
    missed=$(sed -n 's/^  tally: \([0-9]*\) met, \([0-9]*\) missed.*/\2/p' bench-out/report.txt)
    [ -n "$met" ] || return 0
    v=$(sed -n 's/^  trace checks: [0-9]* sizes replayed, \([0-9]*\) violation.*/\1/p' bench-out/report.txt)
    missed=$((missed + ${v:-0}))
    case $(grep -m1 '^callgrind-miss: target' bench-out/callgrind-miss.txt) in
    *MET) met=$((met + 1)) ;;
    *MISSED) missed=$((missed + 1)) ;;
    esac
    if [ -f bench-out/redis.txt ]; then
        met=$((met + $(grep -c ' PASS$' bench-out/redis.txt || true)))
        missed=$((missed + $(grep -c ' FAIL$' bench-out/redis.txt || true)))
    fi
    echo
    echo "targets in all (the table's tally, trace violations (${v:-0}), callgrind-miss's target and the Redis bench's): $met met, $missed missed"
}
rm -f bench-out/redis.txt

# The Redis bench, when it was built (hiredis found) and redis-server is
# installed. Its server is started here as tests/redis/server.h starts
# one: on a free loopback port, no persistence (--save "", --appendonly
# no), in a temporary directory; it is stopped, and the directory removed,
# when this script exits, however it exits.
redis_bench=build/release/bench/purecache-redis-bench
if [ ! -x "$redis_bench" ] || ! command -v redis-server >/dev/null; then
    echo
    echo "purecache-redis-bench not built or redis-server missing: Redis bench skipped"
    print_total
    exit 0
fi
redis_dir=$(mktemp -d)
redis_pid=
stop_redis() {
    if [ -n "$redis_pid" ]; then
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
    rm -rf "$redis_dir"
}
trap stop_redis EXIT

# 0 when a Redis server answers PING on 127.0.0.1:$1 (bash's /dev/tcp, in a
# subshell so that a refused connection only fails the test).
redis_ping() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'PING\r\n' >&3
        IFS= read -r -t 2 reply <&3 && [[ $reply == +PONG* ]]
    ) 2>/dev/null
}

# Whether something already uses local TCP port $1 (any state).
port_in_use() {
    grep -qi ":$(printf '%04X' "$1") " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

redis_port=
for _ in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + RANDOM % 40000))
    port_in_use "$port" && continue
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$redis_dir" --daemonize no >"$redis_dir/redis.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 100); do
        if redis_ping "$port"; then
            redis_port=$port
            break
        fi
        kill -0 "$redis_pid" 2>/dev/null || break # exited: port taken
        sleep 0.05
    done
    [ -n "$redis_port" ] && break
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    redis_pid=
done
echo
if [ -z "$redis_port" ]; then
    echo "could not start redis-server:" >&2
    cat "$redis_dir/redis.log" >&2
    echo "the Redis bench did not run: its targets are not in the count below"
    print_total
    exit 1
fi
# A failing Redis bench still leaves the count (then its exit status).
rc=0
"$redis_bench" --port "$redis_port" | tee bench-out/redis.txt || rc=$?
[ "$rc" -eq 0 ] || echo "purecache-redis-bench exited with status $rc"
print_total
exit "$rc"
