/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "aigw/macro.h"
#include "aigw/utf8.h"

#define CP_UNTOUCHED 0xDEADBEEFu

/* ---- aigw_utf8_decode ---------------------------------------------------- */

struct decode_case {
    const char *name;
    const char *bytes;
    size_t len;    /* passed as len; bytes may hold more */
    size_t want_n; /* 0: invalid */
    uint32_t want_cp;
};

static const struct decode_case decode_cases[] = {
    /* Boundaries of each length. */
    { "U+0000", "\x00", 1, 1, 0x0000 },
    { "U+0041", "A", 1, 1, 0x0041 },
    { "U+007F", "\x7F", 1, 1, 0x007F },
    { "U+0080", "\xC2\x80", 2, 2, 0x0080 },
    { "U+00E9", "\xC3\xA9", 2, 2, 0x00E9 },
    { "U+07FF", "\xDF\xBF", 2, 2, 0x07FF },
    { "U+0800", "\xE0\xA0\x80", 3, 3, 0x0800 },
    { "U+20AC", "\xE2\x82\xAC", 3, 3, 0x20AC },
    { "U+D7FF", "\xED\x9F\xBF", 3, 3, 0xD7FF },
    { "U+E000", "\xEE\x80\x80", 3, 3, 0xE000 },
    { "U+FFFD", "\xEF\xBF\xBD", 3, 3, 0xFFFD },
    { "U+FFFF", "\xEF\xBF\xBF", 3, 3, 0xFFFF },
    { "U+10000", "\xF0\x90\x80\x80", 4, 4, 0x10000 },
    { "U+1F600", "\xF0\x9F\x98\x80", 4, 4, 0x1F600 },
    { "U+FFFFF", "\xF3\xBF\xBF\xBF", 4, 4, 0xFFFFF },
    { "U+100000", "\xF4\x80\x80\x80", 4, 4, 0x100000 },
    { "U+10FFFF", "\xF4\x8F\xBF\xBF", 4, 4, 0x10FFFF },
    /* Only the first sequence counts. */
    { "followed by more", "\xC3\xA9\x41", 3, 2, 0x00E9 },
    { "ASCII then invalid", "A\xFF", 2, 1, 0x0041 },
    { "followed by a continuation byte", "\xC3\xA9\x80", 3, 2, 0x00E9 },

    /* Nothing to decode. */
    { "empty", "", 0, 0, 0 },
    { "empty, bytes beyond len", "A", 0, 0, 0 },

    /* Continuation bytes without a lead. */
    { "lone 0x80", "\x80", 1, 0, 0 },
    { "lone 0xBF", "\xBF", 1, 0, 0 },
    { "continuation then ASCII", "\x80\x41", 2, 0, 0 },

    /* Overlong forms. */
    { "overlong C0 80 (U+0000)", "\xC0\x80", 2, 0, 0 },
    { "overlong C0 AF ('/')", "\xC0\xAF", 2, 0, 0 },
    { "overlong C1 BF (U+007F)", "\xC1\xBF", 2, 0, 0 },
    { "overlong E0 80 80 (U+0000)", "\xE0\x80\x80", 3, 0, 0 },
    { "overlong E0 9F BF (U+07FF)", "\xE0\x9F\xBF", 3, 0, 0 },
    { "overlong F0 80 80 80 (U+0000)", "\xF0\x80\x80\x80", 4, 0, 0 },
    { "overlong F0 8F BF BF (U+FFFF)", "\xF0\x8F\xBF\xBF", 4, 0, 0 },

    /* Surrogates. */
    { "surrogate U+D800", "\xED\xA0\x80", 3, 0, 0 },
    { "surrogate U+DBFF", "\xED\xAF\xBF", 3, 0, 0 },
    { "surrogate U+DC00", "\xED\xB0\x80", 3, 0, 0 },
    { "surrogate U+DFFF", "\xED\xBF\xBF", 3, 0, 0 },
    { "CESU-8 pair for U+1F600", "\xED\xA0\xBD\xED\xB8\x80", 6, 0, 0 },

    /* Above U+10FFFF, and lead bytes no sequence may start with. */
    { "U+110000", "\xF4\x90\x80\x80", 4, 0, 0 },
    { "U+13FFFF", "\xF4\xBF\xBF\xBF", 4, 0, 0 },
    { "lead F5", "\xF5\x80\x80\x80", 4, 0, 0 },
    { "lead F7 (U+1FFFFF)", "\xF7\xBF\xBF\xBF", 4, 0, 0 },
    { "lead F8 (5 bytes)", "\xF8\x88\x80\x80\x80", 5, 0, 0 },
    { "lead FC (6 bytes)", "\xFC\x84\x80\x80\x80\x80", 6, 0, 0 },
    { "lead FE", "\xFE", 1, 0, 0 },
    { "lead FF", "\xFF", 1, 0, 0 },

    /* A byte that is not a continuation where one is due. */
    { "2-byte, ASCII second", "\xC3\x41", 2, 0, 0 },
    { "2-byte, lead second", "\xC3\xC3\xA9", 3, 0, 0 },
    { "3-byte, ASCII second", "\xE2\x41\xAC", 3, 0, 0 },
    { "3-byte, ASCII third", "\xE2\x82\x41", 3, 0, 0 },
    { "3-byte, lead third", "\xE2\x82\xC3\xA9", 4, 0, 0 },
    { "4-byte, ASCII second", "\xF0\x41\x98\x80", 4, 0, 0 },
    { "4-byte, ASCII third", "\xF0\x9F\x41\x80", 4, 0, 0 },
    { "4-byte, ASCII fourth", "\xF0\x9F\x98\x41", 4, 0, 0 },
    { "4-byte, NUL fourth", "\xF0\x9F\x98\x00", 4, 0, 0 },

    /* Cut short by the end of the input... */
    { "2-byte, 1 of 2", "\xC3", 1, 0, 0 },
    { "3-byte, 1 of 3", "\xE2", 1, 0, 0 },
    { "3-byte, 2 of 3", "\xE2\x82", 2, 0, 0 },
    { "4-byte, 1 of 4", "\xF0", 1, 0, 0 },
    { "4-byte, 2 of 4", "\xF0\x9F", 2, 0, 0 },
    { "4-byte, 3 of 4", "\xF0\x9F\x98", 3, 0, 0 },
    { "E0, 2 of 3", "\xE0\xA0", 2, 0, 0 },
    { "F4, 3 of 4", "\xF4\x8F\xBF", 3, 0, 0 },
    /* ...by len, with the rest of the sequence right behind it. */
    { "len cuts 2-byte", "\xC3\xA9", 1, 0, 0 },
    { "len cuts 3-byte", "\xE2\x82\xAC", 2, 0, 0 },
    { "len cuts 4-byte", "\xF0\x9F\x98\x80", 3, 0, 0 },
};

