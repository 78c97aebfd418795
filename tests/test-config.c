/* SPDX-License-Identifier: MIT */
/* aigw.conf parser: every key type, every error message (exact, with
 * file:line), the whole-config checks, files, secrets and the shipped
 * aigw.conf. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "aigw/config.h"
#include "aigw/macro.h"

#define PATH "t.conf"
#define MAX_WANT 8

DEFINE_TRIVIAL_CLEANUP_FUNC(struct aigw_config *, config_unref)

/* Any non-NULL pointer that is never dereferenced: ret_* must stay as it
 * was on failure. */
static struct aigw_config *const SENTINEL = (struct aigw_config *)&SENTINEL;

static void dump_errors(const struct aigw_config_errors *e) {
    for (size_t i = 0; i < e->n; i++)
        print_message("  error[%zu]: %s\n", i, e->lines[i]);
}

/* Parses text that must be valid; returns the config (caller unrefs). */
static struct aigw_config *parse_ok(const char *text) {
    struct aigw_config *c = NULL;
    struct aigw_config_errors e = {0};
    int r = config_parse_string(text, PATH, &c, &e);
    if (r != 0 || e.n != 0) {
        print_message("unexpected failure for:\n%s\n", text);
        dump_errors(&e);
    }
    assert_int_equal(r, 0);
    assert_int_equal(e.n, 0);
    assert_non_null(c);
    assert_int_equal(atomic_load(&c->refcount), 1);
    assert_string_equal(c->path, PATH);
    config_errors_clear(&e);
    return c;
}

/* Parses text that must fail with exactly these errors, in this order. */
static void parse_fails(const char *text, const char *const *want) {
    struct aigw_config *c = SENTINEL;
    struct aigw_config_errors e = {0};
    int r = config_parse_string(text, PATH, &c, &e);
    size_t n_want = 0;
    while (n_want < MAX_WANT && want[n_want])
        n_want++;
    if (e.n != n_want) {
        print_message("for:\n%s\n", text);
        dump_errors(&e);
    }
    assert_int_equal(r, -EINVAL);
    assert_ptr_equal(c, SENTINEL);
    assert_int_equal(e.n, n_want);
    for (size_t i = 0; i < n_want; i++)
        assert_string_equal(e.lines[i], want[i]);
    config_errors_clear(&e);
    assert_null(e.lines);
    assert_int_equal(e.n, 0);
}

static void parse_fails1(const char *text, const char *want) {
    const char *w[] = {want, NULL};
    parse_fails(text, w);
}

/* ---- value parsers --------------------------------------------------------------------- */

static void test_parse_duration(void **state) {
    static const struct {
        const char *s;
        int r;
        uint64_t usec;
    } t[] = {
        {"0", 0, 0},
        {"1", 0, 1000000},
        {"30", 0, 30000000},
        {"0us", 0, 0},
        {"7us", 0, 7},
        {"250ms", 0, 250000},
        {"30s", 0, 30000000},
        {"5m", 0, 300000000},
        {"5min", 0, 300000000},
        {"1h", 0, 3600000000ULL},
        {"18446744073709551615us", 0, UINT64_MAX},
        {"18446744073709551ms", 0, 18446744073709551000ULL},
        {"18446744073709ms" "", 0, 18446744073709000ULL},
        /* overflow: of the number itself and of number × unit */
        {"18446744073709551616us", -ERANGE, 0},
        {"99999999999999999999999", -ERANGE, 0},
        {"18446744073709552ms", -ERANGE, 0},
        {"18446744073710s", -ERANGE, 0},
        {"18446744073709551615", -ERANGE, 0},
        {"5124095577h", -ERANGE, 0},
        {"5124095576h", 0, 5124095576ULL * 3600000000ULL},
        {"307445734561min", 0, 307445734561ULL * 60000000ULL},
        {"307445734562m", -ERANGE, 0},
        /* malformed */
        {"", -EINVAL, 0},
        {"s", -EINVAL, 0},
        {"ms", -EINVAL, 0},
        {"-1", -EINVAL, 0},
        {"+1", -EINVAL, 0},
        {" 1", -EINVAL, 0},
        {"1 ", -EINVAL, 0},
        {"5 s", -EINVAL, 0},
        {"1.5s", -EINVAL, 0},
        {"5d", -EINVAL, 0},
        {"5S", -EINVAL, 0},
        {"5M", -EINVAL, 0},
        {"5sec", -EINVAL, 0},
        {"5mins", -EINVAL, 0},
        {"1s1", -EINVAL, 0},
        {"0x10", -EINVAL, 0},
        {"abc", -EINVAL, 0},
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        uint64_t v = 4242;
        int r = parse_duration(t[i].s, &v);
        if (r != t[i].r)
            print_message("parse_duration(\"%s\")\n", t[i].s);
        assert_int_equal(r, t[i].r);
        assert_true(v == (r == 0 ? t[i].usec : 4242)); /* untouched on failure */
    }
    uint64_t v = 4242;
    assert_int_equal(parse_duration(NULL, &v), -EINVAL);
    assert_true(v == 4242);
}

static void test_parse_size(void **state) {
    static const struct {
        const char *s;
        int r;
        uint64_t bytes;
    } t[] = {
        {"0", 0, 0},
        {"65536", 0, 65536},
        {"1B", 0, 1},
        {"64K", 0, 65536},
        {"64KiB", 0, 65536},
        {"1M", 0, 1048576},
        {"1MiB", 0, 1048576},
        {"1G", 0, 1073741824},
        {"1GiB", 0, 1073741824},
        {"18446744073709551615", 0, UINT64_MAX},
        {"18446744073709551615B", 0, UINT64_MAX},
        {"17179869183G", 0, 17179869183ULL << 30},
        {"18014398509481983K", 0, 18014398509481983ULL << 10},
        /* overflow */
        {"18446744073709551616", -ERANGE, 0},
        {"17179869184G", -ERANGE, 0},
        {"18014398509481984K", -ERANGE, 0},
        {"17592186044416M", -ERANGE, 0},
        /* malformed */
        {"", -EINVAL, 0},
        {"K", -EINVAL, 0},
        {"1k", -EINVAL, 0},
        {"1m", -EINVAL, 0},
        {"1T", -EINVAL, 0},
        {"1KB", -EINVAL, 0},
        {"1 K", -EINVAL, 0},
        {"1.5M", -EINVAL, 0},
        {"-1", -EINVAL, 0},
        {"+1", -EINVAL, 0},
        {" 1", -EINVAL, 0},
        {"0x10", -EINVAL, 0},
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        uint64_t v = 4242;
        int r = parse_size(t[i].s, &v);
        if (r != t[i].r)
            print_message("parse_size(\"%s\")\n", t[i].s);
        assert_int_equal(r, t[i].r);
        assert_true(v == (r == 0 ? t[i].bytes : 4242));
    }
    uint64_t v = 4242;
    assert_int_equal(parse_size(NULL, &v), -EINVAL);
    assert_true(v == 4242);
}

static void test_parse_bool(void **state) {
    static const struct {
        const char *s;
        int r;
        bool b;
    } t[] = {
        {"yes", 0, true},   {"YES", 0, true},   {"Yes", 0, true},    {"true", 0, true},
        {"TRUE", 0, true},  {"on", 0, true},    {"On", 0, true},     {"1", 0, true},
        {"no", 0, false},   {"NO", 0, false},   {"false", 0, false}, {"False", 0, false},
        {"off", 0, false},  {"OFF", 0, false},  {"0", 0, false},     {"", -EINVAL, 0},
        {"y", -EINVAL, 0},  {"n", -EINVAL, 0},  {"2", -EINVAL, 0},   {"yess", -EINVAL, 0},
        {" yes", -EINVAL, 0}, {"yes ", -EINVAL, 0}, {"enable", -EINVAL, 0}, {"00", -EINVAL, 0},
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        for (int init = 0; init < 2; init++) {
            bool b = init;
            int r = parse_bool(t[i].s, &b);
            if (r != t[i].r)
                print_message("parse_bool(\"%s\")\n", t[i].s);
            assert_int_equal(r, t[i].r);
            assert_int_equal(b, r == 0 ? t[i].b : (bool)init);
        }
    }
    bool b = true;
    assert_int_equal(parse_bool(NULL, &b), -EINVAL);
    assert_true(b);
}

static void test_backend_type_to_string(void **state) {
    assert_string_equal(backend_type_to_string(AIGW_BACKEND_OPENAI), "openai");
    assert_string_equal(backend_type_to_string(AIGW_BACKEND_GEMINI), "gemini");
    assert_string_equal(backend_type_to_string(AIGW_BACKEND_MOCK), "mock");
    assert_string_equal(backend_type_to_string((enum aigw_backend_type)99), "unknown");
}

/* ---- valid configs --------------------------------------------------------------------- */

static void test_defaults(void **state) {
    static const char *const texts[] = {"", "\n", "# only a comment\n; another\n\n", "[server]\n"};
    for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
        _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(texts[i]);
        assert_string_equal(c->server.listen, "127.0.0.1:5002");
        assert_null(c->server.metrics_listen);
        assert_int_equal(c->server.workers, 0);
        assert_true(c->server.drain_timeout_usec == 30 * USEC_PER_SEC);
        assert_true(c->server.max_body == 1ULL << 20);
        assert_null(c->server.tls_certificate);
        assert_null(c->server.tls_key);
        assert_null(c->server.default_model);
        assert_int_equal(c->server.max_inflight, 0);
        assert_null(c->server.trusted_proxies);
        assert_true(c->server.request_timeout_usec == 10 * USEC_PER_SEC);
        assert_true(c->server.idle_timeout_usec == 30 * USEC_PER_SEC);
        assert_int_equal(c->server.max_messages, 1000);
        assert_int_equal(c->server.max_json_depth, 32);
        assert_true(c->server.max_upstream_response == 8ULL << 20);
        assert_true(c->server.max_sse_event == 1ULL << 20);
        assert_int_equal(c->log.level, AIGW_LOG_INFO);
        assert_true(c->log.access_log);
        assert_false(c->auth.required);
        assert_null(c->auth.keys_file);
        assert_null(c->auth.keys_credential);
        assert_null(c->auth.metrics_key_credential);
        assert_int_equal(c->ratelimit.requests_per_minute, 0);
        assert_int_equal(c->ratelimit.tokens_per_minute, 0);
        assert_int_equal(c->ratelimit.max_inflight_per_key, 0);
        assert_null(c->webhook.model);
        assert_null(c->webhook.system_prompt);
        assert_int_equal(c->webhook.max_reply_chars, 640);
        assert_true(c->webhook.time_budget_usec == 4 * USEC_PER_SEC);
        assert_null(c->webhook.fallback_text);
        assert_int_equal(c->webhook.max_sessions, 10000);
        assert_int_equal(c->webhook.max_turns, 6);
        assert_true(c->webhook.session_ttl_usec == 30 * 60 * USEC_PER_SEC);
        assert_int_equal(c->webhook.n_overrides, 0);
        assert_int_equal(c->n_backends, 0);
        assert_int_equal(c->n_models, 0);
    }
}

