/*
 * The key builder (pc_key): argument boundaries, types, varint lengths,
 * function names and random argument lists never make two different calls
 * one key; too long or bad arguments are refused; a copied key keeps its
 * own bytes. (Split from test_memo.c.)
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "testlib.h"

/* ---- key builder ---- */

static void key_of(pc_key *k)
{
    pc_key_init(k);
}

static int same_key(pc_key *a, pc_key *b)
{
    cr_assert_eq(pc_key_finish(a), PC_OK);
    cr_assert_eq(pc_key_finish(b), PC_OK);
    int same = pc_key_len(a) == pc_key_len(b) &&
               memcmp(pc_key_data(a), pc_key_data(b), pc_key_len(a)) == 0;
    pc_key_free(a);
    pc_key_free(b);
    return same;
}

Test(key_builder, argument_boundaries_and_types_never_collide)
{
    pc_key a, b;

    key_of(&a), pc_key_add_i64(&a, 1), pc_key_add_str(&a, "ab");
    key_of(&b), pc_key_add_i64(&b, 1), pc_key_add_str(&b, "a"),
        pc_key_add_str(&b, "b");
    cr_assert_not(same_key(&a, &b), "f(1, \"ab\") == f(1, \"a\", \"b\")");

    key_of(&a), pc_key_add_str(&a, "1");
    key_of(&b), pc_key_add_i64(&b, 1);
    cr_assert_not(same_key(&a, &b), "f(\"1\") == f(1)");

    key_of(&a), pc_key_add_i64(&a, -1);
    key_of(&b), pc_key_add_u64(&b, UINT64_MAX);
    cr_assert_not(same_key(&a, &b), "i64 -1 == u64 max");

    key_of(&a), pc_key_add_f64(&a, 0.0);
    key_of(&b), pc_key_add_f64(&b, -0.0);
    cr_assert_not(same_key(&a, &b), "0.0 == -0.0");

    key_of(&a), pc_key_add_str(&a, NULL);
    key_of(&b), pc_key_add_str(&b, "");
    cr_assert_not(same_key(&a, &b), "NULL == \"\"");

    key_of(&a), pc_key_add_str(&a, "xy");
    key_of(&b), pc_key_add_bytes(&b, "xy", 2);
    cr_assert_not(same_key(&a, &b), "string == bytes");

    key_of(&a);
    key_of(&b), pc_key_add_str(&b, "");
    cr_assert_not(same_key(&a, &b), "f() == f(\"\")");

    key_of(&a), pc_key_add_bytes(&a, "a\0b", 3);
    key_of(&b), pc_key_add_bytes(&b, "a\0b", 3);
    cr_assert(same_key(&a, &b), "equal arguments must give equal keys");
}

/* Lengths are varints: at 128 (and 16384) a length takes one more byte. Two
 * lists built so that a length written wrongly at the boundary (128 as the
 * one byte 0x80, which is a continuation byte) would make their bytes
 * line up: (128 bytes, 200 bytes) and (256 bytes, 72 bytes). */
Test(key_builder, lengths_at_the_varint_boundaries_never_collide)
{
    static unsigned char a1[128], a2[200], b1[256], b2[72];
    pc_key a, b;

    a1[0] = 0x02; /* what 256's second length byte would be */
    for (int i = 0; i < 200; i++)
        a2[i] = (unsigned char)(i * 7 + 1);
    a2[126] = 'b', a2[127] = 72; /* a second field's tag and length */
    /* b1: a1's last 127 bytes, a2's field head, a2's first 126 bytes */
    memcpy(b1, a1 + 1, 127);
    b1[127] = 'b', b1[128] = 0xC8, b1[129] = 0x01; /* 200 as a varint */
    memcpy(b1 + 130, a2, 126);
    memcpy(b2, a2 + 128, 72);
    key_of(&a), pc_key_add_bytes(&a, a1, sizeof a1),
        pc_key_add_bytes(&a, a2, sizeof a2);
    key_of(&b), pc_key_add_bytes(&b, b1, sizeof b1),
        pc_key_add_bytes(&b, b2, sizeof b2);
    cr_assert_not(same_key(&a, &b), "(128 B, 200 B) == (256 B, 72 B)");

    /* A longer argument of equal bytes gives a longer key (every length up
     * to 300, then in steps). */
    {
        static unsigned char z[PC_KEY_MAX];
        size_t prev = 0;

        for (size_t n = 0; n < PC_KEY_MAX - 16; n += n < 300 ? 1 : 97) {
            key_of(&a), pc_key_add_bytes(&a, z, n);
            cr_assert_eq(pc_key_finish(&a), PC_OK, "length %zu", n);
            cr_assert_gt(pc_key_len(&a), prev, "length %zu", n);
            prev = pc_key_len(&a);
            pc_key_free(&a);
        }
    }
}

