#!/usr/bin/env bash
# Namespace check of an installed purecache (DESIGN.md, "Internal
# conventions"): the static archive defines no global outside the public
# API and the pc__ internal prefix (a program linking it statically can
# collide with nothing else), and the shared library exports exactly the
# functions the public header declares with PC_API.
# Usage: check-symbols.sh <libdir> <library name> <public header>...
# e.g.   check-symbols.sh prefix/lib purecache prefix/include/purecache.h
set -euo pipefail
libdir=$1
lib=$2
shift 2
want=$(grep -h "^PC_API" "$@" | grep -o "\bpc_[a-z0-9_]*(" | tr -d '(' | sort -u)
fail=0

stray=$(nm -g --defined-only "$libdir/lib$lib.a" |
    awk 'NF == 3 && $3 !~ /^pc__/ {print $3}' | sort -u |
    comm -23 - <(echo "$want"))
if [ -n "$stray" ]; then
    echo "lib$lib.a defines globals outside its pc_ API / pc__:" >&2
    echo "$stray" >&2
    fail=1
fi

got=$(nm -D --defined-only "$libdir/lib$lib.so" |
    awk 'NF == 3 && $2 ~ /^[TDBRVWiu]$/ {print $3}' | sort -u)
if [ "$got" != "$want" ]; then
    echo "lib$lib.so exports differ from the header's PC_API list:" >&2
    diff <(echo "$want") <(echo "$got") >&2 || true
    fail=1
fi
exit $fail
