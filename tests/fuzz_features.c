/*
 * libFuzzer target: bytes -> a sequence of calls to every feature of one
 * small cache (expiry on a clock the input advances, a byte bound and a
 * capacity it raises and lowers, conditional puts, deletes, clears,
 * pc_expire, get-or-load with loaders that fail or write, pinned reads),
 * each checked against a model that needs no knowledge of the eviction
 * order, so that it holds for every policy: clock, lru and frequency (the
 * one fuzz_api's op-for-op models do not cover).
 *
 * The oracle. The cache has a removal listener, and every entry that
 * leaves the cache is reported to it before the call that removed it
 * returns (purecache.h). So the set of keys present is known exactly: a
 * key is present from the put (or load) that stored it until a report
 * removes it. After every call the model checks, in order:
 *  - each report: the key is present, with the value the model holds,
 *    and its cause is one this call may have (a get removes nothing; a
 *    put may evict any entry, replace its own key's value or remove its
 *    own key's expired entry; a delete removes only its key; pc_clear
 *    reports only PC_REMOVED_CLEARED, ...), and agrees with the clock: an
 *    entry reported expired has expired, one evicted, replaced or deleted
 *    has not;
 *  - the call's status and value: a get hits exactly the present entries
 *    that have not expired, with their values; a conditional put is
 *    refused exactly when the model says; a load runs its loader exactly
 *    on a miss and caches its value unless a write to the key during the
 *    load (here, by the loader itself) won;
 *  - that the cache evicted no more than it needed: a new key's put with
 *    no byte bound evicts exactly one entry if the cache was full and none
 *    otherwise; under a bound, none while the entry fits beside the
 *    others and none past the one that made it fit (within the shards'
 *    credit, check_room); expired entries before live ones within each
 *    shard (the library's key-to-shard map; lru is one); a lowered capacity
 * removes exactly the surplus, expired entries first, from every shard; a
 * lowered byte bound stops once within it;
 *  - pc_len and pc_bytes equal the model's, within the limits, and every
 *    counter of pc_stats_get equals the model's.
 * A pinned value must keep its bytes until it is released, whatever
 * happened to its key meanwhile. ASan and UBSan (the fuzz build's
 * sanitizers) catch memory errors on the way.
 *
 * Decoding. Byte 0: capacity (1..8, 64 or 200). Byte 1: shards (auto or
 * 1..3), the byte bound (none, 40, 400 or 4000 bytes) and the default ttl
 * (none, 5, 50 ms or a far one). Then each operation takes one byte (its
 * kind) and the bytes it needs. Keys are 256 byte strings of lengths 0..4,
 * each filled with its number (the empty key included), values 0..40
 * bytes. Capacities of 64 and 200, filled by one operation (puts of up
 * to 128 keys in a row) and lowered to as little as 1, let the structures
 * that follow the entries held (the frequency policy's rings and ghost,
 * the index) grow and then shrink (pc_set_capacity's trim).
 *
 * Run longer (README.md):  build/asan/tests/fuzz_features_frequency
 *                              -max_total_time=600
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "purecache.h"
#if PC_TEST_SHARDED
#include "policy.h"
#endif

#define NKEYS 256 /* a key's first byte is its number */
#define VMAX 40
#define NPINS 4
#define NREPORTS 512

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_features: %s:%d: %s\n", __FILE__, __LINE__,  \
                    #cond);                                                    \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* A set of removal causes (BIT(cause) | ...): those a call may report;
 * OWN_KEY, those that may name only the call's own key. */
#define BIT(cause) (1u << (cause))
#define OWN_KEY                                                                \
    (BIT(PC_REMOVED_REPLACED) | BIT(PC_REMOVED_DELETED)) /* its key only */

struct value {
    size_t len;
    unsigned char b[VMAX];
};

struct report {
    int key;
    struct value v;
    pc_removal_cause cause;
};

static struct model {
    pc_cache *c;
    uint64_t now;         /* the cache's clock, ms */
    uint64_t ttl;         /* the cache's default ttl_ms */
    size_t cap;           /* capacity */
    uint64_t max;         /* byte bound, 0: none */
    uint8_t shard[NKEYS]; /* each key's shard (lru: 0, it has none) */
    bool present[NKEYS];
    uint64_t expires[NKEYS]; /* 0: never */
    struct value val[NKEYS];
    size_t count;
    uint64_t bytes;
    pc_stats st;
    /* The listener's reports, not yet checked. */
    struct report rep[NREPORTS];
    unsigned nrep;
} m;