static void test_decode(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(decode_cases); i++) {
        const struct decode_case *t = &decode_cases[i];
        const unsigned char *s = (const unsigned char *)t->bytes;
        uint32_t cp = CP_UNTOUCHED;
        size_t n;

        print_message("decode: %s\n", t->name);
        n = aigw_utf8_decode(s, t->len, &cp);
        assert_int_equal(n, t->want_n);
        assert_int_equal(cp, t->want_n > 0 ? t->want_cp : CP_UNTOUCHED);
        /* Without ret_cp: same answer. */
        assert_int_equal(aigw_utf8_decode(s, t->len, NULL), t->want_n);
    }
}

/* Every 1-, 2- and 3-byte input, and every 4-byte one with a lead byte of
 * F0..F4, against RFC 3629's definition computed the slow way. */
static size_t reference_len(uint32_t cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return 0;
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : cp <= 0x10FFFF ? 4 : 0;
}

static size_t reference_decode(const unsigned char *s, size_t len, uint32_t *ret_cp) {
    size_t n;
    uint32_t cp;

    if (len == 0)
        return 0;
    if (s[0] < 0x80)
        n = 1, cp = s[0];
    else if ((s[0] & 0xE0) == 0xC0)
        n = 2, cp = s[0] & 0x1F;
    else if ((s[0] & 0xF0) == 0xE0)
        n = 3, cp = s[0] & 0x0F;
    else if ((s[0] & 0xF8) == 0xF0)
        n = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (reference_len(cp) != n) /* overlong, surrogate, too large */
        return 0;
    *ret_cp = cp;
    return n;
}

