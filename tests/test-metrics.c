/* SPDX-License-Identifier: MIT */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "aigw/macro.h"
#include "aigw/metrics.h"

/* ---- helpers ---- */

/* noinline: inlined at -O3, GCC 12 takes the returned buffer for the
 * local `text` itself and warns of a dangling pointer (-Wdangling-pointer). */
__attribute__((noinline)) static char *render(struct aigw_metrics *m, const struct aigw_metrics_backend_state *b, size_t n,
                    const struct aigw_process_stats *proc) {
    char *text = NULL;
    size_t len = 0;

    assert_int_equal(aigw_metrics_render_stats(m, b, n, proc, &text, &len), 0);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

/* The lines of one family, from its "# HELP" up to the next family's. */
static char *family_block(const char *text, const char *name) {
    char key[256];
    const char *start, *end;

    snprintf(key, sizeof(key), "# HELP %s ", name);
    start = strstr(text, key);
    assert_non_null(start);
    end = strstr(start + 1, "# HELP ");
    if (!end)
        end = start + strlen(start);
    return strndup(start, (size_t)(end - start));
}

static char *render_block(struct aigw_metrics *m, const char *name) {
    _cleanup_free_ char *text = render(m, NULL, 0, NULL);

    return family_block(text, name);
}

static void assert_block(struct aigw_metrics *m, const char *name, const char *expected) {
    _cleanup_free_ char *b = render_block(m, name);

    assert_string_equal(b, expected);
}

/* The value on the line starting with `series` followed by a space. */
static bool find_value(const char *text, const char *series, uint64_t *ret) {
    size_t n = strlen(series);

    for (const char *line = text; line && *line;) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ') {
            char *end;

            *ret = strtoull(line + n + 1, &end, 10);
            assert_true(*end == '\n');
            return true;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return false;
}

static uint64_t value_of(const char *text, const char *series) {
    uint64_t v = 0;

    if (!find_value(text, series, &v))
        fail_msg("series not rendered: %s", series);
    return v;
}

static size_t count_lines_with(const char *text, const char *needle) {
    size_t n = 0;

    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);

        if (memmem(line, len, needle, strlen(needle)))
            n++;
        line += len + (nl ? 1 : 0);
    }
    return n;
}

static const char empty_text[] =
    "# HELP aigw_http_requests_total HTTP requests answered, by route and status code.\n"
    "# TYPE aigw_http_requests_total counter\n"
    "# HELP aigw_http_request_duration_seconds Time from request received to response complete.\n"
    "# TYPE aigw_http_request_duration_seconds histogram\n"
    "# HELP aigw_upstream_requests_total Upstream attempts, by outcome.\n"
    "# TYPE aigw_upstream_requests_total counter\n"
    "# HELP aigw_upstream_duration_seconds Time from upstream request sent to upstream response complete.\n"
    "# TYPE aigw_upstream_duration_seconds histogram\n"
    "# HELP aigw_time_to_first_token_seconds Time from upstream request sent to first streamed token.\n"
    "# TYPE aigw_time_to_first_token_seconds histogram\n"
    "# HELP aigw_gateway_overhead_seconds Time spent in the gateway itself, excluding waiting for the upstream.\n"
    "# TYPE aigw_gateway_overhead_seconds histogram\n"
    "aigw_gateway_overhead_seconds_bucket{le=\"0.00001\"} 0\n"
    "aigw_gateway_overhead_seconds_bucket{le=\"0.000025\"} 0\n"
    "aigw_gateway_overhead_seconds_bucket{le=\"0.00005\"} 0\n"
    "aigw_gateway_overhead_seconds_bucket{le=\"0.0001\"} 0\n"
    "aigw_gateway_overhead_seconds_bucket{le=\"0.00025\"} 0\n"
    "aigw_gateway_overhead_seconds_bucket{le=\"0.0005\"} 0\n"
    "aigw_gateway_overhead_seconds_bucket{le=\"0.001\"} 0\n"
    "aigw_gateway_overhead_seconds_bucket{le=\"0.0025\"} 0\n"
    "aigw_gateway_overhead_seconds_bucket{le=\"0.005\"} 0\n"
    "aigw_gateway_overhead_seconds_bucket{le=\"0.01\"} 0\n"
    "aigw_gateway_overhead_seconds_bucket{le=\"0.025\"} 0\n"
    "aigw_gateway_overhead_seconds_bucket{le=\"0.05\"} 0\n"
    "aigw_gateway_overhead_seconds_bucket{le=\"0.1\"} 0\n"
    "aigw_gateway_overhead_seconds_bucket{le=\"+Inf\"} 0\n"
    "aigw_gateway_overhead_seconds_sum 0\n"
    "aigw_gateway_overhead_seconds_count 0\n"
    "# HELP aigw_tokens_total Tokens reported by upstreams, by kind.\n"
    "# TYPE aigw_tokens_total counter\n"
    "# HELP aigw_inflight_requests Requests being processed.\n"
    "# TYPE aigw_inflight_requests gauge\n"
    "aigw_inflight_requests 0\n"
    "# HELP aigw_ratelimited_total Requests rejected by rate limiting, by reason.\n"
    "# TYPE aigw_ratelimited_total counter\n"
    "aigw_ratelimited_total{reason=\"global_inflight\"} 0\n"
    "aigw_ratelimited_total{reason=\"inflight\"} 0\n"
    "aigw_ratelimited_total{reason=\"requests\"} 0\n"
    "aigw_ratelimited_total{reason=\"tokens\"} 0\n"
    "# HELP aigw_auth_failures_total Requests rejected by authentication, by reason.\n"
    "# TYPE aigw_auth_failures_total counter\n"
    "aigw_auth_failures_total{reason=\"invalid\"} 0\n"
    "aigw_auth_failures_total{reason=\"missing\"} 0\n"
    "# HELP aigw_backend_up Whether the backend passes its health checks (1) or not (0).\n"
    "# TYPE aigw_backend_up gauge\n"
    "# HELP aigw_upstream_retries_total Upstream attempts that were retries.\n"
    "# TYPE aigw_upstream_retries_total counter\n"
    "# HELP aigw_fallbacks_total Requests moved from one model to its fallback.\n"
    "# TYPE aigw_fallbacks_total counter\n"
    "# HELP aigw_webhook_requests_total Webhook requests, by kind and outcome.\n"
    "# TYPE aigw_webhook_requests_total counter\n"
    "# HELP aigw_webhook_fallbacks_total Webhook requests answered with the fallback reply.\n"
    "# TYPE aigw_webhook_fallbacks_total counter\n"
    "aigw_webhook_fallbacks_total 0\n"
    "# HELP aigw_webhook_timeouts_total Webhook requests whose model call exceeded the webhook deadline.\n"
    "# TYPE aigw_webhook_timeouts_total counter\n"
    "aigw_webhook_timeouts_total 0\n"
    "# HELP aigw_build_info Build information; always 1.\n"
    "# TYPE aigw_build_info gauge\n"
    "aigw_build_info{version=\"1.2.3\"} 1\n";

/* ---- construction ---- */

