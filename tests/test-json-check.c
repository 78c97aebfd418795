/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "aigw/json-check.h"
#include "aigw/macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete);

static const struct aigw_json_limits def = {
    .max_depth = 32,
    .max_string_bytes = 1024,
    .max_keys_per_object = 100,
    .max_array_items = 100,
};

static const struct aigw_json_limits small = {
    .max_depth = 3,
    .max_string_bytes = 4,
    .max_keys_per_object = 2,
    .max_array_items = 2,
};

static const struct aigw_json_limits flat = {
    .max_depth = 0,
    .max_string_bytes = 16,
    .max_keys_per_object = 16,
    .max_array_items = 16,
};

/* Inputs with NUL bytes need their length spelled out. */
#define BIN(s) .in = s, .len = sizeof(s) - 1

struct row {
    const char *in;
    size_t len; /* 0: strlen(in) */
    const struct aigw_json_limits *lim; /* NULL: def */
    int r;
    size_t offset;
    const char *msg;
};

static const struct row rows[] = {
    /* Valid. */
    { .in = "0" },
    { .in = "-0" },
    { .in = "1.5" },
    { .in = "-1.5e10" },
    { .in = "1E+2" },
    { .in = "2e-5" },
    { .in = "0.0000001" },
    { .in = "1e-400" }, /* underflows to 0: fine */
    { .in = "0e99999999999999999999" },
    { .in = "0.5e-99999999999999999999" },
    { .in = "1.7976931348623157e308" },          /* DBL_MAX */
    { .in = "17976931348623157e292" },           /* same, as an integer mantissa */
    { .in = "123456789012345678901234567890123456789012345678901234567890123" }, /* 63 */
    { .in = "\"abc\"" },
    { .in = "\"\"" },
    { .in = "true" },
    { .in = "false" },
    { .in = "null" },
    { .in = "[]" },
    { .in = "{}" },
    { .in = " \t\r\n[ 1 , 2 ]\n " },
    { .in = "{\"a\":{\"b\":[1,{\"c\":null}]},\"d\":[true,false,\"x\"]}" },
    { .in = "{\"a\":1,\"b\":2}" },
    { .in = "{\"a\":{\"a\":1}}" },               /* same key, different objects */
    { .in = "[{\"a\":1},{\"a\":2}]" },           /* sibling objects */
    { .in = "{\"a\":{\"b\":1},\"b\":{\"a\":1}}" },
    { .in = "{\"ab\":1,\"a\\u0062c\":2,\"a\":3,\"\":4}" },
    { .in = "{\"a\":1,\"A\":2,\"a \":3}" },
    { .in = "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"" },
    { .in = "\"\\u00e9\\u00E9\\uD83D\\uDE00\\uDBFF\\uDFFF\\uFFFF\"" },
    { .in = "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\xee\x80\x80\"" },
    { .in = "\"\\u0001\x7f\"" }, /* escaped control, raw DEL */
    { .in = "\"abcd\"", .lim = &small },
    { .in = "\"\\u00e9\\u00e9\"", .lim = &small },
    { .in = "[[[]]]", .lim = &small },
    { .in = "[[1,2],[3,4]]", .lim = &small },
    { .in = "{\"a\":{\"a\":1,\"b\":2},\"b\":[]}", .lim = &small },
    { .in = "42", .lim = &flat },

    /* Empty. */
    { .in = "", .r = -ENODATA, .offset = 0, .msg = "empty body" },
    { .in = " \r\n\t ", .r = -ENODATA, .offset = 0, .msg = "empty body" },

    /* Syntax. */
    { .in = "x", .r = -EBADMSG, .offset = 0, .msg = "unexpected character 'x' at byte 0" },
    { .in = "[1,2,x]", .r = -EBADMSG, .offset = 5, .msg = "unexpected character 'x' at byte 5" },
    { .in = "[1 2]", .r = -EBADMSG, .offset = 3, .msg = "unexpected character '2' at byte 3" },
    { .in = "[1,]", .r = -EBADMSG, .offset = 3, .msg = "unexpected character ']' at byte 3" },
    { .in = "[,1]", .r = -EBADMSG, .offset = 1, .msg = "unexpected character ',' at byte 1" },
    { .in = "{\"a\":1,}", .r = -EBADMSG, .offset = 7,
      .msg = "unexpected character '}' at byte 7" },
    { .in = "{\"a\" 1}", .r = -EBADMSG, .offset = 5, .msg = "unexpected character '1' at byte 5" },
    { .in = "{\"a\"}", .r = -EBADMSG, .offset = 4, .msg = "unexpected character '}' at byte 4" },
    { .in = "{\"a\":}", .r = -EBADMSG, .offset = 5, .msg = "unexpected character '}' at byte 5" },
    { .in = "{1:2}", .r = -EBADMSG, .offset = 1, .msg = "unexpected character '1' at byte 1" },
    { .in = "{'a':2}", .r = -EBADMSG, .offset = 1, .msg = "unexpected character ''' at byte 1" },
    { .in = "[1}", .r = -EBADMSG, .offset = 2, .msg = "unexpected character '}' at byte 2" },
    { .in = "{\"a\":1]", .r = -EBADMSG, .offset = 6,
      .msg = "unexpected character ']' at byte 6" },
    { .in = "[", .r = -EBADMSG, .offset = 1, .msg = "unexpected end of input at byte 1" },
    { .in = "[1,", .r = -EBADMSG, .offset = 3, .msg = "unexpected end of input at byte 3" },
    { .in = "{\"a\":", .r = -EBADMSG, .offset = 5, .msg = "unexpected end of input at byte 5" },
    { .in = "{\"a\"  ", .r = -EBADMSG, .offset = 6, .msg = "unexpected end of input at byte 6" },
    { .in = "tru", .r = -EBADMSG, .offset = 3, .msg = "unexpected end of input at byte 3" },
    { .in = "trux", .r = -EBADMSG, .offset = 3, .msg = "unexpected character 'x' at byte 3" },
    { .in = "nulL", .r = -EBADMSG, .offset = 3, .msg = "unexpected character 'L' at byte 3" },
    { .in = "True", .r = -EBADMSG, .offset = 0, .msg = "unexpected character 'T' at byte 0" },
    { .in = "NaN", .r = -EBADMSG, .offset = 0, .msg = "unexpected character 'N' at byte 0" },
    { .in = "1 2", .r = -EBADMSG, .offset = 2, .msg = "trailing data after JSON value at byte 2" },
    { .in = "{} x", .r = -EBADMSG, .offset = 3,
      .msg = "trailing data after JSON value at byte 3" },
    { .in = "[]]", .r = -EBADMSG, .offset = 2, .msg = "trailing data after JSON value at byte 2" },
    { .in = "truefalse", .r = -EBADMSG, .offset = 4,
      .msg = "trailing data after JSON value at byte 4" },
    { .in = "\x01", .r = -EBADMSG, .offset = 0, .msg = "unexpected byte 0x01 at byte 0" },
    { .in = "[\f]", .r = -EBADMSG, .offset = 1, .msg = "unexpected byte 0x0c at byte 1" },
    { .in = "\xc3\xa9", .r = -EBADMSG, .offset = 0,
      .msg = "unexpected character U+00E9 at byte 0" },
    { .in = "\xef\xbb\xbf{}", .r = -EBADMSG, .offset = 0,
      .msg = "unexpected character U+FEFF at byte 0" },

    /* NUL bytes. */
    { BIN("\"a\0b\""), .r = -EBADMSG, .offset = 2, .msg = "NUL byte at byte 2" },
    { BIN("[1,\0]"), .r = -EBADMSG, .offset = 3, .msg = "NUL byte at byte 3" },
    { BIN("\0"), .r = -EBADMSG, .offset = 0, .msg = "NUL byte at byte 0" },
    { BIN("{}\0"), .r = -EBADMSG, .offset = 2, .msg = "trailing data after JSON value at byte 2" },

    /* Strings. */
    { .in = "\"abc", .r = -EBADMSG, .offset = 0, .msg = "unterminated string starting at byte 0" },
    { .in = "[\"abc\\", .r = -EBADMSG, .offset = 1,
      .msg = "unterminated string starting at byte 1" },
    { .in = "\"\\u12", .r = -EBADMSG, .offset = 0, .msg = "unterminated string starting at byte 0" },
    { .in = "\"\\uD800", .r = -EBADMSG, .offset = 0,
      .msg = "unterminated string starting at byte 0" },
    { .in = "\"\\uD800\\", .r = -EBADMSG, .offset = 0,
      .msg = "unterminated string starting at byte 0" },
    { .in = "\"\\uD800\\uDC0", .r = -EBADMSG, .offset = 0,
      .msg = "unterminated string starting at byte 0" },
    { .in = "\"a\nb\"", .r = -EBADMSG, .offset = 2,
      .msg = "control character 0x0a in string at byte 2" },
    { .in = "\"a\tb\"", .r = -EBADMSG, .offset = 2,
      .msg = "control character 0x09 in string at byte 2" },
    { .in = "\"\x1f\"", .r = -EBADMSG, .offset = 1,
      .msg = "control character 0x1f in string at byte 1" },
    { .in = "\"\\x\"", .r = -EBADMSG, .offset = 1, .msg = "invalid escape at byte 1" },
    { .in = "\"ab\\'\"", .r = -EBADMSG, .offset = 3, .msg = "invalid escape at byte 3" },
    { .in = "\"\\U0041\"", .r = -EBADMSG, .offset = 1, .msg = "invalid escape at byte 1" },
    { .in = "\"\\u12G4\"", .r = -EBADMSG, .offset = 1, .msg = "invalid \\u escape at byte 1" },
    { .in = "\"\\u 123\"", .r = -EBADMSG, .offset = 1, .msg = "invalid \\u escape at byte 1" },
    { .in = "\"\\u0000\"", .r = -EBADMSG, .offset = 1,
      .msg = "NUL character (\\u0000) in string at byte 1" },
    { .in = "{\"model\\u0000x\":1}", .r = -EBADMSG, .offset = 7,
      .msg = "NUL character (\\u0000) in string at byte 7" },
    { .in = "\"ab\\uDC00\"", .r = -EBADMSG, .offset = 3,
      .msg = "unpaired surrogate \\uDC00 at byte 3" },
    { .in = "\"\\uD800x\"", .r = -EBADMSG, .offset = 1,
      .msg = "unpaired surrogate \\uD800 at byte 1" },
    { .in = "\"\\uD800\"", .r = -EBADMSG, .offset = 1,
      .msg = "unpaired surrogate \\uD800 at byte 1" },
    { .in = "\"\\uDBFF\\n\"", .r = -EBADMSG, .offset = 1,
      .msg = "unpaired surrogate \\uDBFF at byte 1" },
    { .in = "\"\\uD800\\u0041\"", .r = -EBADMSG, .offset = 1,
      .msg = "unpaired surrogate \\uD800 at byte 1" },
    { .in = "\"\\uD800\\uD800\"", .r = -EBADMSG, .offset = 1,
      .msg = "unpaired surrogate \\uD800 at byte 1" },
    { .in = "\"\\uD800\\uE000\"", .r = -EBADMSG, .offset = 1,
      .msg = "unpaired surrogate \\uD800 at byte 1" },
    { .in = "\"\\uD800\\uZZZZ\"", .r = -EBADMSG, .offset = 7,
      .msg = "invalid \\u escape at byte 7" },

    /* UTF-8. */
    { .in = "\"\xc0\x80\"", .r = -EILSEQ, .offset = 1, .msg = "invalid UTF-8 at byte 1" },
    { .in = "\"\xc1\xbf\"", .r = -EILSEQ, .offset = 1, .msg = "invalid UTF-8 at byte 1" },
    { .in = "\"ab\xe0\x80\x80\"", .r = -EILSEQ, .offset = 3, .msg = "invalid UTF-8 at byte 3" },
    { .in = "\"\xe0\x9f\xbf\"", .r = -EILSEQ, .offset = 1, .msg = "invalid UTF-8 at byte 1" },
    { .in = "\"\xf0\x80\x80\x80\"", .r = -EILSEQ, .offset = 1, .msg = "invalid UTF-8 at byte 1" },
    { .in = "\"\xf0\x8f\xbf\xbf\"", .r = -EILSEQ, .offset = 1, .msg = "invalid UTF-8 at byte 1" },
    { .in = "\"\xed\xa0\x80\"", .r = -EILSEQ, .offset = 1, .msg = "invalid UTF-8 at byte 1" },
    { .in = "\"\xed\xbf\xbf\"", .r = -EILSEQ, .offset = 1, .msg = "invalid UTF-8 at byte 1" },
    { .in = "\"\xf4\x90\x80\x80\"", .r = -EILSEQ, .offset = 1, .msg = "invalid UTF-8 at byte 1" },
    { .in = "\"\xf5\x80\x80\x80\"", .r = -EILSEQ, .offset = 1, .msg = "invalid UTF-8 at byte 1" },
    { .in = "\"\xff\"", .r = -EILSEQ, .offset = 1, .msg = "invalid UTF-8 at byte 1" },
    { .in = "\"\x80\"", .r = -EILSEQ, .offset = 1, .msg = "invalid UTF-8 at byte 1" },
    { .in = "\"\xe2\x82\"", .r = -EILSEQ, .offset = 1, .msg = "invalid UTF-8 at byte 1" },
    { .in = "\"\xe2\x82", .r = -EILSEQ, .offset = 1, .msg = "invalid UTF-8 at byte 1" },
    { .in = "\"\xf0\x9f\x98", .r = -EILSEQ, .offset = 1, .msg = "invalid UTF-8 at byte 1" },
    { .in = "\"\xc3\"", .r = -EILSEQ, .offset = 1, .msg = "invalid UTF-8 at byte 1" },
    { .in = "\"\xc3\xa9\xc3\xc3\xa9\"", .r = -EILSEQ, .offset = 3,
      .msg = "invalid UTF-8 at byte 3" },
    { .in = "{\"k\xff\":1}", .r = -EILSEQ, .offset = 3, .msg = "invalid UTF-8 at byte 3" },
    { .in = "\xff", .r = -EILSEQ, .offset = 0, .msg = "invalid UTF-8 at byte 0" },
    { .in = "[1,\xe2\x82]", .r = -EILSEQ, .offset = 3, .msg = "invalid UTF-8 at byte 3" },

    /* Numbers. */
    { .in = "01", .r = -EBADMSG, .offset = 0, .msg = "invalid number (leading zero) at byte 0" },
    { .in = "[-01]", .r = -EBADMSG, .offset = 1,
      .msg = "invalid number (leading zero) at byte 1" },
    { .in = "-", .r = -EBADMSG, .offset = 0, .msg = "invalid number at byte 0" },
    { .in = "[-a]", .r = -EBADMSG, .offset = 1, .msg = "invalid number at byte 1" },
    { .in = "1.", .r = -EBADMSG, .offset = 0, .msg = "invalid number at byte 0" },
    { .in = "1.e5", .r = -EBADMSG, .offset = 0, .msg = "invalid number at byte 0" },
    { .in = "1e", .r = -EBADMSG, .offset = 0, .msg = "invalid number at byte 0" },
    { .in = "1e+", .r = -EBADMSG, .offset = 0, .msg = "invalid number at byte 0" },
    { .in = "[1E-x]", .r = -EBADMSG, .offset = 1, .msg = "invalid number at byte 1" },
    { .in = ".5", .r = -EBADMSG, .offset = 0, .msg = "unexpected character '.' at byte 0" },
    { .in = "+1", .r = -EBADMSG, .offset = 0, .msg = "unexpected character '+' at byte 0" },
    { .in = "0x10", .r = -EBADMSG, .offset = 1,
      .msg = "trailing data after JSON value at byte 1" },
    { .in = "1e400", .r = -ERANGE, .offset = 0, .msg = "number out of range at byte 0" },
    { .in = "[0, -1e400]", .r = -ERANGE, .offset = 4, .msg = "number out of range at byte 4" },
    { .in = "1.7976931348623159e308", .r = -ERANGE, .offset = 0,
      .msg = "number out of range at byte 0" },
    { .in = "0.001e312", .r = -ERANGE, .offset = 0, .msg = "number out of range at byte 0" },
    { .in = "1e99999999999999999999", .r = -ERANGE, .offset = 0,
      .msg = "number out of range at byte 0" },
    { .in = "1234567890123456789012345678901234567890123456789012345678901234", .r = -E2BIG,
      .offset = 0, .msg = "number longer than 63 bytes at byte 0" },
    { .in = "{\"n\":0.00000000000000000000000000000000000000000000000000000000000001}",
      .r = -E2BIG, .offset = 5, .msg = "number longer than 63 bytes at byte 5" },

    /* Duplicate keys. */
    { .in = "{\"model\":1,\"model\":2}", .r = -ENOTUNIQ, .offset = 11,
      .msg = "duplicate key \"model\" at byte 11" },
    { .in = "{\"a\":1,\"\\u0061\":2}", .r = -ENOTUNIQ, .offset = 7,
      .msg = "duplicate key \"a\" at byte 7" },
    { .in = "{\"\\/\":1,\"/\":2}", .r = -ENOTUNIQ, .offset = 8,
      .msg = "duplicate key \"/\" at byte 8" },
    { .in = "{\"\":1,\"\":2}", .r = -ENOTUNIQ, .offset = 6,
      .msg = "duplicate key \"\" at byte 6" },
    { .in = "{\"\xc3\xa9\":1,\"\\u00e9\":2}", .r = -ENOTUNIQ, .offset = 8,
      .msg = "duplicate key \"\xc3\xa9\" at byte 8" },
    { .in = "{\"a\":1,\"b\":{\"a\":2},\"b\":3}", .r = -ENOTUNIQ, .offset = 19,
      .msg = "duplicate key \"b\" at byte 19" },
    /* The inner object closes first. */
    { .in = "{\"x\":1,\"x\":{\"k\":1,\"k\":2}}", .r = -ENOTUNIQ, .offset = 18,
      .msg = "duplicate key \"k\" at byte 18" },
    /* Of several, the first repetition in the document. */
    { .in = "{\"b\":1,\"a\":1,\"b\":2,\"a\":2}", .r = -ENOTUNIQ, .offset = 13,
      .msg = "duplicate key \"b\" at byte 13" },
    { .in = "{\"a\":1,\"b\":1,\"b\":2,\"a\":2,\"a\":3}", .r = -ENOTUNIQ, .offset = 13,
      .msg = "duplicate key \"b\" at byte 13" },
    { .in = "[{\"a\":1},{\"a\":1,\"a\":2}]", .r = -ENOTUNIQ, .offset = 16,
      .msg = "duplicate key \"a\" at byte 16" },
    /* Shown escaped. */
    { .in = "{\"q\\\"\\\\\\u0001\\n\":1,\"q\\\"\\\\\\u0001\\n\":2}", .r = -ENOTUNIQ, .offset = 19,
      .msg = "duplicate key \"q\\\"\\\\\\u0001\\u000a\" at byte 19" },
    /* Shown cut. */
    { .in = "{\"0123456789abcdef0123456789abcdef0123456789abcdefXYZ\":1,"
            "\"0123456789abcdef0123456789abcdef0123456789abcdefXYZ\":2}",
      .r = -ENOTUNIQ, .offset = 57,
      .msg = "duplicate key \"0123456789abcdef0123456789abcdef0123456789abcdef...\" at byte 57" },
    /* Found only when the object closes: a later error wins. */
    { .in = "{\"a\":1,\"a\":2,x}", .r = -EBADMSG, .offset = 13,
      .msg = "unexpected character 'x' at byte 13" },
    { .in = "{\"a\":1,\"a\":2", .r = -EBADMSG, .offset = 12,
      .msg = "unexpected end of input at byte 12" },

    /* Limits. */
    { .in = "[[[[]]]]", .lim = &small, .r = -E2BIG, .offset = 3,
      .msg = "nesting deeper than 3 at byte 3" },
    { .in = "{\"a\":[{\"b\":{}}]}", .lim = &small, .r = -E2BIG, .offset = 11,
      .msg = "nesting deeper than 3 at byte 11" },
    { .in = "[]", .lim = &flat, .r = -E2BIG, .offset = 0, .msg = "nesting deeper than 0 at byte 0" },
    { .in = "\"abcde\"", .lim = &small, .r = -E2BIG, .offset = 0,
      .msg = "string longer than 4 bytes at byte 0" },
    { .in = "[\"\\u00e9\\u00e9x\"]", .lim = &small, .r = -E2BIG, .offset = 1,
      .msg = "string longer than 4 bytes at byte 1" },
    { .in = "[\"\\uD83D\\uDE00x\"]", .lim = &small, .r = -E2BIG, .offset = 1,
      .msg = "string longer than 4 bytes at byte 1" },
    { .in = "{\"abcde\":1}", .lim = &small, .r = -E2BIG, .offset = 1,
      .msg = "string longer than 4 bytes at byte 1" },
    { .in = "{\"a\":1,\"b\":2,\"c\":3}", .lim = &small, .r = -E2BIG, .offset = 13,
      .msg = "object has more than 2 keys at byte 13" },
    { .in = "[1,2,3]", .lim = &small, .r = -E2BIG, .offset = 5,
      .msg = "array has more than 2 items at byte 5" },
    { .in = "[[1,2],[3,4],[]]", .lim = &small, .r = -E2BIG, .offset = 13,
      .msg = "array has more than 2 items at byte 13" },
};

static void test_table(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
        const struct row *row = &rows[i];
        size_t len = row->len ? row->len : strlen(row->in);
        struct aigw_json_error err = { .offset = 12345, .message = "sentinel" };
        int r;

        r = aigw_json_check(row->in, len, row->lim ? row->lim : &def, &err);
        if (r != row->r || (r < 0 && (err.offset != row->offset ||
                                      strcmp(err.message, row->msg) != 0))) {
            print_error("row %zu (%s): got %d, offset %zu, \"%s\"\n", i, row->in, r, err.offset,
                        err.message);
            fail();
        }
        if (r == 0) {
            /* Untouched on success. */
            assert_int_equal(err.offset, 12345);
            assert_string_equal(err.message, "sentinel");

            /* And what is accepted, cJSON parses (the NUL is part of the
             * length: require_null_terminated looks for it). */
            _cleanup_free_ char *copy = malloc(len + 1);
            assert_non_null(copy);
            memcpy(copy, row->in, len);
            copy[len] = '\0';
            _cleanup_(cJSON_Deletep) cJSON *j = cJSON_ParseWithLengthOpts(copy, len + 1, NULL, 1);
            if (!j) {
                print_error("row %zu (%s): cJSON rejects it\n", i, row->in);
                fail();
            }
        }

        /* The error structure is optional. */
        assert_int_equal(aigw_json_check(row->in, len, row->lim ? row->lim : &def, NULL), row->r);
    }
}

