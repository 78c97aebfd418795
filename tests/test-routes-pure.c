/* SPDX-License-Identifier: MIT */
/* The pure parts of routing: which path goes where on which listener, the
 * method bits, the Allow header, and the entity limit handed to h2o. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aigw/macro.h"
#include "aigw/routes.h"

static const struct route *find(enum routes_set set, const char *path) {
    return routes_find(set, path, strlen(path));
}

/* The documented API (README.md "API", aigw.conf [webhook]). */
static void test_api_routes(void **state) {
    static const struct {
        const char *path;
        const char *name;
        unsigned methods;
    } t[] = {
        {"/v1/chat/completions", "chat_completions", METHOD_POST},
        {"/chat", "chat", METHOD_POST},
        {"/v1/models", "models", METHOD_GET | METHOD_HEAD},
        {"/models", "models", METHOD_GET | METHOD_HEAD},
        {"/health", "health", METHOD_GET | METHOD_HEAD},
        {"/ready", "ready", METHOD_GET | METHOD_HEAD},
        {"/metrics", "metrics", METHOD_GET | METHOD_HEAD},
        {"/webhook", "webhook", METHOD_POST},
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        const struct route *rt = find(ROUTES_API, t[i].path);
        if (!rt)
            print_message("no API route for %s\n", t[i].path);
        assert_non_null(rt);
        assert_string_equal(rt->path, t[i].path);
        assert_string_equal(rt->name, t[i].name);
        assert_int_equal(rt->methods, t[i].methods);
        assert_non_null(rt->handler);

        /* a trailing slash is the same resource */
        char slash[64];
        snprintf(slash, sizeof(slash), "%s/", t[i].path);
        assert_ptr_equal(find(ROUTES_API, slash), rt);
    }
    /* /v1/models and /models are the same handler */
    assert_ptr_equal(find(ROUTES_API, "/v1/models")->handler, find(ROUTES_API, "/models")->handler);
}

/* A metrics-only listener serves /metrics and liveness, nothing else. */
static void test_metrics_routes(void **state) {
    const struct route *rt = find(ROUTES_METRICS, "/metrics");
    assert_non_null(rt);
    assert_string_equal(rt->name, "metrics");
    assert_int_equal(rt->methods, METHOD_GET | METHOD_HEAD);
    assert_ptr_equal(rt->handler, find(ROUTES_API, "/metrics")->handler);
    rt = find(ROUTES_METRICS, "/health");
    assert_non_null(rt);
    assert_string_equal(rt->name, "health");
    assert_ptr_equal(rt->handler, handle_health);

    static const char *const not_here[] = {"/v1/chat/completions", "/chat", "/v1/models", "/models", "/ready",
                                           "/webhook"};
    for (size_t i = 0; i < ELEMENTSOF(not_here); i++) {
        if (find(ROUTES_METRICS, not_here[i]))
            print_message("%s is served on the metrics listener\n", not_here[i]);
        assert_null(find(ROUTES_METRICS, not_here[i]));
    }
}

static void test_no_route(void **state) {
    static const char *const t[] = {
        "",
        "/",
        "//",
        "/v1",
        "/v1/",
        "/v1/chat",
        "/v1/chat/completion",
        "/v1/chat/completionsx",
        "/v1/chat/completions//",
        "/v1/models/mock", /* OpenAI's "retrieve model" is not offered */
        "/V1/models",
        "/HEALTH",
        "/healthz",
        "/health/x",
        "health",
        "/metrics.txt",
        "/chat/completions",
        "/v2/chat/completions",
        "/health?x=1", /* h2o's path_normalized has no query; a literal '?' is no match */
        "/../health",
        "/health%20",
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        if (find(ROUTES_API, t[i]) || find(ROUTES_METRICS, t[i]))
            print_message("\"%s\" matched\n", t[i]);
        assert_null(find(ROUTES_API, t[i]));
        assert_null(find(ROUTES_METRICS, t[i]));
    }
    /* len 0 with no buffer at all */
    assert_null(routes_find(ROUTES_API, NULL, 0));
}

/* Paths come from h2o as (pointer, length), not NUL-terminated. */
static void test_find_uses_length(void **state) {
    static const char buf[] = "/chatXYZ";
    const struct route *rt = routes_find(ROUTES_API, buf, 5);
    assert_non_null(rt);
    assert_string_equal(rt->path, "/chat");
    assert_null(routes_find(ROUTES_API, buf, 4));
    assert_null(routes_find(ROUTES_API, buf, 6));
    /* "/chat/" cut from a longer buffer */
    static const char buf2[] = "/chat/completions";
    assert_ptr_equal(routes_find(ROUTES_API, buf2, 6), rt);
    assert_null(routes_find(ROUTES_API, buf2, 7));
    /* exactly the bytes of the path, in a heap block of that size (ASan
     * reports any read beyond) */
    char *exact = malloc(7);
    assert_non_null(exact);
    memcpy(exact, "/health", 7);
    assert_non_null(routes_find(ROUTES_METRICS, exact, 7));
    free(exact);
}