static void test_server_values(void **state) {
    _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(
        "[server]\n"
        "listen = [::1]:8080\n"
        "metrics_listen = 127.0.0.1:9102\n"
        "workers = 8\n"
        "drain_timeout = 45s\n"
        "max_body = 2M\n"
        "tls_certificate = /etc/aigw/cert.pem\n"
        "tls_key = /etc/aigw/key.pem\n"
        "default_model = m\n"
        "max_inflight = 500\n"
        "trusted_proxies = 127.0.0.1 ::1 10.0.0.0/8\n"
        "request_timeout = 5s\n"
        "idle_timeout = 2m\n"
        "max_messages = 50\n"
        "max_json_depth = 16\n"
        "max_upstream_response = 16M\n"
        "max_sse_event = 64K\n"
        "[backend \"b\"]\ntype = mock\n"
        "[model \"m\"]\nbackend = b\n");
    assert_string_equal(c->server.listen, "[::1]:8080");
    assert_string_equal(c->server.metrics_listen, "127.0.0.1:9102");
    assert_int_equal(c->server.workers, 8);
    assert_true(c->server.drain_timeout_usec == 45 * USEC_PER_SEC);
    assert_true(c->server.max_body == 2ULL << 20);
    assert_string_equal(c->server.tls_certificate, "/etc/aigw/cert.pem");
    assert_string_equal(c->server.tls_key, "/etc/aigw/key.pem");
    assert_string_equal(c->server.default_model, "m");
    assert_int_equal(c->server.max_inflight, 500);
    assert_string_equal(c->server.trusted_proxies, "127.0.0.1 ::1 10.0.0.0/8");
    assert_true(c->server.request_timeout_usec == 5 * USEC_PER_SEC);
    assert_true(c->server.idle_timeout_usec == 120 * USEC_PER_SEC);
    assert_int_equal(c->server.max_messages, 50);
    assert_int_equal(c->server.max_json_depth, 16);
    assert_true(c->server.max_upstream_response == 16ULL << 20);
    assert_true(c->server.max_sse_event == 64ULL << 10);
}

static void test_log_values(void **state) {
    static const struct {
        const char *name;
        enum aigw_log_level level;
    } t[] = {
        {"err", AIGW_LOG_ERR},   {"warning", AIGW_LOG_WARNING}, {"notice", AIGW_LOG_NOTICE},
        {"info", AIGW_LOG_INFO}, {"debug", AIGW_LOG_DEBUG},
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        char text[128];
        snprintf(text, sizeof(text), "[log]\nlevel = %s\naccess_log = %s\n", t[i].name, i % 2 ? "yes" : "off");
        _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(text);
        assert_int_equal(c->log.level, t[i].level);
        assert_int_equal(c->log.access_log, i % 2 == 1);
    }
}

static void test_auth_values(void **state) {
    {
        _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(
            "[auth]\nkeys_file = /etc/aigw/keys\nmetrics_key_credential = aigw-metrics-key\n");
        assert_string_equal(c->auth.keys_file, "/etc/aigw/keys");
        assert_null(c->auth.keys_credential);
        assert_string_equal(c->auth.metrics_key_credential, "aigw-metrics-key");
        assert_true(c->auth.required); /* keys configured: enforced by default */
    }
    {
        _cleanup_(config_unrefp) struct aigw_config *c = parse_ok("[auth]\nkeys_credential = aigw-keys\n");
        assert_string_equal(c->auth.keys_credential, "aigw-keys");
        assert_true(c->auth.required);
    }
    {
        _cleanup_(config_unrefp) struct aigw_config *c =
            parse_ok("[auth]\nkeys_credential = aigw-keys\nrequired = no\n");
        assert_false(c->auth.required);
    }
    {
        /* the explicit setting wins whatever its position */
        _cleanup_(config_unrefp) struct aigw_config *c =
            parse_ok("[auth]\nrequired = false\nkeys_file = /k\n");
        assert_false(c->auth.required);
    }
    {
        _cleanup_(config_unrefp) struct aigw_config *c =
            parse_ok("[auth]\nrequired = yes\nkeys_file = /k\n");
        assert_true(c->auth.required);
    }
    {
        _cleanup_(config_unrefp) struct aigw_config *c = parse_ok("[auth]\nrequired = no\n");
        assert_false(c->auth.required);
    }
}

static void test_ratelimit_values(void **state) {
    _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(
        "[ratelimit]\nrequests_per_minute = 60\ntokens_per_minute = 100000\nmax_inflight_per_key = 4\n");
    assert_int_equal(c->ratelimit.requests_per_minute, 60);
    assert_int_equal(c->ratelimit.tokens_per_minute, 100000);
    assert_int_equal(c->ratelimit.max_inflight_per_key, 4);
}

static void test_webhook_values(void **state) {
    _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(
        "[webhook]\n"
        "model = m\n"
        "system_prompt = Be brief.\n"
        "max_reply_chars = 300\n"
        "time_budget = 3500ms\n"
        "fallback_text = Sorry.\n"
        "basic_auth_credential = webhook-basic-auth\n"
        "header_name = x-webhook-token\n"
        "header_value_credential = webhook-token\n"
        "max_sessions = 5\n"
        "max_turns = 0\n"
        "session_ttl = 1h\n"
        "[webhook \"tag:weather\"]\n"
        "model = m2\n"
        "system_prompt = Weather only.\n"
        "[webhook \"intent:welcome\"]\n"
        "[webhook \"intent:book\"]\n"
        "system_prompt = Bookings.\n"
        "[backend \"b\"]\ntype = mock\n"
        "[model \"m\"]\nbackend = b\n"
        "[model \"m2\"]\nbackend = b\n");
    assert_string_equal(c->webhook.model, "m");
    assert_string_equal(c->webhook.system_prompt, "Be brief.");
    assert_int_equal(c->webhook.max_reply_chars, 300);
    assert_true(c->webhook.time_budget_usec == 3500 * USEC_PER_MSEC);
    assert_string_equal(c->webhook.fallback_text, "Sorry.");
    assert_string_equal(c->webhook.basic_auth_credential, "webhook-basic-auth");
    assert_string_equal(c->webhook.header_name, "x-webhook-token");
    assert_string_equal(c->webhook.header_value_credential, "webhook-token");
    assert_int_equal(c->webhook.max_sessions, 5);
    assert_int_equal(c->webhook.max_turns, 0);
    assert_true(c->webhook.session_ttl_usec == 3600 * USEC_PER_SEC);
    assert_int_equal(c->webhook.n_overrides, 3);
    assert_string_equal(c->webhook.overrides[0].match, "tag:weather");
    assert_string_equal(c->webhook.overrides[0].model, "m2");
    assert_string_equal(c->webhook.overrides[0].system_prompt, "Weather only.");
    assert_string_equal(c->webhook.overrides[1].match, "intent:welcome");
    assert_null(c->webhook.overrides[1].model);
    assert_null(c->webhook.overrides[1].system_prompt);
    assert_string_equal(c->webhook.overrides[2].match, "intent:book");
    assert_null(c->webhook.overrides[2].model);
    assert_string_equal(c->webhook.overrides[2].system_prompt, "Bookings.");
}

static void test_backend_values(void **state) {
    _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(
        "# leading comment\n"
        "[backend \"litellm\"]\n"
        "type = openai\n"
        "url = http://127.0.0.1:4000/\n"
        "api_key_env = LITELLM_KEY\n"
        "connect_timeout = 1500ms\n"
        "timeout = 10m\n"
        "idle_timeout = 20s\n"
        "max_connections = 8\n"
        "max_retries = 0\n"
        "retry_base = 100ms\n"
        "breaker_threshold = 0\n"
        "breaker_cooldown = 1m\n"
        "probe_interval = 0\n"
        "mock_latency = 50ms\n"
        "mock_chunks = 3\n"
        "\n"
        "[backend \"g\"]\n"
        "type = gemini\n"
        "api_key_credential = gemini-api-key\n"
        "[backend \"m\"]\n"
        "type = mock\n"
        "[backend \"f\"]\n"
        "url = https://api.example.com/v1///\n"
        "api_key_file = /etc/aigw/f.key\n");
    assert_int_equal(c->n_backends, 4);

    const struct aigw_backend_conf *b = &c->backends[0];
    assert_string_equal(b->name, "litellm");
    assert_int_equal(b->line, 2);
    assert_int_equal(b->type, AIGW_BACKEND_OPENAI);
    assert_string_equal(b->url, "http://127.0.0.1:4000");
    assert_string_equal(b->api_key_env, "LITELLM_KEY");
    assert_null(b->api_key_file);
    assert_null(b->api_key_credential);
    assert_null(b->api_key);
    assert_true(b->connect_timeout_usec == 1500 * USEC_PER_MSEC);
    assert_true(b->timeout_usec == 600 * USEC_PER_SEC);
    assert_true(b->idle_timeout_usec == 20 * USEC_PER_SEC);
    assert_int_equal(b->max_connections, 8);
    assert_int_equal(b->max_retries, 0);
    assert_true(b->retry_base_usec == 100 * USEC_PER_MSEC);
    assert_int_equal(b->breaker_threshold, 0);
    assert_true(b->breaker_cooldown_usec == 60 * USEC_PER_SEC);
    assert_true(b->probe_interval_usec == 0);
    assert_true(b->mock_latency_usec == 50 * USEC_PER_MSEC);
    assert_int_equal(b->mock_chunks, 3);

    /* gemini: default URL; every other key at its default */
    b = &c->backends[1];
    assert_string_equal(b->name, "g");
    assert_int_equal(b->line, 18);
    assert_int_equal(b->type, AIGW_BACKEND_GEMINI);
    assert_string_equal(b->url, "https://generativelanguage.googleapis.com");
    assert_string_equal(b->api_key_credential, "gemini-api-key");
    assert_true(b->connect_timeout_usec == 5 * USEC_PER_SEC);
    assert_true(b->timeout_usec == 300 * USEC_PER_SEC);
    assert_true(b->idle_timeout_usec == 60 * USEC_PER_SEC);
    assert_int_equal(b->max_connections, 64);
    assert_int_equal(b->max_retries, 2);
    assert_true(b->retry_base_usec == 250 * USEC_PER_MSEC);
    assert_int_equal(b->breaker_threshold, 5);
    assert_true(b->breaker_cooldown_usec == 30 * USEC_PER_SEC);
    assert_true(b->probe_interval_usec == 30 * USEC_PER_SEC);
    assert_true(b->mock_latency_usec == 0);
    assert_int_equal(b->mock_chunks, 4);

    b = &c->backends[2];
    assert_int_equal(b->type, AIGW_BACKEND_MOCK);
    assert_null(b->url); /* mock needs none */

    /* type defaults to openai; every trailing slash is stripped */
    b = &c->backends[3];
    assert_int_equal(b->type, AIGW_BACKEND_OPENAI);
    assert_string_equal(b->url, "https://api.example.com/v1");
    assert_string_equal(b->api_key_file, "/etc/aigw/f.key");

    assert_ptr_equal(config_find_backend(c, "g"), &c->backends[1]);
    assert_ptr_equal(config_find_backend(c, "litellm"), &c->backends[0]);
    assert_null(config_find_backend(c, "G"));
    assert_null(config_find_backend(c, "nope"));
    assert_null(config_find_backend(c, NULL));
}

