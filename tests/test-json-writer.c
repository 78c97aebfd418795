/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aigw/json-writer.h"

static char *finish(struct jw *w, int *ret_err) {
    size_t len = 0;
    int err = 0;
    char *s = jw_finish(w, &len, &err);
    if (ret_err)
        *ret_err = err;
    if (s)
        assert_int_equal(strlen(s), len);
    return s;
}

static void test_shapes(void **state) {
    struct jw w;
    jw_init(&w, 4096);
    jw_object_begin(&w);
    jw_key(&w, "a");
    jw_int(&w, 1);
    jw_key(&w, "b");
    jw_array_begin(&w);
    jw_array_end(&w);
    jw_key(&w, "c");
    jw_array_begin(&w);
    jw_object_begin(&w);
    jw_object_end(&w);
    jw_object_begin(&w);
    jw_key(&w, "d");
    jw_null(&w);
    jw_object_end(&w);
    jw_bool(&w, false);
    jw_string_or_null(&w, NULL);
    jw_string_or_null(&w, "x");
    jw_array_end(&w);
    jw_object_end(&w);
    char *s = finish(&w, NULL);
    assert_string_equal(s, "{\"a\":1,\"b\":[],\"c\":[{},{\"d\":null},false,null,\"x\"]}");
    free(s);
}

static void test_strings(void **state) {
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } rows[] = {
        {"plain", 5, "\"plain\""},
        {"", 0, "\"\""},
        {"q\"b\\s/", 6, "\"q\\\"b\\\\s/\""},
        {"\n\r\t\b\f", 5, "\"\\n\\r\\t\\u0008\\u000c\""},
        {"\x01\x1f\x7f", 3, "\"\\u0001\\u001f\x7f\""},
        {"caf\xc3\xa9 \xe2\x82\xac", 9, "\"caf\xc3\xa9 \xe2\x82\xac\""},
        {"nul\0in", 6, "\"nul\\u0000in\""},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct jw w;
        jw_init(&w, 4096);
        jw_string_len(&w, rows[i].in, rows[i].len);
        char *s = finish(&w, NULL);
        assert_string_equal(s, rows[i].out);
        free(s);
    }
}

static void test_numbers(void **state) {
    static const struct {
        bool is_double;
        int64_t i;
        double d;
        const char *out;
    } rows[] = {
        {false, 0, 0, "0"},
        {false, -1, 0, "-1"},
        {false, INT64_MAX, 0, "9223372036854775807"},
        {false, INT64_MIN, 0, "-9223372036854775808"},
        {true, 0, 0.7, "0.7"},
        {true, 0, 2.0, "2"},
        {true, 0, -0.5, "-0.5"},
        {true, 0, 0.1 + 0.2, "0.30000000000000004"},
        {true, 0, 1e300, "1e+300"},
        {true, 0, 1.0 / 3.0, "0.33333333333333331"},
        {true, 0, NAN, "null"},
        {true, 0, INFINITY, "null"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct jw w;
        jw_init(&w, 4096);
        if (rows[i].is_double)
            jw_double(&w, rows[i].d);
        else
            jw_int(&w, rows[i].i);
        char *s = finish(&w, NULL);
        assert_string_equal(s, rows[i].out);
        if (rows[i].is_double && isfinite(rows[i].d))
            assert_true(strtod(s, NULL) == rows[i].d); /* reads back exactly */
        free(s);
    }
}

static void test_cjson_passthrough(void **state) {
    cJSON *o = cJSON_Parse("{\"k\":[1,\"two\",null]}");
    struct jw w;
    jw_init(&w, 4096);
    jw_object_begin(&w);
    jw_key(&w, "x");
    jw_cjson(&w, o);
    jw_key(&w, "y");
    jw_int(&w, 2);
    jw_object_end(&w);
    char *s = finish(&w, NULL);
    assert_string_equal(s, "{\"x\":{\"k\":[1,\"two\",null]},\"y\":2}");
    free(s);
    cJSON_Delete(o);
}

static void test_errors(void **state) {
    struct jw w;
    int err;

    jw_init(&w, 8); /* too small */
    jw_string(&w, "longer than eight");
    assert_null(finish(&w, &err));
    assert_int_equal(err, -E2BIG);

    jw_init(&w, 4096); /* unclosed */
    jw_object_begin(&w);
    assert_null(finish(&w, &err));
    assert_int_equal(err, -EINVAL);

    jw_init(&w, 4096); /* closed twice */
    jw_array_begin(&w);
    jw_array_end(&w);
    jw_array_end(&w);
    assert_null(finish(&w, &err));
    assert_int_equal(err, -EINVAL);

    jw_init(&w, 4096); /* a key without its value */
    jw_object_begin(&w);
    jw_key(&w, "k");
    jw_object_end(&w);
    assert_null(finish(&w, &err));
    assert_int_equal(err, -EINVAL);

    jw_init(&w, 1 << 20); /* deeper than JW_MAX_DEPTH */
    for (int i = 0; i <= JW_MAX_DEPTH; i++)
        jw_array_begin(&w);
    assert_null(finish(&w, &err));
    assert_int_equal(err, -E2BIG);

    jw_init(&w, 16); /* exactly fits: 15 bytes and the NUL */
    jw_string(&w, "0123456789abc");
    char *s = finish(&w, &err);
    assert_non_null(s);
    assert_int_equal(strlen(s), 15);
    free(s);
}

static void test_roundtrip_cjson(void **state) {
    /* what the writer produces is what cJSON reads back */
    struct jw w;
    jw_init(&w, 1 << 16);
    jw_object_begin(&w);
    for (int i = 0; i < 50; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        jw_key(&w, key);
        if (i % 3 == 0)
            jw_int(&w, (int64_t)i * 1000003 - 7);
        else if (i % 3 == 1)
            jw_double(&w, i / 7.0);
        else
            jw_string(&w, "\"\\\n\x02 text");
    }
    jw_object_end(&w);
    char *s = finish(&w, NULL);
    cJSON *o = cJSON_Parse(s);
    assert_non_null(o);
    assert_int_equal(cJSON_GetArraySize(o), 50);
    assert_true(cJSON_GetObjectItem(o, "k4")->valuedouble == 4 / 7.0);
    assert_string_equal(cJSON_GetObjectItem(o, "k2")->valuestring, "\"\\\n\x02 text");
    assert_int_equal((int64_t)cJSON_GetObjectItem(o, "k3")->valuedouble, 3 * 1000003 - 7);
    cJSON_Delete(o);
    free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes),         cmocka_unit_test(test_strings),
        cmocka_unit_test(test_numbers),        cmocka_unit_test(test_cjson_passthrough),
        cmocka_unit_test(test_errors),         cmocka_unit_test(test_roundtrip_cjson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
