/*
 * callgrind: the harness's instruction-counting modes, run under
 * valgrind --tool=callgrind by bench/callgrind-get.sh. Each runs a loop in
 * a function of its own, so that --toggle-collect=<that function> counts
 * exactly the operations in the loop.
 */
#ifndef BENCH_CALLGRIND_H
#define BENCH_CALLGRIND_H

#include "opts.h"
#include "peer.h"

/* --callgrind-get N: N CLOCK pc_get hits of one 8-byte key, through the
 * library's own pc_get, in bench_get_loop. Returns the exit status. */
int callgrind_get(const struct bench_peer *clock, const struct bench_opts *o,
                  long n);

/* --callgrind-peer P: N get hits of one key through peer p's vtable, in
 * bench_peer_get_loop. Returns the exit status. */
int callgrind_peer(const struct bench_peer *p, const struct bench_opts *o,
                   long n);

#endif