static void test_gemini_explicit_url(void **state) {
    _cleanup_(config_unrefp) struct aigw_config *c =
        parse_ok("[backend \"g\"]\ntype = gemini\nurl = http://127.0.0.1:9999/\n");
    assert_string_equal(c->backends[0].url, "http://127.0.0.1:9999");
}

static void test_model_values(void **state) {
    _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(
        "[backend \"b\"]\ntype = mock\n"
        "[model \"a\"]\n"
        "backend = b\n"
        "upstream_model = openai/gpt-4o-mini\n"
        "fallbacks = c, d\n"
        "max_tokens = 512\n"
        "temperature = 0.7\n"
        "[model \"c\"]\n"
        "backend = b\n"
        "fallbacks = d\td ,, \n"
        "max_tokens = 1\n"
        "temperature = 0\n"
        "[model \"d\"]\n"
        "backend = b\n"
        "fallbacks =\n"
        "max_tokens = 10000000\n"
        "temperature = 2\n"
        "[model \"e\"]\n"
        "backend = b\n"
        "fallbacks = a,c,d,a,c,d,a,c,d,a,c,d,a,c,d,a\n"
        "temperature = 1e0\n");
    assert_int_equal(c->n_models, 4);

    const struct aigw_model_conf *m = &c->models[0];
    assert_string_equal(m->name, "a");
    assert_int_equal(m->line, 3);
    assert_string_equal(m->backend_name, "b");
    assert_ptr_equal(m->backend, &c->backends[0]);
    assert_string_equal(m->upstream_model, "openai/gpt-4o-mini");
    assert_int_equal(m->n_fallbacks, 2);
    assert_string_equal(m->fallbacks[0], "c");
    assert_string_equal(m->fallbacks[1], "d");
    assert_true(m->defaults.has_max_tokens);
    assert_int_equal(m->defaults.max_tokens, 512);
    assert_true(m->defaults.has_temperature);
    assert_float_equal(m->defaults.temperature, 0.7, 1e-12);

    m = &c->models[1];
    assert_string_equal(m->upstream_model, "c"); /* defaults to the name */
    assert_int_equal(m->n_fallbacks, 2);         /* separators: commas, spaces, tabs */
    assert_string_equal(m->fallbacks[0], "d");
    assert_string_equal(m->fallbacks[1], "d");
    assert_int_equal(m->defaults.max_tokens, 1);
    assert_true(m->defaults.has_temperature);
    assert_float_equal(m->defaults.temperature, 0.0, 0);

    m = &c->models[2];
    assert_int_equal(m->n_fallbacks, 0);
    assert_int_equal(m->defaults.max_tokens, 10000000);
    assert_float_equal(m->defaults.temperature, 2.0, 0);

    m = &c->models[3];
    assert_int_equal(m->n_fallbacks, 16); /* the most allowed */
    assert_false(m->defaults.has_max_tokens);
    assert_float_equal(m->defaults.temperature, 1.0, 0);

    assert_ptr_equal(config_find_model(c, "d"), &c->models[2]);
    assert_null(config_find_model(c, "D"));
    assert_null(config_find_model(c, "zz"));
    assert_null(config_find_model(c, NULL));
}

/* Names up to 128 characters must work although inih keeps only 49 bytes
 * of a section name (regression: a 44-character model name was reported
 * as an unknown section). */
static void test_long_section_names(void **state) {
    char name[129];
    memset(name, 'x', 128);
    name[128] = 0;
    memcpy(name, "org/", 4);
    char text[1024];
    snprintf(text, sizeof(text),
             "[backend \"%s\"]\ntype = mock\n"
             "[model \"meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo\"]\nbackend = %s\n"
             "[model \"%s\"]\nbackend = %s\nmax_tokens = 9\n"
             "[webhook \"intent:%.100s\"]\nsystem_prompt = p\n",
             name, name, name, name, name);
    _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(text);
    assert_int_equal(c->n_backends, 1);
    assert_string_equal(c->backends[0].name, name);
    assert_int_equal(c->n_models, 2);
    assert_string_equal(c->models[0].name, "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo");
    assert_ptr_equal(c->models[0].backend, &c->backends[0]);
    assert_string_equal(c->models[1].name, name);
    assert_int_equal(c->models[1].defaults.max_tokens, 9);
    assert_int_equal(c->webhook.n_overrides, 1);
    assert_int_equal(strlen(c->webhook.overrides[0].match), 107);
    assert_string_equal(c->webhook.overrides[0].system_prompt, "p");

    /* a long duplicate is still a duplicate, a long prefix-alike is not */
    char dup[1024];
    snprintf(dup, sizeof(dup),
             "[backend \"b\"]\ntype = mock\n"
             "[model \"%s1\"]\nbackend = b\n"
             "[model \"%s2\"]\nbackend = b\n",
             "a-model-name-that-is-longer-than-inih-keeps-", "a-model-name-that-is-longer-than-inih-keeps-");
    _cleanup_(config_unrefp) struct aigw_config *c2 = parse_ok(dup);
    assert_int_equal(c2->n_models, 2);
}

/* ---- lines: comments, continuations, encodings ------------------------------------------ */

static void test_continuation_lines(void **state) {
    {
        _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(
            "[webhook]\n"
            "system_prompt = You are a voice assistant.\n"
            "  Answer in {language}.\n"
            "\tNo markdown.\n"
            "# a comment between does not end the value\n"
            "    Last line.   \n"
            "fallback_text = Sorry,\n"
            "  try again.\n"
            "max_turns = 3\n");
        assert_string_equal(c->webhook.system_prompt,
                            "You are a voice assistant.\nAnswer in {language}.\nNo markdown.\nLast line.");
        assert_string_equal(c->webhook.fallback_text, "Sorry,\ntry again.");
        assert_int_equal(c->webhook.max_turns, 3);
    }
    {
        /* an indented line that looks like a header continues the value,
         * as inih sees it; the keys that follow stay in [webhook] */
        _cleanup_(config_unrefp) struct aigw_config *c =
            parse_ok("[webhook]\nsystem_prompt = a\n  [log]\nmax_turns = 2\n");
        assert_string_equal(c->webhook.system_prompt, "a\n[log]");
        assert_int_equal(c->webhook.max_turns, 2);
        assert_int_equal(c->log.level, AIGW_LOG_INFO);
    }
    {
        /* ... and so does an indented "key = value" line */
        _cleanup_(config_unrefp) struct aigw_config *c =
            parse_ok("[webhook]\nsystem_prompt = a\n  max_turns = 2\n");
        assert_string_equal(c->webhook.system_prompt, "a\nmax_turns = 2");
        assert_int_equal(c->webhook.max_turns, 6);
    }
    {
        /* with no key before it in the section, an indented header is a header */
        _cleanup_(config_unrefp) struct aigw_config *c =
            parse_ok("[webhook]\n  [log]\n  level = debug\n");
        assert_int_equal(c->log.level, AIGW_LOG_DEBUG);
    }
    {
        /* override sections continue too; string keys in [server] as well */
        _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(
            "[server]\ntrusted_proxies = 127.0.0.1\n  ::1\n"
            "[webhook \"tag:x\"]\nsystem_prompt = one\n  two\n");
        assert_string_equal(c->server.trusted_proxies, "127.0.0.1\n::1");
        assert_string_equal(c->webhook.overrides[0].system_prompt, "one\ntwo");
    }
    /* only string keys continue; anything else is a second value */
    parse_fails1("[server]\nworkers = 2\n  3\n", PATH ":3: key \"workers\" is set twice in section [server]");
    parse_fails1("[backend \"b\"]\nurl = http://x\n  /v1\n",
                 PATH ":3: key \"url\" is set twice in section [backend \"b\"]");
    parse_fails1("[model \"m\"]\nbackend = b\nfallbacks = a\n  c\n[backend \"b\"]\ntype = mock\n"
                 "[model \"a\"]\nbackend = b\n",
                 PATH ":4: key \"fallbacks\" is set twice in section [model \"m\"]");
    /* an indented line with no key before it is an ordinary line */
    parse_fails1("[server]\n  workers = 300\n", PATH ":2: workers: \"300\" is out of range");
    /* a continuation of an unknown key is reported again */
    const char *w[] = {PATH ":2: unknown key \"foo\" in section [webhook]",
                       PATH ":3: unknown key \"foo\" in section [webhook]", NULL};
    parse_fails("[webhook]\nfoo = a\n  b\n", w);
}