static void test_bad_limits(void **state) {
    struct aigw_json_limits lim = def;
    struct aigw_json_error err;

    lim.max_depth = AIGW_JSON_DEPTH_MAX + 1;
    assert_int_equal(aigw_json_check("1", 1, &lim, &err), -EINVAL);
    assert_string_equal(err.message, "nesting limit above 1000");
}

static char *nested(size_t depth, char open, char close) {
    char *s = malloc(2 * depth + 1);
    assert_non_null(s);
    memset(s, open, depth);
    memset(s + depth, close, depth);
    s[2 * depth] = '\0';
    return s;
}

static void test_depth(void **state) {
    struct aigw_json_limits lim = def;
    struct aigw_json_error err;

    _cleanup_free_ char *a32 = nested(32, '[', ']');
    _cleanup_free_ char *a33 = nested(33, '[', ']');
    assert_int_equal(aigw_json_check(a32, strlen(a32), &lim, &err), 0);
    assert_int_equal(aigw_json_check(a33, strlen(a33), &lim, &err), -E2BIG);
    assert_int_equal(err.offset, 32);
    assert_string_equal(err.message, "nesting deeper than 32 at byte 32");

    /* The deepest allowed is exactly what cJSON can still parse. */
    lim.max_depth = AIGW_JSON_DEPTH_MAX;
    _cleanup_free_ char *a1000 = nested(AIGW_JSON_DEPTH_MAX, '[', ']');
    _cleanup_free_ char *a1001 = nested(AIGW_JSON_DEPTH_MAX + 1, '[', ']');
    assert_int_equal(aigw_json_check(a1000, strlen(a1000), &lim, &err), 0);
    _cleanup_(cJSON_Deletep) cJSON *j = cJSON_ParseWithLengthOpts(a1000, strlen(a1000) + 1, NULL,
                                                                  1);
    assert_non_null(j);
    assert_int_equal(aigw_json_check(a1001, strlen(a1001), &lim, &err), -E2BIG);
    assert_int_equal(err.offset, AIGW_JSON_DEPTH_MAX);

    /* Very deep input against a small limit: refused early, no recursion. */
    _cleanup_free_ char *deep = nested(1000000, '[', ']');
    lim.max_depth = 32;
    assert_int_equal(aigw_json_check(deep, strlen(deep), &lim, &err), -E2BIG);
    assert_int_equal(err.offset, 32);
}

