/*
 * CLOCK, differential: a single-shard cache checked op for op against an
 * in-test reference CLOCK (second chance): reads set the reference bit;
 * a new key at capacity makes the hand clear set bits and evict the first
 * clear one, and takes its slot; a replacement keeps its slot and counts as
 * a use; deleted slots are reused last-freed first.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "alloc.h" /* pc__alloc_fail_after */
#include "testlib.h"

#define KEYS 24
#define MAXCAP 16

struct ref_clock {
    size_t cap, used, hand, count;
    int nfree;
    size_t freelist[MAXCAP];
    bool live[MAXCAP], ref[MAXCAP];
    uint64_t key[MAXCAP], val[MAXCAP];
};

static int ref_find(struct ref_clock *r, uint64_t k)
{
    for (size_t i = 0; i < r->used; i++)
        if (r->live[i] && r->key[i] == k)
            return (int)i;
    return -1;
}

static pc_status ref_get(struct ref_clock *r, uint64_t k, uint64_t *v)
{
    int i = ref_find(r, k);

    if (i < 0)
        return PC_NOTFOUND;
    r->ref[i] = true;
    *v = r->val[i];
    return PC_OK;
}

static void ref_put(struct ref_clock *r, uint64_t k, uint64_t v)
{
    int i = ref_find(r, k);
    size_t s;

    if (i >= 0) {
        r->val[i] = v;
        r->ref[i] = true;
        return;
    }
    if (r->count < r->cap) {
        s = r->nfree ? r->freelist[--r->nfree] : r->used++;
        r->count++;
    } else {
        for (;;) {
            if (r->hand >= r->used)
                r->hand = 0;
            s = r->hand++;
            if (!r->live[s])
                continue;
            if (r->ref[s]) {
                r->ref[s] = false;
                continue;
            }
            break;
        }
    }
    r->live[s] = true;
    r->ref[s] = false;
    r->key[s] = k;
    r->val[s] = v;
}

static pc_status ref_delete(struct ref_clock *r, uint64_t k)
{
    int i = ref_find(r, k);

    if (i < 0)
        return PC_NOTFOUND;
    r->live[i] = false;
    r->freelist[r->nfree++] = (size_t)i;
    r->count--;
    return PC_OK;
}

static void run_sequence(unsigned seed, size_t cap, int ops)
{
    struct ref_clock ref = {.cap = cap};
    pc_options o = {.capacity = cap, .shards = 1};
    pc_cache *c;

    cr_assert_eq(pc_create(&o, &c), PC_OK);
    srand(seed);
    for (int op = 0; op < ops; op++) {
        uint64_t k = (uint64_t)(rand() % KEYS), got = 0, want = 0;
        int dice = rand() % 100;

        if (dice < 50) {
            pc_status a = get_u64(c, k, &got), b = ref_get(&ref, k, &want);

            cr_assert_eq(a, b, "seed %u op %d: get(%lu) status %d, want %d",
                         seed, op, k, a, b);
            if (a == PC_OK)
                cr_assert_eq(got, want);
        } else if (dice < 88) {
            uint64_t v = (uint64_t)rand();

            cr_assert_eq(put_u64(c, k, v), PC_OK);
            ref_put(&ref, k, v);
        } else if (dice < 99) {
            cr_assert_eq(pc_delete(c, &k, sizeof k), ref_delete(&ref, k),
                         "seed %u op %d: delete(%lu)", seed, op, k);
        } else {
            pc_clear(c);
            memset(&ref, 0, sizeof ref);
            ref.cap = cap;
        }
        cr_assert_eq(pc_len(c), ref.count, "seed %u op %d: len", seed, op);
    }
    pc_destroy(c);
}

Test(clock_model, matches_reference_clock_on_random_sequences)
{
    for (unsigned seed = 1; seed <= 300; seed++)
        run_sequence(seed, 1 + seed % MAXCAP, 2000);
}

Test(clock_model, capacity_one_keeps_only_the_last_key)
{
    run_sequence(4242, 1, 5000);
}