static void test_line_forms(void **state) {
    {
        /* CRLF, a UTF-8 BOM, inline comments, ':' as separator, blanks */
        _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(
            "\xEF\xBB\xBF[log]\r\n"
            "level = debug ; the most\r\n"
            "\r\n"
            "access_log: no\r\n"
            "   \t  \r\n"
            "[server]   \r\n"
            "  workers   =    3   \r\n"
            "; comment\r\n");
        assert_int_equal(c->log.level, AIGW_LOG_DEBUG);
        assert_false(c->log.access_log);
        assert_int_equal(c->server.workers, 3);
    }
    {
        /* a BOM before a key-less section header */
        _cleanup_(config_unrefp) struct aigw_config *c = parse_ok("\xEF\xBB\xBF[server]\n[log]\nlevel = err");
        assert_int_equal(c->log.level, AIGW_LOG_ERR);
    }
    {
        /* ';' without white space before it is part of the value */
        _cleanup_(config_unrefp) struct aigw_config *c =
            parse_ok("[webhook]\nfallback_text = Sorry;later # not a comment\n");
        assert_string_equal(c->webhook.fallback_text, "Sorry;later # not a comment");
    }
    {
        /* no newline at the end of the file */
        _cleanup_(config_unrefp) struct aigw_config *c = parse_ok("[server]\nworkers = 7");
        assert_int_equal(c->server.workers, 7);
    }
}

static void test_line_too_long(void **state) {
    /* inih's buffer is 200 bytes: 198 characters, newline, NUL */
    const size_t key_len = strlen("fallback_text = ");
    char value[256], ok[300], bad[300];
    memset(value, 'a', sizeof(value));
    value[198 - key_len] = 0;
    snprintf(ok, sizeof(ok), "[webhook]\nfallback_text = %s\n", value);
    {
        _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(ok);
        assert_int_equal(strlen(c->webhook.fallback_text), 198 - key_len);
    }
    value[198 - key_len] = 'a';
    value[199 - key_len] = 0;
    snprintf(bad, sizeof(bad), "[webhook]\nfallback_text = %s\nmax_turns = x\n", value);
    /* reported once, and the next line is still read and checked */
    const char *w[] = {PATH ":2: line longer than 198 characters (split long values over indented "
                       "continuation lines)",
                       PATH ":3: max_turns: \"x\" is not a non-negative integer", NULL};
    parse_fails(bad, w);

    /* a long comment line is too long as well */
    char comment[600];
    comment[0] = '#';
    memset(comment + 1, '-', 500);
    snprintf(comment + 501, sizeof(comment) - 501, "\n");
    parse_fails1(comment, PATH ":1: line longer than 198 characters (split long values over indented "
                          "continuation lines)");
}

/* ---- errors ---------------------------------------------------------------------------- */

#define UNKNOWN_SECTION(line, name)                                                                \
    PATH ":" #line ": unknown section [" name "] (expected server, log, auth, ratelimit, webhook, "  \
         "backend \"NAME\", model \"NAME\" or webhook \"tag:NAME\")"

static void test_section_errors(void **state) {
    static const struct {
        const char *text;
        const char *want;
    } t[] = {
        /* unknown sections, with and without keys: keys are not reported */
        {"[foo]\nbar = 1\nbaz = 2\n", UNKNOWN_SECTION(1, "foo")},
        {"[foo]\n", UNKNOWN_SECTION(1, "foo")},
        {"[server]\n[foo]\n[log]\n", UNKNOWN_SECTION(2, "foo")},
        {"[Server]\n", UNKNOWN_SECTION(1, "Server")},
        {"[ server ]\n", UNKNOWN_SECTION(1, " server ")},
        {"[]\n", UNKNOWN_SECTION(1, "")},
        {"[backend]\ntype = mock\n", UNKNOWN_SECTION(1, "backend")},
        {"[model]\n", UNKNOWN_SECTION(1, "model")},
        {"[backend x]\n", UNKNOWN_SECTION(1, "backend x")},
        {"[backend \"\"]\n", UNKNOWN_SECTION(1, "backend \"\"")},
        {"[backend \"x]\n", UNKNOWN_SECTION(1, "backend \"x")},
        {"[backend x\"]\n", UNKNOWN_SECTION(1, "backend x\"")},
        {"[backends \"x\"]\n", UNKNOWN_SECTION(1, "backends \"x\"")},
        {"[server \"x\"]\n", UNKNOWN_SECTION(1, "server \"x\"")},
        {"[frobnicate \"x\"]\n", UNKNOWN_SECTION(1, "frobnicate \"x\"")},
        {"[backend\t\"x\"]\n", UNKNOWN_SECTION(1, "backend\t\"x\"")},
        /* a key before any section */
        {"workers = 2\n[server]\n", UNKNOWN_SECTION(1, "")},
        /* invalid names */
        {"[backend \"a b\"]\n", PATH ":1: invalid name in section [backend \"a b\"] (letters, digits and ._:-/@ only)"},
        {"[model \"x$y\"]\n", PATH ":1: invalid name in section [model \"x$y\"] (letters, digits and ._:-/@ only)"},
        {"[model \"x\"y\"]\n", PATH ":1: invalid name in section [model \"x\"y\"] (letters, digits and ._:-/@ only)"},
        {"[model \"\xc3\xa9\"]\n",
         PATH ":1: invalid name in section [model \"\xc3\xa9\"] (letters, digits and ._:-/@ only)"},
        {"[webhook \"tag:a\tb\"]\n",
         PATH ":1: invalid name in section [webhook \"tag:a\tb\"] (at most 200 bytes, no control characters or "
              "quotes)"},
        {"[webhook \"intent:a\"b\"]\n",
         PATH ":1: invalid name in section [webhook \"intent:a\"b\"] (at most 200 bytes, no control characters or "
              "quotes)"},
        /* overrides must say what they match */
        {"[webhook \"weather\"]\nmodel = m\n", PATH ":1: [webhook \"weather\"]: the name must start with tag: or intent:"},
        {"[webhook \"Tag:x\"]\n", PATH ":1: [webhook \"Tag:x\"]: the name must start with tag: or intent:"},
        /* syntax */
        {"[server]\n[log\n", PATH ":2: syntax error (expected [section], key = value, or a # comment)"},
        {"[server]\n[log ;]\n", PATH ":2: syntax error (expected [section], key = value, or a # comment)"},
        {"[server]\nworkers\n", PATH ":2: syntax error (expected [section], key = value, or a # comment)"},
        {"[server]\njust some words\n", PATH ":2: syntax error (expected [section], key = value, or a # comment)"},
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++)
        parse_fails1(t[i].text, t[i].want);

    /* name length: 128 is the most */
    char text[300], want[400];
    char name[130];
    memset(name, 'n', 129);
    name[129] = 0;
    snprintf(text, sizeof(text), "[model \"%s\"]\nbackend = b\n", name);
    snprintf(want, sizeof(want),
             PATH ":1: invalid name in section [model \"%s\"] (letters, digits and ._:-/@ only)", name);
    parse_fails1(text, want);

    /* a broken header: its keys land in the section before, as inih sees it */
    const char *w[] = {PATH ":3: unknown key \"level\" in section [server]",
                       PATH ":2: syntax error (expected [section], key = value, or a # comment)", NULL};
    parse_fails("[server]\n[log\nlevel = debug\n", w);
}

static void test_key_errors(void **state) {
    static const struct {
        const char *text;
        const char *want;
    } t[] = {
        {"[server]\nfoo = 1\n", PATH ":2: unknown key \"foo\" in section [server]"},
        {"[server]\nWorkers = 1\n", PATH ":2: unknown key \"Workers\" in section [server]"},
        {"[log]\naccess-log = yes\n", PATH ":2: unknown key \"access-log\" in section [log]"},
        {"[auth]\nkeys = x\n", PATH ":2: unknown key \"keys\" in section [auth]"},
        {"[ratelimit]\nburst = 1\n", PATH ":2: unknown key \"burst\" in section [ratelimit]"},
        {"[webhook]\nurl = http://x\n", PATH ":2: unknown key \"url\" in section [webhook]"},
        {"[webhook \"tag:x\"]\nmax_turns = 1\n", PATH ":2: unknown key \"max_turns\" in section [webhook \"tag:x\"]"},
        {"[backend \"b\"]\ntype = mock\nbackend = b\n", PATH ":3: unknown key \"backend\" in section [backend \"b\"]"},
        {"[backend \"b\"]\ntype = mock\n[model \"m\"]\nbackend = b\nurl = http://x\n",
         PATH ":5: unknown key \"url\" in section [model \"m\"]"},
        /* keys of one section are not keys of another */
        {"[server]\nlevel = info\n", PATH ":2: unknown key \"level\" in section [server]"},
        /* duplicates */
        {"[server]\nworkers = 1\nworkers = 1\n", PATH ":3: key \"workers\" is set twice in section [server]"},
        {"[server]\nworkers = 1\n[log]\n[server]\nworkers = 2\n",
         PATH ":5: key \"workers\" is set twice in section [server]"},
        {"[webhook]\nsystem_prompt = a\nmax_turns = 1\nsystem_prompt = b\n",
         PATH ":4: key \"system_prompt\" is set twice in section [webhook]"},
        {"[backend \"b\"]\ntype = mock\ntype = openai\n", PATH ":3: key \"type\" is set twice in section [backend \"b\"]"},
        {"[webhook \"tag:x\"]\nmodel = m\nmodel = m\n[backend \"b\"]\ntype = mock\n[model \"m\"]\nbackend = b\n",
         PATH ":3: key \"model\" is set twice in section [webhook \"tag:x\"]"},
        {"[auth]\nrequired = no\nrequired = no\n", PATH ":3: key \"required\" is set twice in section [auth]"},
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++)
        parse_fails1(t[i].text, t[i].want);
}

