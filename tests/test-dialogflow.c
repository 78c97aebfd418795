/* SPDX-License-Identifier: MIT */

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aigw/dialogflow.h"
#include "aigw/macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete)
DEFINE_TRIVIAL_CLEANUP_FUNC(FILE *, fclose)

#define REPLY "It's 21 \xc2\xb0" "C and \"sunny\" \xe2\x80\x93 enjoy!"
#define EXPECTED_SHAPE                                                                             \
    "expected a Dialogflow ES request (queryResult.queryText, session) or a CX request "            \
    "(sessionInfo.session with text or transcript)"
#define MAX_TEXT 4096

static char *read_data_file(const char *name, const char *suffix) {
    const char *dir = getenv("AIGW_TEST_DATA_DIR");
    char path[1024];
    _cleanup_(fclosep) FILE *f = NULL;
    char *buf;
    size_t n;
    int k;

    if (!dir)
        dir = "tests/data";
    k = snprintf(path, sizeof(path), "%s/dialogflow/%s.%s.json", dir, name, suffix);
    assert_true(k > 0 && (size_t)k < sizeof(path));
    f = fopen(path, "re");
    if (!f)
        fail_msg("cannot open %s (set AIGW_TEST_DATA_DIR)", path);
    buf = malloc(1024 * 1024);
    assert_non_null(buf);
    n = fread(buf, 1, 1024 * 1024 - 1, f);
    assert_false(ferror(f));
    assert_true(feof(f));
    buf[n] = '\0';
    return buf;
}

static void parse_ok(const char *body, struct aigw_df_request *req) {
    char err[256] = "";
    int r = aigw_dialogflow_parse(body, strlen(body), MAX_TEXT, req, err, sizeof(err));

    if (r != 0)
        fail_msg("parse failed (%d): %s", r, err);
}

static void assert_str_or_null(const char *actual, const char *expected) {
    if (!expected)
        assert_null(actual);
    else {
        assert_non_null(actual);
        assert_string_equal(actual, expected);
    }
}

/* ---- sample files ---------------------------------------------------- */

static const struct sample {
    const char *name;
    enum aigw_df_kind kind;
    const char *session, *text, *language, *intent, *tag;
    int n_params; /* -1: parameters NULL */
} samples[] = {
    {"es-weather-en", AIGW_DF_ES,
     "projects/weather-agent-3f2a1/agent/sessions/9b2d7c4e-51aa-4f0e-8d63-2c9e0b7f1a44",
     "What's the weather in Berlin tomorrow?", "en", "weather.forecast", NULL, 2},
    {"es-booking-de", AIGW_DF_ES,
     "projects/restaurant-bot-77c1e/agent/environments/prod/users/-/sessions/"
     "c3f0a9d1-6e2b-4c8f-b5a7-1d9e4f2a6b3c",
     "Ich m\xc3\xb6" "chte f\xc3\xbc" "r morgen Abend einen Tisch f\xc3\xbc"
     "r vier Personen reservieren",
     "de", "Tisch reservieren \xe2\x80\x93 Abend", NULL, 5},
    {"cx-text-tag", AIGW_DF_CX,
     "projects/shop-cx-1234/locations/global/agents/8a7b6c5d-4e3f-2a1b-0c9d-8e7f6a5b4c3d/"
     "sessions/session-7f3e9a",
     "Where is my order A-1234?", "en", "order.status", "llm-answer", 3},
    {"cx-transcript", AIGW_DF_CX,
     "projects/voice-helper-42/locations/europe-west3/agents/"
     "2b3c4d5e-6f7a-8b9c-0d1e-2f3a4b5c6d7e/sessions/dfMessenger-123456",
     "wie sp\xc3\xa4t ist es in tokio", "de", "Default Welcome Intent", "smalltalk", -1},
    {"cx-trigger-intent", AIGW_DF_CX,
     "projects/shop-cx-1234/locations/global/agents/8a7b6c5d-4e3f-2a1b-0c9d-8e7f6a5b4c3d/"
     "sessions/welcome-01",
     "", "en", "Default Welcome Intent", "welcome", 1},
    {"cx-trigger-event", AIGW_DF_CX,
     "projects/shop-cx-1234/locations/global/agents/8a7b6c5d-4e3f-2a1b-0c9d-8e7f6a5b4c3d/"
     "sessions/session-7f3e9a",
     "", "en-us", NULL, "no-input-reprompt", 2},
};