/* {"k0":0,"k1":0,...}; with dup, the last key repeats "k<dup_of>". */
static char *many_keys(size_t n, const char *prefix, long dup_of, size_t *ret_dup_pos) {
    size_t cap = n * (strlen(prefix) + 32) + 64, o = 0;
    char *s = malloc(cap);
    assert_non_null(s);

    s[o++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            s[o++] = ',';
        long k = (dup_of >= 0 && i == n - 1) ? dup_of : (long)i;
        if (i == n - 1 && ret_dup_pos)
            *ret_dup_pos = o;
        o += (size_t)snprintf(s + o, cap - o, "\"%s%ld\":0", prefix, k);
    }
    s[o++] = '}';
    s[o] = '\0';
    return s;
}

static double now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 100k keys must not take quadratic time: at 10^10 comparisons that
 * would be minutes; sorting takes milliseconds. */
static void test_many_keys(void **state) {
    struct aigw_json_limits lim = def;
    struct aigw_json_error err;
    size_t dup_pos = 0;

    lim.max_keys_per_object = 200000;

    size_t last_pos = 0;
    _cleanup_free_ char *ok = many_keys(100000, "k", -1, &last_pos);
    double t0 = now_sec();
    assert_int_equal(aigw_json_check(ok, strlen(ok), &lim, &err), 0);

    _cleanup_free_ char *dup = many_keys(100000, "k", 4242, &dup_pos);
    assert_int_equal(aigw_json_check(dup, strlen(dup), &lim, &err), -ENOTUNIQ);
    assert_int_equal(err.offset, dup_pos);
    char expect[64];
    snprintf(expect, sizeof(expect), "duplicate key \"k4242\" at byte %zu", dup_pos);
    assert_string_equal(err.message, expect);

    /* Long shared prefixes make every comparison cost the prefix. */
    char prefix[201];
    memset(prefix, 'p', 200);
    prefix[200] = '\0';
    _cleanup_free_ char *longk = many_keys(20000, prefix, 19998, &dup_pos);
    assert_int_equal(aigw_json_check(longk, strlen(longk), &lim, &err), -ENOTUNIQ);
    assert_int_equal(err.offset, dup_pos);

    double elapsed = now_sec() - t0;
    assert_true(elapsed < 20.0); /* generous for sanitizers and valgrind */

    /* The key limit applies. */
    lim.max_keys_per_object = 99999;
    assert_int_equal(aigw_json_check(ok, strlen(ok), &lim, &err), -E2BIG);
    assert_int_equal(err.offset, last_pos);
    snprintf(expect, sizeof(expect), "object has more than 99999 keys at byte %zu", last_pos);
    assert_string_equal(err.message, expect);
}

/* Many small objects, each closing: their keys are dropped as they close,
 * so memory does not grow with the document, and nothing leaks across. */
static void test_sibling_objects(void **state) {
    struct aigw_json_limits lim = def;
    struct aigw_json_error err;
    size_t n = 20000, cap = n * 24 + 8, o = 0;
    _cleanup_free_ char *s = malloc(cap);

    lim.max_array_items = n;
    assert_non_null(s);
    s[o++] = '[';
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(s + o, cap - o, "%s{\"a\":1,\"b\":{\"a\":2}}", i ? "," : "");
    s[o++] = ']';
    s[o] = '\0';
    assert_int_equal(aigw_json_check(s, o, &lim, &err), 0);

    lim.max_array_items = n - 1;
    assert_int_equal(aigw_json_check(s, o, &lim, &err), -E2BIG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_bad_limits),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_sibling_objects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