/* Every malformed value, by key type. */
static void test_value_errors(void **state) {
    static const struct {
        const char *section; /* header line; the key is on line 2 */
        const char *key;
        const char *value;
        const char *what; /* the message after KEY: "VALUE" */
    } t[] = {
#define NOT_UINT "is not a non-negative integer"
#define NOT_DURATION "is not a duration (e.g. 250ms, 30s, 5m, 1h)"
#define NOT_SIZE "is not a size (e.g. 65536, 64K, 1M)"
#define NOT_BOOL "is not a boolean (yes/no)"
#define NOT_LEVEL "is not one of err, warning, notice, info, debug"
#define NOT_TYPE "is not one of openai, gemini, mock"
#define NOT_URL "is not an http:// or https:// URL"
#define NOT_TOKENS "must be an integer from 1 to 10000000"
#define NOT_TEMP "must be a number from 0 to 2"
        {"[server]", "workers", "abc", NOT_UINT},
        {"[server]", "workers", "-1", NOT_UINT},
        {"[server]", "workers", "+1", NOT_UINT},
        {"[server]", "workers", "1.5", NOT_UINT},
        {"[server]", "workers", "4 threads", NOT_UINT},
        {"[server]", "workers", "0x10", NOT_UINT},
        {"[server]", "workers", "", NOT_UINT},
        {"[server]", "workers", "99999999999999999999", NOT_UINT},
        {"[ratelimit]", "requests_per_minute", "1k", NOT_UINT},
        {"[webhook]", "max_turns", "many", NOT_UINT},
        {"[backend \"b\"]", "max_retries", "-2", NOT_UINT},
        {"[server]", "drain_timeout", "", NOT_DURATION},
        {"[server]", "drain_timeout", "5 s", NOT_DURATION},
        {"[server]", "drain_timeout", "1.5s", NOT_DURATION},
        {"[server]", "drain_timeout", "5d", NOT_DURATION},
        {"[server]", "drain_timeout", "-1s", NOT_DURATION},
        {"[server]", "request_timeout", "s", NOT_DURATION},
        {"[server]", "idle_timeout", "99999999999999999999s", NOT_DURATION},
        {"[webhook]", "time_budget", "4 seconds", NOT_DURATION},
        {"[webhook]", "session_ttl", "1d", NOT_DURATION},
        {"[backend \"b\"]", "timeout", "forever", NOT_DURATION},
        {"[backend \"b\"]", "retry_base", "18446744073709552ms", NOT_DURATION},
        {"[server]", "max_body", "", NOT_SIZE},
        {"[server]", "max_body", "1T", NOT_SIZE},
        {"[server]", "max_body", "1.5M", NOT_SIZE},
        {"[server]", "max_body", "1k", NOT_SIZE},
        {"[server]", "max_upstream_response", "8 M", NOT_SIZE},
        {"[server]", "max_sse_event", "17179869184G", NOT_SIZE},
        {"[log]", "access_log", "maybe", NOT_BOOL},
        {"[log]", "access_log", "y", NOT_BOOL},
        {"[log]", "access_log", "", NOT_BOOL},
        {"[auth]", "required", "2", NOT_BOOL},
        {"[log]", "level", "verbose", NOT_LEVEL},
        {"[log]", "level", "INFO", NOT_LEVEL},
        {"[log]", "level", "error", NOT_LEVEL},
        {"[log]", "level", "6", NOT_LEVEL},
        {"[log]", "level", "", NOT_LEVEL},
        {"[backend \"b\"]", "type", "anthropic", NOT_TYPE},
        {"[backend \"b\"]", "type", "OpenAI", NOT_TYPE},
        {"[backend \"b\"]", "type", "", NOT_TYPE},
        {"[backend \"b\"]", "url", "", NOT_URL},
        {"[backend \"b\"]", "url", "ftp://x", NOT_URL},
        {"[backend \"b\"]", "url", "HTTP://x", NOT_URL},
        {"[backend \"b\"]", "url", "http://", NOT_URL},
        {"[backend \"b\"]", "url", "https://", NOT_URL},
        {"[backend \"b\"]", "url", "http:///v1", NOT_URL},
        {"[backend \"b\"]", "url", "localhost:4000", NOT_URL},
        {"[backend \"b\"]", "url", "//x", NOT_URL},
        {"[backend \"b\"]", "url", "http://a b", NOT_URL},
        {"[backend \"b\"]", "url", "http://x/?key=1", NOT_URL},
        {"[backend \"b\"]", "url", "http://x/#top", NOT_URL},
        {"[backend \"b\"]", "url", "http://x/\x01", NOT_URL},
        {"[model \"m\"]", "max_tokens", "0", NOT_TOKENS},
        {"[model \"m\"]", "max_tokens", "10000001", NOT_TOKENS},
        {"[model \"m\"]", "max_tokens", "-5", NOT_TOKENS},
        {"[model \"m\"]", "max_tokens", "1.5", NOT_TOKENS},
        {"[model \"m\"]", "max_tokens", "abc", NOT_TOKENS},
        {"[model \"m\"]", "max_tokens", "", NOT_TOKENS},
        {"[model \"m\"]", "max_tokens", "99999999999999999999", NOT_TOKENS},
        {"[model \"m\"]", "temperature", "-0.1", NOT_TEMP},
        {"[model \"m\"]", "temperature", "2.01", NOT_TEMP},
        {"[model \"m\"]", "temperature", "abc", NOT_TEMP},
        {"[model \"m\"]", "temperature", "0.5x", NOT_TEMP},
        {"[model \"m\"]", "temperature", "nan", NOT_TEMP},
        {"[model \"m\"]", "temperature", "inf", NOT_TEMP},
        {"[model \"m\"]", "temperature", "1e999", NOT_TEMP},
        {"[model \"m\"]", "temperature", "1e-400", NOT_TEMP},
        {"[model \"m\"]", "temperature", "", NOT_TEMP},
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        char text[256], want[512];
        /* what the section needs besides the key under test comes after it */
        if (strcmp(t[i].section, "[model \"m\"]") == 0)
            snprintf(text, sizeof(text), "%s\n%s = %s\nbackend = z\n[backend \"z\"]\ntype = mock\n", t[i].section,
                     t[i].key, t[i].value);
        else if (strcmp(t[i].section, "[backend \"b\"]") == 0)
            snprintf(text, sizeof(text), "%s\n%s = %s\n%s\n", t[i].section, t[i].key, t[i].value,
                     strcmp(t[i].key, "type") == 0 ? "url = http://x" : "type = mock");
        else
            snprintf(text, sizeof(text), "%s\n%s = %s\n", t[i].section, t[i].key, t[i].value);
        snprintf(want, sizeof(want), PATH ":2: %s: \"%s\" %s", t[i].key, t[i].value, t[i].what);
        parse_fails1(text, want);
    }

    /* 17 fallbacks */
    parse_fails1("[backend \"b\"]\ntype = mock\n[model \"m\"]\nbackend = b\n"
                 "fallbacks = a b c d e f g h i j k l m n o p q\n",
                 PATH ":5: fallbacks: at most 16 entries");
}

/* Bounds of every ranged key: the ends are accepted, one step beyond not. */
static void test_ranges(void **state) {
    static const struct {
        const char *section;
        const char *key;
        const char *lowest, *highest;
        const char *below, *above; /* below NULL: the minimum is 0 */
    } t[] = {
        {"[server]", "workers", "0", "256", NULL, "257"},
        {"[server]", "drain_timeout", "0", "1h", NULL, "3601s"},
        {"[server]", "max_body", "1K", "1G", "1023", "1073741825"},
        {"[server]", "max_inflight", "0", "1000000", NULL, "1000001"},
        {"[server]", "request_timeout", "1s", "60m", "999ms", "3600001ms"},
        {"[server]", "idle_timeout", "1000ms", "3600s", "999999us", "61min"},
        {"[server]", "max_messages", "1", "100000", "0", "100001"},
        {"[server]", "max_json_depth", "4", "256", "3", "257"},
        {"[server]", "max_upstream_response", "4K", "1G", "4095", "1025M"},
        {"[server]", "max_sse_event", "1K", "64M", "1023B", "67108865"},
        {"[ratelimit]", "requests_per_minute", "0", "1000000000", NULL, "1000000001"},
        {"[ratelimit]", "tokens_per_minute", "0", "1000000000", NULL, "4294967296"},
        {"[ratelimit]", "max_inflight_per_key", "0", "1000000", NULL, "1000001"},
        {"[webhook]", "max_reply_chars", "16", "16000", "15", "16001"},
        {"[webhook]", "time_budget", "100ms", "30s", "99ms", "30001ms"},
        {"[webhook]", "max_sessions", "0", "10000000", NULL, "10000001"},
        {"[webhook]", "max_turns", "0", "100", NULL, "101"},
        {"[webhook]", "session_ttl", "1s", "168h", "999ms", "604801s"},
        {"[backend \"b\"]", "connect_timeout", "1ms", "600s", "999us", "601s"},
        {"[backend \"b\"]", "timeout", "1ms", "24h", "0", "86401s"},
        {"[backend \"b\"]", "idle_timeout", "1ms", "1h", "999us", "3601s"},
        {"[backend \"b\"]", "max_connections", "1", "100000", "0", "100001"},
        {"[backend \"b\"]", "max_retries", "0", "10", NULL, "11"},
        {"[backend \"b\"]", "retry_base", "0", "60s", NULL, "61s"},
        {"[backend \"b\"]", "breaker_threshold", "0", "1000", NULL, "1001"},
        {"[backend \"b\"]", "breaker_cooldown", "0", "1h", NULL, "61m"},
        {"[backend \"b\"]", "probe_interval", "0", "24h", NULL, "1441m"},
        {"[backend \"b\"]", "mock_latency", "0", "10m", NULL, "601s"},
        {"[backend \"b\"]", "mock_chunks", "1", "10000", "0", "10001"},
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        const char *extra = strncmp(t[i].section, "[backend", 8) == 0 ? "type = mock\n" : "";
        const char *values[] = {t[i].lowest, t[i].highest, t[i].below, t[i].above};
        for (size_t v = 0; v < 4; v++) {
            if (!values[v])
                continue;
            char text[256];
            snprintf(text, sizeof(text), "%s\n%s = %s\n%s", t[i].section, t[i].key, values[v], extra);
            if (v < 2) {
                _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(text);
            } else {
                char want[256];
                snprintf(want, sizeof(want), PATH ":2: %s: \"%s\" is out of range", t[i].key, values[v]);
                parse_fails1(text, want);
            }
        }
    }
}

/* A value out of range leaves the default in place (checked through the
 * config a second, valid key in the same text would give: none). The
 * stored values at the ends, for a few keys of each width. */
static void test_range_values_stored(void **state) {
    _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(
        "[server]\nworkers = 256\nmax_body = 1G\nmax_sse_event = 64M\n"
        "[ratelimit]\nrequests_per_minute = 1000000000\n"
        "[webhook]\nsession_ttl = 168h\n"
        "[backend \"b\"]\ntype = mock\nmock_chunks = 10000\ntimeout = 24h\n");
    assert_int_equal(c->server.workers, 256);
    assert_true(c->server.max_body == 1ULL << 30);
    assert_true(c->server.max_sse_event == 64ULL << 20);
    assert_int_equal(c->ratelimit.requests_per_minute, 1000000000);
    assert_true(c->webhook.session_ttl_usec == 7 * 24 * 3600 * USEC_PER_SEC);
    assert_int_equal(c->backends[0].mock_chunks, 10000);
    assert_true(c->backends[0].timeout_usec == 24 * 3600 * USEC_PER_SEC);
}

