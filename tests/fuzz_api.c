/*
 * libFuzzer target: bytes -> a sequence of API calls on a small cache, each
 * result checked against a sequential reference model of the policy.
 *
 * Decoding. Byte 0 picks the capacity (1..8, or 64 so nothing is evicted).
 * Then each operation takes one byte (its kind) and the bytes it needs:
 * get (key, buffer size: small buffers exercise PC_ERANGE), put (key,
 * value length, value bytes; every other put is a pc_put_ex with a ttl
 * byte: none, one whose time lies in the entry's header, one whose time
 * follows it, or PC_TTL_NEVER, on a clock that stands still, so nothing
 * expires and the models hold, while both entry layouts, the expiry queue
 * and the hashing of near entries' keys are exercised), delete (key),
 * clear, reclaim, pc_expire (which finds nothing), and a consistency check
 * (pc_len and every statistics counter). Keys are 16 byte strings of
 * lengths 0..4, the empty key included; values are 0..40 bytes.
 *
 * Models, single-threaded and op for op: exact LRU (a hit or a replacement
 * promotes; a new key at capacity evicts the least recently used) for
 * "lru"; for "clock" (one shard at these capacities) a CLOCK ring with
 * reference bits, a hand, slots reused last-freed first, and a replacement
 * keeping its slot with the bit set, as clock.c documents. Any difference,
 * in a status, a value, a length, pc_len or a counter, aborts the run, and
 * ASan/UBSan (the fuzz build's sanitizers) catch memory errors on the way.
 *
 * Run longer (README.md):  build/asan/tests/fuzz_api_lru -max_total_time=600
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "purecache.h"

#define NKEYS 16
#define VMAX 40
#define CAPMAX 64

static bool is_lru(void)
{
    return strcmp(PC_TEST_POLICY, "lru") == 0;
}

struct slot {
    bool live, ref;
    int key;
    size_t vlen;
    unsigned char val[VMAX];
};

/* LRU: slots[0..n) least recent first. CLOCK: ring of `used` slots. */
static struct model {
    size_t cap, n, used, hand;
    size_t freelist[CAPMAX];
    int nfree;
    struct slot s[CAPMAX];
    pc_stats st;
} m;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_api: %s:%d: %s\n", __FILE__, __LINE__,       \
                    #cond);                                                    \
            abort();                                                           \
        }                                                                      \
    } while (0)

static void key_bytes(int k, unsigned char *kb, size_t *kl)
{
    *kl = k == 0 ? 0 : 1 + (size_t)(k % 4); /* key 0 is the empty key */
    memset(kb, 'a' + k, *kl);
}

static int model_find(int k)
{
    size_t lim = is_lru() ? m.n : m.used;

    for (size_t i = 0; i < lim; i++)
        if (m.s[i].live && m.s[i].key == k)
            return (int)i;
    return -1;
}

static void lru_unlink(size_t i)
{
    memmove(&m.s[i], &m.s[i + 1], (m.n - i - 1) * sizeof m.s[0]);
    m.n--;
}

/* A use of slot i (get hit or replacement). Returns its new index. */
static int model_use(int i)
{
    if (!is_lru()) {
        m.s[i].ref = true;
        return i;
    }
    struct slot tmp = m.s[i];

    lru_unlink((size_t)i);
    m.s[m.n++] = tmp;
    return (int)m.n - 1;
}

static size_t model_len(void)
{
    return m.n;
}

static void model_put(int k, const unsigned char *v, size_t vl)
{
    int i = model_find(k);
    size_t s;

    m.st.puts++;
    if (i >= 0) {
        i = model_use(i);
        memcpy(m.s[i].val, v, vl);
        m.s[i].vlen = vl;
        return;
    }
    if (is_lru()) {
        if (m.n == m.cap) {
            lru_unlink(0);
            m.st.evictions++;
        }
        s = m.n++;
    } else if (m.n < m.cap) {
        s = m.nfree ? m.freelist[--m.nfree] : m.used++;
        m.n++;
    } else {
        for (;;) {
            if (m.hand >= m.used)
                m.hand = 0;
            s = m.hand++;
            if (!m.s[s].live)
                continue;
            if (m.s[s].ref) {
                m.s[s].ref = false;
                continue;
            }
            break;
        }
        m.st.evictions++;
    }
    m.s[s].live = true;
    m.s[s].ref = false;
    m.s[s].key = k;
    m.s[s].vlen = vl;
    memcpy(m.s[s].val, v, vl);
}

