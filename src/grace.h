/*
 * grace: grace-period detection on an epoch domain (domain.h). The rule, its
 * proof, pacing and failure handling are explained atop grace.c.
 *
 * A retirer (retire.h) that defers something at epoch b may free it once
 * the domain's epoch reaches b + 2.
 */
#ifndef PC_GRACE_H
#define PC_GRACE_H

#include <stdbool.h>

#include "domain.h"

/*
 * One grace-period step on d: if no other thread is stepping, scan the
 * records and advance the global epoch by one if every active reader has
 * observed it. With paced = true and an elided read fence, the step is
 * instead requested and run by whichever writer next finds a pace interval
 * elapsed, for every domain that asked, behind one heavy barrier. Never
 * waits for readers. True if this call advanced d's epoch.
 * Any thread; no writer lock may be held (it may issue a heavy barrier).
 */
__attribute__((noinline, cold)) bool pc__grace_step(struct pc__domain *d,
                                                    bool paced);

/*
 * Wait until every read section that was active on d when the call began
 * has ended. Must not be called inside a read section on d, nor with a
 * writer lock held. Blocking. False, without waiting for ever, only when
 * no heavy barrier can be had (barrier.c, "Failure"): nothing may then be
 * freed. Never acts on a cancellation request (disabled while it waits).
 */
bool pc__grace_wait(struct pc__domain *d);

#endif