static void test_new_invalid(void **state) {
    char long_version[AIGW_METRICS_LABEL_VALUE_MAX + 2];
    static const struct {
        unsigned n;
        const char *version;
    } cases[] = {
        {0, "1"},
        {AIGW_METRICS_WORKERS_MAX + 1, "1"},
        {1, NULL},
        {1, "\xff"},
        {1, "\xc0\xaf"}, /* overlong '/' */
        {1, "\xed\xa0\x80"}, /* surrogate */
        {1, "\xe2\x82"}, /* truncated */
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        errno = 0;
        assert_null(aigw_metrics_new(cases[i].n, cases[i].version));
        assert_int_equal(errno, EINVAL);
    }

    memset(long_version, 'v', sizeof(long_version) - 1);
    long_version[sizeof(long_version) - 1] = '\0';
    errno = 0;
    assert_null(aigw_metrics_new(1, long_version));
    assert_int_equal(errno, EINVAL);

    /* Exactly the maximum is fine. */
    long_version[AIGW_METRICS_LABEL_VALUE_MAX] = '\0';
    struct aigw_metrics *m = aigw_metrics_new(1, long_version);
    assert_non_null(m);
    assert_null(aigw_metrics_free(m));

    m = aigw_metrics_new(AIGW_METRICS_WORKERS_MAX, "1");
    assert_non_null(m);
    assert_null(aigw_metrics_free(m));

    assert_null(aigw_metrics_free(NULL));
}

static void test_render_empty(void **state) {
    _cleanup_(aigw_metrics_freep) struct aigw_metrics *m = aigw_metrics_new(3, "1.2.3");
    _cleanup_free_ char *text = NULL;

    assert_non_null(m);
    text = render(m, NULL, 0, NULL);
    assert_string_equal(text, empty_text);
}

static void test_render_invalid(void **state) {
    _cleanup_(aigw_metrics_freep) struct aigw_metrics *m = aigw_metrics_new(1, "1");
    char *text = (char *)"untouched";
    size_t len = 42;
    const struct aigw_metrics_backend_state dup[] = {{"a", true}, {"b", true}, {"a", false}};
    const struct aigw_metrics_backend_state null_name[] = {{"a", true}, {NULL, true}};
    const struct aigw_metrics_backend_state bad_utf8[] = {{"\x80", true}};
    char long_name[AIGW_METRICS_LABEL_VALUE_MAX + 2];
    const struct aigw_metrics_backend_state too_long[] = {{long_name, true}};
    static const struct {
        bool null_m, null_text, null_len;
        int backends; /* 0 none, 1 NULL with n=1, 2 dup, 3 NULL name, 4 bad utf8, 5 too long */
    } cases[] = {
        {true, false, false, 0},  {false, true, false, 0}, {false, false, true, 0},
        {false, false, false, 1}, {false, false, false, 2}, {false, false, false, 3},
        {false, false, false, 4}, {false, false, false, 5},
    };

    assert_non_null(m);
    memset(long_name, 'b', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        const struct aigw_metrics_backend_state *b = NULL;
        size_t n = 0;

        switch (cases[i].backends) {
        case 1:
            n = 1;
            break;
        case 2:
            b = dup, n = ELEMENTSOF(dup);
            break;
        case 3:
            b = null_name, n = ELEMENTSOF(null_name);
            break;
        case 4:
            b = bad_utf8, n = 1;
            break;
        case 5:
            b = too_long, n = 1;
            break;
        }
        assert_int_equal(aigw_metrics_render_stats(cases[i].null_m ? NULL : m, b, n, NULL,
                                                   cases[i].null_text ? NULL : &text,
                                                   cases[i].null_len ? NULL : &len),
                         -EINVAL);
        assert_string_equal(text, "untouched");
        assert_int_equal(len, 42);
    }
    assert_int_equal(aigw_metrics_render(NULL, NULL, 0, &text, &len), -EINVAL);
    assert_int_equal(aigw_metrics_render(m, NULL, 0, NULL, &len), -EINVAL);
    assert_int_equal(aigw_metrics_render(m, NULL, 0, &text, NULL), -EINVAL);
    assert_int_equal(aigw_metrics_render(m, dup, ELEMENTSOF(dup), &text, &len), -EINVAL);
    assert_int_equal(len, 42);
    assert_string_equal(text, "untouched");
}

/* ---- recording ---- */

static void test_record_invalid(void **state) {
    _cleanup_(aigw_metrics_freep) struct aigw_metrics *m = aigw_metrics_new(2, "1.2.3");
    _cleanup_free_ char *text = NULL;

    assert_non_null(m);
    /* worker out of range */
    assert_int_equal(aigw_metrics_http_request(m, 2, "/", 200, 1), -EINVAL);
    assert_int_equal(aigw_metrics_upstream_request(m, 2, "b", "m", AIGW_UPSTREAM_SUCCESS, 1), -EINVAL);
    assert_int_equal(aigw_metrics_time_to_first_token(m, 2, "b", "m", 1), -EINVAL);
    assert_int_equal(aigw_metrics_gateway_overhead(m, 2, 1), -EINVAL);
    assert_int_equal(aigw_metrics_tokens(m, 2, "b", "m", AIGW_TOKENS_PROMPT, 1), -EINVAL);
    assert_int_equal(aigw_metrics_inflight_add(m, 2, 1), -EINVAL);
    assert_int_equal(aigw_metrics_ratelimited(m, 2, AIGW_RATELIMIT_TOKENS), -EINVAL);
    assert_int_equal(aigw_metrics_auth_failure(m, 2, AIGW_AUTH_FAILURE_MISSING), -EINVAL);
    assert_int_equal(aigw_metrics_upstream_retry(m, 2, "b", "m"), -EINVAL);
    assert_int_equal(aigw_metrics_fallback(m, 2, "a", "b"), -EINVAL);
    assert_int_equal(aigw_metrics_webhook_request(m, 2, "k", "o"), -EINVAL);
    assert_int_equal(aigw_metrics_webhook_fallback(m, 2), -EINVAL);
    assert_int_equal(aigw_metrics_webhook_timeout(m, 2), -EINVAL);
    /* NULL registry */
    assert_int_equal(aigw_metrics_http_request(NULL, 0, "/", 200, 1), -EINVAL);
    assert_int_equal(aigw_metrics_gateway_overhead(NULL, 0, 1), -EINVAL);
    assert_int_equal(aigw_metrics_inflight_add(NULL, 0, 1), -EINVAL);
    assert_int_equal(aigw_metrics_webhook_fallback(NULL, 0), -EINVAL);
    assert_int_equal(aigw_metrics_webhook_timeout(NULL, 0), -EINVAL);
    /* NULL strings */
    assert_int_equal(aigw_metrics_http_request(m, 0, NULL, 200, 1), -EINVAL);
    assert_int_equal(aigw_metrics_upstream_request(m, 0, NULL, "m", AIGW_UPSTREAM_SUCCESS, 1), -EINVAL);
    assert_int_equal(aigw_metrics_upstream_request(m, 0, "b", NULL, AIGW_UPSTREAM_SUCCESS, 1), -EINVAL);
    assert_int_equal(aigw_metrics_time_to_first_token(m, 0, NULL, "m", 1), -EINVAL);
    assert_int_equal(aigw_metrics_time_to_first_token(m, 0, "b", NULL, 1), -EINVAL);
    assert_int_equal(aigw_metrics_tokens(m, 0, NULL, "m", AIGW_TOKENS_PROMPT, 1), -EINVAL);
    assert_int_equal(aigw_metrics_tokens(m, 0, "b", NULL, AIGW_TOKENS_PROMPT, 1), -EINVAL);
    assert_int_equal(aigw_metrics_upstream_retry(m, 0, NULL, "m"), -EINVAL);
    assert_int_equal(aigw_metrics_upstream_retry(m, 0, "b", NULL), -EINVAL);
    assert_int_equal(aigw_metrics_fallback(m, 0, NULL, "b"), -EINVAL);
    assert_int_equal(aigw_metrics_fallback(m, 0, "a", NULL), -EINVAL);
    assert_int_equal(aigw_metrics_webhook_request(m, 0, NULL, "o"), -EINVAL);
    assert_int_equal(aigw_metrics_webhook_request(m, 0, "k", NULL), -EINVAL);
    /* enums and codes out of range */
    assert_int_equal(aigw_metrics_http_request(m, 0, "/", 99, 1), -EINVAL);
    assert_int_equal(aigw_metrics_http_request(m, 0, "/", 1000, 1), -EINVAL);
    assert_int_equal(aigw_metrics_upstream_request(m, 0, "b", "m", _AIGW_UPSTREAM_OUTCOME_MAX, 1),
                     -EINVAL);
    assert_int_equal(aigw_metrics_upstream_request(m, 0, "b", "m", (enum aigw_upstream_outcome)-1, 1),
                     -EINVAL);
    assert_int_equal(aigw_metrics_tokens(m, 0, "b", "m", _AIGW_TOKENS_KIND_MAX, 1), -EINVAL);
    assert_int_equal(aigw_metrics_ratelimited(m, 0, _AIGW_RATELIMIT_REASON_MAX), -EINVAL);
    assert_int_equal(aigw_metrics_auth_failure(m, 0, _AIGW_AUTH_FAILURE_REASON_MAX), -EINVAL);

    /* None of the above recorded anything. */
    text = render(m, NULL, 0, NULL);
    assert_string_equal(text, empty_text);
}

