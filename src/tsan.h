/*
 * tsan: happens-before annotations for ThreadSanitizer builds, at exactly
 * the synchronisation points that Concurrency Kit provides from inside
 * Debian's prebuilt (uninstrumented) libck.so. In every other build the
 * macros expand to nothing.
 *
 * How ck looks to TSan. On x86-64, ck_pr.h implements loads, stores, fences
 * and read-modify-writes with inline assembly: TSan sees none of it (an asm
 * statement is not instrumented), so a race on a ck_pr-accessed word would
 * be silently missed. The TSan build therefore defines CK_USE_CC_BUILTINS=1
 * (CMakeLists.txt), which selects ck's GCC port for every ck_pr_* call
 * compiled into our translation units (pc__read_enter/leave, ck_epoch's
 * inline helpers): read-modify-writes become __sync builtins, which TSan
 * treats as atomics; loads and stores become volatile accesses, which TSan
 * treats as plain accesses (so a conflict between two instrumented threads
 * on such a word is reported, not hidden); fences become
 * __sync_synchronize, which TSan does not model at all. None of this reaches
 * the out-of-line half of ck (ck_epoch register, recycle, unregister,
 * reclaim), which lives in libck.so,
 * compiled without TSan: TSan sees neither its memory accesses nor the
 * ordering it provides. The orderings of that kind that matter here are
 * annotated where they are used, with their reason beside them:
 *
 *  1. Publication. The index (index.h) is this library's own code and
 *     publishes entries with release/acquire atomics, which TSan models:
 *     no annotation is needed there.
 *  2. Grace periods (domain.h, grace.c, retire.c, index.c). A reader
 *     leaves its epoch section with a release store to its record, but a
 *     reader that is still inside a later section passes grace.c's scan
 *     through a relaxed load of its epoch, ordered by a membarrier or fence
 *     that TSan does not model (the scan's acquire load of `active` orders
 *     only readers that have left), and the free happens later, on another
 *     thread. Annotated: every pc__read_leave releases on its domain's
 *     `tsan_grace` byte; every deferred callback (retire.c's run_chain:
 *     entry batches, spill carriers, old index tables; and the batch and
 *     carrier callbacks themselves, for ck_epoch_reclaim at destruction)
 *     acquires on it first. (Not on the
 *     epoch word itself: a release store to an atomic replaces TSan's sync
 *     clock for that address, which would drop the readers' releases.)
 *     This is coarser than the real rule (it also orders sections that
 *     began after the entry was retired), but it
 *     cannot hide the bug it is there to catch: a free while a reader is
 *     still inside the section that reached the entry, since that section's
 *     release has not happened yet.
 *  3. Record recycling (domain.c). A thread's record is unregistered by its
 *     exit destructor and recycled by a new thread through ck_epoch_recycle
 *     (ck_pr_fas inside libck). Both happen under the domain's registry
 *     mutex, which TSan does see, so no annotation is needed there.
 *  4. Record publication (domain.c). A record is filled and pushed onto the
 *     domain's record list by ck_epoch_register (inside libck, a CAS), and
 *     grace.c's grace-period scan walks that list from another thread.
 *     Annotated: release on the record before registering it; acquire on
 *     each record the scan visits.
 *
 * Why annotations rather than a TSan build of ck (from Debian's source
 * package). Rebuilding ck would make its accesses visible but not its
 * synchronisation: ck_epoch detects grace periods with volatile loads
 * ordered by full fences. TSan models neither volatile accesses as atomics
 * nor standalone fences, so under a TSan build of ck every reclaimed entry
 * would still look unordered to TSan, and would need these same annotations
 * (or suppressions, which the project does not accept without a reason)
 * on top. The annotations are few, exact, compiled only under TSan, and no
 * report is suppressed.
 */
#ifndef PC_TSAN_H
#define PC_TSAN_H

#if defined(__SANITIZE_THREAD__)
#define PC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PC_TSAN 1
#endif
#endif

#ifdef PC_TSAN
#if !defined(CK_USE_CC_BUILTINS) || !CK_USE_CC_BUILTINS
#error "TSan builds need CK_USE_CC_BUILTINS=1 so that TSan sees ck_pr atomics"
#endif
/* Exported by the TSan runtime (gcc's and clang's). */
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define PC_TSAN_ACQUIRE(addr) __tsan_acquire((void *)(addr))
#define PC_TSAN_RELEASE(addr) __tsan_release((void *)(addr))
#else
#define PC_TSAN_ACQUIRE(addr) ((void)0)
#define PC_TSAN_RELEASE(addr) ((void)0)
#endif

#endif