static size_t key_len(int k)
{
    return k == 0 ? 0 : 1 + (size_t)(k % 4); /* key 0 is the empty key */
}

static void key_bytes(int k, unsigned char *kb)
{
    memset(kb, k, key_len(k));
}

static bool expired(int k)
{
    return m.present[k] && m.expires[k] != 0 && m.now >= m.expires[k];
}

static bool live(int k)
{
    return m.present[k] && !expired(k);
}

/* The shard a key's puts evict in (lru: one list, one "shard"). */
static unsigned key_shard(const unsigned char *kb, size_t klen)
{
#if PC_TEST_SHARDED
    return pc__policy_shard_of(m.c, klen ? kb : NULL, klen);
#else
    (void)kb;
    (void)klen;
    return 0;
#endif
}

static uint64_t size_of(int k)
{
    return key_len(k) + m.val[k].len;
}

static void on_removal(void *ctx, const void *key, size_t klen, const void *val,
                       size_t vlen, pc_removal_cause cause)
{
    struct report *r;
    int k = 0;

    (void)ctx;
    CHECK(m.nrep < NREPORTS);
    CHECK(klen <= 4 && vlen <= VMAX);
    if (klen > 0) {
        k = ((const unsigned char *)key)[0];
        CHECK(k > 0 && key_len(k) == klen);
        for (size_t i = 1; i < klen; i++)
            CHECK(((const unsigned char *)key)[i] == k);
    }
    r = &m.rep[m.nrep++];
    r->key = k;
    r->cause = cause;
    r->v.len = vlen;
    memcpy(r->v.b, val, vlen);
}

static uint64_t model_clock(void *ctx)
{
    (void)ctx;
    return m.now;
}

/* What the reports of one call showed. */
struct removed {
    unsigned n;              /* reports */
    unsigned evicted;        /* PC_REMOVED_EVICTED */
    unsigned expired;        /* PC_REMOVED_EXPIRED */
    unsigned replaced;       /* PC_REMOVED_REPLACED */
    bool expired_after_live; /* an EVICTED report before an EXPIRED one */
    /* The same within a shard, and the shards with an EVICTED report. */
    bool shard_expired_after_live;
    uint64_t evicted_shards;
    /* The same across the shards other than that of the call's own key
     * (a put that found its own empty evicts from them in passes). */
    bool elsewhere_live, elsewhere_expired_after_live;
    int last_key; /* the last entry removed: its key, its size */
    uint64_t last_bytes;
    /* EVICTED and EXPIRED reports of keys other than the call's own, and
     * the size of the last of them: what a put evicted to make room. */
    unsigned others;
    uint64_t last_other_bytes;
};

/* Check the reports of the call just made against the model, which holds
 * the state before it, and remove their entries from the model. allowed:
 * the causes the call may report; own: the key REPLACED and DELETED may
 * name (-1: none). */
static struct removed take_reports(unsigned allowed, int own)
{
    struct removed out = {.last_key = -1}; /* (the rest 0, false) */

    for (unsigned i = 0; i < m.nrep; i++) {
        const struct report *r = &m.rep[i];
        int k = r->key;

        CHECK(r->cause >= PC_REMOVED_EVICTED && r->cause <= PC_REMOVED_CLEARED);
        CHECK(allowed & BIT(r->cause));
        CHECK(!(BIT(r->cause) & OWN_KEY) || k == own);
        CHECK(m.present[k]);
        CHECK(r->v.len == m.val[k].len &&
              memcmp(r->v.b, m.val[k].b, r->v.len) == 0);
        switch (r->cause) {
        case PC_REMOVED_EXPIRED:
            CHECK(expired(k));
            m.st.expirations++;
            out.expired++;
            break;
        case PC_REMOVED_EVICTED:
            CHECK(live(k));
            m.st.evictions++;
            out.evicted++;
            break;
        case PC_REMOVED_DELETED:
            CHECK(live(k));
            m.st.deletes++;
            break;
        case PC_REMOVED_REPLACED:
            CHECK(live(k));
            out.replaced++;
            break;
        case PC_REMOVED_CLEARED:
            break;
        }
        if (r->cause == PC_REMOVED_EXPIRED && out.evicted != 0)
            out.expired_after_live = true;
        if (r->cause == PC_REMOVED_EXPIRED &&
            (out.evicted_shards >> m.shard[k] & 1))
            out.shard_expired_after_live = true;
        if (r->cause == PC_REMOVED_EVICTED)
            out.evicted_shards |= 1ull << m.shard[k];
        if (own >= 0 && m.shard[k] != m.shard[own]) {
            if (r->cause == PC_REMOVED_EXPIRED && out.elsewhere_live)
                out.elsewhere_expired_after_live = true;
            if (r->cause == PC_REMOVED_EVICTED)
                out.elsewhere_live = true;
        }
        out.last_key = k;
        out.last_bytes = size_of(k);
        if (k != own && (r->cause == PC_REMOVED_EVICTED ||
                         r->cause == PC_REMOVED_EXPIRED)) {
            out.others++;
            out.last_other_bytes = size_of(k);
        }
        m.present[k] = false;
        m.count--;
        m.bytes -= size_of(k);
        out.n++;
    }
    m.nrep = 0;
    return out;
}