static void test_method_bit(void **state) {
    static const struct {
        const char *m;
        size_t len;
        unsigned bit;
    } t[] = {
        {"GET", 3, METHOD_GET},
        {"HEAD", 4, METHOD_HEAD},
        {"POST", 4, METHOD_POST},
        {"GETX", 3, METHOD_GET}, /* the length decides */
        {"POSTS", 4, METHOD_POST},
        {"GET", 2, 0},
        {"GETX", 4, 0},
        {"POSTS", 5, 0},
        {"HEAD", 3, 0},
        {"get", 3, 0},
        {"Get", 3, 0},
        {"post", 4, 0},
        {"PUT", 3, 0},
        {"PATCH", 5, 0},
        {"DELETE", 6, 0},
        {"OPTIONS", 7, 0},
        {"CONNECT", 7, 0},
        {"TRACE", 5, 0},
        {"", 0, 0},
        {"G\0T", 3, 0},
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        if (routes_method_bit(t[i].m, t[i].len) != t[i].bit)
            print_message("\"%.*s\"\n", (int)t[i].len, t[i].m);
        assert_int_equal(routes_method_bit(t[i].m, t[i].len), t[i].bit);
    }
    /* the bits are distinct */
    assert_int_equal(METHOD_GET & METHOD_HEAD, 0);
    assert_int_equal(METHOD_GET & METHOD_POST, 0);
    assert_int_equal(METHOD_HEAD & METHOD_POST, 0);
}

static void test_allow_header(void **state) {
    static const struct {
        unsigned methods;
        const char *want;
    } t[] = {
        {0, ""},
        {METHOD_GET, "GET"},
        {METHOD_HEAD, "HEAD"},
        {METHOD_POST, "POST"},
        {METHOD_GET | METHOD_HEAD, "GET, HEAD"},
        {METHOD_GET | METHOD_POST, "GET, POST"},
        {METHOD_HEAD | METHOD_POST, "HEAD, POST"},
        {METHOD_GET | METHOD_HEAD | METHOD_POST, "GET, HEAD, POST"},
        {METHOD_POST | 1u << 7, "POST"}, /* unknown bits are ignored */
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        const struct route rt = {.path = "/x", .name = "x", .methods = t[i].methods};
        char buf[64];
        memset(buf, 'Z', sizeof(buf));
        size_t len = routes_allow_header(&rt, buf, sizeof(buf));
        assert_int_equal(len, strlen(t[i].want));
        assert_string_equal(buf, t[i].want);
    }
    /* what the 405 answers of the real routes say */
    char buf[64];
    routes_allow_header(find(ROUTES_API, "/v1/chat/completions"), buf, sizeof(buf));
    assert_string_equal(buf, "POST");
    routes_allow_header(find(ROUTES_API, "/v1/models"), buf, sizeof(buf));
    assert_string_equal(buf, "GET, HEAD");
}

/* Too small a buffer: whole method names only, the string always matches
 * the length returned, and nothing is written beyond size. */
static void test_allow_header_truncation(void **state) {
    const struct route rt = {.path = "/x", .name = "x", .methods = METHOD_GET | METHOD_HEAD | METHOD_POST};
    static const char full[] = "GET, HEAD, POST";
    for (size_t size = 0; size <= sizeof(full) + 2; size++) {
        char buf[32];
        memset(buf, 'Z', sizeof(buf));
        size_t len = routes_allow_header(&rt, buf, size);
        for (size_t i = size; i < sizeof(buf); i++)
            assert_int_equal(buf[i], 'Z');
        if (size == 0) {
            assert_int_equal(len, 0);
            continue;
        }
        /* the longest list of whole names that fits with its NUL */
        const char *want = size >= 16 ? "GET, HEAD, POST" : size >= 10 ? "GET, HEAD" : size >= 4 ? "GET" : "";
        if (strcmp(buf, want) != 0 || len != strlen(want))
            print_message("size %zu: got \"%s\" (%zu), want \"%s\"\n", size, buf, len, want);
        assert_int_equal(len, strlen(want));
        assert_string_equal(buf, want);
    }
}

static void test_entity_limit(void **state) {
    static const struct {
        uint64_t max_body;
        size_t limit;
    } t[] = {
        /* 8x max_body, at least max_body + 1 MiB */
        {1024, 1024 + (1 << 20)},
        {149796, 149796 + (1 << 20)}, /* 8x = 1198368 < 1198372 */
        {149797, 149797 * 8},         /* 8x = 1198376 > 1198373 */
        {1 << 20, 8 << 20},           /* the default 1M */
        {1ULL << 30, 8ULL << 30},     /* the largest max_body allowed */
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        struct aigw_config c;
        memset(&c, 0, sizeof(c));
        c.server.max_body = t[i].max_body;
        assert_int_equal(routes_h2o_entity_limit(&c), t[i].limit);
        assert_true(routes_h2o_entity_limit(&c) > t[i].max_body);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_routes),
        cmocka_unit_test(test_metrics_routes),
        cmocka_unit_test(test_no_route),
        cmocka_unit_test(test_find_uses_length),
        cmocka_unit_test(test_method_bit),
        cmocka_unit_test(test_allow_header),
        cmocka_unit_test(test_allow_header_truncation),
        cmocka_unit_test(test_entity_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
