/*
 * callgrind: the harness's instruction-counting modes, run under
 * valgrind --tool=callgrind by bench/callgrind-get.sh and
 * bench/callgrind-miss.sh. Each runs a loop in a function of its own, so
 * that --toggle-collect=<that function> counts exactly the operations in
 * the loop.
 */
#ifndef BENCH_CALLGRIND_H
#define BENCH_CALLGRIND_H

#include "opts.h"
#include "peer.h"

/* --callgrind-get N: N pc_get hits of one 8-byte key in a cache of the
 * purecache peer pc (clock; with --callgrind-peer frequency, that policy),
 * through the library's own pc_get, in bench_get_loop. Returns the exit
 * status. */
int callgrind_get(const struct bench_peer *pc, const struct bench_opts *o,
                  long n);

/* --callgrind-peer P: N get hits of one key through peer p's vtable, in
 * bench_peer_get_loop. Returns the exit status. */
int callgrind_peer(const struct bench_peer *p, const struct bench_opts *o,
                   long n);

/* --callgrind-miss N: in bench_miss_loop, N gets of keys not cached, each
 * followed by the put of that key into peer p's full cache, which evicts.
 * Returns the exit status: 1 if a get hit or (where the peer can tell) a
 * put did not evict, so the count would not be of that path. */
int callgrind_miss(const struct bench_peer *p, const struct bench_opts *o,
                   long n);

#endif
