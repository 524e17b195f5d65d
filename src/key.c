/*
 * key: the typed key builder behind PC_MEMOIZE.
 *
 * Encoding, argument by argument:
 *   'i' + 8 bytes big-endian     signed 64-bit integer
 *   'u' + 8 bytes big-endian     unsigned 64-bit integer
 *   'd' + 8 bytes big-endian     double, by its IEEE-754 bit pattern (so
 *                                0.0 and -0.0 differ, and each NaN payload
 *                                is its own key)
 *   's' + varint length + bytes  NUL-terminated string
 *   'n'                          NULL string
 *   'b' + varint length + bytes  byte string
 * and pc_key_finish appends '#' + varint argument count. Every field is
 * self-delimiting, so a key decodes back to exactly one argument list:
 * distinct lists give distinct keys (no f(1, "ab") / f(1, "a", "b")
 * collision). The encoding is the same on every platform of the same byte
 * order for doubles, and fully portable otherwise.
 *
 * A key begun with pc_key_init_fn (PC_MEMOIZE's) opens with
 *   'f' + varint length + bytes  the function's name
 * which is not an argument (not counted). No argument field starts with
 * 'f', so a named key never equals an unnamed one, and keys of two names
 * never collide: the memoized function is part of the call's identity.
 * The name, not the function's address, so that the key is the same in
 * every process (memoizers sharing a remote backend share results).
 *
 * Errors (a key beyond PC_KEY_MAX, out of memory, NULL bytes with a length,
 * an add after pc_key_finish) are sticky: the first one is kept and
 * reported by pc_key_finish.
 *
 * pc_key_finish is the last step: it marks the key finished (FINISHED, the
 * top bit of count_, which no real count reaches: every argument takes a
 * byte of at most PC_KEY_MAX + 16), so that a second finish appends no
 * second trailer and an add after it changes no byte.
 * Not thread-safe per pc_key (it is a caller's local value).
 */
#include <string.h>

#include "alloc.h"
#include "purecache.h"

#define FINISHED ((size_t)1 << (sizeof(size_t) * 8 - 1))

void pc_key_init(pc_key *k)
{
    if (k == NULL)
        return;
    k->data_ = NULL; /* inline_ (key_bytes) */
    k->len_ = 0;
    k->cap_ = sizeof k->inline_;
    k->count_ = 0;
    k->err_ = PC_OK;
}

/* The key's bytes: inline_ until it grows (data_ NULL), so that a copy of
 * a key that never grew has bytes of its own, and freeing it frees
 * nothing (data_ pointed at inline_ once: a copy read the original's, and
 * pc_key_free of the copy freed the original's stack address). */
static unsigned char *key_bytes(pc_key *k)
{
    return k->data_ != NULL ? k->data_ : k->inline_;
}

static int key_reserve(pc_key *k, size_t more)
{
    size_t need, cap;
    unsigned char *p;

    if (k->err_ != PC_OK)
        return 0;
    if (k->count_ & FINISHED) { /* an add after pc_key_finish */
        k->err_ = PC_EINVAL;
        return 0;
    }
    need = k->len_ + more;
    if (need > PC_KEY_MAX + 16) { /* room for the count trailer */
        k->err_ = PC_EINVAL;
        return 0;
    }
    if (need <= k->cap_)
        return 1;
    cap = k->cap_ * 2 > need ? k->cap_ * 2 : need;
    p = pc__alloc(cap);
    if (p == NULL) {
        k->err_ = PC_ENOMEM;
        return 0;
    }
    memcpy(p, key_bytes(k), k->len_);
    if (k->data_ != NULL)
        pc__free(k->data_, k->cap_);
    k->data_ = p;
    k->cap_ = cap;
    return 1;
}

static void put_byte(pc_key *k, unsigned char b)
{
    key_bytes(k)[k->len_++] = b;
}

static void put_be64(pc_key *k, uint64_t v)
{
    for (int i = 7; i >= 0; i--)
        put_byte(k, (unsigned char)(v >> (8 * i)));
}

static void put_varint(pc_key *k, uint64_t v)
{
    while (v >= 0x80) {
        put_byte(k, (unsigned char)(v | 0x80));
        v >>= 7;
    }
    put_byte(k, (unsigned char)v);
}

void pc_key_init_fn(pc_key *k, const char *name)
{
    size_t n;

    pc_key_init(k);
    if (k == NULL)
        return;
    if (name == NULL) {
        k->err_ = PC_EINVAL;
        return;
    }
    n = strlen(name);
    if (n > PC_KEY_MAX) {
        k->err_ = PC_EINVAL;
        return;
    }
    if (!key_reserve(k, 1 + 10 + n))
        return;
    put_byte(k, 'f');
    put_varint(k, n);
    memcpy(key_bytes(k) + k->len_, name, n);
    k->len_ += n;
}

static void add_fixed(pc_key *k, unsigned char tag, uint64_t v)
{
    if (k == NULL || !key_reserve(k, 9))
        return;
    put_byte(k, tag);
    put_be64(k, v);
    k->count_++;
}

static void add_bytes(pc_key *k, unsigned char tag, const void *p, size_t n)
{
    if (k == NULL)
        return;
    if (p == NULL && n > 0) {
        if (k->err_ == PC_OK)
            k->err_ = PC_EINVAL;
        return;
    }
    if (n > PC_KEY_MAX) {
        if (k->err_ == PC_OK)
            k->err_ = PC_EINVAL;
        return;
    }
    if (!key_reserve(k, 1 + 10 + n))
        return;
    put_byte(k, tag);
    put_varint(k, n);
    if (n)
        memcpy(key_bytes(k) + k->len_, p, n);
    k->len_ += n;
    k->count_++;
}

void pc_key_add_i64(pc_key *k, int64_t v)
{
    add_fixed(k, 'i', (uint64_t)v);
}

void pc_key_add_u64(pc_key *k, uint64_t v)
{
    add_fixed(k, 'u', v);
}

void pc_key_add_f64(pc_key *k, double v)
{
    uint64_t bits;

    memcpy(&bits, &v, sizeof bits);
    add_fixed(k, 'd', bits);
}

void pc_key_add_str(pc_key *k, const char *s)
{
    if (s == NULL) {
        if (k != NULL && key_reserve(k, 1)) {
            put_byte(k, 'n');
            k->count_++;
        }
        return;
    }
    add_bytes(k, 's', s, strlen(s));
}

void pc_key_add_bytes(pc_key *k, const void *p, size_t n)
{
    add_bytes(k, 'b', p, n);
}

pc_status pc_key_finish(pc_key *k)
{
    if (k == NULL)
        return PC_EINVAL;
    if (k->count_ & FINISHED) /* finished already: its status, as it was */
        return (pc_status)k->err_;
    if (!key_reserve(k, 11)) {
        k->count_ |= FINISHED;
        return (pc_status)k->err_;
    }
    put_byte(k, '#');
    put_varint(k, k->count_);
    k->count_ |= FINISHED;
    if (k->len_ > PC_KEY_MAX) {
        k->err_ = PC_EINVAL;
        return PC_EINVAL;
    }
    return PC_OK;
}

const void *pc_key_data(const pc_key *k)
{
    return k == NULL ? NULL : k->data_ != NULL ? k->data_ : k->inline_;
}

size_t pc_key_len(const pc_key *k)
{
    return k == NULL ? 0 : k->len_;
}

void pc_key_free(pc_key *k)
{
    if (k == NULL || k->data_ == NULL)
        return;
    pc__free(k->data_, k->cap_);
    k->data_ = NULL;
    k->cap_ = sizeof k->inline_;
    k->len_ = 0;
}
