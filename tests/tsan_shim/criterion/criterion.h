/*
 * A minimal stand-in for <criterion/criterion.h>, used only by the
 * ThreadSanitizer build.
 *
 * Why. Criterion runs every test in a child process whose shared "arena" it
 * maps at a fixed address; TSan's mmap interceptor refuses that address
 * (it lies in TSan's shadow layout), so a Criterion binary built with
 * -fsanitize=thread aborts with "Could not initialize inheritable arena"
 * before running a test. The concurrent suites only need Test() and a few
 * assertions, so under TSan they compile against this header instead: the
 * same test code, run in one process, one test after another. A failed
 * assertion prints its location and message and exits with status 1, so
 * ctest sees the failure; a TSan report exits with TSan's exitcode (66).
 */
#ifndef PC_TSAN_CRITERION_SHIM_H
#define PC_TSAN_CRITERION_SHIM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

typedef void pcs_test_fn(void);

struct pcs_test {
    const char *suite, *name;
    pcs_test_fn *fn;
    struct pcs_test *next;
};

static struct pcs_test *pcs_tests, **pcs_tail = &pcs_tests;

static inline void pcs_register(struct pcs_test *t)
{
    *pcs_tail = t;
    pcs_tail = &t->next;
}

#define Test(suite, name, ...)                                                 \
    static void suite##_##name(void);                                          \
    static struct pcs_test pcs_##suite##_##name = {#suite, #name,              \
                                                   suite##_##name, NULL};      \
    __attribute__((constructor)) static void pcs_reg_##suite##_##name(void)    \
    {                                                                          \
        pcs_register(&pcs_##suite##_##name);                                   \
    }                                                                          \
    static void suite##_##name(void)

__attribute__((format(printf, 4, 5))) static inline void
pcs_check(bool ok, const char *expr, int line, const char *fmt, ...)
{
    va_list ap;

    if (ok)
        return;
    fprintf(stderr, "%s:%d: assertion failed: %s\n  ", __FILE__, line, expr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(1);
}

#define PCS_CHECK(cond, text, ...)                                             \
    pcs_check((cond), text, __LINE__, " " __VA_ARGS__)
#define cr_assert(c, ...) PCS_CHECK((c), #c, __VA_ARGS__)
#define cr_assert_not(c, ...) PCS_CHECK(!(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...) PCS_CHECK((a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...)                                               \
    PCS_CHECK((a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) PCS_CHECK((a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...)                                               \
    PCS_CHECK((a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) PCS_CHECK((a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...)                                               \
    PCS_CHECK((a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_null(p, ...)                                                 \
    PCS_CHECK((p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...)                                             \
    PCS_CHECK((p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_fail(...) PCS_CHECK(false, "failure", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...)                                            \
    PCS_CHECK(strcmp((a), (b)) == 0, #a " == " #b, __VA_ARGS__)

int main(int argc, char **argv)
{
    int n = 0;

    (void)argc;
    (void)argv;
    for (struct pcs_test *t = pcs_tests; t != NULL; t = t->next, n++) {
        fprintf(stderr, "[RUN ] %s::%s\n", t->suite, t->name);
        t->fn();
        fprintf(stderr, "[PASS] %s::%s\n", t->suite, t->name);
    }
    fprintf(stderr, "[====] %d tests passed (TSan shim)\n", n);
    return 0;
}

#endif