static void test_duplicate_names(void **state) {
    parse_fails1("[backend \"b\"]\ntype = mock\n[backend \"b\"]\ntype = openai\n",
                 PATH ":3: backend \"b\" is defined twice");
    parse_fails1("[backend \"b\"]\ntype = mock\n[model \"m\"]\nbackend = b\n[model \"m\"]\nbackend = b\n",
                 PATH ":5: model \"m\" is defined twice");
    /* the second override of the same tag would never be used */
    parse_fails1("[webhook \"tag:x\"]\nsystem_prompt = a\n[webhook \"tag:x\"]\nsystem_prompt = b\n",
                 PATH ":3: [webhook \"tag:x\"] is defined twice");
    /* names are case-sensitive; a backend and a model may share a name;
     * tag: and intent: with the same name are different overrides */
    _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(
        "[backend \"m\"]\ntype = mock\n[backend \"M\"]\ntype = mock\n[model \"m\"]\nbackend = m\n"
        "[webhook \"tag:x\"]\n[webhook \"intent:x\"]\n");
    assert_int_equal(c->n_backends, 2);
    assert_int_equal(c->n_models, 1);
    assert_int_equal(c->webhook.n_overrides, 2);
}

/* More sections than the parser keeps: an error, not a crash (regression:
 * the 257th section's keys were written through a NULL pointer). */
static void test_too_many_sections(void **state) {
    static const struct {
        const char *prefix;
        unsigned prefix_lines;
        const char *before, *after; /* a section: before N after */
        const char *header;         /* of the 257th */
    } t[] = {
        {"", 0, "[backend \"b", "\"]\ntype = mock\n", "backend \"b256\""},
        {"[backend \"b\"]\ntype = mock\n", 2, "[model \"m", "\"]\nbackend = b\n", "model \"m256\""},
        {"", 0, "[webhook \"tag:t", "\"]\nsystem_prompt = p\n", "webhook \"tag:t256\""},
    };
    for (size_t k = 0; k < ELEMENTSOF(t); k++) {
        size_t size = 64 * 1024, len = 0;
        _cleanup_free_ char *text = malloc(size);
        assert_non_null(text);
        len += (size_t)snprintf(text + len, size - len, "%s", t[k].prefix);
        for (int i = 0; i < 256; i++)
            len += (size_t)snprintf(text + len, size - len, "%s%d%s", t[k].before, i, t[k].after);
        {
            /* 256 of a kind are fine */
            _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(text);
            assert_int_equal(k == 0 ? c->n_backends : k == 1 ? c->n_models : c->webhook.n_overrides, 256);
        }
        /* the 257th is an error, its keys are ignored, parsing goes on */
        len += (size_t)snprintf(text + len, size - len, "%s%d%s", t[k].before, 256, t[k].after);
        len += (size_t)snprintf(text + len, size - len, "[server]\nworkers = x\n");
        char want[256], want2[256];
        unsigned line = t[k].prefix_lines + 2 * 256 + 1;
        snprintf(want, sizeof(want), PATH ":%u: [%s]: too many sections (at most 256)", line, t[k].header);
        snprintf(want2, sizeof(want2), PATH ":%u: workers: \"x\" is not a non-negative integer", line + 3);
        const char *w[] = {want, want2, NULL};
        parse_fails(text, w);
    }
}

static void test_resolve_errors(void **state) {
    static const struct {
        const char *text;
        const char *want;
    } t[] = {
        {"[backend \"b\"]\ntype = mock\n[model \"m\"]\nbackend = nope\n",
         PATH ":3: model \"m\": backend \"nope\" is not defined"},
        {"[model \"m\"]\nupstream_model = x\n", PATH ":1: model \"m\": backend is not set"},
        {"[model \"m\"]\n", PATH ":1: model \"m\": backend is not set"},
        {"[backend \"b\"]\ntype = mock\n[model \"m\"]\nbackend = b\nfallbacks = nope\n",
         PATH ":3: model \"m\": fallback \"nope\" is not a defined model"},
        {"[backend \"b\"]\ntype = mock\n[model \"m\"]\nbackend = b\nfallbacks = m\n",
         PATH ":3: model \"m\": lists itself as a fallback"},
        {"[server]\ndefault_model = nope\n", PATH ": [server] default_model \"nope\" is not a defined model"},
        {"[server]\ntls_certificate = /c.pem\n", PATH ": [server] tls_certificate and tls_key must be set together"},
        {"[server]\ntls_key = /k.pem\n", PATH ": [server] tls_certificate and tls_key must be set together"},
        {"[auth]\nkeys_file = /k\nkeys_credential = aigw-keys\n",
         PATH ": [auth] set only one of keys_file and keys_credential"},
        {"[auth]\nrequired = yes\n", PATH ": [auth] required = yes needs keys_file or keys_credential"},
        {"[auth]\nrequired = on\nmetrics_key_credential = x\n",
         PATH ": [auth] required = yes needs keys_file or keys_credential"},
        {"[webhook]\nmodel = nope\n", PATH ": [webhook] model \"nope\" is not a defined model"},
        {"[webhook \"intent:x\"]\nmodel = nope\n", PATH ": [webhook \"intent:x\"] model \"nope\" is not a defined model"},
        {"[webhook]\nheader_name = x-token\n", PATH ": [webhook] header_name needs header_value_credential"},
        {"[backend \"b\"]\ntype = mock\napi_key_env = A\napi_key_file = /f\n",
         PATH ":1: backend \"b\": set only one of api_key_credential, api_key_env, api_key_file"},
        {"[backend \"b\"]\ntype = mock\napi_key_env = A\napi_key_credential = c\n",
         PATH ":1: backend \"b\": set only one of api_key_credential, api_key_env, api_key_file"},
        {"[backend \"b\"]\ntype = mock\napi_key_file = /f\napi_key_credential = c\n",
         PATH ":1: backend \"b\": set only one of api_key_credential, api_key_env, api_key_file"},
        {"[backend \"b\"]\ntype = mock\napi_key_env = A\napi_key_file = /f\napi_key_credential = c\n",
         PATH ":1: backend \"b\": set only one of api_key_credential, api_key_env, api_key_file"},
        {"[backend \"b\"]\ntype = openai\n", PATH ":1: backend \"b\": type openai needs url (e.g. http://127.0.0.1:4000)"},
        {"# x\n[backend \"b\"]\nmax_retries = 1\n",
         PATH ":2: backend \"b\": type openai needs url (e.g. http://127.0.0.1:4000)"},
        {"[backend \"b\"]\ntype = mock\napi_key_credential = /etc/credstore/key\n",
         PATH ":1: backend \"b\": api_key_credential must be a credential name, not a path"},
        {"[backend \"b\"]\ntype = mock\napi_key_credential = a/b\n",
         PATH ":1: backend \"b\": api_key_credential must be a credential name, not a path"},
        {"[backend \"b\"]\ntype = mock\napi_key_credential = my key\n",
         PATH ":1: backend \"b\": api_key_credential must be a credential name, not a path"},
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++)
        parse_fails1(t[i].text, t[i].want);

    /* a model whose backend is missing gets no further checks; one whose
     * backend is undefined still has its fallbacks checked */
    const char *w[] = {PATH ":1: model \"a\": backend \"x\" is not defined",
                       PATH ":1: model \"a\": fallback \"y\" is not a defined model", NULL};
    parse_fails("[model \"a\"]\nbackend = x\nfallbacks = y\n", w);
}

static void test_resolve_ok(void **state) {
    _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(
        /* models may come before their backend and name later models as fallbacks */
        "[server]\ndefault_model = b\ntls_certificate = /c\ntls_key = /k\n"
        "[webhook]\nmodel = a\nheader_name = x-token\nheader_value_credential = tok\n"
        "[webhook \"tag:t\"]\nmodel = b\n"
        "[model \"a\"]\nbackend = mock\nfallbacks = b\n"
        "[model \"b\"]\nbackend = mock\nfallbacks = a\n"
        "[backend \"mock\"]\ntype = mock\napi_key_credential = mock.key_1@x:y\n");
    assert_ptr_equal(c->models[0].backend, &c->backends[0]);
    assert_ptr_equal(c->models[1].backend, &c->backends[0]);
    assert_string_equal(c->models[0].upstream_model, "a");
    assert_string_equal(c->server.default_model, "b");
}