static void check_against_reference(const unsigned char *s, size_t len) {
    uint32_t want_cp = CP_UNTOUCHED, cp = CP_UNTOUCHED;
    size_t want = reference_decode(s, len, &want_cp);
    size_t n = aigw_utf8_decode(s, len, &cp);

    if (n != want || cp != want_cp)
        fail_msg("%02x %02x %02x %02x (len %zu): got %zu U+%04X, want %zu U+%04X", s[0],
                 len > 1 ? s[1] : 0, len > 2 ? s[2] : 0, len > 3 ? s[3] : 0, len, n,
                 (unsigned)cp, want, (unsigned)want_cp);
}

static void test_decode_exhaustive(void **state) {
    unsigned char s[4];
    size_t valid = 0;

    for (unsigned a = 0; a < 256; a++) {
        s[0] = (unsigned char)a;
        check_against_reference(s, 1);
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            check_against_reference(s, 2);
            for (unsigned c = 0; c < 256; c++) {
                s[2] = (unsigned char)c;
                check_against_reference(s, 3);
                if (a < 0xF0 || a > 0xF4)
                    continue;
                for (unsigned d = 0; d < 256; d++) {
                    s[3] = (unsigned char)d;
                    check_against_reference(s, 4);
                    valid += aigw_utf8_decode(s, 4, NULL) == 4;
                }
            }
        }
    }
    /* The 4-byte sequences are exactly U+10000..U+10FFFF. */
    assert_int_equal(valid, 0x100000);
}

/* ---- aigw_utf8_valid ----------------------------------------------------- */

struct valid_case {
    const char *name;
    const char *s;
    size_t len;
    bool want;
};

static const struct valid_case valid_cases[] = {
    { "empty", "", 0, true },
    { "ASCII", "hello, world", 12, true },
    { "NUL inside", "a\0b", 3, true },
    { "all lengths", "A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", 10, true },
    { "boundaries", "\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF\xF0\x90\x80\x80\xF4\x8F\xBF\xBF",
      19, true },
    { "len excludes an invalid tail", "ok\xFF", 2, true },
    { "len excludes a truncated tail", "ok\xE2\x82", 2, true },
    { "invalid first", "\xFF" "abc", 4, false },
    { "invalid in the middle", "ab\x80" "cd", 5, false },
    { "invalid last", "abc\xC3", 4, false },
    { "overlong C0 80", "a\xC0\x80" "b", 4, false },
    { "overlong E0 80 80", "a\xE0\x80\x80", 4, false },
    { "overlong F0 80 80 80", "\xF0\x80\x80\x80", 4, false },
    { "surrogate U+D800", "x\xED\xA0\x80", 4, false },
    { "surrogate U+DFFF", "\xED\xBF\xBFx", 4, false },
    { "U+110000", "\xF4\x90\x80\x80", 4, false },
    { "truncated 4-byte at end", "ok\xF0\x9F\x98", 5, false },
    { "len cuts a sequence", "ok\xE2\x82\xAC", 4, false },
    { "valid after invalid", "\xC3\xA9\xC3\xC3\xA9", 5, false },
};

static void test_valid(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(valid_cases); i++) {
        const struct valid_case *t = &valid_cases[i];

        print_message("valid: %s\n", t->name);
        assert_int_equal(aigw_utf8_valid(t->s, t->len), t->want);
    }
    /* len 0 never reads s. */
    assert_true(aigw_utf8_valid(NULL, 0));
}

/* ---- aigw_utf8_sanitize -------------------------------------------------- */

struct sanitize_case {
    const char *name;
    const char *src;
    size_t len;
    size_t size;
    unsigned flags;
    const char *want;
};