static void test_samples(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(samples); i++) {
        const struct sample *s = &samples[i];
        _cleanup_free_ char *body = read_data_file(s->name, "request");
        _cleanup_free_ char *expected_text = read_data_file(s->name, "response");
        _cleanup_(aigw_df_request_clear) struct aigw_df_request req = {0};
        _cleanup_(cJSON_Deletep) cJSON *expected = NULL, *actual = NULL;
        _cleanup_free_ char *out = NULL;

        print_message("sample %s\n", s->name);
        parse_ok(body, &req);
        assert_int_equal(req.kind, s->kind);
        assert_string_equal(req.session, s->session);
        assert_string_equal(req.text, s->text);
        assert_str_or_null(req.language_code, s->language);
        assert_str_or_null(req.intent, s->intent);
        assert_str_or_null(req.tag, s->tag);
        if (s->n_params < 0)
            assert_null(req.parameters);
        else {
            assert_true(cJSON_IsObject(req.parameters));
            assert_int_equal(cJSON_GetArraySize(req.parameters), s->n_params);
        }

        assert_int_equal(aigw_dialogflow_render(&req, REPLY, &out), 0);
        assert_true(strlen(out) < AIGW_DF_RESPONSE_MAX);
        actual = cJSON_Parse(out);
        expected = cJSON_Parse(expected_text);
        assert_non_null(actual);
        assert_non_null(expected);
        if (!cJSON_Compare(expected, actual, true))
            fail_msg("%s: rendered %s", s->name, out);
    }
}

/* ---- parse: accepted edge cases -------------------------------------- */

static void test_parse_nulls_are_absent(void **state) {
    _cleanup_(aigw_df_request_clear) struct aigw_df_request req = {0};

    parse_ok("{\"session\":\"s\",\"queryResult\":{\"queryText\":null,\"intent\":null,"
             "\"parameters\":null,\"languageCode\":null}}",
             &req);
    assert_int_equal(req.kind, AIGW_DF_ES);
    assert_string_equal(req.session, "s");
    assert_string_equal(req.text, "");
    assert_null(req.language_code);
    assert_null(req.intent);
    assert_null(req.tag);
    assert_null(req.parameters);
}

static void test_parse_es_intent_without_name(void **state) {
    _cleanup_(aigw_df_request_clear) struct aigw_df_request req = {0};

    parse_ok("{\"session\":\"s\",\"queryResult\":{\"queryText\":\"hi\",\"intent\":{}}}", &req);
    assert_string_equal(req.text, "hi");
    assert_null(req.intent);
}

static void test_parse_es_ignores_tag_like_fields(void **state) {
    _cleanup_(aigw_df_request_clear) struct aigw_df_request req = {0};

    /* CX fields on an ES request are not read: no tag for ES. */
    parse_ok("{\"session\":\"s\",\"queryResult\":{},\"fulfillmentInfo\":{\"tag\":\"t\"},"
             "\"text\":\"x\"}",
             &req);
    assert_int_equal(req.kind, AIGW_DF_ES);
    assert_null(req.tag);
    assert_string_equal(req.text, "");
}

static void test_parse_cx_text_preferred(void **state) {
    _cleanup_(aigw_df_request_clear) struct aigw_df_request req = {0};

    parse_ok("{\"sessionInfo\":{\"session\":\"s\"},\"transcript\":\"spoken\",\"text\":\"typed\"}",
             &req);
    assert_int_equal(req.kind, AIGW_DF_CX);
    assert_string_equal(req.text, "typed");
    assert_null(req.parameters);
    assert_null(req.language_code);
}

static void test_parse_cx_empty_params_kept(void **state) {
    _cleanup_(aigw_df_request_clear) struct aigw_df_request req = {0};
    _cleanup_free_ char *out = NULL;

    parse_ok("{\"sessionInfo\":{\"session\":\"s\",\"parameters\":{}}}", &req);
    assert_non_null(req.parameters);
    assert_int_equal(aigw_dialogflow_render(&req, "ok", &out), 0);
    assert_string_equal(out, "{\"fulfillmentResponse\":{\"messages\":[{\"text\":{\"text\":[\"ok\"]}}"
                             "]},\"sessionInfo\":{\"parameters\":{}}}");
}