static bool any_expired(void)
{
    for (int k = 0; k < NKEYS; k++)
        if (expired(k))
            return true;
    return false;
}

/* Expired entries went before live ones: none after a live one, none left
 * once a live one went. */
static void check_expired_first(const struct removed *rm)
{
    CHECK(!rm->expired_after_live && (rm->evicted == 0 || !any_expired()));
}

/* The same as a put of `own` evicts: within each shard, and across the
 * shards other than own's (which it evicts from only when its own has
 * nothing left: every one's expired entries first, then live ones). */
static void check_expired_first_per_shard(const struct removed *rm, int own)
{
    CHECK(!rm->shard_expired_after_live && !rm->elsewhere_expired_after_live);
    for (int k = 0; k < NKEYS; k++) {
        CHECK(!expired(k) || !(rm->evicted_shards >> m.shard[k] & 1));
        CHECK(!expired(k) || !rm->elsewhere_live || m.shard[k] == m.shard[own]);
    }
}

/* The reports of a lowered limit (pc_set_capacity, pc_set_max_bytes):
 * evictions only, expired entries first, from every shard. */
static struct removed shrink_reports(void)
{
    struct removed rm =
        take_reports(BIT(PC_REMOVED_EVICTED) | BIT(PC_REMOVED_EXPIRED), -1);

    check_expired_first(&rm);
    return rm;
}

static void store(int k, const struct value *v, uint64_t ttl_arg)
{
    uint64_t ttl = ttl_arg == 0 ? m.ttl : ttl_arg;

    CHECK(!m.present[k]);
    m.present[k] = true;
    m.val[k] = *v;
    m.expires[k] = ttl == 0 || ttl == PC_TTL_NEVER || m.now + ttl < m.now
                       ? 0
                       : m.now + ttl;
    m.count++;
    m.bytes += size_of(k);
    m.st.puts++;
}

static void check_all(void)
{
    pc_stats st;

    CHECK(m.nrep == 0);
    CHECK(pc_len(m.c) == m.count);
    CHECK(m.count <= m.cap && pc_capacity(m.c) == m.cap);
    CHECK(pc_bytes(m.c) == m.bytes);
    CHECK(m.max == 0 || m.bytes <= m.max);
    CHECK(pc_stats_get(m.c, &st) == PC_OK);
    CHECK(st.hits == m.st.hits && st.misses == m.st.misses);
    CHECK(st.puts == m.st.puts && st.evictions == m.st.evictions);
    CHECK(st.deletes == m.st.deletes && st.expirations == m.st.expirations);
    CHECK(st.loader_calls == m.st.loader_calls &&
          st.loader_errors == m.st.loader_errors);
    CHECK(st.bytes == m.bytes);
}

/* The state before a put of k: whether the cache is full once k's own
 * entry, expired or replaced, is set aside (a replacement never is: it
 * takes its old entry's place), and what the others hold. */
struct before {
    bool full;
    uint64_t base; /* bytes held but k's */
};

static struct before before_put(int k)
{
    struct before b = {false, m.bytes};

    if (m.present[k])
        b.base -= size_of(k);
    b.full = !live(k) && m.count - (m.present[k] ? 1 : 0) == m.cap;
    return b;
}

/* Whether a put of `size` bytes that stored (reports taken) evicted what
 * it needed and no more. With no byte bound: one entry if the cache was
 * full and none otherwise. Under a bound, a shard may keep bytes freed for
 * its next puts, up to 1/128 of the bound over all shards (purecache.h),
 * so within that slack: none while the entry fits beside what the others
 * hold, and no entry past the one that made it fit. Expired entries go
 * first, within each shard and across the others than own's. */
