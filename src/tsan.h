/*
 * tsan: happens-before annotations for ThreadSanitizer builds, at exactly
 * the synchronisation points that Concurrency Kit provides from inside
 * Debian's prebuilt (uninstrumented) libck.so. In every other build the
 * macros expand to nothing.
 *
 * How ck looks to TSan. ck_pr.h implements its atomics with inline assembly
 * on x86-64, which TSan cannot see; the TSan build therefore defines
 * CK_USE_CC_BUILTINS=1 (CMakeLists.txt), so every ck_pr_* call compiled into
 * our translation units (read_enter/read_leave, ck_epoch inline helpers)
 * becomes a GCC __atomic builtin that TSan instruments. That does not reach
 * the out-of-line half of ck (ck_hs_get/set/remove/grow, ck_epoch_poll,
 * synchronize, register, recycle, unregister), which lives in libck.so,
 * compiled without TSan: TSan sees neither its memory accesses nor the
 * ordering its atomics provide. Three orderings of that kind matter here,
 * and each is annotated where it is used, with its reason beside it:
 *
 *  1. Publication (index.h, index.c). A writer fills an entry, then ck_hs
 *     stores its pointer (a release inside libck); a reader gets the pointer
 *     from ck_hs_get (a dependent load inside libck) and reads the entry.
 *     Annotated: release on the entry before ck_hs_set; acquire on the entry
 *     when ck_hs hands it to our compare callback or returns it.
 *  2. Grace periods (epoch.h, epoch.c, index.c). A reader leaves its epoch
 *     section with a release store we compile (visible), but the writer
 *     learns that every reader has left inside ck_epoch_poll/synchronize
 *     (invisible). Annotated: every read_leave releases on its domain's
 *     epoch object; every deferred free (entry batches, old ck_hs tables)
 *     acquires on it first. This is coarser than ck's real rule (it also
 *     orders sections that began after the entry was retired), but it
 *     cannot hide the bug it is there to catch: a free while a reader is
 *     still inside the section that reached the entry, since that section's
 *     release has not happened yet.
 *  3. Record recycling (epoch.c). A thread's record is unregistered by its
 *     exit destructor and recycled by a new thread through ck_epoch_recycle
 *     (ck_pr_fas inside libck). Both happen under the domain's registry
 *     mutex, which TSan does see, so no annotation is needed there.
 *
 * Why annotations and not a TSan build of ck: Debian's deb-src is not
 * configured on the build machines, and the annotations are few, exact and
 * documented at each site. No report is suppressed.
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