static void test_parse_not_nul_terminated(void **state) {
    _cleanup_(aigw_df_request_clear) struct aigw_df_request req = {0};
    const char body[] = "{\"sessionInfo\":{\"session\":\"s\"},\"text\":\"hi\"}GARBAGE";
    size_t len = strlen(body) - strlen("GARBAGE");

    assert_int_equal(aigw_dialogflow_parse(body, len, MAX_TEXT, &req, NULL, 0), 0);
    assert_string_equal(req.text, "hi");
}

static void test_parse_trailing_whitespace_and_escapes(void **state) {
    _cleanup_(aigw_df_request_clear) struct aigw_df_request req = {0};

    /* An escaped backslash followed by "u0000" is not a NUL escape. */
    parse_ok("{\"sessionInfo\":{\"session\":\"a\\\\u0000b\"},\"text\":\"\\u00e9\\ud83d\\ude00\"}"
             " \r\n\t",
             &req);
    assert_string_equal(req.session, "a\\u0000b");
    assert_string_equal(req.text, "\xc3\xa9\xf0\x9f\x98\x80");
}

static void test_parse_text_at_bound(void **state) {
    _cleanup_(aigw_df_request_clear) struct aigw_df_request req = {0};
    const char *body = "{\"sessionInfo\":{\"session\":\"s\"},\"text\":\"abcde\"}";

    assert_int_equal(aigw_dialogflow_parse(body, strlen(body), 5, &req, NULL, 0), 0);
    assert_string_equal(req.text, "abcde");
}

static void test_parse_session_at_bound(void **state) {
    _cleanup_(aigw_df_request_clear) struct aigw_df_request req = {0};
    char body[AIGW_DF_FIELD_MAX + 128];
    char session[AIGW_DF_FIELD_MAX + 2];
    char err[256] = "";
    int k;

    memset(session, 'x', AIGW_DF_FIELD_MAX);
    session[AIGW_DF_FIELD_MAX] = '\0';
    k = snprintf(body, sizeof(body), "{\"session\":\"%s\",\"queryResult\":{}}", session);
    assert_true(k > 0 && (size_t)k < sizeof(body));
    assert_int_equal(aigw_dialogflow_parse(body, (size_t)k, MAX_TEXT, &req, err, sizeof(err)), 0);
    assert_int_equal(strlen(req.session), AIGW_DF_FIELD_MAX);

    memset(session, 'x', AIGW_DF_FIELD_MAX + 1);
    session[AIGW_DF_FIELD_MAX + 1] = '\0';
    k = snprintf(body, sizeof(body), "{\"session\":\"%s\",\"queryResult\":{}}", session);
    assert_true(k > 0 && (size_t)k < sizeof(body));
    assert_int_equal(aigw_dialogflow_parse(body, (size_t)k, MAX_TEXT, &req, err, sizeof(err)),
                     -E2BIG);
    assert_string_equal(err, "session: longer than 1024 bytes");
}

/* ---- parse: every error path ----------------------------------------- */