static void check_room(const struct removed *rm, const struct before *b,
                       int own, uint64_t size)
{
    uint64_t slack = m.max / 128 + 1;

    if (m.max == 0) {
        CHECK(rm->others == (b->full ? 1u : 0u));
    } else {
        if (!b->full && b->base + size + slack <= m.max)
            CHECK(rm->others == 0);
        if (rm->others > 0)
            CHECK((b->full && rm->others == 1) ||
                  m.bytes + rm->last_other_bytes + size + slack > m.max);
    }
    check_expired_first_per_shard(rm, own);
}

/* A put of k (from the input, or from a loader), checked. Whether it
 * stored v. */
static bool do_put(int k, const struct value *v, uint64_t ttl, unsigned flags)
{
    unsigned char kb[4];
    pc_put_args a = {.ttl_ms = ttl, .flags = flags};
    bool was_live = live(k), was_expired = expired(k);
    struct before b = before_put(k);
    struct removed rm;
    pc_status st;

    key_bytes(k, kb);
    st = pc_put_ex(m.c, key_len(k) ? kb : NULL, key_len(k),
                   v->len ? v->b : NULL, v->len, &a);
    if (m.max != 0 && key_len(k) + v->len > m.max) {
        CHECK(st == PC_EINVAL && m.nrep == 0);
        return false;
    }
    /* The key's expired entry goes whatever the conditions say; then the
     * put is a new key's. */
    if ((flags == PC_PUT_IF_ABSENT && was_live) ||
        (flags == PC_PUT_IF_PRESENT && !was_live)) {
        CHECK(st == (was_live ? PC_EXISTS : PC_NOTFOUND));
        rm = take_reports(BIT(PC_REMOVED_EXPIRED), k);
        CHECK(rm.n == (was_expired ? 1u : 0u) && !expired(k));
        return false;
    }
    CHECK(st == PC_OK);
    rm = take_reports(BIT(PC_REMOVED_REPLACED) | BIT(PC_REMOVED_EVICTED) |
                          BIT(PC_REMOVED_EXPIRED),
                      k);
    /* Its old entry went: replaced if live, as expired if not. */
    CHECK(!m.present[k] && rm.replaced == (was_live ? 1u : 0u));
    CHECK(rm.n == rm.others + (was_live || was_expired ? 1u : 0u));
    check_room(&rm, &b, k, key_len(k) + v->len);
    store(k, v, ttl);
    return true;
}

/* get: hit exactly the live entries. */
static void do_get(int k, size_t bufcap)
{
    unsigned char kb[4], buf[VMAX];
    size_t n = 12345;
    pc_status st;

    key_bytes(k, kb);
    st = pc_get(m.c, key_len(k) ? kb : NULL, key_len(k), bufcap ? buf : NULL,
                bufcap, &n);
    CHECK(m.nrep == 0);
    if (!live(k)) {
        CHECK(st == PC_NOTFOUND);
        m.st.misses++;
        return;
    }
    m.st.hits++;
    CHECK(n == m.val[k].len);
    if (n > bufcap) {
        CHECK(st == PC_ERANGE);
    } else {
        CHECK(st == PC_OK);
        CHECK(memcmp(buf, m.val[k].b, n) == 0);
    }
}

static void do_delete(int k)
{
    unsigned char kb[4];
    bool was_live = live(k), was_expired = expired(k);
    struct removed rm;
    pc_status st;

    key_bytes(k, kb);
    st = pc_delete(m.c, key_len(k) ? kb : NULL, key_len(k));
    CHECK(st == (was_live ? PC_OK : PC_NOTFOUND));
    rm = take_reports(BIT(PC_REMOVED_DELETED) | BIT(PC_REMOVED_EXPIRED), k);
    CHECK(rm.n == (was_live || was_expired ? 1u : 0u) && !m.present[k]);
    CHECK(rm.expired == (was_expired ? 1u : 0u));
}

/* A loader: what it does is in its context. */
struct load {
    int key;
    int mode; /* 0: value, 1: fail, 2: put the key itself, 3: put another */
    int other;
    struct value v, w; /* its value; what it puts */
    uint64_t ttl;
    int calls;
    bool wrote; /* its put of the key stored */
};