static void test_http_same_series_across_workers(void **state) {
    _cleanup_(aigw_metrics_freep) struct aigw_metrics *m = aigw_metrics_new(3, "1");

    assert_non_null(m);
    /* The same label set from three workers is one line. */
    for (unsigned w = 0; w < 3; w++)
        assert_int_equal(aigw_metrics_http_request(m, w, "/v1/chat/completions", 200, 1000), 0);
    assert_int_equal(aigw_metrics_http_request(m, 2, "/v1/chat/completions", 200, 1000), 0);
    assert_int_equal(aigw_metrics_http_request(m, 1, "/v1/chat/completions", 429, 10), 0);
    assert_int_equal(aigw_metrics_http_request(m, 0, "/v1/models", 200, 10), 0);
    assert_int_equal(aigw_metrics_http_request(m, 2, "/healthz", 100, 10), 0);
    assert_int_equal(aigw_metrics_http_request(m, 1, "/healthz", 999, 10), 0);

    assert_block(m, "aigw_http_requests_total",
                 "# HELP aigw_http_requests_total HTTP requests answered, by route and status code.\n"
                 "# TYPE aigw_http_requests_total counter\n"
                 "aigw_http_requests_total{route=\"/healthz\",code=\"100\"} 1\n"
                 "aigw_http_requests_total{route=\"/healthz\",code=\"999\"} 1\n"
                 "aigw_http_requests_total{route=\"/v1/chat/completions\",code=\"200\"} 4\n"
                 "aigw_http_requests_total{route=\"/v1/chat/completions\",code=\"429\"} 1\n"
                 "aigw_http_requests_total{route=\"/v1/models\",code=\"200\"} 1\n");
}

static void test_histogram_buckets(void **state) {
    _cleanup_(aigw_metrics_freep) struct aigw_metrics *m = aigw_metrics_new(2, "1");
    /* Bounds are inclusive (le): exactly 5 ms is in the 0.005 bucket, one
     * microsecond more is not; past 300 s only +Inf counts it. */
    static const struct {
        unsigned worker;
        uint64_t usec;
    } obs[] = {
        {0, 0}, {1, 5000}, {0, 5001}, {1, 999999}, {0, 1000000}, {1, 300000000}, {0, 300000001},
    };

    assert_non_null(m);
    for (size_t i = 0; i < ELEMENTSOF(obs); i++)
        assert_int_equal(
            aigw_metrics_time_to_first_token(m, obs[i].worker, "openai", "gpt-4o", obs[i].usec), 0);

#define TTFT "aigw_time_to_first_token_seconds"
#define L "{backend=\"openai\",model=\"gpt-4o\""
    assert_block(m, TTFT,
                 "# HELP " TTFT " Time from upstream request sent to first streamed token.\n"
                 "# TYPE " TTFT " histogram\n"
                 TTFT "_bucket" L ",le=\"0.005\"} 2\n"
                 TTFT "_bucket" L ",le=\"0.01\"} 3\n"
                 TTFT "_bucket" L ",le=\"0.025\"} 3\n"
                 TTFT "_bucket" L ",le=\"0.05\"} 3\n"
                 TTFT "_bucket" L ",le=\"0.1\"} 3\n"
                 TTFT "_bucket" L ",le=\"0.25\"} 3\n"
                 TTFT "_bucket" L ",le=\"0.5\"} 3\n"
                 TTFT "_bucket" L ",le=\"1\"} 5\n"
                 TTFT "_bucket" L ",le=\"2.5\"} 5\n"
                 TTFT "_bucket" L ",le=\"5\"} 5\n"
                 TTFT "_bucket" L ",le=\"10\"} 5\n"
                 TTFT "_bucket" L ",le=\"20\"} 5\n"
                 TTFT "_bucket" L ",le=\"30\"} 5\n"
                 TTFT "_bucket" L ",le=\"60\"} 5\n"
                 TTFT "_bucket" L ",le=\"120\"} 5\n"
                 TTFT "_bucket" L ",le=\"180\"} 5\n"
                 TTFT "_bucket" L ",le=\"300\"} 6\n"
                 TTFT "_bucket" L ",le=\"+Inf\"} 7\n"
                 TTFT "_sum" L "} 602.010001\n"
                 TTFT "_count" L "} 7\n");
#undef TTFT
#undef L
}

static void test_overhead_histogram(void **state) {
    _cleanup_(aigw_metrics_freep) struct aigw_metrics *m = aigw_metrics_new(2, "1");
    static const uint64_t obs[] = {9, 10, 11, 999, 1000, 100000, 100001, 5000000};

    assert_non_null(m);
    for (size_t i = 0; i < ELEMENTSOF(obs); i++)
        assert_int_equal(aigw_metrics_gateway_overhead(m, (unsigned)(i % 2), obs[i]), 0);

#define O "aigw_gateway_overhead_seconds"
    assert_block(m, O,
                 "# HELP " O " Time spent in the gateway itself, excluding waiting for the upstream.\n"
                 "# TYPE " O " histogram\n"
                 O "_bucket{le=\"0.00001\"} 2\n"
                 O "_bucket{le=\"0.000025\"} 3\n"
                 O "_bucket{le=\"0.00005\"} 3\n"
                 O "_bucket{le=\"0.0001\"} 3\n"
                 O "_bucket{le=\"0.00025\"} 3\n"
                 O "_bucket{le=\"0.0005\"} 3\n"
                 O "_bucket{le=\"0.001\"} 5\n"
                 O "_bucket{le=\"0.0025\"} 5\n"
                 O "_bucket{le=\"0.005\"} 5\n"
                 O "_bucket{le=\"0.01\"} 5\n"
                 O "_bucket{le=\"0.025\"} 5\n"
                 O "_bucket{le=\"0.05\"} 5\n"
                 O "_bucket{le=\"0.1\"} 6\n"
                 O "_bucket{le=\"+Inf\"} 8\n"
                 O "_sum 5.20203\n"
                 O "_count 8\n");
#undef O
}