Test(key_builder, random_argument_lists_collide_only_when_equal)
{
    /* Short lists over a tiny alphabet make near-misses frequent. */
    enum { LISTS = 3000 };
    static unsigned char keys[LISTS][64];
    static size_t lens[LISTS];
    static char desc[LISTS][64];
    uint64_t x = 12345;

    for (int i = 0; i < LISTS; i++) {
        pc_key k;
        int n = (int)(mix64(x++) % 4), d = 0;

        pc_key_init(&k);
        for (int j = 0; j < n; j++) {
            uint64_t r = mix64(x++);
            char s[3] = {(char)('a' + r % 2), (char)('a' + (r >> 8) % 2), 0};

            s[(r >> 16) % 3] = 0;
            switch ((r >> 24) % 3) {
            case 0:
                pc_key_add_i64(&k, (int64_t)((r >> 32) % 3));
                d +=
                    snprintf(desc[i] + d, 64 - d, "i%d,", (int)((r >> 32) % 3));
                break;
            case 1:
                pc_key_add_str(&k, s);
                d += snprintf(desc[i] + d, 64 - d, "s%s,", s);
                break;
            default:
                pc_key_add_bytes(&k, s, strlen(s));
                d += snprintf(desc[i] + d, 64 - d, "b%s,", s);
            }
        }
        cr_assert_eq(pc_key_finish(&k), PC_OK);
        cr_assert_leq(pc_key_len(&k), sizeof keys[i]);
        lens[i] = pc_key_len(&k);
        memcpy(keys[i], pc_key_data(&k), lens[i]);
        pc_key_free(&k);
    }
    for (int i = 0; i < LISTS; i++)
        for (int j = 0; j < i; j++) {
            int same_bytes =
                lens[i] == lens[j] && memcmp(keys[i], keys[j], lens[i]) == 0;
            int same_args = strcmp(desc[i], desc[j]) == 0;

            cr_assert_eq(same_bytes, same_args, "%s vs %s", desc[i], desc[j]);
        }
}

Test(key_builder, too_long_or_bad_arguments_are_refused)
{
    static char big[PC_KEY_MAX];
    pc_key k;

    pc_key_init(&k);
    pc_key_add_bytes(&k, big, sizeof big);
    cr_assert_eq(pc_key_finish(&k), PC_EINVAL);
    pc_key_free(&k);

    pc_key_init(&k);
    pc_key_add_bytes(&k, NULL, 3);
    pc_key_add_i64(&k, 1);
    cr_assert_eq(pc_key_finish(&k), PC_EINVAL);
    pc_key_free(&k);
    cr_assert_eq(pc_key_finish(NULL), PC_EINVAL);

    /* Long but legal keys spill to the heap and still work. */
    pc_key_init(&k);
    for (int i = 0; i < 300; i++)
        pc_key_add_i64(&k, i);
    cr_assert_eq(pc_key_finish(&k), PC_OK);
    cr_assert_gt(pc_key_len(&k), 256);
    pc_key_free(&k);
}

Test(key_builder, function_names_are_part_of_the_key)
{
    pc_key a, b;

    pc_key_init_fn(&a, "f"), pc_key_add_i64(&a, 1);
    pc_key_init_fn(&b, "g"), pc_key_add_i64(&b, 1);
    cr_assert_not(same_key(&a, &b), "f(1) == g(1)");

    pc_key_init_fn(&a, "f"), pc_key_add_i64(&a, 1);
    key_of(&b), pc_key_add_i64(&b, 1);
    cr_assert_not(same_key(&a, &b), "f(1) == unnamed (1)");

    pc_key_init_fn(&a, "f"), pc_key_add_str(&a, "x");
    key_of(&b), pc_key_add_str(&b, "f"), pc_key_add_str(&b, "x");
    cr_assert_not(same_key(&a, &b), "f(\"x\") == unnamed (\"f\", \"x\")");

    pc_key_init_fn(&a, "ab"), pc_key_add_str(&a, "c");
    pc_key_init_fn(&b, "a"), pc_key_add_str(&b, "bc");
    cr_assert_not(same_key(&a, &b), "ab(\"c\") == a(\"bc\")");

    pc_key_init_fn(&a, "f"), pc_key_add_i64(&a, 1);
    pc_key_init_fn(&b, "f"), pc_key_add_i64(&b, 1);
    cr_assert(same_key(&a, &b));

    pc_key_init_fn(&a, NULL);
    cr_assert_eq(pc_key_finish(&a), PC_EINVAL);
    pc_key_free(&a);
    pc_key_init_fn(NULL, "f"); /* a no-op */
}

