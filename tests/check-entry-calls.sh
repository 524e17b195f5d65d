#!/bin/sh
# pc_get is flattened (src/cache.c): every call beneath it is inlined but
# for functions declared noinline. A slow path that is not (a thread's
# registration, a lock, an allocation, the clock) is then copied into the
# read path itself. This check disassembles pc_get in each shared library
# given and fails if it calls any library function but memcmp, memcpy and
# memmove (key compare, value copy): whatever else it needs must sit
# behind a call to the library's own out-of-line functions.
# usage: check-entry-calls.sh LIB...   (NM, OBJDUMP: the tools to use)
set -eu
NM=${NM:-nm}
OBJDUMP=${OBJDUMP:-objdump}
status=0
for lib in "$@"; do
    range=$("$NM" -S --defined-only "$lib" | awk '$3 == "T" && $4 == "pc_get" { print $1, $2 }')
    if [ -z "$range" ]; then
        echo "check-entry-calls: no pc_get in $lib" >&2
        exit 1
    fi
    set -- $range
    start=$((0x$1))
    stop=$((0x$1 + 0x$2))
    calls=$("$OBJDUMP" -d --no-show-raw-insn --start-address=$start \
        --stop-address=$stop "$lib" |
        sed -n 's/.*call .*<\([^>]*\)@plt>.*/\1/p' | sort -u)
    bad=$(printf '%s\n' $calls | grep -v -x -e memcmp -e memcpy -e memmove || true)
    if [ -n "$bad" ]; then
        echo "check-entry-calls: pc_get in $lib calls:" $bad >&2
        echo "  (declare the slow path that brings it noinline: README, Flattened entry points)" >&2
        status=1
    else
        echo "check-entry-calls: pc_get in $lib calls only:" $calls
    fi
done
exit $status