static void test_http_duration(void **state) {
    _cleanup_(aigw_metrics_freep) struct aigw_metrics *m = aigw_metrics_new(2, "1");
    _cleanup_free_ char *text = NULL;

    assert_non_null(m);
    assert_int_equal(aigw_metrics_http_request(m, 0, "/b", 200, 2000000), 0);
    assert_int_equal(aigw_metrics_http_request(m, 1, "/b", 500, 3000000), 0);
    assert_int_equal(aigw_metrics_http_request(m, 1, "/a", 200, 7), 0);
    text = render(m, NULL, 0, NULL);

    /* One duration series per route, whatever the code; sorted by route. */
    assert_int_equal(count_lines_with(text, "aigw_http_request_duration_seconds_count"), 2);
    assert_int_equal(value_of(text, "aigw_http_request_duration_seconds_count{route=\"/a\"}"), 1);
    assert_int_equal(value_of(text, "aigw_http_request_duration_seconds_count{route=\"/b\"}"), 2);
    assert_int_equal(value_of(text, "aigw_http_request_duration_seconds_bucket{route=\"/b\",le=\"1\"}"), 0);
    assert_int_equal(value_of(text, "aigw_http_request_duration_seconds_bucket{route=\"/b\",le=\"2.5\"}"), 1);
    assert_int_equal(value_of(text, "aigw_http_request_duration_seconds_bucket{route=\"/b\",le=\"5\"}"), 2);
    assert_non_null(strstr(text, "aigw_http_request_duration_seconds_sum{route=\"/b\"} 5\n"));
    assert_non_null(strstr(text, "aigw_http_request_duration_seconds_sum{route=\"/a\"} 0.000007\n"));
    assert_true(strstr(text, "_count{route=\"/a\"}") < strstr(text, "_bucket{route=\"/b\""));
}

static void test_upstream_and_tokens(void **state) {
    _cleanup_(aigw_metrics_freep) struct aigw_metrics *m = aigw_metrics_new(2, "1");
    _cleanup_free_ char *text = NULL, *dur = NULL;

    assert_non_null(m);
    for (int o = _AIGW_UPSTREAM_OUTCOME_MAX - 1; o >= 0; o--)
        assert_int_equal(aigw_metrics_upstream_request(m, (unsigned)o % 2, "openai", "gpt-4o",
                                                       (enum aigw_upstream_outcome)o, 100000),
                         0);
    assert_int_equal(aigw_metrics_upstream_request(m, 1, "gemini", "flash", AIGW_UPSTREAM_SUCCESS, 1), 0);
    assert_int_equal(aigw_metrics_tokens(m, 0, "openai", "gpt-4o", AIGW_TOKENS_PROMPT, 100), 0);
    assert_int_equal(aigw_metrics_tokens(m, 1, "openai", "gpt-4o", AIGW_TOKENS_PROMPT, 23), 0);
    assert_int_equal(aigw_metrics_tokens(m, 1, "openai", "gpt-4o", AIGW_TOKENS_COMPLETION, 7), 0);
    assert_int_equal(aigw_metrics_tokens(m, 0, "openai", "gpt-4o", AIGW_TOKENS_COMPLETION, 0), 0);
    assert_int_equal(aigw_metrics_upstream_retry(m, 0, "openai", "gpt-4o"), 0);
    assert_int_equal(aigw_metrics_upstream_retry(m, 1, "openai", "gpt-4o"), 0);
    assert_int_equal(aigw_metrics_upstream_retry(m, 1, "gemini", "pro"), 0);

    assert_block(m, "aigw_upstream_requests_total",
                 "# HELP aigw_upstream_requests_total Upstream attempts, by outcome.\n"
                 "# TYPE aigw_upstream_requests_total counter\n"
                 "aigw_upstream_requests_total{backend=\"gemini\",model=\"flash\",outcome=\"success\"} 1\n"
                 "aigw_upstream_requests_total{backend=\"openai\",model=\"gpt-4o\",outcome=\"cancelled\"} 1\n"
                 "aigw_upstream_requests_total{backend=\"openai\",model=\"gpt-4o\",outcome=\"error\"} 1\n"
                 "aigw_upstream_requests_total{backend=\"openai\",model=\"gpt-4o\",outcome=\"http_4xx\"} 1\n"
                 "aigw_upstream_requests_total{backend=\"openai\",model=\"gpt-4o\",outcome=\"http_5xx\"} 1\n"
                 "aigw_upstream_requests_total{backend=\"openai\",model=\"gpt-4o\",outcome=\"success\"} 1\n"
                 "aigw_upstream_requests_total{backend=\"openai\",model=\"gpt-4o\",outcome=\"timeout\"} 1\n");
    assert_block(m, "aigw_tokens_total",
                 "# HELP aigw_tokens_total Tokens reported by upstreams, by kind.\n"
                 "# TYPE aigw_tokens_total counter\n"
                 "aigw_tokens_total{backend=\"openai\",model=\"gpt-4o\",kind=\"completion\"} 7\n"
                 "aigw_tokens_total{backend=\"openai\",model=\"gpt-4o\",kind=\"prompt\"} 123\n");
    assert_block(m, "aigw_upstream_retries_total",
                 "# HELP aigw_upstream_retries_total Upstream attempts that were retries.\n"
                 "# TYPE aigw_upstream_retries_total counter\n"
                 "aigw_upstream_retries_total{backend=\"gemini\",model=\"pro\"} 1\n"
                 "aigw_upstream_retries_total{backend=\"openai\",model=\"gpt-4o\"} 2\n");

    text = render(m, NULL, 0, NULL);
    dur = family_block(text, "aigw_upstream_duration_seconds");
    assert_int_equal(value_of(dur, "aigw_upstream_duration_seconds_count{backend=\"openai\",model=\"gpt-4o\"}"), 6);
    assert_int_equal(value_of(dur, "aigw_upstream_duration_seconds_bucket{backend=\"openai\",model=\"gpt-4o\",le=\"0.05\"}"), 0);
    assert_int_equal(value_of(dur, "aigw_upstream_duration_seconds_bucket{backend=\"openai\",model=\"gpt-4o\",le=\"0.1\"}"), 6);
    assert_non_null(strstr(dur, "aigw_upstream_duration_seconds_sum{backend=\"openai\",model=\"gpt-4o\"} 0.6\n"));
    assert_non_null(strstr(dur, "aigw_upstream_duration_seconds_sum{backend=\"gemini\",model=\"flash\"} 0.000001\n"));
    assert_int_equal(count_lines_with(dur, "_count"), 2);
}

static void test_fixed_families(void **state) {
    _cleanup_(aigw_metrics_freep) struct aigw_metrics *m = aigw_metrics_new(2, "1");

    assert_non_null(m);
    assert_int_equal(aigw_metrics_ratelimited(m, 0, AIGW_RATELIMIT_TOKENS), 0);
    assert_int_equal(aigw_metrics_ratelimited(m, 1, AIGW_RATELIMIT_TOKENS), 0);
    assert_int_equal(aigw_metrics_ratelimited(m, 1, AIGW_RATELIMIT_GLOBAL_INFLIGHT), 0);
    assert_int_equal(aigw_metrics_ratelimited(m, 0, AIGW_RATELIMIT_REQUESTS), 0);
    assert_int_equal(aigw_metrics_auth_failure(m, 0, AIGW_AUTH_FAILURE_MISSING), 0);
    assert_int_equal(aigw_metrics_auth_failure(m, 1, AIGW_AUTH_FAILURE_MISSING), 0);
    assert_int_equal(aigw_metrics_auth_failure(m, 1, AIGW_AUTH_FAILURE_INVALID), 0);
    assert_int_equal(aigw_metrics_webhook_fallback(m, 0), 0);
    assert_int_equal(aigw_metrics_webhook_fallback(m, 1), 0);
    assert_int_equal(aigw_metrics_webhook_timeout(m, 1), 0);
    assert_int_equal(aigw_metrics_webhook_request(m, 0, "dialogflow_cx", "ok"), 0);
    assert_int_equal(aigw_metrics_webhook_request(m, 1, "dialogflow_cx", "ok"), 0);
    assert_int_equal(aigw_metrics_webhook_request(m, 1, "dialogflow_es", "timeout"), 0);

    assert_block(m, "aigw_ratelimited_total",
                 "# HELP aigw_ratelimited_total Requests rejected by rate limiting, by reason.\n"
                 "# TYPE aigw_ratelimited_total counter\n"
                 "aigw_ratelimited_total{reason=\"global_inflight\"} 1\n"
                 "aigw_ratelimited_total{reason=\"inflight\"} 0\n"
                 "aigw_ratelimited_total{reason=\"requests\"} 1\n"
                 "aigw_ratelimited_total{reason=\"tokens\"} 2\n");
    assert_block(m, "aigw_auth_failures_total",
                 "# HELP aigw_auth_failures_total Requests rejected by authentication, by reason.\n"
                 "# TYPE aigw_auth_failures_total counter\n"
                 "aigw_auth_failures_total{reason=\"invalid\"} 1\n"
                 "aigw_auth_failures_total{reason=\"missing\"} 2\n");
    assert_block(m, "aigw_webhook_fallbacks_total",
                 "# HELP aigw_webhook_fallbacks_total Webhook requests answered with the fallback reply.\n"
                 "# TYPE aigw_webhook_fallbacks_total counter\n"
                 "aigw_webhook_fallbacks_total 2\n");
    assert_block(m, "aigw_webhook_timeouts_total",
                 "# HELP aigw_webhook_timeouts_total Webhook requests whose model call exceeded the webhook deadline.\n"
                 "# TYPE aigw_webhook_timeouts_total counter\n"
                 "aigw_webhook_timeouts_total 1\n");
    assert_block(m, "aigw_webhook_requests_total",
                 "# HELP aigw_webhook_requests_total Webhook requests, by kind and outcome.\n"
                 "# TYPE aigw_webhook_requests_total counter\n"
                 "aigw_webhook_requests_total{kind=\"dialogflow_cx\",outcome=\"ok\"} 2\n"
                 "aigw_webhook_requests_total{kind=\"dialogflow_es\",outcome=\"timeout\"} 1\n");
}

