/*
 * Exact LRU, differential: random sequences of get/put/delete/clear on a
 * small key space, checked op for op (status, value, length) against an
 * in-test reference LRU of the same capacity.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "testlib.h"

#define KEYS 24
#define MAXCAP 16

/* Reference: keys in recency order, oldest first. */
struct ref_lru {
    size_t cap, n;
    uint64_t key[MAXCAP], val[MAXCAP];
};

static int ref_find(struct ref_lru *r, uint64_t k)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->key[i] == k)
            return (int)i;
    return -1;
}

static void ref_remove_at(struct ref_lru *r, size_t i)
{
    memmove(&r->key[i], &r->key[i + 1], (r->n - i - 1) * sizeof r->key[0]);
    memmove(&r->val[i], &r->val[i + 1], (r->n - i - 1) * sizeof r->val[0]);
    r->n--;
}

static void ref_append(struct ref_lru *r, uint64_t k, uint64_t v)
{
    r->key[r->n] = k;
    r->val[r->n] = v;
    r->n++;
}

static pc_status ref_get(struct ref_lru *r, uint64_t k, uint64_t *v)
{
    int i = ref_find(r, k);

    if (i < 0)
        return PC_NOTFOUND;
    *v = r->val[i];
    ref_remove_at(r, (size_t)i);
    ref_append(r, k, *v);
    return PC_OK;
}

static void ref_put(struct ref_lru *r, uint64_t k, uint64_t v)
{
    int i = ref_find(r, k);

    if (i >= 0)
        ref_remove_at(r, (size_t)i);
    else if (r->n == r->cap)
        ref_remove_at(r, 0);
    ref_append(r, k, v);
}

static pc_status ref_delete(struct ref_lru *r, uint64_t k)
{
    int i = ref_find(r, k);

    if (i < 0)
        return PC_NOTFOUND;
    ref_remove_at(r, (size_t)i);
    return PC_OK;
}

static void run_sequence(unsigned seed, size_t cap, int ops)
{
    struct ref_lru ref = {.cap = cap};
    pc_cache *c = make_cache(cap);

    srand(seed);
    for (int op = 0; op < ops; op++) {
        uint64_t k = (uint64_t)(rand() % KEYS), got = 0, want = 0;
        int dice = rand() % 100;

        if (dice < 50) {
            pc_status a = get_u64(c, k, &got), b = ref_get(&ref, k, &want);

            cr_assert_eq(a, b, "seed %u op %d: get(%lu) status %d, want %d",
                         seed, op, k, a, b);
            if (a == PC_OK)
                cr_assert_eq(got, want, "seed %u op %d: get(%lu) value", seed,
                             op, k);
        } else if (dice < 88) {
            uint64_t v = (uint64_t)rand();

            cr_assert_eq(put_u64(c, k, v), PC_OK);
            ref_put(&ref, k, v);
        } else if (dice < 99) {
            cr_assert_eq(pc_delete(c, &k, sizeof k), ref_delete(&ref, k),
                         "seed %u op %d: delete(%lu)", seed, op, k);
        } else {
            pc_clear(c);
            ref.n = 0;
        }
        cr_assert_eq(pc_len(c), ref.n, "seed %u op %d: len", seed, op);
    }
    /* Final state: exactly the reference's keys, with its values. */
    for (uint64_t k = 0; k < KEYS; k++) {
        int i = ref_find(&ref, k);
        uint64_t got;
        size_t n;

        cr_assert_eq(pc_get(c, &k, sizeof k, &got, sizeof got, &n),
                     i < 0 ? PC_NOTFOUND : PC_OK);
        if (i >= 0)
            cr_assert_eq(got, ref.val[i]);
    }
    pc_destroy(c);
}

Test(lru_exact, matches_reference_lru_on_random_sequences)
{
    for (unsigned seed = 1; seed <= 300; seed++)
        run_sequence(seed, 1 + seed % MAXCAP, 2000);
}

Test(lru_exact, capacity_one_keeps_only_the_last_key)
{
    run_sequence(4242, 1, 5000);
}
