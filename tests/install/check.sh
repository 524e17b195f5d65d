#!/usr/bin/env bash
# Installs each policy into a scratch prefix and builds a consumer against it
# with pkg-config (shared, and static from the archive with
# pkg-config --static) and with find_package(purecache) (shared and static
# targets). The consumer prints pc_policy(), which must match the
# PURECACHE_EXACT_LRU setting. First, check-symbols.sh checks the installed
# libraries' namespace, and check-relocatable.sh that the package names its
# dependencies (Concurrency Kit, jemalloc, hiredis) as things to find on
# the consumer's machine, not as paths on the build machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mkdir -p "$1" && cd "$1" && pwd)
for policy in clock lru; do
    lru=OFF; [ "$policy" = lru ] && lru=ON
    prefix="$work/prefix-$policy"
    rm -rf "$prefix" "$work/lib-$policy" "$work/consumer-$policy"
    cmake -S "$root" -B "$work/lib-$policy" -DCMAKE_BUILD_TYPE=Release \
        -DPURECACHE_EXACT_LRU=$lru -DPURECACHE_BUILD_TESTS=OFF \
        -DPURECACHE_BUILD_BENCH=OFF -DPURECACHE_BUILD_EXAMPLES=OFF \
        -DCMAKE_INSTALL_PREFIX="$prefix" >/dev/null
    cmake --build "$work/lib-$policy" -j"$(nproc)" >/dev/null
    cmake --install "$work/lib-$policy" >/dev/null
    libdir=$(dirname "$(find "$prefix" -name libpurecache.a | head -n 1)")
    "$root/tests/install/check-symbols.sh" "$libdir" purecache \
        "$prefix/include/purecache.h"
    "$root/tests/install/check-relocatable.sh" "$prefix"

    # pkg-config, shared library
    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/$(gcc -print-multiarch)/pkgconfig"
    cc "$root/tests/install/consumer.c" -o "$work/pkgconfig-$policy" \
        $(pkg-config --cflags --libs purecache) -Wl,-rpath,"$(pkg-config --variable=libdir purecache)"
    got=$("$work/pkgconfig-$policy")
    [ "$got" = "$policy" ] || { echo "pkg-config consumer says '$got', want $policy" >&2; exit 1; }

    # pkg-config, static archive: its private dependencies come from
    # pkg-config --static (Requires.private / Libs.private)
    cc "$root/tests/install/consumer.c" -o "$work/pkgconfig-static-$policy" \
        $(pkg-config --cflags purecache) "$libdir/libpurecache.a" \
        $(pkg-config --static --libs purecache | sed 's/ *-lpurecache\b//')
    got=$("$work/pkgconfig-static-$policy")
    [ "$got" = "$policy" ] || { echo "static pkg-config consumer says '$got', want $policy" >&2; exit 1; }

    # find_package, shared and static targets
    cmake -S "$root/tests/install" -B "$work/consumer-$policy" \
        -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
    cmake --build "$work/consumer-$policy" >/dev/null
    for exe in consumer consumer_static; do
        got=$("$work/consumer-$policy/$exe")
        [ "$got" = "$policy" ] || { echo "find_package $exe says '$got', want $policy" >&2; exit 1; }
    done

    # A consumer whose Concurrency Kit lives in another prefix (here a link
    # to the system's): the static target must link the one found there.
    deps="$work/deps-$policy"
    rm -rf "$deps" "$work/consumer-deps-$policy"
    mkdir -p "$deps/lib"
    ln -s "$(cc -print-file-name=libck.so)" "$deps/lib/libck.so"
    cmake -S "$root/tests/install" -B "$work/consumer-deps-$policy" \
        -DCMAKE_PREFIX_PATH="$deps;$prefix" >/dev/null
    cmake --build "$work/consumer-deps-$policy" --target consumer_static >/dev/null
    grep -q "$deps/lib/libck.so" \
        "$work/consumer-deps-$policy/CMakeFiles/consumer_static.dir/link.txt" ||
        { echo "the static consumer did not link the consumer's own libck" >&2; exit 1; }
    got=$("$work/consumer-deps-$policy/consumer_static")
    [ "$got" = "$policy" ] || { echo "consumer with ck elsewhere says '$got', want $policy" >&2; exit 1; }
    echo "install check ($policy): symbols namespaced, no build-machine paths; pkg-config and find_package consumers OK"

    # The Redis tier, when it was built (hiredis present).
    if [ -f "$prefix/include/purecache_redis.h" ]; then
        "$root/tests/install/check-symbols.sh" "$libdir" purecache_redis \
            "$prefix/include/purecache_redis.h"
        cc "$root/tests/install/consumer_redis.c" -o "$work/pkgconfig-redis-$policy" \
            $(pkg-config --cflags --libs purecache-redis) \
            -Wl,-rpath,"$(pkg-config --variable=libdir purecache-redis)"
        for exe in "$work/pkgconfig-redis-$policy" \
            "$work/consumer-$policy/consumer_redis" \
            "$work/consumer-$policy/consumer_redis_static"; do
            got=$("$exe")
            [ "$got" = "$policy" ] || { echo "$exe says '$got', want $policy" >&2; exit 1; }
        done
        echo "install check ($policy): purecache-redis consumers OK"
    fi
done