/* A new key whose victim was an expired entry, taken from the expiry
 * queue wherever the hand stood, gets the revolution a key that takes the
 * hand's victim's slot gets: the next put evicts the oldest key never
 * read, not it (it took the expired entry's slot, under the hand, with
 * its bit clear, and went first). */
Test(clock_model, a_key_that_replaced_an_expired_entry_gets_a_revolution)
{
    pc_options o = test_opts(4);
    pc_put_args ttl = {.ttl_ms = 10};
    pc_cache *c;

    o.shards = 1;
    o.now_ms = test_now;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    cr_assert_eq(pc_put_ex(c, "A", 1, "a", 1, &ttl), PC_OK);
    cr_assert_eq(pc_put(c, "B", 1, "b", 1), PC_OK);
    cr_assert_eq(pc_put(c, "C", 1, "c", 1), PC_OK);
    cr_assert_eq(pc_put(c, "D", 1, "d", 1), PC_OK);
    test_advance(20);                               /* A expires */
    cr_assert_eq(pc_put(c, "X", 1, "x", 1), PC_OK); /* takes A's place */
    cr_assert_eq(pc_get(c, "A", 1, NULL, 0, NULL), PC_NOTFOUND);
    cr_assert_eq(pc_put(c, "Y", 1, "y", 1), PC_OK); /* evicts one */
    cr_assert_eq(pc_len(c), 4);
    cr_assert_eq(pc_get(c, "X", 1, NULL, 0, NULL), PC_ERANGE,
                 "the key put before Y went first");
    cr_assert_eq(pc_get(c, "B", 1, NULL, 0, NULL), PC_NOTFOUND,
                 "the oldest key, never read, stayed");
    pc_destroy(c);
}

/* A lowered capacity packs the ring into a smaller one in the hand's
 * order, from the hand on (short of memory, in place, rotated so): the
 * sweep meets the keys left as it would have. Here the keys left straddle
 * the hand (five behind it, read before the shrink so that it passed
 * them over, five after it), and the next put evicts the first of those
 * the hand meets, not the first in the old ring's slot order. */
static void trim_keeps_the_hands_order(bool short_of_memory)
{
    pc_options o = test_opts(400);
    pc_cache *c;
    uint64_t v;

    o.shards = 1;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (uint64_t k = 0; k < 600; k++) /* 400..599 replace 0..199 */
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    for (uint64_t k = 0; k < 5; k++) { /* the hand stands at slot 200 */
        cr_assert_eq(get_u64(c, 300 + k, &v), PC_OK);
        cr_assert_eq(get_u64(c, 400 + k, &v), PC_OK);
    }
    /* Evicts 200..299, 305..399 and 405..599, clearing the bits of the
     * ten it keeps: 300..304 come first from the hand, then 400..404. */
    if (short_of_memory)
        pc__alloc_fail_after(0); /* every allocation fails */
    cr_assert_eq(pc_set_capacity(c, 10), PC_OK);
    pc__alloc_fail_after(-1);
    cr_assert_eq(pc_len(c), 10);
    cr_assert_eq(put_u64(c, 1000, 1000), PC_OK);
    cr_assert_eq(get_u64(c, 300, &v), PC_NOTFOUND,
                 "the first key under the hand went");
    for (uint64_t k = 0; k < 5; k++)
        cr_assert_eq(get_u64(c, 400 + k, &v), PC_OK,
                     "key %lu, behind the hand, stayed",
                     (unsigned long)(400 + k));
    pc_destroy(c);
}

Test(clock_model, a_trim_keeps_the_hands_order)
{
    trim_keeps_the_hands_order(false);
}

Test(clock_model, a_trim_short_of_memory_keeps_the_hands_order)
{
    trim_keeps_the_hands_order(true);
}

/* Victims taken with no put to take their slots (a lowered capacity)
 * leave those slots free for later keys, which take the last freed first,
 * as deleted keys' slots: here E takes A's slot, behind the hand, and so
 * outlives F, put after it into a slot ahead of the hand. */