static int loader(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    struct load *l = ctx;

    l->calls++;
    CHECK(klen == key_len(l->key));
    CHECK(klen == 0 || ((const unsigned char *)key)[0] == l->key);
    if (l->mode == 1)
        return 7;
    if (l->mode == 2)
        l->wrote = do_put(l->key, &l->w, l->ttl, 0);
    else if (l->mode == 3)
        do_put(l->other, &l->w, l->ttl, 0);
    CHECK(pc_sink_set(out, l->v.len ? l->v.b : NULL, l->v.len) == PC_OK);
    return 0;
}

/* get-or-load: the loader runs exactly on a miss; its value is stored as
 * a put of a new key would be, unless a write of the key during the load
 * (the loader's own put) won or the value does not fit the byte bound. */
static void do_load(struct load *l, size_t bufcap)
{
    unsigned char kb[4], buf[VMAX];
    pc_load_args a = {.ttl_ms = l->ttl};
    int k = l->key;
    bool hit = live(k);
    struct before b;
    struct value want = hit ? m.val[k] : l->v;
    size_t n = 12345;
    int err = 0;
    struct removed rm;
    pc_status st;

    key_bytes(k, kb);
    st = pc_get_or_load_ex(m.c, key_len(k) ? kb : NULL, key_len(k), loader, l,
                           bufcap ? buf : NULL, bufcap, &n, &err, &a);
    CHECK(l->calls == (hit ? 0 : 1));
    m.st.hits += hit;
    m.st.misses += !hit;
    m.st.loader_calls += !hit;
    if (!hit && l->mode == 1) {
        CHECK(st == PC_ELOAD && err == 7);
        m.st.loader_errors++;
        rm = take_reports(BIT(PC_REMOVED_EXPIRED), -1);
        CHECK(rm.n == 0 || (rm.n == 1 && rm.last_key == k));
        return;
    }
    CHECK(n == want.len);
    CHECK(st == (n > bufcap ? PC_ERANGE : PC_OK));
    CHECK(n > bufcap || memcmp(buf, want.b, n) == 0);
    if (hit || l->wrote ||
        (m.max != 0 && key_len(k) + l->v.len > m.max)) { /* not stored */
        CHECK(m.nrep == 0);
        return;
    }
    b = before_put(k); /* (after the loader's writes) */
    rm = take_reports(BIT(PC_REMOVED_EVICTED) | BIT(PC_REMOVED_EXPIRED), k);
    CHECK(!m.present[k]);
    check_room(&rm, &b, k, key_len(k) + l->v.len);
    store(k, &l->v, l->ttl);
}

struct pinned {
    bool used;
    pc_pin pin;
    struct value v;
};

static struct pinned pins[NPINS];

static void unpin(struct pinned *p)
{
    if (!p->used)
        return;
    CHECK(p->pin.len == p->v.len &&
          memcmp(p->pin.value, p->v.b, p->v.len) == 0);
    pc_unpin(&p->pin);
    p->used = false;
}

static void do_pin(int k, struct pinned *p)
{
    unsigned char kb[4];
    pc_pin pin;
    pc_status st;

    unpin(p);
    key_bytes(k, kb);
    memset(&pin, 0, sizeof pin);
    st = pc_get_pinned(m.c, key_len(k) ? kb : NULL, key_len(k), &pin);
    CHECK(m.nrep == 0);
    if (!live(k)) {
        CHECK(st == PC_NOTFOUND);
        m.st.misses++;
        return;
    }
    CHECK(st == PC_OK);
    m.st.hits++;
    p->used = true;
    p->pin = pin;
    p->v = m.val[k];
}

static void do_set_capacity(size_t cap)
{
    size_t before = m.count;
    struct removed rm;

    CHECK(pc_set_capacity(m.c, cap) == PC_OK);
    m.cap = cap;
    rm = shrink_reports();
    CHECK(rm.n == (before > cap ? before - cap : 0)); /* exactly the surplus */
}

static void do_set_max_bytes(uint64_t max)
{
    uint64_t before = m.bytes;
    struct removed rm;

    CHECK(pc_set_max_bytes(m.c, max) == PC_OK);
    m.max = max;
    rm = shrink_reports();
    CHECK(max == 0 || m.bytes <= max);
    /* It stops once within the bound. */
    CHECK(rm.n == 0 || (before > max && m.bytes + rm.last_bytes > max));
}