static const struct sanitize_case sanitize_cases[] = {
    { "ASCII", "hello", 5, 16, 0, "hello" },
    { "empty", "", 0, 16, 0, "" },
    { "multibyte kept", "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", 9, 16, 0,
      "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80" },
    { "len bounds the source", "abcdef", 3, 16, 0, "abc" },
    { "NUL ends the source", "ab\0cd", 5, 16, 0, "ab" },
    { "C0 and DEL", "a\tb\nc\x01" "d\x1F" "e\x7F" "f", 11, 16, 0, "a b c d e f" },
    { "C1 kept without the flag", "a\xC2\x85" "b\xC2\x9F", 6, 16, 0, "a\xC2\x85" "b\xC2\x9F" },
    { "C1 replaced with the flag", "a\xC2\x85" "b\xC2\x9F", 6, 16, AIGW_UTF8_SANITIZE_C1, "a b " },
    { "U+00A0 kept with the flag", "\xC2\xA0", 2, 16, AIGW_UTF8_SANITIZE_C1, "\xC2\xA0" },
    { "C0 with the flag", "a\tb\x7F", 4, 16, AIGW_UTF8_SANITIZE_C1, "a b " },
    { "invalid byte", "a\xFF" "b", 3, 16, 0, "a?b" },
    { "lone continuation", "\x80\xBF", 2, 16, 0, "??" },
    { "overlong C0 80", "\xC0\x80", 2, 16, 0, "??" },
    { "overlong E0 80 80", "\xE0\x80\x80", 3, 16, 0, "???" },
    { "surrogate", "\xED\xA0\x80", 3, 16, 0, "???" },
    { "above U+10FFFF", "\xF4\x90\x80\x80", 4, 16, 0, "????" },
    { "truncated at the end", "a\xE2\x82", 3, 16, 0, "a??" },
    { "bad continuation resyncs", "\xE2\x82" "A\xC3\xA9", 5, 16, 0, "??A\xC3\xA9" },
    /* Cut to fit: never inside a character. */
    { "exact fit", "abc", 3, 4, 0, "abc" },
    { "ASCII cut", "abcdef", 6, 4, 0, "abc" },
    { "2-byte does not fit", "ab\xC3\xA9", 4, 4, 0, "ab" },
    { "3-byte does not fit", "a\xE2\x82\xAC", 4, 4, 0, "a" },
    { "4-byte does not fit", "\xF0\x9F\x98\x80", 4, 4, 0, "" },
    { "4-byte just fits", "\xF0\x9F\x98\x80", 4, 5, 0, "\xF0\x9F\x98\x80" },
    { "'?' does not fit", "abc\xFF", 4, 4, 0, "abc" },
    { "space does not fit", "abc\t", 4, 4, 0, "abc" },
    /* A replaced C1 character needs the room of its two bytes. */
    { "replaced C1 cut", "ab\xC2\x85", 4, 4, AIGW_UTF8_SANITIZE_C1, "ab" },
    { "replaced C1 fits", "ab\xC2\x85", 4, 5, AIGW_UTF8_SANITIZE_C1, "ab " },
    { "size 1", "abc", 3, 1, 0, "" },
};

static void test_sanitize(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(sanitize_cases); i++) {
        const struct sanitize_case *t = &sanitize_cases[i];
        char dst[32];
        size_t n;

        print_message("sanitize: %s\n", t->name);
        assert_true(t->size <= sizeof(dst));
        memset(dst, 'X', sizeof(dst));
        n = aigw_utf8_sanitize(dst, t->size, t->src, t->len, t->flags);
        assert_string_equal(dst, t->want);
        assert_int_equal(n, strlen(t->want));
        /* Nothing written past size. */
        for (size_t k = t->size; k < sizeof(dst); k++)
            assert_int_equal(dst[k], 'X');
        /* The result is always valid UTF-8. */
        assert_true(aigw_utf8_valid(dst, n));
    }
}

static void test_sanitize_size_zero(void **state) {
    char dst[4] = "XYZ";

    assert_int_equal(aigw_utf8_sanitize(dst, 0, "abc", 3, 0), 0);
    assert_string_equal(dst, "XYZ");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_decode_exhaustive),
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_sanitize_size_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
