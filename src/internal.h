/*
 * internal: the map of src/, the conventions every file follows, and the
 * order in which the library's locks may be taken. Include the header of
 * the module you use, not this one; this one includes them all, for a
 * reader's (or a debugger's) convenience.
 *
 * WHAT EACH FILE PROVIDES (a .h declares, its .c implements)
 *
 *   util.h/.c     container-of, debug-build invariant checks (PC__ASSERT),
 *                 single-writer counters, argument checks, value copy-out
 *   alloc.h/.c    every allocation (jemalloc; fault-injection test hooks)
 *   hash.h/.c     the seeded 64-bit key hash and seed generation
 *   entry.h       struct pc__kv, the immutable published entry; lookup probes
 *   index.h/.c    the hash index: chunks of tagged slots, overflow counts,
 *                 wait-free lookups, growth with the old table retired
 *   lock.h/.c     the writer lock (a futex mutex)
 *   barrier.h/.c  the read fence, and the heavy barrier writers issue for it
 *   domain.h/.c   epoch domains, thread records, thread exit, read sections
 *   grace.h/.c    grace-period detection, pacing, waiting for readers
 *   retire.h/.c   per-writer reclaimers: batched retirement, pc_reclaim drain
 *   pin.h/.c      the pin table: pinned reads as per-entry reference
 *                 counts; the reclaimer hands pinned entries over to it
 *   ticker.h/.c   the default clock of caches that expire entries: a
 *                 process-wide ms counter one thread refreshes
 *   core.h/.c     struct pc_cache, writer locks, the shared read skeleton,
 *                 cache-wide budgets (capacity, max_bytes), pc_reclaim,
 *                 statistics, creation/destruction order
 *   write.h/.c    what every write shares: removal records queued for the
 *                 listener and retired after it ran; leases of loads
 *   policy.h      the interface a policy implements
 *   shard.h/.c    the CLOCK build's sharded cache: per-shard index and
 *                 writer lock, expiry, limits; victims chosen by a ring
 *                 policy (struct pc__ring_ops)
 *   clock.c       the CLOCK ring (one reference bit per slot)
 *   frequency.c   the frequency-aware ring (PC_POLICY_FREQUENCY)
 *   lru.h         the exact-LRU build's types and recency list
 *   lru.c         the exact-LRU policy: lookups, writes, life cycle
 *   lru_log.c     its per-thread access logs, windows, draining
 *   lru_heap.c    its expiry heap
 *   lru_nodes.c   its recency list's nodes (ids, array growth, positions)
 *   cache.c       the public cache API: argument checks, dispatch
 *   flight.h/.c   single flight and loader deadlock detection
 *   load.h/.c     get-or-load over a backend; pc_get_or_load; pc_sink_set
 *   backend.h/.c  the cache as a pc_backend
 *   memo.c        the memoizer (pc_memo_*)
 *   key.c         the typed key builder (pc_key_*)
 *   tsan.h        ThreadSanitizer annotations for what libck hides
 *
 * CONVENTIONS
 *
 *   Names       Public symbols start pc_ / PC_ (include/purecache.h). Every
 *               other symbol with external linkage starts pc__ / PC__; the
 *               rest is static. The install check (tests/install) fails if
 *               the static library defines anything else.
 *   Errors      A function that produces a caller-visible outcome returns
 *               pc_status, with the header's meanings only. A function that
 *               can only fail for lack of memory returns bool (false: out
 *               of memory, nothing changed) or NULL. Internal outcomes that
 *               are not statuses get their own enum (flight.h's roles),
 *               never a value cast into pc_status.
 *   Invariants  PC__ASSERT states what must hold; debug builds check it.
 *   Comments    Each file opens with its algorithm and its concurrency
 *               argument; each mechanism is explained once, atop the file
 *               that implements it. Measurements belong in commit messages
 *               and the benchmark's documentation, not in comments.
 *
 * LOCK ORDER (a lock may be taken while holding only locks above it)
 *
 *   1. reclaim_lock      core.h, per cache: one pc_reclaim at a time
 *   2. pace_lock         grace.c, process: one paced grace step at a time
 *   3. live lock         domain.c, process: the live domains (list, id map)
 *   4. registry_lock     domain.h, per domain: its thread records
 *   4. grace_lock        domain.h, per domain: advances of its epoch
 *   5. barrier_lock      barrier.c, process: one heavy barrier at a time
 *   -  writer lock       core.h (struct pc__writer), per shard or cache:
 *                        a leaf. Nothing else is taken while one is held
 *                        (allocation aside), and writer locks are never
 *                        nested: pc_reclaim takes them one at a time under
 *                        reclaim_lock and waits for readers (grace_lock,
 *                        barrier_lock) with none held.
 *   -  ticker locks      ticker.c, process, in this order: first_lock (a
 *                        cache's first expiry fixes its clock), life_lock
 *                        (starting and stopping the ticker thread;
 *                        pc_destroy takes it alone), wait_lock (the
 *                        ticker's sleep). Taken with no other library
 *                        lock held; held across fork().
 *   -  flights lock      flight.c, process: a leaf (held while waiting on a
 *                        flight's condition variable, which releases it:
 *                        for its outcome, or for its store to end in
 *                        pc_memo_forget).
 *   -  pin-table lock    pin.h, per cache: a leaf, taken inside a read
 *                        section (pinning), by pc_unpin, and by whoever
 *                        frees retired entries, always after releasing
 *                        any writer lock.
 *
 *   Waits that hold a lock (a flight's condition variable, pc_reclaim's
 *   sleep under reclaim_lock) run with cancellation disabled: acting on
 *   pthread_cancel there would leave the lock held (purecache.h,
 *   "Cancellation"). No lock is held while the caller's code runs.
 *
 *   Locks at the same level are never held together. The paced step takes
 *   pace_lock, the live lock, then (trylock) each flagged domain's
 *   grace_lock, then barrier_lock; thread exit takes the live lock, then
 *   each domain's registry_lock in turn.
 */
#ifndef PC_INTERNAL_H
#define PC_INTERNAL_H

#include "alloc.h"
#include "backend.h"
#include "barrier.h"
#include "core.h"
#include "domain.h"
#include "entry.h"
#include "flight.h"
#include "grace.h"
#include "hash.h"
#include "index.h"
#include "load.h"
#include "lock.h"
#include "pin.h"
#include "policy.h"
#include "retire.h"
#include "shard.h"
#include "ticker.h"
#include "tsan.h"
#include "util.h"
#include "write.h"

#endif