static const uint64_t ttls[8] = {
    0, 1, 3, 10, 100, (uint64_t)1 << 38, PC_TTL_NEVER, UINT64_MAX - 1};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t bounds[4] = {0, 40, 400, 4000};
    static const uint64_t default_ttls[4] = {0, 5, 50, (uint64_t)1 << 38};
    pc_options o = {
        .hash_seed = 1, .now_ms = model_clock, .on_removal = on_removal};
    size_t p = 2;

    if (size < 2)
        return 0;
    memset(&m, 0, sizeof m);
    memset(pins, 0, sizeof pins);
    m.now = 1000;
    o.capacity = data[0] & 0x80 ? (data[0] & 0x40 ? 200 : 64) : 1 + data[0] % 8;
    o.shards = data[1] & 3;
    o.max_bytes = bounds[(data[1] >> 2) & 3];
    o.ttl_ms = default_ttls[(data[1] >> 4) & 3];
    if (strcmp(PC_TEST_POLICY, "frequency") == 0)
        o.policy = PC_POLICY_FREQUENCY;
    m.cap = o.capacity;
    m.max = o.max_bytes;
    m.ttl = o.ttl_ms;
    CHECK(pc_create(&o, &m.c) == PC_OK);
    for (int k = 0; k < NKEYS; k++) {
        unsigned char kb[4];

        key_bytes(k, kb);
        m.shard[k] = (uint8_t)key_shard(kb, key_len(k));
        CHECK(m.shard[k] < 64);
    }

#define NEXT() (p < size ? data[p++] : 0)
    while (p < size) {
        uint8_t op = NEXT() % 12;
        int k = NEXT();
        struct value v;

        switch (op) {
        case 0:
        case 1: /* get, sometimes into a small buffer (PC_ERANGE) */
            do_get(k, op == 1 ? NEXT() % 8 : VMAX);
            break;
        case 2:
        case 3: { /* put, with a ttl and a condition */
            uint8_t how = NEXT();

            v.len = NEXT() % (VMAX + 1);
            for (size_t j = 0; j < v.len; j++)
                v.b[j] = NEXT();
            do_put(k, &v, ttls[how & 7], (how >> 3) % 3);
            break;
        }
        case 4:
            do_delete(k);
            break;
        case 5: /* time passes */
            m.now += NEXT() % 16;
            break;
        case 6: { /* get-or-load */
            uint8_t how = NEXT();
            struct load l = {.key = k, .mode = how & 3, .calls = 0};

            l.other = NEXT();
            if (l.other == k)
                l.other = (k + 1) % NKEYS;
            l.ttl = ttls[(how >> 2) & 7];
            l.v.len = NEXT() % (VMAX + 1);
            memset(l.v.b, NEXT(), l.v.len);
            l.w.len = NEXT() % (VMAX + 1);
            memset(l.w.b, NEXT(), l.w.len);
            do_load(&l, how & 0x20 ? NEXT() % 8 : VMAX);
            break;
        }
        case 7: { /* pin, or release a pin */
            uint8_t how = NEXT();

            if (how & 1)
                do_pin(k, &pins[(how >> 1) % NPINS]);
            else
                unpin(&pins[(how >> 1) % NPINS]);
            break;
        }
        case 8:
            do_set_capacity(1 + (size_t)NEXT());
            break;
        case 9: {
            static const uint64_t max[8] = {0, 0, 20, 40, 100, 400, 1000, 4000};

            do_set_max_bytes(max[NEXT() % 8]);
            break;
        }
        case 10:
            if (k % 3 == 0) {
                size_t want = 0;

                for (int j = 0; j < NKEYS; j++)
                    want += expired(j);
                CHECK(pc_expire(m.c) == want);
                CHECK(take_reports(BIT(PC_REMOVED_EXPIRED), -1).n == want);
            } else if (k % 3 == 1) {
                size_t was = m.count;

                pc_clear(m.c);
                CHECK(take_reports(BIT(PC_REMOVED_CLEARED), -1).n == was);
            } else {
                pc_reclaim(m.c);
                CHECK(m.nrep == 0);
            }
            break;
        case 11: { /* fill: puts of up to 128 keys from k on */
            unsigned n = 1 + NEXT() % 128;
            uint8_t how = NEXT();

            for (unsigned j = 0; j < n; j++) {
                v.len = j % 9;
                memset(v.b, (int)(how + j), v.len);
                do_put((k + (int)j) % NKEYS, &v, ttls[how & 7], 0);
            }
            break;
        }
        }
        check_all();
    }
    for (int i = 0; i < NPINS; i++)
        unpin(&pins[i]);
    check_all();
    pc_destroy(m.c);
    return 0;
}
