#!/usr/bin/env bash
# The installed package must not name its dependencies by their paths on
# the build machine (e.g. /usr/lib/x86_64-linux-gnu/libck.so): a consumer
# on another multiarch or prefix would link, or fail to find, the wrong
# file. The CMake package finds them on the consumer's machine
# (purecacheDependencies.cmake); the pkg-config files name them as
# packages or -l flags.
# Usage: check-relocatable.sh <install prefix>
set -euo pipefail
prefix=$1
fail=0
files=$(find "$prefix" \( -path '*/cmake/purecache/*.cmake' -o -name 'purecache*.pc' \) -type f)
[ -n "$files" ] || { echo "no package files under $prefix" >&2; exit 1; }
for f in $files; do
    # An absolute path to a library file (the package's own libraries are
    # named relative to _IMPORT_PREFIX / ${libdir}).
    hits=$(grep -nE '(^|[";[:space:]=])/[^";[:space:]]*\.(so|a)([.";[:space:]]|$)' "$f" || true)
    if [ -n "$hits" ]; then
        echo "$f names libraries by absolute path:" >&2
        echo "$hits" >&2
        fail=1
    fi
done
exit $fail