Test(clock_model, slots_of_victims_no_put_took_are_reused)
{
    pc_options o = test_opts(4);
    pc_cache *c;
    uint64_t v;

    o.shards = 1;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (uint64_t k = 0; k < 4; k++) /* A..D: 0..3, in slots 0..3 */
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    cr_assert_eq(pc_set_capacity(c, 2), PC_OK); /* evicts A and B */
    cr_assert_eq(pc_set_capacity(c, 4), PC_OK);
    cr_assert_eq(get_u64(c, 0, &v), PC_NOTFOUND);
    cr_assert_eq(get_u64(c, 1, &v), PC_NOTFOUND);
    cr_assert_eq(put_u64(c, 4, 4), PC_OK); /* E: A's slot (slot 0) */
    cr_assert_eq(put_u64(c, 5, 5), PC_OK); /* F: slot 4 */
    for (uint64_t k = 6; k < 9; k++)       /* evict C, D, then F */
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    cr_assert_eq(pc_len(c), 4);
    cr_assert_eq(get_u64(c, 5, &v), PC_NOTFOUND, "F, ahead of the hand, went");
    cr_assert_eq(get_u64(c, 4, &v), PC_OK, "E, behind the hand, stayed");
    pc_destroy(c);
}

/* A new key that evicted takes its victim's slot, just behind the hand,
 * even when a slot freed earlier waits (a lowered capacity left A's):
 * there, behind B's and ahead of C, D and E, each read once, it would
 * be met before them, with the bit such a slot gives, and outlive C. */
Test(clock_model, a_new_key_takes_its_victims_slot_before_free_ones)
{
    pc_options o = test_opts(5);
    pc_cache *c;
    uint64_t v;

    o.shards = 1;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (uint64_t k = 0; k < 5; k++) /* A..E: 0..4, in slots 0..4 */
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    for (uint64_t k = 2; k < 5; k++) /* C, D, E read */
        cr_assert_eq(get_u64(c, k, &v), PC_OK);
    cr_assert_eq(pc_set_capacity(c, 4), PC_OK); /* evicts A */
    cr_assert_eq(get_u64(c, 0, &v), PC_NOTFOUND);
    cr_assert_eq(put_u64(c, 10, 10), PC_OK); /* X: evicts B, in its slot */
    cr_assert_eq(get_u64(c, 1, &v), PC_NOTFOUND);
    /* Y: the hand clears C's, D's and E's bits and reaches X, not read */
    cr_assert_eq(put_u64(c, 11, 11), PC_OK);
    cr_assert_eq(pc_len(c), 4);
    cr_assert_eq(get_u64(c, 10, &v), PC_NOTFOUND, "X, behind the hand, went");
    for (uint64_t k = 2; k < 5; k++)
        cr_assert_eq(get_u64(c, k, &v), PC_OK, "key %lu, read, stayed",
                     (unsigned long)k);
    pc_destroy(c);
}

/* A replacement that needs bytes, offered its own key by the hand, puts
 * it back into the slot its victim left, just behind the hand, as a new
 * key's would be: the sweep then meets it after X, not before. Four
 * 16-byte entries fill the bound. */
Test(clock_model, a_growing_replacement_takes_its_victims_slot)
{
    pc_options o = test_opts(100);
    unsigned char big[24] = {0};
    pc_cache *c;
    uint64_t v, k0 = 0;

    o.shards = 1;
    o.max_bytes = 64;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (uint64_t k = 0; k < 4; k++) /* A, X, B, C: 0..3, slots 0..3 */
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    cr_assert_eq(get_u64(c, 1, &v), PC_OK); /* X read */
    /* The hand offers A itself, clears X's bit and evicts B, whose slot
     * A (now A', a use) takes. */
    cr_assert_eq(pc_put(c, &k0, sizeof k0, big, sizeof big), PC_OK);
    cr_assert_eq(get_u64(c, 2, &v), PC_NOTFOUND);
    /* D evicts C, E evicts X (A's old slot is free), F clears A''s bit
     * and evicts D, and G evicts E, not A'. */
    for (uint64_t k = 10; k < 14; k++)
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    cr_assert_eq(pc_get(c, &k0, sizeof k0, NULL, 0, NULL), PC_ERANGE,
                 "A', behind the hand, stayed");
    cr_assert_eq(get_u64(c, 11, &v), PC_NOTFOUND, "E went first");
    pc_destroy(c);
}
