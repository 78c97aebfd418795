/* SPDX-License-Identifier: MIT */
/* Request ids: which client ids are kept, and the generated ones. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aigw/http-util.h"
#include "aigw/macro.h"

static void test_valid_ids(void **state) {
    static const char *const ok[] = {
        "a",
        "Z",
        "0",
        ".",
        "_",
        ":",
        "-",
        "abc123",
        "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        "req_01HZX3K5:trace.span-9",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", /* 64 */
    };
    for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
        if (!request_id_valid(ok[i], strlen(ok[i])))
            print_message("id \"%s\"\n", ok[i]);
        assert_true(request_id_valid(ok[i], strlen(ok[i])));
    }

    /* every allowed character, alone and within a longer id */
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-";
    for (size_t i = 0; i < sizeof(allowed) - 1; i++) {
        assert_true(request_id_valid(&allowed[i], 1));
        char id[3] = {'x', allowed[i], 'x'};
        assert_true(request_id_valid(id, 3));
    }
    /* and every other byte value is refused, alone and within */
    for (unsigned c = 0; c < 256; c++) {
        if (c && memchr(allowed, (int)c, sizeof(allowed) - 1))
            continue;
        char one = (char)c;
        if (request_id_valid(&one, 1))
            print_message("byte 0x%02x accepted\n", c);
        assert_false(request_id_valid(&one, 1));
        char id[3] = {'x', (char)c, 'x'};
        assert_false(request_id_valid(id, 3));
    }
}

static void test_invalid_ids(void **state) {
    static const struct {
        const char *s;
        size_t len;
    } bad[] = {
        {"", 0},
        {"abc", 0},                 /* the length counts, not the NUL */
        {"a b", 3},                 /* space */
        {" ab", 3},
        {"ab ", 3},
        {"a\"b", 3},                /* quote: would break log quoting */
        {"a'b", 3},
        {"a\nb", 3},                /* newline: would forge log lines */
        {"a\r\nX-Evil: 1", 12},
        {"ab\n", 3},
        {"a\tb", 3},
        {"a\0b", 3},                /* NUL inside */
        {"a=b", 3},                 /* '=': would forge log fields */
        {"a\\b", 3},
        {"a/b", 3},
        {"a;b", 3},
        {"a,b", 3},
        {"a+b", 3},
        {"<script>", 8},
        {"caf\xc3\xa9", 5},         /* UTF-8 */
        {"\xe2\x80\x8b", 3},        /* zero-width space */
        {"\x7f", 1},
        {"\xff", 1},
        {"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0", 65},
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        if (request_id_valid(bad[i].s, bad[i].len))
            print_message("accepted #%zu\n", i);
        assert_false(request_id_valid(bad[i].s, bad[i].len));
    }

    /* the length is what counts: only the first len bytes are looked at */
    static const char longer[] = "abc def";
    assert_true(request_id_valid(longer, 3));
    assert_false(request_id_valid(longer, 4));
    char big[200];
    memset(big, 'a', sizeof(big));
    assert_true(request_id_valid(big, 64));
    assert_false(request_id_valid(big, 65));
    assert_false(request_id_valid(big, sizeof(big)));
    assert_false(request_id_valid(big, SIZE_MAX));
}

/* xorshift128+, values computed independently (Python) from the same
 * definition; guards against an accidental change of the generator. */
static void test_rng_known_values(void **state) {
    uint64_t s[2] = {1, 2};
    assert_true(rng_next(s) == 0x800045ULL);
    assert_true(rng_next(s) == 0x2000104ULL);
    assert_true(rng_next(s) == 0x4000020010c3ULL);
    assert_true(rng_next(s) == 0xc00002103045ULL);
    assert_true(s[0] == 0x400000801002ULL);
    assert_true(s[1] == 0x800001902043ULL);

    char id[33];
    uint64_t s2[2] = {0x0123456789abcdefULL, 0xfedcba9876543210ULL};
    request_id_generate(s2, id);
    assert_string_equal(id, "4b182deded6619074b182e0a46eba587");
    /* leading zeros are kept: always 32 characters */
    uint64_t s3[2] = {0, 1};
    request_id_generate(s3, id);
    assert_string_equal(id, "00000000000000020000000000800041");
}

static void test_rng_seed(void **state) {
    uint64_t a[2] = {0, 0}, b[2] = {0, 0};
    rng_seed(a);
    rng_seed(b);
    assert_true((a[0] | a[1]) != 0); /* an all-zero state would only give zeros */
    assert_true(a[0] != b[0] || a[1] != b[1]);

    /* same state, same sequence */
    uint64_t c[2] = {a[0], a[1]};
    for (int i = 0; i < 100; i++)
        assert_true(rng_next(a) == rng_next(c));
}

static int cmp_id(const void *a, const void *b) {
    return memcmp(a, b, 32);
}

static void test_generate(void **state) {
    enum { N = 10000 };
    uint64_t rng[2];
    rng_seed(rng);
    char(*ids)[33] = calloc(N, sizeof(*ids));
    assert_non_null(ids);
    for (size_t i = 0; i < N; i++) {
        memset(ids[i], 'Z', sizeof(ids[i]));
        request_id_generate(rng, ids[i]);
        assert_int_equal(ids[i][32], 0);
        assert_int_equal(strlen(ids[i]), 32);
        for (size_t j = 0; j < 32; j++) {
            char ch = ids[i][j];
            assert_true((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'));
        }
        /* a generated id is always one the gateway would keep */
        assert_true(request_id_valid(ids[i], 32));
    }
    qsort(ids, N, sizeof(*ids), cmp_id);
    for (size_t i = 1; i < N; i++)
        assert_int_not_equal(memcmp(ids[i - 1], ids[i], 32), 0);
    free(ids);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_ids),
        cmocka_unit_test(test_invalid_ids),
        cmocka_unit_test(test_rng_known_values),
        cmocka_unit_test(test_rng_seed),
        cmocka_unit_test(test_generate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
