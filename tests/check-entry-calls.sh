#!/bin/sh
# pc_get, pc_put and pc_put_ex are flattened (src/cache.c): every call
# beneath them is inlined but for functions declared noinline. A slow path
# that is not (a thread's registration, a lock, an allocation or a growth,
# the clock, a debug build's assertion report) is then copied into the
# entry point itself. This check disassembles each of them in each shared
# library given, with its FN.cold part (where GCC moves the blocks it
# predicts are rare), and fails if it calls or tail-calls any library
# function but those its common path needs: memcmp, memcpy and memmove
# (key compare, value copy), and for the puts clock_gettime (a cache with
# expiry reads its clock on every put). Whatever else they need must sit
# behind a call to the library's own out-of-line functions.
# usage: check-entry-calls.sh LIB...   (NM, OBJDUMP: the tools to use)
set -eu
NM=${NM:-nm}
OBJDUMP=${OBJDUMP:-objdump}
status=0

# check LIB FUNCTION ALLOWED...
check() {
    lib=$1
    fn=$2
    shift 2
    ranges=$("$NM" -S --defined-only "$lib" |
        awk -v fn="$fn" '($3 == "T" && $4 == fn) ||
            ($3 == "t" && $4 == fn ".cold") { print $1, $2, $3 }')
    if ! printf '%s\n' "$ranges" | grep -q ' T$'; then
        echo "check-entry-calls: no $fn in $lib" >&2
        status=1
        return
    fi
    calls=$(printf '%s\n' "$ranges" | while read -r addr size _; do
        "$OBJDUMP" -d --no-show-raw-insn --start-address=$((0x$addr)) \
            --stop-address=$((0x$addr + 0x$size)) "$lib"
    done | sed -n 's/.*\(call\|jmp\) .*<\([^>]*\)@plt>.*/\2/p' | sort -u)
    bad=$calls
    for ok in "$@"; do
        bad=$(printf '%s\n' $bad | grep -v -x -e "$ok" || true)
    done
    if [ -n "$bad" ]; then
        echo "check-entry-calls: $fn in $lib calls:" $bad >&2
        echo "  (declare the slow path that brings it noinline: README, Flattened entry points)" >&2
        status=1
    else
        echo "check-entry-calls: $fn in $lib calls only:" $calls
    fi
}

for lib in "$@"; do
    check "$lib" pc_get memcmp memcpy memmove
    check "$lib" pc_put memcmp memcpy memmove clock_gettime
    check "$lib" pc_put_ex memcmp memcpy memmove clock_gettime
done
exit $status