/* A key that never grew holds its bytes inline: a copy (an assignment, a
 * key a helper returns by value) has bytes of its own, unchanged when the
 * original is reused, and freeing the copy frees nothing. The key's data
 * pointer used to point into the original's inline buffer: the copy read
 * the original's bytes, and pc_key_free of the copy handed a stack address
 * to the allocator (found by helper-64). */
static pc_key key_by_value(int64_t v)
{
    pc_key k;

    pc_key_init(&k);
    pc_key_add_i64(&k, v);
    cr_assert_eq(pc_key_finish(&k), PC_OK);
    return k;
}

Test(key_builder, a_copied_key_keeps_its_own_bytes)
{
    pc_key a = key_by_value(1), b, c = key_by_value(1);
    unsigned char before[64];
    size_t len;

    b = a;
    len = pc_key_len(&b);
    cr_assert_leq(len, sizeof before);
    memcpy(before, pc_key_data(&b), len);
    cr_assert_eq(len, pc_key_len(&c));
    cr_assert(memcmp(pc_key_data(&c), before, len) == 0,
              "a key returned by value reads its own bytes");
    pc_key_init(&a); /* the original reused for another call's key */
    pc_key_add_i64(&a, 2);
    cr_assert_eq(pc_key_finish(&a), PC_OK);
    cr_assert(pc_key_data(&b) != pc_key_data(&a));
    cr_assert(memcmp(pc_key_data(&b), before, len) == 0,
              "the copy's bytes changed with the original's");
    pc_key_free(&b); /* nothing to free: must not touch the allocator */
    pc_key_free(&c);
    pc_key_free(&a);
}

/* A key that outgrows its inline buffer keeps every byte it had: the bytes
 * so far are a prefix of the grown key, and keys that differ only in an
 * argument written just before the growth stay distinct. (A mutation that
 * copied the old bytes one short when the key grew, leaving the last of
 * them to whatever the allocator had there, passed every other test: no
 * test looked at a grown key's bytes.) */
Test(key_builder, a_key_that_grows_keeps_the_bytes_it_had)
{
    enum { SMALL = 256 };
    static unsigned char big[300], keys[SMALL][400];
    static size_t lens[SMALL];
    unsigned char before[256];

    memset(big, 'z', sizeof big);
    for (int i = 0; i < SMALL; i++) {
        pc_key k;
        size_t len;

        pc_key_init_fn(&k, "grow");
        pc_key_add_str(&k, "abc");
        pc_key_add_i64(&k, i);
        len = pc_key_len(&k);
        cr_assert_leq(len, sizeof before);
        memcpy(before, pc_key_data(&k), len);
        pc_key_add_bytes(&k, big, sizeof big); /* past the inline buffer */
        cr_assert_eq(pc_key_finish(&k), PC_OK);
        cr_assert_gt(pc_key_len(&k), 256);
        cr_assert_leq(pc_key_len(&k), sizeof keys[i]);
        cr_assert(memcmp(pc_key_data(&k), before, len) == 0,
                  "i %d: the bytes before the growth changed", i);
        lens[i] = pc_key_len(&k);
        memcpy(keys[i], pc_key_data(&k), lens[i]);
        pc_key_free(&k);
    }
    for (int i = 0; i < SMALL; i++)
        for (int j = 0; j < i; j++)
            cr_assert(lens[i] != lens[j] ||
                          memcmp(keys[i], keys[j], lens[i]) != 0,
                      "grow(\"abc\", %d, big) == grow(\"abc\", %d, big)", i, j);
}

/* The key's bytes are the documented encoding (src/key.c), byte for byte:
 * a key is shared by every process and every build that memoizes over one
 * backend (the Redis tier), so results stored by one build must be found
 * by the next. The name field, each tag, big-endian payloads, varint
 * lengths (200 takes two bytes) and the '#' trailer with the argument
 * count (a varint too: 130 arguments take two bytes). (A mutation that
 * left fixed-width arguments out of the count survived: keys stayed
 * distinct, but no longer matched those another build makes.) */