static void test_several_errors(void **state) {
    const char *text =
        "[server]\n"                       /* 1 */
        "workers = many\n"                 /* 2 */
        "default_model = ghost\n"          /* 3 */
        "tls_key = /k\n"                   /* 4 */
        "[log]\n"                          /* 5 */
        "level = loud\n"                   /* 6 */
        "colour = yes\n"                   /* 7 */
        "[nonsense]\n"                     /* 8 */
        "x = 1\n"                          /* 9 */
        "[auth]\n"                         /* 10 */
        "required = yes\n"                 /* 11 */
        "[backend \"a\"]\n"                /* 12 */
        "max_retries = 11\n"               /* 13 */
        "[backend \"a\"]\n"                /* 14 */
        "type = mock\n"                    /* 15 */
        "[model \"m\"]\n"                  /* 16 */
        "backend = nope\n"                 /* 17 */
        "backend = a\n"                    /* 18 */
        "fallbacks = m\n"                  /* 19 */
        "[webhook]\n"                      /* 20 */
        "header_name = x\n"                /* 21 */
        "garbage\n";                       /* 22 */
    const char *w[] = {
        PATH ":2: workers: \"many\" is not a non-negative integer",
        PATH ":6: level: \"loud\" is not one of err, warning, notice, info, debug",
        PATH ":7: unknown key \"colour\" in section [log]",
        UNKNOWN_SECTION(8, "nonsense"),
        PATH ":13: max_retries: \"11\" is out of range",
        PATH ":14: backend \"a\" is defined twice",
        PATH ":18: key \"backend\" is set twice in section [model \"m\"]",
        NULL,
    };
    /* more than MAX_WANT: checked by hand */
    struct aigw_config *c = SENTINEL;
    struct aigw_config_errors e = {0};
    assert_int_equal(config_parse_string(text, PATH, &c, &e), -EINVAL);
    assert_ptr_equal(c, SENTINEL);
    const char *rest[] = {
        PATH ":22: syntax error (expected [section], key = value, or a # comment)",
        PATH ": [auth] required = yes needs keys_file or keys_credential",
        PATH ":12: backend \"a\": type openai needs url (e.g. http://127.0.0.1:4000)",
        PATH ":16: model \"m\": backend \"nope\" is not defined",
        PATH ":16: model \"m\": lists itself as a fallback",
        PATH ": [server] default_model \"ghost\" is not a defined model",
        PATH ": [server] tls_certificate and tls_key must be set together",
        PATH ": [webhook] header_name needs header_value_credential",
    };
    if (e.n != 7 + ELEMENTSOF(rest))
        dump_errors(&e);
    assert_int_equal(e.n, 7 + ELEMENTSOF(rest));
    for (size_t i = 0; i < 7; i++)
        assert_string_equal(e.lines[i], w[i]);
    for (size_t i = 0; i < ELEMENTSOF(rest); i++)
        assert_string_equal(e.lines[7 + i], rest[i]);

    /* errors accumulate across calls until cleared; success adds none */
    struct aigw_config *c2 = SENTINEL;
    assert_int_equal(config_parse_string("[server]\nworkers = x\n", PATH, &c2, &e), -EINVAL);
    assert_int_equal(e.n, 7 + ELEMENTSOF(rest) + 1);
    assert_string_equal(e.lines[e.n - 1], PATH ":2: workers: \"x\" is not a non-negative integer");
    assert_int_equal(config_parse_string("[server]\nworkers = 2\n", PATH, &c2, &e), 0);
    assert_int_equal(e.n, 7 + ELEMENTSOF(rest) + 1);
    config_unref(c2);
    config_errors_clear(&e);
    config_errors_clear(&e); /* twice is fine */
    config_errors_clear(NULL);
}

/* The error list is bounded: a file full of errors reports 200. */
static void test_error_cap(void **state) {
    size_t size = 32 * 1024, len = 0;
    _cleanup_free_ char *text = malloc(size);
    assert_non_null(text);
    len += (size_t)snprintf(text + len, size - len, "[server]\n");
    for (int i = 0; i < 500; i++)
        len += (size_t)snprintf(text + len, size - len, "k%d = 1\n", i);
    struct aigw_config *c = SENTINEL;
    struct aigw_config_errors e = {0};
    assert_int_equal(config_parse_string(text, PATH, &c, &e), -EINVAL);
    assert_int_equal(e.n, 200);
    assert_string_equal(e.lines[0], PATH ":2: unknown key \"k0\" in section [server]");
    assert_string_equal(e.lines[199], PATH ":201: unknown key \"k199\" in section [server]");
    config_errors_clear(&e);
}

static void test_path_in_messages(void **state) {
    struct aigw_config *c = SENTINEL;
    struct aigw_config_errors e = {0};
    assert_int_equal(config_parse_string("[x]\n", NULL, &c, &e), -EINVAL);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.lines[0], "<string>:1: unknown section [x] (expected server, log, auth, ratelimit, "
                                    "webhook, backend \"NAME\", model \"NAME\" or webhook \"tag:NAME\")");
    config_errors_clear(&e);
    assert_int_equal(config_parse_string("", NULL, &c, &e), 0);
    assert_string_equal(c->path, "<string>");
    config_unref(c);
}

/* ---- ref counting ---------------------------------------------------------------------- */

static void test_ref_unref(void **state) {
    struct aigw_config *c = parse_ok("[backend \"b\"]\ntype = mock\n[model \"m\"]\nbackend = b\n");
    assert_ptr_equal(config_ref(c), c);
    assert_int_equal(atomic_load(&c->refcount), 2);
    assert_ptr_equal(config_ref(c), c);
    assert_int_equal(atomic_load(&c->refcount), 3);
    assert_null(config_unref(c));
    assert_int_equal(atomic_load(&c->refcount), 2);
    assert_null(config_unref(c));
    assert_int_equal(atomic_load(&c->refcount), 1);
    assert_string_equal(c->models[0].name, "m"); /* still alive */
    assert_null(config_unref(c));                /* freed: ASan/valgrind see any leak or reuse */
    assert_null(config_ref(NULL));
    assert_null(config_unref(NULL));
}

/* ---- files ----------------------------------------------------------------------------- */

struct tmpdir {
    char path[64];
};

static void tmpdir_make(struct tmpdir *d) {
    snprintf(d->path, sizeof(d->path), "/tmp/aigw-test-config-XXXXXX");
    assert_non_null(mkdtemp(d->path));
}

static void write_file(const char *path, const void *data, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static void tmpdir_file(const struct tmpdir *d, const char *name, char *ret, size_t size) {
    snprintf(ret, size, "%s/%s", d->path, name);
}

static void tmpdir_remove(struct tmpdir *d, const char *const *names, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char p[256];
        tmpdir_file(d, names[i], p, sizeof(p));
        (void)unlink(p);
    }
    assert_int_equal(rmdir(d->path), 0);
}

static void test_parse_file(void **state) {
    struct tmpdir d;
    tmpdir_make(&d);
    char good[256], nul[256], bad[256], big[256], missing[256];
    tmpdir_file(&d, "good.conf", good, sizeof(good));
    tmpdir_file(&d, "nul.conf", nul, sizeof(nul));
    tmpdir_file(&d, "bad.conf", bad, sizeof(bad));
    tmpdir_file(&d, "big.conf", big, sizeof(big));
    tmpdir_file(&d, "missing.conf", missing, sizeof(missing));

    static const char good_text[] = "[server]\nworkers = 3\n";
    write_file(good, good_text, sizeof(good_text) - 1);
    {
        struct aigw_config *c = NULL;
        struct aigw_config_errors e = {0};
        assert_int_equal(config_parse_file(good, &c, &e), 0);
        assert_int_equal(e.n, 0);
        assert_string_equal(c->path, good);
        assert_int_equal(c->server.workers, 3);
        config_unref(c);
    }

    /* a NUL byte: the parser would stop there and miss [bogus] */
    static const char nul_text[] = "[server]\nworkers = 4\n\0[bogus]\n";
    write_file(nul, nul_text, sizeof(nul_text) - 1);
    static const char bad_text[] = "[server]\n\nworkers = -4\n";
    write_file(bad, bad_text, sizeof(bad_text) - 1);

    const struct {
        const char *path;
        int r;
        const char *suffix;
    } t[] = {
        {nul, -EINVAL, ": contains a NUL byte"},
        {bad, -EINVAL, ":3: workers: \"-4\" is not a non-negative integer"},
        {missing, -ENOENT, ": cannot read: No such file or directory"},
        {d.path, -EINVAL, ": cannot read: Invalid argument"}, /* a directory */
        {big, -EFBIG, ": cannot read: File too large"},
    };
    /* larger than 1 MiB */
    size_t big_len = (1 << 20) + 1;
    _cleanup_free_ char *big_text = malloc(big_len);
    assert_non_null(big_text);
    memset(big_text, '\n', big_len);
    write_file(big, big_text, big_len);

    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        struct aigw_config *c = SENTINEL;
        struct aigw_config_errors e = {0};
        char want[512];
        snprintf(want, sizeof(want), "%s%s", t[i].path, t[i].suffix);
        assert_int_equal(config_parse_file(t[i].path, &c, &e), t[i].r);
        assert_ptr_equal(c, SENTINEL);
        assert_int_equal(e.n, 1);
        assert_string_equal(e.lines[0], want);
        config_errors_clear(&e);
    }

    /* exactly 1 MiB is accepted */
    big_text[0] = '#';
    write_file(big, big_text, big_len - 1);
    {
        struct aigw_config *c = NULL;
        struct aigw_config_errors e = {0};
        assert_int_equal(config_parse_file(big, &c, &e), 0);
        config_unref(c);
    }

    static const char *const names[] = {"good.conf", "nul.conf", "bad.conf", "big.conf"};
    tmpdir_remove(&d, names, ELEMENTSOF(names));
}

/* ---- secrets --------------------------------------------------------------------------- */

static void test_read_secret(void **state) {
    struct tmpdir d;
    tmpdir_make(&d);
    char p[256];
    tmpdir_file(&d, "s", p, sizeof(p));

    static const struct {
        const char *content;
        size_t len;
        int r;
        const char *value;
    } t[] = {
        {"sk-123", 6, 0, "sk-123"},
        {"sk-123\n", 7, 0, "sk-123"},
        {"sk-123\r\n", 8, 0, "sk-123"},
        {"sk-123\n\n\n", 9, 0, "sk-123"},
        {"user:pass word\n", 15, 0, "user:pass word"},
        {"a\nb\n", 4, 0, "a\nb"},      /* inner newlines are kept */
        {" sk \n", 5, 0, " sk "},      /* white space other than newlines too */
        {"", 0, -EINVAL, NULL},        /* empty */
        {"\n", 1, -EINVAL, NULL},      /* only a newline */
        {"\r\n\n", 3, -EINVAL, NULL},
        {"sk\0x\n", 5, -EINVAL, NULL}, /* binary */
        {"\0", 1, -EINVAL, NULL},
    };
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        write_file(p, t[i].content, t[i].len);
        char *v = (char *)SENTINEL;
        assert_int_equal(config_read_secret(p, &v), t[i].r);
        if (t[i].r == 0) {
            assert_string_equal(v, t[i].value);
            free(v);
        } else
            assert_ptr_equal(v, SENTINEL);
    }

    /* 4096 bytes is the most */
    char buf[4097];
    memset(buf, 'k', sizeof(buf));
    write_file(p, buf, 4096);
    char *v = NULL;
    assert_int_equal(config_read_secret(p, &v), 0);
    assert_int_equal(strlen(v), 4096);
    free(v);
    write_file(p, buf, 4097);
    v = (char *)SENTINEL;
    assert_int_equal(config_read_secret(p, &v), -EFBIG);
    assert_ptr_equal(v, SENTINEL);

    char missing[256];
    tmpdir_file(&d, "missing", missing, sizeof(missing));
    assert_int_equal(config_read_secret(missing, &v), -ENOENT);
    assert_int_equal(config_read_secret(d.path, &v), -EINVAL); /* a directory */
    assert_ptr_equal(v, SENTINEL);

    static const char *const names[] = {"s"};
    tmpdir_remove(&d, names, ELEMENTSOF(names));
}