static void test_inflight(void **state) {
    _cleanup_(aigw_metrics_freep) struct aigw_metrics *m = aigw_metrics_new(3, "1");
    static const struct {
        unsigned worker;
        int64_t delta;
        const char *expected;
    } steps[] = {
        {0, 1, "aigw_inflight_requests 1\n"},   {1, 1, "aigw_inflight_requests 2\n"},
        {2, 5, "aigw_inflight_requests 7\n"},   {1, -1, "aigw_inflight_requests 6\n"},
        {2, -5, "aigw_inflight_requests 1\n"},  {0, -1, "aigw_inflight_requests 0\n"},
        /* A caller bug (more removed than added) shows, rather than wrapping. */
        {1, -2, "aigw_inflight_requests -2\n"},
    };

    assert_non_null(m);
    for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
        _cleanup_free_ char *b = NULL;
        char expected[256];

        assert_int_equal(aigw_metrics_inflight_add(m, steps[i].worker, steps[i].delta), 0);
        b = render_block(m, "aigw_inflight_requests");
        snprintf(expected, sizeof(expected),
                 "# HELP aigw_inflight_requests Requests being processed.\n"
                 "# TYPE aigw_inflight_requests gauge\n%s",
                 steps[i].expected);
        assert_string_equal(b, expected);
    }
}

static void test_escaping(void **state) {
    _cleanup_(aigw_metrics_freep) struct aigw_metrics *m = aigw_metrics_new(2, "v\"1\\\n");
    _cleanup_free_ char *text = NULL, *info = NULL, *up = NULL;
    const struct aigw_metrics_backend_state backends[] = {
        {"back\\slash", true},
        {"new\nline", false},
        {"\"quoted\"", true},
    };

    assert_non_null(m);
    assert_int_equal(aigw_metrics_fallback(m, 0, "a\"b", "c\\d"), 0);
    assert_int_equal(aigw_metrics_fallback(m, 1, "a\"b", "c\\d"), 0);
    assert_int_equal(aigw_metrics_fallback(m, 1, "x\ny", "\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80"), 0);
    assert_int_equal(aigw_metrics_fallback(m, 0, "", ""), 0);

    assert_block(m, "aigw_fallbacks_total",
                 "# HELP aigw_fallbacks_total Requests moved from one model to its fallback.\n"
                 "# TYPE aigw_fallbacks_total counter\n"
                 "aigw_fallbacks_total{from_model=\"\",to_model=\"\"} 1\n"
                 "aigw_fallbacks_total{from_model=\"a\\\"b\",to_model=\"c\\\\d\"} 2\n"
                 "aigw_fallbacks_total{from_model=\"x\\ny\",to_model=\"\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80\"} 1\n");

    text = render(m, backends, ELEMENTSOF(backends), NULL);
    info = family_block(text, "aigw_build_info");
    assert_string_equal(info, "# HELP aigw_build_info Build information; always 1.\n"
                              "# TYPE aigw_build_info gauge\n"
                              "aigw_build_info{version=\"v\\\"1\\\\\\n\"} 1\n");
    up = family_block(text, "aigw_backend_up");
    assert_string_equal(up,
                        "# HELP aigw_backend_up Whether the backend passes its health checks (1) or not (0).\n"
                        "# TYPE aigw_backend_up gauge\n"
                        "aigw_backend_up{backend=\"\\\"quoted\\\"\"} 1\n"
                        "aigw_backend_up{backend=\"back\\\\slash\"} 1\n"
                        "aigw_backend_up{backend=\"new\\nline\"} 0\n");
}

static void test_overflow(void **state) {
    _cleanup_(aigw_metrics_freep) struct aigw_metrics *m = aigw_metrics_new(2, "1");
    _cleanup_free_ char *text = NULL, *fb = NULL, *http = NULL, *retries = NULL;
    char name[32], too_long[AIGW_METRICS_LABEL_VALUE_MAX + 2], longest[AIGW_METRICS_LABEL_VALUE_MAX + 1];

    assert_non_null(m);
    memset(too_long, 'x', sizeof(too_long) - 1);
    too_long[sizeof(too_long) - 1] = '\0';
    memset(longest, 'y', sizeof(longest) - 1);
    longest[sizeof(longest) - 1] = '\0';

    /* Before the table is full, only bad values go to "other". */
    assert_int_equal(aigw_metrics_upstream_retry(m, 1, too_long, "m"), 0);
    assert_int_equal(aigw_metrics_upstream_retry(m, 1, "b", "\xff"), 0);
    assert_int_equal(aigw_metrics_upstream_retry(m, 0, "b", too_long), 0);
    assert_int_equal(aigw_metrics_upstream_retry(m, 0, longest, "m"), 0);
    /* A real series whose values are "other" merges with the overflow one. */
    assert_int_equal(aigw_metrics_upstream_retry(m, 0, "other", "other"), 0);

    /* Fill worker 0's table: the five lookups above made 2 series there
     * (the longest name and the real "other"); worker 1's none. */
    for (unsigned i = 0; i < AIGW_METRICS_SERIES_MAX - 2; i++) {
        snprintf(name, sizeof(name), "m%05u", i);
        assert_int_equal(aigw_metrics_fallback(m, 0, name, "to"), 0);
    }
    /* Existing series still count individually once full. */
    assert_int_equal(aigw_metrics_fallback(m, 0, "m00000", "to"), 0);
    assert_int_equal(aigw_metrics_upstream_retry(m, 0, longest, "m"), 0);
    /* New ones go to the overflow series of their family. */
    assert_int_equal(aigw_metrics_fallback(m, 0, "new1", "to"), 0);
    assert_int_equal(aigw_metrics_fallback(m, 0, "new2", "to"), 0);
    assert_int_equal(aigw_metrics_http_request(m, 0, "/new", 200, 1), 0);
    assert_int_equal(aigw_metrics_upstream_retry(m, 0, "b", "new"), 0);
    /* Worker 1 has its own table, and merges with worker 0's "other". */
    assert_int_equal(aigw_metrics_fallback(m, 1, "new1", "to"), 0);
    assert_int_equal(aigw_metrics_http_request(m, 1, "/new", 200, 1), 0);

    text = render(m, NULL, 0, NULL);
    fb = family_block(text, "aigw_fallbacks_total");
    assert_int_equal(count_lines_with(fb, "aigw_fallbacks_total{"), AIGW_METRICS_SERIES_MAX - 2 + 2);
    assert_int_equal(value_of(fb, "aigw_fallbacks_total{from_model=\"m00000\",to_model=\"to\"}"), 2);
    assert_int_equal(value_of(fb, "aigw_fallbacks_total{from_model=\"m04093\",to_model=\"to\"}"), 1);
    assert_int_equal(value_of(fb, "aigw_fallbacks_total{from_model=\"new1\",to_model=\"to\"}"), 1);
    assert_int_equal(value_of(fb, "aigw_fallbacks_total{from_model=\"other\",to_model=\"other\"}"), 2);
    assert_false(strstr(fb, "m04094"));
    assert_false(strstr(fb, "new2"));

    http = family_block(text, "aigw_http_requests_total");
    assert_string_equal(http,
                        "# HELP aigw_http_requests_total HTTP requests answered, by route and status code.\n"
                        "# TYPE aigw_http_requests_total counter\n"
                        "aigw_http_requests_total{route=\"/new\",code=\"200\"} 1\n"
                        "aigw_http_requests_total{route=\"other\",code=\"other\"} 1\n");
    /* The duration histogram overflowed too, independently. */
    assert_int_equal(value_of(text, "aigw_http_request_duration_seconds_count{route=\"other\"}"), 1);
    assert_int_equal(value_of(text, "aigw_http_request_duration_seconds_count{route=\"/new\"}"), 1);

    retries = family_block(text, "aigw_upstream_retries_total");
    {
        char expected[1024];

        snprintf(expected, sizeof(expected),
                 "# HELP aigw_upstream_retries_total Upstream attempts that were retries.\n"
                 "# TYPE aigw_upstream_retries_total counter\n"
                 "aigw_upstream_retries_total{backend=\"other\",model=\"other\"} 5\n"
                 "aigw_upstream_retries_total{backend=\"%s\",model=\"m\"} 2\n",
                 longest);
        assert_string_equal(retries, expected);
    }
}