static bool model_delete(int k)
{
    int i = model_find(k);

    if (i < 0)
        return false;
    m.st.deletes++;
    if (is_lru()) {
        lru_unlink((size_t)i);
    } else {
        m.s[i].live = false;
        m.freelist[m.nfree++] = (size_t)i;
        m.n--;
    }
    return true;
}

static void model_clear(void)
{
    for (size_t i = 0; i < CAPMAX; i++)
        m.s[i].live = false;
    m.n = m.used = m.hand = 0;
    m.nfree = 0;
}

static void check_all(pc_cache *c)
{
    pc_stats st;

    CHECK(pc_len(c) == model_len());
    CHECK(pc_len(c) <= pc_capacity(c));
    CHECK(pc_stats_get(c, &st) == PC_OK);
    CHECK(st.hits == m.st.hits && st.misses == m.st.misses);
    CHECK(st.puts == m.st.puts && st.evictions == m.st.evictions);
    CHECK(st.deletes == m.st.deletes);
}

/* The cache's clock: it stands still (entries given a ttl never expire). */
static uint64_t still_clock(void *ctx)
{
    (void)ctx;
    return 1000;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t ttls[4] = {0, 1000000000, (uint64_t)1 << 38,
                                     PC_TTL_NEVER};
    pc_options o = {.hash_seed = 1, .now_ms = still_clock};
    pc_cache *c = NULL;
    size_t p = 1;

    if (size < 1)
        return 0;
    memset(&m, 0, sizeof m);
    o.capacity = data[0] & 0x80 ? CAPMAX : 1 + data[0] % 8;
    m.cap = o.capacity;
    CHECK(pc_create(&o, &c) == PC_OK);

#define NEXT() (p < size ? data[p++] : 0)
    while (p < size) {
        uint8_t op = NEXT() % 8;
        unsigned char kb[8], buf[VMAX], v[VMAX];
        size_t kl, n;
        int k = NEXT() % NKEYS, i;
        pc_status st;

        key_bytes(k, kb, &kl);
        switch (op) {
        case 0:
        case 1:
        case 2: { /* get */
            size_t bufcap = op == 2 ? NEXT() % 8 : sizeof buf;

            n = 12345;
            st = pc_get(c, kl ? kb : NULL, kl, bufcap ? buf : NULL, bufcap, &n);
            i = model_find(k);
            if (i < 0) {
                CHECK(st == PC_NOTFOUND);
                m.st.misses++;
                break;
            }
            m.st.hits++;
            i = model_use(i);
            CHECK(n == m.s[i].vlen);
            if (m.s[i].vlen > bufcap) {
                CHECK(st == PC_ERANGE);
            } else {
                CHECK(st == PC_OK);
                CHECK(memcmp(buf, m.s[i].val, n) == 0);
            }
            break;
        }
        case 3:
        case 4: { /* put */
            size_t vl = NEXT() % (VMAX + 1);

            for (size_t j = 0; j < vl; j++)
                v[j] = NEXT();
            if (op == 4) {
                pc_put_args a = {.ttl_ms = ttls[NEXT() % 4]};

                CHECK(pc_put_ex(c, kl ? kb : NULL, kl, vl ? v : NULL, vl, &a) ==
                      PC_OK);
            } else {
                CHECK(pc_put(c, kl ? kb : NULL, kl, vl ? v : NULL, vl) ==
                      PC_OK);
            }
            model_put(k, v, vl);
            break;
        }
        case 5: /* delete */
            st = pc_delete(c, kl ? kb : NULL, kl);
            CHECK(st == (model_delete(k) ? PC_OK : PC_NOTFOUND));
            break;
        case 6:
            if (k == 0) {
                pc_clear(c);
                model_clear();
            } else if (k == 1) {
                pc_reclaim(c);
            } else if (k == 2) {
                CHECK(pc_expire(c) == 0);
            }
            break;
        case 7:
            check_all(c);
            break;
        }
    }
    check_all(c);
    pc_destroy(c);
    return 0;
}