static void test_credential_path(void **state) {
    char *p = (char *)SENTINEL;
    assert_int_equal(unsetenv("CREDENTIALS_DIRECTORY"), 0);
    assert_int_equal(config_credential_path("x", &p), -ENXIO);
    assert_int_equal(setenv("CREDENTIALS_DIRECTORY", "", 1), 0);
    assert_int_equal(config_credential_path("x", &p), -ENXIO);
    assert_ptr_equal(p, SENTINEL);
    assert_int_equal(setenv("CREDENTIALS_DIRECTORY", "/run/credentials/aigw.service", 1), 0);
    assert_int_equal(config_credential_path("gemini-api-key", &p), 0);
    assert_string_equal(p, "/run/credentials/aigw.service/gemini-api-key");
    free(p);
    assert_int_equal(unsetenv("CREDENTIALS_DIRECTORY"), 0);
}

static void test_load_secrets(void **state) {
    struct tmpdir d;
    tmpdir_make(&d);
    char file_key[256], empty[256], cred_key[256], cred_empty[256];
    tmpdir_file(&d, "file.key", file_key, sizeof(file_key));
    tmpdir_file(&d, "empty.key", empty, sizeof(empty));
    tmpdir_file(&d, "litellm-api-key", cred_key, sizeof(cred_key));
    tmpdir_file(&d, "empty-cred", cred_empty, sizeof(cred_empty));
    write_file(file_key, "sk-file\n", 8);
    write_file(empty, "\n", 1);
    write_file(cred_key, "sk-cred\r\n", 9);
    write_file(cred_empty, "", 0);

    char text[1024];
    snprintf(text, sizeof(text),
             "[backend \"env\"]\ntype = mock\napi_key_env = AIGW_TEST_KEY\n"
             "[backend \"file\"]\ntype = mock\napi_key_file = %s\n"
             "[backend \"cred\"]\ntype = mock\napi_key_credential = litellm-api-key\n"
             "[backend \"cred-missing\"]\ntype = mock\napi_key_credential = no-such-credential\n"
             "[backend \"none\"]\ntype = mock\n",
             file_key);
    _cleanup_(config_unrefp) struct aigw_config *c = parse_ok(text);
    const struct aigw_backend_conf *b_env = config_find_backend(c, "env"), *b_file = config_find_backend(c, "file"),
                                    *b_cred = config_find_backend(c, "cred"),
                                    *b_cm = config_find_backend(c, "cred-missing"),
                                    *b_none = config_find_backend(c, "none");
    struct aigw_config_errors e = {0};

    /* nothing set in the environment: every key NULL, no error */
    assert_int_equal(unsetenv("AIGW_TEST_KEY"), 0);
    assert_int_equal(unsetenv("CREDENTIALS_DIRECTORY"), 0);
    assert_int_equal(config_load_secrets(c, &e), 0);
    assert_int_equal(e.n, 0);
    assert_null(b_env->api_key);
    assert_string_equal(b_file->api_key, "sk-file");
    assert_null(b_cred->api_key); /* not run with credentials */
    assert_null(b_cm->api_key);
    assert_null(b_none->api_key);

    /* now with both; loading again replaces the previous keys */
    assert_int_equal(setenv("AIGW_TEST_KEY", "sk-env", 1), 0);
    assert_int_equal(setenv("CREDENTIALS_DIRECTORY", d.path, 1), 0);
    assert_int_equal(config_load_secrets(c, &e), 0);
    assert_int_equal(e.n, 0);
    assert_string_equal(b_env->api_key, "sk-env");
    assert_string_equal(b_file->api_key, "sk-file");
    assert_string_equal(b_cred->api_key, "sk-cred");
    assert_null(b_cm->api_key); /* a missing credential file is not an error */
    assert_null(b_none->api_key);

    /* an empty environment variable is no key */
    assert_int_equal(setenv("AIGW_TEST_KEY", "", 1), 0);
    assert_int_equal(config_load_secrets(c, &e), 0);
    assert_null(b_env->api_key);
    assert_int_equal(unsetenv("AIGW_TEST_KEY"), 0);

    /* the key file vanished: an error, and the other keys still load */
    assert_int_equal(unlink(file_key), 0);
    assert_int_equal(config_load_secrets(c, &e), -EINVAL);
    assert_int_equal(e.n, 1);
    char want[512];
    snprintf(want, sizeof(want), PATH ": backend \"file\": api_key_file: cannot read %s: No such file or directory",
             file_key);
    assert_string_equal(e.lines[0], want);
    assert_null(b_file->api_key);
    assert_string_equal(b_cred->api_key, "sk-cred");
    config_errors_clear(&e);

    /* empty files, configured either way, are errors; each is reported */
    char text2[1024];
    snprintf(text2, sizeof(text2),
             "[backend \"a\"]\ntype = mock\napi_key_file = %s\n"
             "[backend \"b\"]\ntype = mock\napi_key_credential = empty-cred\n"
             "[backend \"c\"]\ntype = mock\napi_key_file = %s\n",
             empty, d.path);
    _cleanup_(config_unrefp) struct aigw_config *c2 = parse_ok(text2);
    assert_int_equal(config_load_secrets(c2, &e), -EINVAL);
    assert_int_equal(e.n, 3);
    snprintf(want, sizeof(want), PATH ": backend \"a\": api_key_file: cannot read %s: empty or binary file", empty);
    assert_string_equal(e.lines[0], want);
    snprintf(want, sizeof(want), PATH ": backend \"b\": api_key_credential: cannot read %s: empty or binary file",
             cred_empty);
    assert_string_equal(e.lines[1], want);
    /* a directory: read_small_file refuses non-regular files with -EINVAL */
    snprintf(want, sizeof(want), PATH ": backend \"c\": api_key_file: cannot read %s: empty or binary file", d.path);
    assert_string_equal(e.lines[2], want);
    assert_null(c2->backends[0].api_key);
    assert_null(c2->backends[1].api_key);
    config_errors_clear(&e);

    assert_int_equal(unsetenv("CREDENTIALS_DIRECTORY"), 0);
    static const char *const names[] = {"file.key", "empty.key", "litellm-api-key", "empty-cred"};
    tmpdir_remove(&d, names, ELEMENTSOF(names));
}

/* ---- the shipped aigw.conf --------------------------------------------------------------- */

static void test_repo_config(void **state) {
    const char *dir = getenv("AIGW_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/aigw.conf", dir && *dir ? dir : ".");
    struct aigw_config *c = NULL;
    struct aigw_config_errors e = {0};
    int r = config_parse_file(path, &c, &e);
    dump_errors(&e);
    assert_int_equal(r, 0);
    assert_int_equal(e.n, 0);

    static const char *const models[] = {"mock",           "mistral-7b-instruct", "phi-3-mini",
                                         "llama3.2-3b",    "gemini-1.5-flash",    "gemini-1.5-pro"};
    for (size_t i = 0; i < ELEMENTSOF(models); i++) {
        const struct aigw_model_conf *m = config_find_model(c, models[i]);
        if (!m)
            print_message("model %s missing\n", models[i]);
        assert_non_null(m);
        assert_non_null(m->backend);
    }
    bool gemini2 = false;
    for (size_t i = 0; i < c->n_models; i++)
        if (strncmp(c->models[i].name, "gemini-2.", 9) == 0) {
            gemini2 = true;
            assert_int_equal(c->models[i].backend->type, AIGW_BACKEND_GEMINI);
        }
    assert_true(gemini2);

    assert_string_equal(c->server.default_model, "mock");
    assert_int_equal(config_find_model(c, "mock")->backend->type, AIGW_BACKEND_MOCK);
    const struct aigw_backend_conf *litellm = config_find_backend(c, "litellm");
    assert_non_null(litellm);
    assert_int_equal(litellm->type, AIGW_BACKEND_OPENAI);
    assert_string_equal(litellm->url, "http://127.0.0.1:4000");
    assert_ptr_equal(config_find_model(c, "mistral-7b-instruct")->backend, litellm);
    assert_ptr_equal(config_find_model(c, "phi-3-mini")->backend, litellm);
    assert_ptr_equal(config_find_model(c, "llama3.2-3b")->backend, litellm);
    const struct aigw_backend_conf *gemini = config_find_backend(c, "gemini");
    assert_non_null(gemini);
    assert_ptr_equal(config_find_model(c, "gemini-1.5-flash")->backend, gemini);
    assert_ptr_equal(config_find_model(c, "gemini-1.5-pro")->backend, gemini);
    /* the documented multi-line system prompt */
    assert_non_null(c->webhook.system_prompt);
    assert_non_null(strchr(c->webhook.system_prompt, '\n'));
    /* no keys in the shipped file: open, as documented */
    assert_false(c->auth.required);
    config_unref(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_bool),
        cmocka_unit_test(test_backend_type_to_string),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_server_values),
        cmocka_unit_test(test_log_values),
        cmocka_unit_test(test_auth_values),
        cmocka_unit_test(test_ratelimit_values),
        cmocka_unit_test(test_webhook_values),
        cmocka_unit_test(test_backend_values),
        cmocka_unit_test(test_gemini_explicit_url),
        cmocka_unit_test(test_model_values),
        cmocka_unit_test(test_long_section_names),
        cmocka_unit_test(test_continuation_lines),
        cmocka_unit_test(test_line_forms),
        cmocka_unit_test(test_line_too_long),
        cmocka_unit_test(test_section_errors),
        cmocka_unit_test(test_key_errors),
        cmocka_unit_test(test_value_errors),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_range_values_stored),
        cmocka_unit_test(test_duplicate_names),
        cmocka_unit_test(test_too_many_sections),
        cmocka_unit_test(test_resolve_errors),
        cmocka_unit_test(test_resolve_ok),
        cmocka_unit_test(test_several_errors),
        cmocka_unit_test(test_error_cap),
        cmocka_unit_test(test_path_in_messages),
        cmocka_unit_test(test_ref_unref),
        cmocka_unit_test(test_parse_file),
        cmocka_unit_test(test_read_secret),
        cmocka_unit_test(test_credential_path),
        cmocka_unit_test(test_load_secrets),
        cmocka_unit_test(test_repo_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