/* ---- process stats ---- */

static const char stat_ok[] =
    "1234 (aigw (worker) x) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 150 0 0 20 0 3 0 "
    "123456 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";
static const char statm_ok[] = "25600 2560 512 100 0 3000 0\n";
static const char limits_ok[] =
    "Limit                     Soft Limit           Hard Limit           Units     \n"
    "Max cpu time              unlimited            unlimited            seconds   \n"
    "Max open files            1024                 524288               files     \n"
    "Max locked memory         8388608              8388608              bytes     \n";
static const char proc_stat_ok[] = "cpu  1 2 3 4 5 6 7 0 0 0\n"
                                   "intr 12345 0 0 0\n"
                                   "ctxt 999\n"
                                   "btime 1700000000\n"
                                   "processes 4242\n";

static void test_process_parse(void **state) {
    struct aigw_process_sources src = {
        .stat = stat_ok,
        .statm = statm_ok,
        .limits = limits_ok,
        .proc_stat = proc_stat_ok,
        .n_fds = 17,
        .page_size = 4096,
        .clk_tck = 100,
    };
    struct aigw_process_stats st;

    assert_int_equal(aigw_process_stats_parse(&src, &st), 0);
    assert_int_equal(st.cpu_usec, 4000000);         /* (250 + 150) / 100 s */
    assert_int_equal(st.start_time_usec, 1700001234560000ULL); /* btime + 123456 / 100 s */
    assert_int_equal(st.virtual_memory_bytes, 25600ULL * 4096);
    assert_int_equal(st.resident_memory_bytes, 2560ULL * 4096);
    assert_int_equal(st.open_fds, 17);
    assert_int_equal(st.max_fds, 1024);

    /* Ticks that do not divide evenly keep their fraction. */
    src.clk_tck = 3;
    assert_int_equal(aigw_process_stats_parse(&src, &st), 0);
    assert_int_equal(st.cpu_usec, 133333333);
    assert_int_equal(st.start_time_usec, 1700000000000000ULL + 41152000000ULL);

    src.clk_tck = 100;
    src.limits = "Max open files            unlimited            unlimited            files     \n";
    assert_int_equal(aigw_process_stats_parse(&src, &st), 0);
    assert_int_equal(st.max_fds, UINT64_MAX);
}

static void test_process_parse_errors(void **state) {
    static const struct {
        const char *stat, *statm, *limits, *proc_stat;
        uint64_t page_size, clk_tck;
        int expected;
    } cases[] = {
        {NULL, statm_ok, limits_ok, proc_stat_ok, 4096, 100, -EINVAL},
        {stat_ok, NULL, limits_ok, proc_stat_ok, 4096, 100, -EINVAL},
        {stat_ok, statm_ok, NULL, proc_stat_ok, 4096, 100, -EINVAL},
        {stat_ok, statm_ok, limits_ok, NULL, 4096, 100, -EINVAL},
        {stat_ok, statm_ok, limits_ok, proc_stat_ok, 0, 100, -EINVAL},
        {stat_ok, statm_ok, limits_ok, proc_stat_ok, 4096, 0, -EINVAL},
        {stat_ok, statm_ok, limits_ok, proc_stat_ok, 4096, 1000001, -EINVAL},
        /* stat */
        {"", statm_ok, limits_ok, proc_stat_ok, 4096, 100, -EBADMSG},
        {"1 (x S 1 2 3", statm_ok, limits_ok, proc_stat_ok, 4096, 100, -EBADMSG},
        {"1 (x)S 1", statm_ok, limits_ok, proc_stat_ok, 4096, 100, -EBADMSG},
        {"1 (x) S 1 1 1 0 -1 0 0 0 0 0 250", statm_ok, limits_ok, proc_stat_ok, 4096, 100, -EBADMSG},
        {"1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 150 0 0 20 0 3 0 5 1", statm_ok, limits_ok, proc_stat_ok,
         4096, 100, -EBADMSG},
        {"1 (x) S 1 1 1 0 -1 0 0 0 0 0 -1 150 0 0 20 0 3 0 5 1", statm_ok, limits_ok, proc_stat_ok,
         4096, 100, -EBADMSG},
        {"1 (x) S 1 1 1 0 -1 0 0 0 0 0 250 150 0 0 20 0 3 0", statm_ok, limits_ok, proc_stat_ok, 4096,
         100, -EBADMSG},
        {"1 (x) S 1 1 1 0 -1 0 0 0 0 0 99999999999999999999 150 0 0 20 0 3 0 5 1", statm_ok,
         limits_ok, proc_stat_ok, 4096, 100, -ERANGE},
        {"1 (x) S 1 1 1 0 -1 0 0 0 0 0 18446744073709551615 1 0 0 20 0 3 0 5 1", statm_ok, limits_ok,
         proc_stat_ok, 4096, 100, -ERANGE},
        /* statm */
        {stat_ok, "", limits_ok, proc_stat_ok, 4096, 100, -EBADMSG},
        {stat_ok, "25600", limits_ok, proc_stat_ok, 4096, 100, -EBADMSG},
        {stat_ok, "25600 x", limits_ok, proc_stat_ok, 4096, 100, -EBADMSG},
        {stat_ok, "18446744073709551615 1 0", limits_ok, proc_stat_ok, 4096, 100, -ERANGE},
        /* limits */
        {stat_ok, statm_ok, "Max processes 10 10\n", proc_stat_ok, 4096, 100, -EBADMSG},
        {stat_ok, statm_ok, "Max open files  lots\n", proc_stat_ok, 4096, 100, -EBADMSG},
        {stat_ok, statm_ok, "Max open filesystems 5\n", proc_stat_ok, 4096, 100, -EBADMSG},
        /* /proc/stat */
        {stat_ok, statm_ok, limits_ok, "cpu 1 2\n", 4096, 100, -EBADMSG},
        {stat_ok, statm_ok, limits_ok, "xbtime 5\n", 4096, 100, -EBADMSG},
        {stat_ok, statm_ok, limits_ok, "btime \n", 4096, 100, -EBADMSG},
        {stat_ok, statm_ok, limits_ok, "btime 18446744073709551615\n", 4096, 100, -ERANGE},
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        struct aigw_process_sources src = {
            .stat = cases[i].stat,
            .statm = cases[i].statm,
            .limits = cases[i].limits,
            .proc_stat = cases[i].proc_stat,
            .n_fds = 1,
            .page_size = cases[i].page_size,
            .clk_tck = cases[i].clk_tck,
        };
        struct aigw_process_stats st = {.open_fds = 4242};

        if (aigw_process_stats_parse(&src, &st) != cases[i].expected)
            fail_msg("case %zu: expected %d", i, cases[i].expected);
        assert_int_equal(st.open_fds, 4242); /* untouched */
    }
    assert_int_equal(aigw_process_stats_parse(NULL, &(struct aigw_process_stats){}), -EINVAL);
}