static const struct bad {
    const char *body;
    size_t len; /* 0: strlen(body) */
    size_t max_text;
    int r;
    const char *msg;
} bad[] = {
    {"", 0, MAX_TEXT, -EINVAL, "empty body, " EXPECTED_SHAPE},
    {"{\"session\":\"\xff\"}", 0, MAX_TEXT, -EINVAL, "body is not valid UTF-8 text"},
    {"{\"a\":\"\xc0\xaf\"}", 0, MAX_TEXT, -EINVAL, "body is not valid UTF-8 text"},
    {"{\"a\":\"\xed\xa0\x80\"}", 0, MAX_TEXT, -EINVAL, "body is not valid UTF-8 text"},
    {"{\"a\":\"\xf4\x90\x80\x80\"}", 0, MAX_TEXT, -EINVAL, "body is not valid UTF-8 text"},
    {"{\"a\":\"\xe2\x82\"}", 0, MAX_TEXT, -EINVAL, "body is not valid UTF-8 text"},
    {"{\"a\":\"x\0\"}", 10, MAX_TEXT, -EINVAL, "body is not valid UTF-8 text"},
    {"{\"session\":\"a\\u0000b\",\"queryResult\":{}}", 0, MAX_TEXT, -EINVAL,
     "strings must not contain \\u0000"},
    {"{\"k\\\\\\u0000\":1}", 0, MAX_TEXT, -EINVAL, "strings must not contain \\u0000"},
    {"{", 0, MAX_TEXT, -EINVAL, "body is not valid JSON"},
    {"{\"a\":1,}", 0, MAX_TEXT, -EINVAL, "body is not valid JSON"},
    {"{} {}", 0, MAX_TEXT, -EINVAL, "trailing data after the JSON value"},
    {"{}x", 0, MAX_TEXT, -EINVAL, "trailing data after the JSON value"},
    {"[]", 0, MAX_TEXT, -EINVAL, "body is not a JSON object, " EXPECTED_SHAPE},
    {"\"session\"", 0, MAX_TEXT, -EINVAL, "body is not a JSON object, " EXPECTED_SHAPE},
    {"{}", 0, MAX_TEXT, -EINVAL, EXPECTED_SHAPE},
    {"{\"session\":\"s\",\"text\":\"hi\"}", 0, MAX_TEXT, -EINVAL, EXPECTED_SHAPE},
    {"{\"queryResult\":{},\"sessionInfo\":{}}", 0, MAX_TEXT, -EINVAL,
     "ambiguous request with both queryResult (ES) and sessionInfo (CX)"},
    /* ES */
    {"{\"queryResult\":[],\"session\":\"s\"}", 0, MAX_TEXT, -EINVAL,
     "queryResult: expected an object"},
    {"{\"queryResult\":{}}", 0, MAX_TEXT, -EINVAL, "session: missing, expected a non-empty string"},
    {"{\"queryResult\":{},\"session\":null}", 0, MAX_TEXT, -EINVAL,
     "session: missing, expected a non-empty string"},
    {"{\"queryResult\":{},\"session\":\"\"}", 0, MAX_TEXT, -EINVAL,
     "session: expected a non-empty string"},
    {"{\"queryResult\":{},\"session\":5}", 0, MAX_TEXT, -EINVAL, "session: expected a string"},
    {"{\"queryResult\":{\"queryText\":1},\"session\":\"s\"}", 0, MAX_TEXT, -EINVAL,
     "queryResult.queryText: expected a string"},
    {"{\"queryResult\":{\"queryText\":\"abcdef\"},\"session\":\"s\"}", 0, 5, -E2BIG,
     "queryResult.queryText: longer than 5 bytes"},
    {"{\"queryResult\":{\"languageCode\":true},\"session\":\"s\"}", 0, MAX_TEXT, -EINVAL,
     "queryResult.languageCode: expected a string"},
    {"{\"queryResult\":{\"intent\":\"x\"},\"session\":\"s\"}", 0, MAX_TEXT, -EINVAL,
     "queryResult.intent: expected an object"},
    {"{\"queryResult\":{\"intent\":{\"displayName\":1}},\"session\":\"s\"}", 0, MAX_TEXT, -EINVAL,
     "queryResult.intent.displayName: expected a string"},
    {"{\"queryResult\":{\"parameters\":[]},\"session\":\"s\"}", 0, MAX_TEXT, -EINVAL,
     "queryResult.parameters: expected an object"},
    /* CX */
    {"{\"sessionInfo\":\"x\"}", 0, MAX_TEXT, -EINVAL, "sessionInfo: expected an object"},
    {"{\"sessionInfo\":{}}", 0, MAX_TEXT, -EINVAL,
     "sessionInfo.session: missing, expected a non-empty string"},
    {"{\"sessionInfo\":{\"session\":\"\"}}", 0, MAX_TEXT, -EINVAL,
     "sessionInfo.session: expected a non-empty string"},
    {"{\"sessionInfo\":{\"session\":[]}}", 0, MAX_TEXT, -EINVAL,
     "sessionInfo.session: expected a string"},
    {"{\"sessionInfo\":{\"session\":\"s\",\"parameters\":1}}", 0, MAX_TEXT, -EINVAL,
     "sessionInfo.parameters: expected an object"},
    {"{\"sessionInfo\":{\"session\":\"s\"},\"text\":1}", 0, MAX_TEXT, -EINVAL,
     "text: expected a string"},
    {"{\"sessionInfo\":{\"session\":\"s\"},\"text\":\"abcdef\"}", 0, 5, -E2BIG,
     "text: longer than 5 bytes"},
    {"{\"sessionInfo\":{\"session\":\"s\"},\"transcript\":[]}", 0, MAX_TEXT, -EINVAL,
     "transcript: expected a string"},
    {"{\"sessionInfo\":{\"session\":\"s\"},\"transcript\":\"abcdef\"}", 0, 5, -E2BIG,
     "transcript: longer than 5 bytes"},
    {"{\"sessionInfo\":{\"session\":\"s\"},\"languageCode\":{}}", 0, MAX_TEXT, -EINVAL,
     "languageCode: expected a string"},
    {"{\"sessionInfo\":{\"session\":\"s\"},\"fulfillmentInfo\":[]}", 0, MAX_TEXT, -EINVAL,
     "fulfillmentInfo: expected an object"},
    {"{\"sessionInfo\":{\"session\":\"s\"},\"fulfillmentInfo\":{\"tag\":1}}", 0, MAX_TEXT, -EINVAL,
     "fulfillmentInfo.tag: expected a string"},
    {"{\"sessionInfo\":{\"session\":\"s\"},\"intentInfo\":1}", 0, MAX_TEXT, -EINVAL,
     "intentInfo: expected an object"},
    {"{\"sessionInfo\":{\"session\":\"s\"},\"intentInfo\":{\"displayName\":false}}", 0, MAX_TEXT,
     -EINVAL, "intentInfo.displayName: expected a string"},
};