Test(key_builder, the_encoding_is_the_documented_one_byte_for_byte)
{
    static const unsigned char want[] = {
        'f', 1,    'f',                                      /* name */
        'i', 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, /* -2 */
        'u', 0,    0,    0,    0,    0,    0,    1,    0x2C, /* 300 */
        'd', 0x3F, 0xF0, 0,    0,    0,    0,    0,    0,    /* 1.0 */
        's', 2,    'a',  'b',                                /* "ab" */
        'n',                                                 /* NULL */
        'b', 2,    0,    'x',                                /* "\0x" */
        '#', 6};
    static char s200[201];
    pc_key k;
    const unsigned char *p;

    pc_key_init_fn(&k, "f");
    pc_key_add_i64(&k, -2);
    pc_key_add_u64(&k, 300);
    pc_key_add_f64(&k, 1.0);
    pc_key_add_str(&k, "ab");
    pc_key_add_str(&k, NULL);
    pc_key_add_bytes(&k, "\0x", 2);
    cr_assert_eq(pc_key_finish(&k), PC_OK);
    cr_assert_eq(pc_key_len(&k), sizeof want);
    p = pc_key_data(&k);
    for (size_t i = 0; i < sizeof want; i++)
        cr_assert_eq(p[i], want[i], "byte %zu: %#x, not %#x", i, p[i], want[i]);
    pc_key_free(&k);

    memset(s200, 's', 200);
    pc_key_init(&k);
    pc_key_add_str(&k, s200);
    cr_assert_eq(pc_key_finish(&k), PC_OK);
    cr_assert_eq(pc_key_len(&k), 1 + 2 + 200 + 2);
    p = pc_key_data(&k);
    cr_assert_eq(p[0], 's');
    cr_assert_eq(p[1], 0xC8); /* 200 = 0x48 | continuation, then 1 */
    cr_assert_eq(p[2], 0x01);
    cr_assert_eq(p[203], '#');
    cr_assert_eq(p[204], 1);
    pc_key_free(&k);

    pc_key_init(&k);
    for (int i = 0; i < 130; i++)
        i % 2 ? pc_key_add_u64(&k, (uint64_t)i) : pc_key_add_i64(&k, i);
    cr_assert_eq(pc_key_finish(&k), PC_OK);
    cr_assert_eq(pc_key_len(&k), 130 * 9 + 3);
    p = pc_key_data(&k);
    cr_assert_eq(p[130 * 9], '#');
    cr_assert_eq(p[130 * 9 + 1], 0x82); /* 130 = 2 | continuation, then 1 */
    cr_assert_eq(p[130 * 9 + 2], 0x01);
    pc_key_free(&k);
}

/* A key that grows again and again (inline, then ever larger heap blocks)
 * holds one block at a time: after pc_key_free nothing it allocated is
 * left, whether it finished, grew past PC_KEY_MAX, or failed to grow
 * (PC_ENOMEM) on its second growth. (A mutation that kept the old block
 * when a heap-grown key grew again survived: the leak checks never built
 * a key that grew twice.) */
Test(key_builder, a_key_that_grows_many_times_frees_all_it_took)
{
    long before;

    pc__alloc_track(1);
    before = pc__alloc_live();
    for (int how = 0; how < 3; how++) {
        pc_key k;
        int args = how == 1 ? 600 : 400; /* 600 x 9 bytes: past the limit */

        pc_key_init(&k);
        if (how == 2)
            pc__alloc_fail_after(1); /* the second growth fails */
        for (int i = 0; i < args; i++)
            pc_key_add_u64(&k, (uint64_t)i);
        pc__alloc_fail_after(-1);
        cr_assert_eq(pc_key_finish(&k),
                     how == 0   ? PC_OK
                     : how == 1 ? PC_EINVAL
                                : PC_ENOMEM,
                     "how %d", how);
        if (how == 0)
            cr_assert_gt(pc_key_len(&k), 3000, "the key grew several times");
        pc_key_free(&k);
        cr_assert_eq(pc__alloc_live(), before, "how %d: %ld blocks left", how,
                     pc__alloc_live() - before);
        cr_assert_eq(pc_key_len(&k), 0, "a freed key is empty");
        pc_key_free(&k); /* a second free is a no-op: ASan, and the count */
        cr_assert_eq(pc__alloc_live(), before, "how %d: twice", how);
        pc_key_init(&k); /* and the key can be built again */
        pc_key_add_u64(&k, 7);
        cr_assert_eq(pc_key_finish(&k), PC_OK);
        cr_assert_gt(pc_key_len(&k), 0);
        pc_key_free(&k);
    }
    pc__alloc_track(0);
}