static void test_process_render(void **state) {
    _cleanup_(aigw_metrics_freep) struct aigw_metrics *m = aigw_metrics_new(1, "1");
    const struct aigw_process_stats proc = {
        .resident_memory_bytes = 10485760,
        .virtual_memory_bytes = 104857600,
        .cpu_usec = 4010000,
        .open_fds = 17,
        .max_fds = 1024,
        .start_time_usec = 1700001234560000ULL,
    };
    _cleanup_free_ char *text = NULL;
    const char *p;

    assert_non_null(m);
    text = render(m, NULL, 0, &proc);
    p = strstr(text, "# HELP process_");
    assert_non_null(p);
    assert_string_equal(p,
                        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
                        "# TYPE process_cpu_seconds_total counter\n"
                        "process_cpu_seconds_total 4.01\n"
                        "# HELP process_max_fds Maximum number of open file descriptors.\n"
                        "# TYPE process_max_fds gauge\n"
                        "process_max_fds 1024\n"
                        "# HELP process_open_fds Number of open file descriptors.\n"
                        "# TYPE process_open_fds gauge\n"
                        "process_open_fds 17\n"
                        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                        "# TYPE process_resident_memory_bytes gauge\n"
                        "process_resident_memory_bytes 10485760\n"
                        "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
                        "# TYPE process_start_time_seconds gauge\n"
                        "process_start_time_seconds 1700001234.56\n"
                        "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                        "# TYPE process_virtual_memory_bytes gauge\n"
                        "process_virtual_memory_bytes 104857600\n");
    /* Everything before is the registry's own. */
    assert_int_equal((size_t)(p - text), strlen(empty_text) - strlen("1.2.3\"} 1\n") + strlen("1\"} 1\n"));
}

/* The only test that reads this machine's /proc. */
static void test_process_read(void **state) {
    _cleanup_(aigw_metrics_freep) struct aigw_metrics *m = aigw_metrics_new(1, "1");
    struct aigw_process_stats st;
    _cleanup_free_ char *text = NULL;
    size_t len;
    uint64_t now = (uint64_t)time(NULL) * USEC_PER_SEC;

    assert_int_equal(aigw_process_stats_read(NULL), -EINVAL);
    assert_int_equal(aigw_process_stats_read(&st), 0);
    assert_true(st.open_fds >= 3);
    assert_true(st.max_fds >= st.open_fds);
    assert_true(st.resident_memory_bytes > 0);
    assert_true(st.virtual_memory_bytes >= st.resident_memory_bytes);
    assert_true(st.start_time_usec <= now + USEC_PER_SEC);
    assert_true(st.start_time_usec + 3600 * USEC_PER_SEC > now);

    assert_non_null(m);
    assert_int_equal(aigw_metrics_render(m, NULL, 0, &text, &len), 0);
    assert_int_equal(strlen(text), len);
    assert_non_null(strstr(text, "\nprocess_open_fds "));
    assert_non_null(strstr(text, "\nprocess_start_time_seconds "));
}

/* ---- a realistic sample; written out for `promtool check metrics` ---- */

static void test_sample(void **state) {
    _cleanup_(aigw_metrics_freep) struct aigw_metrics *m = aigw_metrics_new(2, "0.1.0");
    const struct aigw_metrics_backend_state backends[] = {{"openai", true}, {"gemini", false}};
    _cleanup_free_ char *text = NULL;
    const char *path = getenv("AIGW_METRICS_SAMPLE");
    size_t len;

    assert_non_null(m);
    for (unsigned w = 0; w < 2; w++) {
        assert_int_equal(aigw_metrics_http_request(m, w, "/v1/chat/completions", 200, 1500000), 0);
        assert_int_equal(aigw_metrics_http_request(m, w, "/v1/chat/completions", 429, 300), 0);
        assert_int_equal(aigw_metrics_upstream_request(m, w, "openai", "gpt-4o", AIGW_UPSTREAM_SUCCESS, 1400000), 0);
        assert_int_equal(aigw_metrics_upstream_request(m, w, "gemini", "gemini-2.0-flash", AIGW_UPSTREAM_HTTP_5XX, 200000), 0);
        assert_int_equal(aigw_metrics_time_to_first_token(m, w, "openai", "gpt-4o", 350000), 0);
        assert_int_equal(aigw_metrics_gateway_overhead(m, w, 180), 0);
        assert_int_equal(aigw_metrics_tokens(m, w, "openai", "gpt-4o", AIGW_TOKENS_PROMPT, 120), 0);
        assert_int_equal(aigw_metrics_tokens(m, w, "openai", "gpt-4o", AIGW_TOKENS_COMPLETION, 40), 0);
        assert_int_equal(aigw_metrics_upstream_retry(m, w, "gemini", "gemini-2.0-flash"), 0);
        assert_int_equal(aigw_metrics_fallback(m, w, "gemini-2.0-flash", "gpt-4o"), 0);
        assert_int_equal(aigw_metrics_webhook_request(m, w, "dialogflow_cx", "success"), 0);
        assert_int_equal(aigw_metrics_ratelimited(m, w, AIGW_RATELIMIT_REQUESTS), 0);
        assert_int_equal(aigw_metrics_auth_failure(m, w, AIGW_AUTH_FAILURE_INVALID), 0);
    }
    assert_int_equal(aigw_metrics_fallback(m, 1, "we\"ird\\", "new\nline"), 0);
    assert_int_equal(aigw_metrics_inflight_add(m, 0, 2), 0);
    assert_int_equal(aigw_metrics_webhook_fallback(m, 1), 0);
    assert_int_equal(aigw_metrics_webhook_timeout(m, 1), 0);
    assert_int_equal(aigw_metrics_render(m, backends, ELEMENTSOF(backends), &text, &len), 0);

    /* Every sample line is unique (shards merged) and its family was
     * declared first. */
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        char *dup, name[128], type_line[160];
        size_t n, count;

        assert_non_null(nl);
        if (*line != '#') {
            dup = strndup(line, (size_t)(nl - line + 1));
            count = 0;
            for (const char *p = text; (p = strstr(p, dup)); p++)
                if (p == text || p[-1] == '\n')
                    count++;
            assert_int_equal(count, 1);
            free(dup);

            n = strcspn(line, "{ ");
            assert_true(n < sizeof(name));
            memcpy(name, line, n);
            name[n] = '\0';
            snprintf(type_line, sizeof(type_line), "# TYPE %s ", name);
            if (!strstr(text, type_line)) {
                /* histogram sample: strip the suffix */
                char *suffix = strrchr(name, '_');
                assert_non_null(suffix);
                *suffix = '\0';
                snprintf(type_line, sizeof(type_line), "# TYPE %s histogram\n", name);
                assert_non_null(strstr(text, type_line));
            }
            assert_true(strstr(text, type_line) < line);
        }
        line = nl + 1;
    }

    if (path) {
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
    }
}