static void test_parse_errors(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        struct aigw_df_request req = {.kind = AIGW_DF_CX, .session = (char *)"untouched"};
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].body);
        char err[512] = "";

        print_message("bad[%zu] %s\n", i, bad[i].body);
        assert_int_equal(aigw_dialogflow_parse(bad[i].body, len, bad[i].max_text, &req, err,
                                               sizeof(err)),
                         bad[i].r);
        assert_string_equal(err, bad[i].msg);
        /* Output untouched on failure. */
        assert_int_equal(req.kind, AIGW_DF_CX);
        assert_string_equal(req.session, "untouched");
        assert_null(req.text);
        assert_null(req.parameters);
    }
}

static void test_parse_bad_arguments(void **state) {
    struct aigw_df_request req = {0};
    char err[256] = "";

    assert_int_equal(aigw_dialogflow_parse("{}", 2, MAX_TEXT, NULL, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "invalid arguments");
    assert_int_equal(aigw_dialogflow_parse(NULL, 1, MAX_TEXT, &req, err, sizeof(err)), -EINVAL);
    assert_int_equal(aigw_dialogflow_parse(NULL, 0, MAX_TEXT, &req, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "empty body, " EXPECTED_SHAPE);
    /* No error buffer, and a short one that truncates. */
    assert_int_equal(aigw_dialogflow_parse("{}", 2, MAX_TEXT, &req, NULL, 0), -EINVAL);
    assert_int_equal(aigw_dialogflow_parse("{}", 2, MAX_TEXT, &req, err, 9), -EINVAL);
    assert_string_equal(err, "expected");
    assert_null(req.session);
}

static void test_clear_null(void **state) {
    struct aigw_df_request req = {0};

    aigw_df_request_clear(NULL);
    aigw_df_request_clear(&req);
    assert_null(req.session);
}

/* ---- render ---------------------------------------------------------- */

static void test_render_es_ignores_contexts_and_params(void **state) {
    _cleanup_(aigw_df_request_clear) struct aigw_df_request req = {0};
    _cleanup_free_ char *out = NULL;

    parse_ok("{\"session\":\"s\",\"queryResult\":{\"parameters\":{\"a\":1},\"outputContexts\":"
             "[{\"name\":\"c\",\"lifespanCount\":1}]}}",
             &req);
    assert_int_equal(aigw_dialogflow_render(&req, "a\nb\\c", &out), 0);
    assert_string_equal(out, "{\"fulfillmentText\":\"a\\nb\\\\c\",\"fulfillmentMessages\":"
                             "[{\"text\":{\"text\":[\"a\\nb\\\\c\"]}}]}");
}

static void test_render_errors(void **state) {
    struct aigw_df_request req = {.kind = AIGW_DF_CX};
    cJSON *arr = cJSON_CreateArray();
    char *out = (char *)"untouched";

    assert_non_null(arr);
    assert_int_equal(aigw_dialogflow_render(NULL, "x", &out), -EINVAL);
    assert_int_equal(aigw_dialogflow_render(&req, NULL, &out), -EINVAL);
    assert_int_equal(aigw_dialogflow_render(&req, "x", NULL), -EINVAL);
    assert_int_equal(aigw_dialogflow_render(&req, "bad \xff utf8", &out), -EINVAL);
    assert_int_equal(aigw_dialogflow_render(&req, "cut \xe2\x82", &out), -EINVAL);
    req.kind = (enum aigw_df_kind)7;
    assert_int_equal(aigw_dialogflow_render(&req, "x", &out), -EINVAL);
    req.kind = AIGW_DF_CX;
    req.parameters = arr;
    assert_int_equal(aigw_dialogflow_render(&req, "x", &out), -EINVAL);
    assert_string_equal(out, "untouched");
    cJSON_Delete(arr);
}

static char *repeat(char c, size_t n) {
    char *s = malloc(n + 1);

    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_render_size_bound_cx(void **state) {
    static const char prefix[] = "{\"fulfillmentResponse\":{\"messages\":[{\"text\":{\"text\":[\"";
    static const char suffix[] = "\"]}}]}}";
    struct aigw_df_request req = {.kind = AIGW_DF_CX};
    size_t overhead = strlen(prefix) + strlen(suffix);
    _cleanup_free_ char *fits = repeat('a', AIGW_DF_RESPONSE_MAX - 1 - overhead);
    _cleanup_free_ char *over = repeat('a', AIGW_DF_RESPONSE_MAX - overhead);
    _cleanup_free_ char *quotes = repeat('"', AIGW_DF_RESPONSE_MAX / 2);
    _cleanup_free_ char *out = NULL;

    assert_int_equal(aigw_dialogflow_render(&req, fits, &out), 0);
    assert_int_equal(strlen(out), AIGW_DF_RESPONSE_MAX - 1);
    assert_int_equal(memcmp(out, prefix, strlen(prefix)), 0);
    free(TAKE_PTR(out));
    assert_int_equal(aigw_dialogflow_render(&req, over, &out), -E2BIG);
    assert_null(out);
    /* Escaping doubles each quote: short enough raw, too long escaped. */
    assert_int_equal(aigw_dialogflow_render(&req, quotes, &out), -E2BIG);
    assert_null(out);
}

static void test_render_size_bound_es(void **state) {
    struct aigw_df_request req = {.kind = AIGW_DF_ES};
    _cleanup_free_ char *half = repeat('a', AIGW_DF_RESPONSE_MAX / 2);
    _cleanup_free_ char *almost = repeat('a', AIGW_DF_RESPONSE_MAX / 2 - 1);
    _cleanup_free_ char *ok = repeat('a', AIGW_DF_RESPONSE_MAX / 2 - 64);
    _cleanup_free_ char *out = NULL;

    assert_int_equal(aigw_dialogflow_render(&req, half, &out), -E2BIG);
    assert_int_equal(aigw_dialogflow_render(&req, almost, &out), -E2BIG);
    assert_null(out);
    assert_int_equal(aigw_dialogflow_render(&req, ok, &out), 0);
    assert_true(strlen(out) < AIGW_DF_RESPONSE_MAX);
}

/* ---- reply truncation ------------------------------------------------ */

static const struct trunc {
    const char *text;
    size_t max_chars;
    const char *expected;
} truncs[] = {
    {"Hello world.", 100, "Hello world."},
    {"Hello world.   \n", 100, "Hello world."},
    {"Hello world.", 12, "Hello world."},
    {"", 5, ""},
    {"Hello", 0, ""},
    {"First sentence. Second sentence here.", 20, "First sentence."},
    {"One. Two three four", 12, "One."},
    {"Hi.  ", 3, "Hi."},
    {"Pi is 3.14 and more words here", 12, "Pi is 3.14"},
    {"Hello world again", 11, "Hello world"},
    {"Hello world again", 12, "Hello world"},
    {"Line one\nLine two", 12, "Line one"},
    {"Supercalifragilistic", 5, "Super"},
    {"   abcdefgh", 6, "   abc"},
    {"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 3, "\xc3\xa9\xc3\xa9\xc3\xa9"},
    {"Well\xe2\x80\xa6 I think so and more", 10, "Well\xe2\x80\xa6"},
    {"He said \"Stop.\" Then he left.", 20, "He said \"Stop.\""},
    {"Really?! That is great news", 12, "Really?!"},
    {"Wait... what happened next", 12, "Wait..."},
    {"e.g.x is an abbreviation", 8, "e.g.x is"},
    /* 今日は晴れです。明日は雨です。 */
    {"\xe4\xbb\x8a\xe6\x97\xa5\xe3\x81\xaf\xe6\x99\xb4\xe3\x82\x8c\xe3\x81\xa7\xe3\x81\x99"
     "\xe3\x80\x82\xe6\x98\x8e\xe6\x97\xa5\xe3\x81\xaf\xe9\x9b\xa8\xe3\x81\xa7\xe3\x81\x99"
     "\xe3\x80\x82",
     10,
     "\xe4\xbb\x8a\xe6\x97\xa5\xe3\x81\xaf\xe6\x99\xb4\xe3\x82\x8c\xe3\x81\xa7\xe3\x81\x99"
     "\xe3\x80\x82"},
    /* すごい！本当に */
    {"\xe3\x81\x99\xe3\x81\x94\xe3\x81\x84\xef\xbc\x81\xe6\x9c\xac\xe5\xbd\x93\xe3\x81\xab", 5,
     "\xe3\x81\x99\xe3\x81\x94\xe3\x81\x84\xef\xbc\x81"},
    /* 「はい。」と言った: the closing bracket stays with the sentence. */
    {"\xe3\x80\x8c\xe3\x81\xaf\xe3\x81\x84\xe3\x80\x82\xe3\x80\x8d\xe3\x81\xa8\xe8\xa8\x80", 5,
     "\xe3\x80\x8c\xe3\x81\xaf\xe3\x81\x84\xe3\x80\x82\xe3\x80\x8d"},
    /* CJK without any break: cut at the character limit. */
    {"\xe6\x98\x8e\xe6\x97\xa5\xe3\x81\xaf\xe9\x9b\xa8", 2, "\xe6\x98\x8e\xe6\x97\xa5"},
    /* Invalid bytes count as one character each; a cut-off sequence is not kept whole. */
    {"\xff\xfe\xfd abc", 2, "\xff\xfe"},
    {"ab\xc3", 2, "ab"},
    {"ab\xc3\xa9", 3, "ab\xc3\xa9"},
    {"ab \xc3\xa9\xc3\xa9", 4, "ab"},
};

static void test_reply_truncate(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(truncs); i++) {
        size_t len = strlen(truncs[i].text);
        size_t keep = aigw_reply_truncate(truncs[i].text, len, truncs[i].max_chars);

        print_message("trunc[%zu]\n", i);
        assert_true(keep <= len);
        assert_int_equal(keep, strlen(truncs[i].expected));
        assert_memory_equal(truncs[i].text, truncs[i].expected, keep);
    }
    assert_int_equal(aigw_reply_truncate(NULL, 5, 5), 0);
}

/* ---- prompt templates ------------------------------------------------ */

static void test_prompt_expand(void **state) {
    static const struct {
        const char *tmpl;
        const char *expected;
    } cases[] = {
        {"Answer in {language}.", "Answer in de."},
        {"{intent}/{tag}", "Tisch/t"},
        {"{{language}}", "{language}"},
        {"{{{language}}}", "{de}"},
        {"{unknown} {lang {", "{unknown} {lang {"},
        {"}{", "}{"},
        {"a}}b{{c", "a}b{c"},
        {"", ""},
        {"{language}{language}", "dede"},
    };
    struct aigw_df_request req = {
        .language_code = (char *)"de",
        .intent = (char *)"Tisch",
        .tag = (char *)"t",
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        _cleanup_free_ char *out = NULL;

        assert_int_equal(aigw_prompt_expand(cases[i].tmpl, &req, &out), 0);
        assert_string_equal(out, cases[i].expected);
    }
}

static void test_prompt_expand_absent_and_verbatim(void **state) {
    struct aigw_df_request req = {.intent = (char *)"{tag}"};
    _cleanup_free_ char *out = NULL;

    /* Values are not expanded again; absent ones are empty. */
    assert_int_equal(aigw_prompt_expand("[{language}][{intent}][{tag}]", &req, &out), 0);
    assert_string_equal(out, "[][{tag}][]");
}

static void test_prompt_expand_bounds(void **state) {
    struct aigw_df_request req = {0};
    _cleanup_free_ char *max = repeat('a', AIGW_PROMPT_MAX);
    _cleanup_free_ char *over = repeat('a', AIGW_PROMPT_MAX + 1);
    _cleanup_free_ char *lang = repeat('l', 1000);
    _cleanup_free_ char *many = NULL;
    char *out = NULL;
    size_t n = (AIGW_PROMPT_MAX / 1000 + 1) * strlen("{language}");

    assert_int_equal(aigw_prompt_expand(max, &req, &out), 0);
    assert_int_equal(strlen(out), AIGW_PROMPT_MAX);
    free(TAKE_PTR(out));
    assert_int_equal(aigw_prompt_expand(over, &req, &out), -E2BIG);
    assert_null(out);

    many = malloc(n + 1);
    assert_non_null(many);
    for (size_t i = 0; i < n; i += strlen("{language}"))
        memcpy(many + i, "{language}", strlen("{language}"));
    many[n] = '\0';
    req.language_code = lang;
    assert_int_equal(aigw_prompt_expand(many, &req, &out), -E2BIG);
    assert_null(out);

    assert_int_equal(aigw_prompt_expand(NULL, &req, &out), -EINVAL);
    assert_int_equal(aigw_prompt_expand("x", NULL, &out), -EINVAL);
    assert_int_equal(aigw_prompt_expand("x", &req, NULL), -EINVAL);
}

/* ---- session hash ---------------------------------------------------- */

static void test_session_hash(void **state) {
    char hex[17];

    aigw_session_hash("", hex);
    assert_string_equal(hex, "e3b0c44298fc1c14");
    aigw_session_hash("abc", hex);
    assert_string_equal(hex, "ba7816bf8f01cfea");
    aigw_session_hash(NULL, hex);
    assert_string_equal(hex, "e3b0c44298fc1c14");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_samples),
        cmocka_unit_test(test_parse_nulls_are_absent),
        cmocka_unit_test(test_parse_es_intent_without_name),
        cmocka_unit_test(test_parse_es_ignores_tag_like_fields),
        cmocka_unit_test(test_parse_cx_text_preferred),
        cmocka_unit_test(test_parse_cx_empty_params_kept),
        cmocka_unit_test(test_parse_not_nul_terminated),
        cmocka_unit_test(test_parse_trailing_whitespace_and_escapes),
        cmocka_unit_test(test_parse_text_at_bound),
        cmocka_unit_test(test_parse_session_at_bound),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_bad_arguments),
        cmocka_unit_test(test_clear_null),
        cmocka_unit_test(test_render_es_ignores_contexts_and_params),
        cmocka_unit_test(test_render_errors),
        cmocka_unit_test(test_render_size_bound_cx),
        cmocka_unit_test(test_render_size_bound_es),
        cmocka_unit_test(test_reply_truncate),
        cmocka_unit_test(test_prompt_expand),
        cmocka_unit_test(test_prompt_expand_absent_and_verbatim),
        cmocka_unit_test(test_prompt_expand_bounds),
        cmocka_unit_test(test_session_hash),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