/* ---- concurrency ---- */

#define WRITERS 4
#define ITERATIONS 20000
#define NEW_SERIES_EVERY 100

struct writer_arg {
    struct aigw_metrics *m;
    unsigned worker;
    unsigned failures; /* cmocka's asserts must not run off the main thread */
};

static atomic_uint writers_finished;

static void *writer(void *p) {
    struct writer_arg *a = p;
    char route[32], name[32];

    snprintf(route, sizeof(route), "/w%u", a->worker);
    for (unsigned i = 0; i < ITERATIONS; i++) {
        a->failures += aigw_metrics_inflight_add(a->m, a->worker, 1) != 0;
        a->failures += aigw_metrics_http_request(a->m, a->worker, "/shared", 200, (i % 1000) * 1000) != 0;
        a->failures += aigw_metrics_http_request(a->m, a->worker, route, 500, 1) != 0;
        a->failures += aigw_metrics_tokens(a->m, a->worker, "b", "m", AIGW_TOKENS_PROMPT, 3) != 0;
        a->failures += aigw_metrics_ratelimited(a->m, a->worker, AIGW_RATELIMIT_TOKENS) != 0;
        a->failures += aigw_metrics_gateway_overhead(a->m, a->worker, 20) != 0;
        if (i % NEW_SERIES_EVERY == 0) {
            /* Series published while the scraper reads the table. */
            snprintf(name, sizeof(name), "m%u-%u", a->worker, i);
            a->failures += aigw_metrics_fallback(a->m, a->worker, name, "to") != 0;
        }
        a->failures += aigw_metrics_inflight_add(a->m, a->worker, -1) != 0;
    }
    atomic_fetch_add(&writers_finished, 1);
    return NULL;
}

static void test_concurrent(void **state) {
    /* Worker 0 is the scraping worker: it renders and records in turn,
     * as the daemon's worker that serves /metrics does. */
    _cleanup_(aigw_metrics_freep) struct aigw_metrics *m = aigw_metrics_new(WRITERS + 1, "1");
    pthread_t threads[WRITERS];
    struct writer_arg args[WRITERS];
    _cleanup_free_ char *text = NULL;
    uint64_t last = 0, last_tokens = 0, expected_sum_usec = 0;
    unsigned renders = 0;
    char expected[128];

    assert_non_null(m);
    /* reset before any writer can finish, or the loop below never ends */
    atomic_store(&writers_finished, 0);
    for (unsigned t = 0; t < WRITERS; t++) {
        args[t] = (struct writer_arg){m, t + 1, 0};
        assert_int_equal(pthread_create(&threads[t], NULL, writer, &args[t]), 0);
    }

    /* At least a few renders even if the writers are quick. */
    while (atomic_load(&writers_finished) < WRITERS || renders < 3) {
        _cleanup_free_ char *t = render(m, NULL, 0, NULL);
        uint64_t shared, tokens, count, inf;

        /* Absent until some writer has recorded it. */
        if (find_value(t, "aigw_http_requests_total{route=\"/shared\",code=\"200\"}", &shared)) {
            assert_true(shared >= last);
            assert_true(shared <= (uint64_t)WRITERS * ITERATIONS);
            last = shared;
        }
        if (find_value(t, "aigw_tokens_total{backend=\"b\",model=\"m\",kind=\"prompt\"}", &tokens)) {
            assert_true(tokens >= last_tokens);
            assert_int_equal(tokens % 3, 0);
            last_tokens = tokens;
        }
        /* Derived from the same reads, so never inconsistent. */
        count = value_of(t, "aigw_gateway_overhead_seconds_count");
        inf = value_of(t, "aigw_gateway_overhead_seconds_bucket{le=\"+Inf\"}");
        assert_int_equal(count, inf);
        assert_int_equal(aigw_metrics_http_request(m, 0, "/metrics", 200, 5), 0);
        renders++;
    }
    for (unsigned t = 0; t < WRITERS; t++)
        assert_int_equal(pthread_join(threads[t], NULL), 0);
    for (unsigned t = 0; t < WRITERS; t++)
        assert_int_equal(args[t].failures, 0);

    text = render(m, NULL, 0, NULL);
    assert_int_equal(value_of(text, "aigw_http_requests_total{route=\"/shared\",code=\"200\"}"),
                     (uint64_t)WRITERS * ITERATIONS);
    assert_int_equal(value_of(text, "aigw_http_request_duration_seconds_count{route=\"/shared\"}"),
                     (uint64_t)WRITERS * ITERATIONS);
    for (unsigned i = 0; i < ITERATIONS; i++)
        expected_sum_usec += (i % 1000) * 1000;
    expected_sum_usec *= WRITERS;
    snprintf(expected, sizeof(expected), "aigw_http_request_duration_seconds_sum{route=\"/shared\"} %" PRIu64 "\n",
             (uint64_t)(expected_sum_usec / USEC_PER_SEC));
    assert_int_equal(expected_sum_usec % USEC_PER_SEC, 0);
    assert_non_null(strstr(text, expected));
    /* i % 1000 <= 5 ms: 6 of every 1000 observations per writer. */
    assert_int_equal(value_of(text, "aigw_http_request_duration_seconds_bucket{route=\"/shared\",le=\"0.005\"}"),
                     (uint64_t)WRITERS * (ITERATIONS / 1000) * 6);
    assert_int_equal(value_of(text, "aigw_tokens_total{backend=\"b\",model=\"m\",kind=\"prompt\"}"),
                     (uint64_t)WRITERS * ITERATIONS * 3);
    assert_int_equal(value_of(text, "aigw_ratelimited_total{reason=\"tokens\"}"), (uint64_t)WRITERS * ITERATIONS);
    assert_int_equal(value_of(text, "aigw_gateway_overhead_seconds_count"), (uint64_t)WRITERS * ITERATIONS);
    assert_non_null(strstr(text, "\naigw_gateway_overhead_seconds_sum 1.6\n"));
    assert_int_equal(value_of(text, "aigw_http_requests_total{route=\"/metrics\",code=\"200\"}"), renders);
    assert_non_null(strstr(text, "\naigw_inflight_requests 0\n"));
    assert_int_equal(count_lines_with(text, "aigw_fallbacks_total{"),
                     (size_t)WRITERS * (ITERATIONS / NEW_SERIES_EVERY));
    assert_int_equal(count_lines_with(text, "other"), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_invalid),
        cmocka_unit_test(test_render_empty),
        cmocka_unit_test(test_render_invalid),
        cmocka_unit_test(test_record_invalid),
        cmocka_unit_test(test_http_same_series_across_workers),
        cmocka_unit_test(test_histogram_buckets),
        cmocka_unit_test(test_overhead_histogram),
        cmocka_unit_test(test_http_duration),
        cmocka_unit_test(test_upstream_and_tokens),
        cmocka_unit_test(test_fixed_families),
        cmocka_unit_test(test_inflight),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_process_parse),
        cmocka_unit_test(test_process_parse_errors),
        cmocka_unit_test(test_process_render),
        cmocka_unit_test(test_process_read),
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_concurrent),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
