/* SPDX-License-Identifier: MIT */

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "aigw/backend-gemini.h"
#include "aigw/chat-model.h"
#include "aigw/macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete);

/* Structural JSON comparison with both sides printed on mismatch. */
static void assert_json_eq(const char *name, const char *expected, const cJSON *actual) {
    _cleanup_(cJSON_Deletep) cJSON *exp = cJSON_Parse(expected);
    _cleanup_free_ char *got = cJSON_PrintUnformatted(actual);

    if (!exp)
        fail_msg("%s: expected JSON does not parse: %s", name, expected);
    if (!cJSON_Compare(exp, actual, true))
        fail_msg("%s:\n  expected %s\n  got      %s", name, expected, got);
}

static void assert_json_str_eq(const char *name, const char *expected, const char *actual) {
    _cleanup_(cJSON_Deletep) cJSON *got = cJSON_Parse(actual);

    if (!got)
        fail_msg("%s: output does not parse: %s", name, actual);
    assert_json_eq(name, expected, got);
}

static void assert_str_eq_or_null(const char *name, const char *expected, const char *actual) {
    if (!expected && !actual)
        return;
    if (!expected || !actual || strcmp(expected, actual) != 0)
        fail_msg("%s: expected \"%s\", got \"%s\"", name, expected ?: "(null)",
                 actual ?: "(null)");
}

static void assert_err(const char *name, const struct aigw_error *err, int status,
                       const char *type, const char *code, const char *param,
                       const char *message) {
    if (err->status != status)
        fail_msg("%s: status %d, expected %d (%s)", name, err->status, status, err->message);
    assert_str_eq_or_null(name, type, err->type);
    assert_str_eq_or_null(name, code, err->code);
    assert_str_eq_or_null(name, param, err->param);
    if (message)
        assert_str_eq_or_null(name, message, err->message);
}

/* --- build_request ------------------------------------------------------- */

struct tmsg {
    enum aigw_role role;
    size_t n;
    char *parts[4];
};

#define M(r, ...) { r, sizeof((char *[]){ __VA_ARGS__ }) / sizeof(char *), { __VA_ARGS__ } }
#define M0(r) { r, 0, { NULL } }
#define MSGS(...)                                                                                  \
    .msgs = { __VA_ARGS__ }, .n_msgs = sizeof((struct tmsg[]){ __VA_ARGS__ }) / sizeof(struct tmsg)

#define SYS AIGW_ROLE_SYSTEM
#define USR AIGW_ROLE_USER
#define AST AIGW_ROLE_ASSISTANT
#define TOOL AIGW_ROLE_TOOL

struct build_case {
    const char *name;
    struct tmsg msgs[8];
    size_t n_msgs;
    struct aigw_chat_request req; /* generation fields; messages come from msgs */
    const struct aigw_model_defaults *defaults;
    const char *raw;
    int exp_r;
    const char *exp_body;
    const char *exp_dropped;
    int exp_status;
    const char *exp_param;
    const char *exp_message;
};

static const struct aigw_model_defaults defaults_100_05 = {
    .has_max_tokens = true, .max_tokens = 100, .has_temperature = true, .temperature = 0.5
};

static const struct build_case build_cases[] = {
    {
        .name = "single user",
        MSGS(M(USR, "hi")),
        .exp_body = "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"hi\"}]}]}",
    },
    {
        .name = "system goes to systemInstruction, not into the user turn",
        MSGS(M(SYS, "be brief"), M(USR, "hi")),
        .exp_body = "{\"systemInstruction\":{\"parts\":[{\"text\":\"be brief\"}]},"
                    "\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"hi\"}]}]}",
    },
    {
        .name = "all system messages, in order, wherever they are",
        MSGS(M(SYS, "a", "b"), M(USR, "u1"), M(SYS, "c"), M(USR, "u2")),
        .exp_body = "{\"systemInstruction\":{\"parts\":[{\"text\":\"a\"},{\"text\":\"b\"},"
                    "{\"text\":\"c\"}]},\"contents\":[{\"role\":\"user\",\"parts\":"
                    "[{\"text\":\"u1\"},{\"text\":\"u2\"}]}]}",
    },
    {
        .name = "multi-part message",
        MSGS(M(USR, "p1", "p2", "p3")),
        .exp_body = "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"p1\"},"
                    "{\"text\":\"p2\"},{\"text\":\"p3\"}]}]}",
    },
    {
        .name = "consecutive turns merge",
        MSGS(M(USR, "u1"), M(USR, "u2", "u3"), M(AST, "a1"), M(AST, "a2"), M(USR, "u4")),
        .exp_body = "{\"contents\":["
                    "{\"role\":\"user\",\"parts\":[{\"text\":\"u1\"},{\"text\":\"u2\"},"
                    "{\"text\":\"u3\"}]},"
                    "{\"role\":\"model\",\"parts\":[{\"text\":\"a1\"},{\"text\":\"a2\"}]},"
                    "{\"role\":\"user\",\"parts\":[{\"text\":\"u4\"}]}]}",
    },
    {
        .name = "starts with a model turn",
        MSGS(M(AST, "hello"), M(USR, "hi")),
        .exp_body = "{\"contents\":[{\"role\":\"model\",\"parts\":[{\"text\":\"hello\"}]},"
                    "{\"role\":\"user\",\"parts\":[{\"text\":\"hi\"}]}]}",
    },
    {
        .name = "system only: systemInstruction and a user turn repeating it",
        MSGS(M(SYS, "Write a haiku"), M(SYS, "about cats")),
        .exp_body = "{\"systemInstruction\":{\"parts\":[{\"text\":\"Write a haiku\"},"
                    "{\"text\":\"about cats\"}]},\"contents\":[{\"role\":\"user\",\"parts\":"
                    "[{\"text\":\"Write a haiku\"},{\"text\":\"about cats\"}]}]}",
    },
    {
        .name = "messages without parts are skipped, neighbours merge",
        MSGS(M(USR, "a"), M0(AST), M(USR, "b")),
        .exp_body = "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"a\"},"
                    "{\"text\":\"b\"}]}]}",
    },
    {
        .name = "tool message",
        MSGS(M(USR, "a"), M(TOOL, "result")),
        .exp_r = -EINVAL,
        .exp_status = 400,
        .exp_param = "messages[1].role",
        .exp_message = "tool messages are not supported by Gemini backends",
    },
    {
        .name = "unknown role value",
        MSGS(M((enum aigw_role) 42, "x")),
        .exp_r = -EINVAL,
        .exp_status = 400,
        .exp_param = "messages[0].role",
        .exp_message = "unsupported role",
    },
    {
        .name = "no messages",
        .exp_r = -EINVAL,
        .exp_status = 400,
        .exp_param = "messages",
        .exp_message = "messages must contain at least one message with content",
    },
    {
        .name = "only empty messages",
        MSGS(M0(USR), M0(SYS)),
        .exp_r = -EINVAL,
        .exp_status = 400,
        .exp_param = "messages",
        .exp_message = "messages must contain at least one message with content",
    },
    {
        .name = "generationConfig from the client",
        MSGS(M(USR, "x")),
        .req = { .has_temperature = true, .temperature = 0.25, .has_top_p = true, .top_p = 0.5,
                 .has_max_tokens = true, .max_tokens = 64, .stop = (char *[]){ "END", "###" },
                 .n_stop = 2, .has_n = true, .n = 2 },
        .defaults = &defaults_100_05,
        .exp_body = "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"x\"}]}],"
                    "\"generationConfig\":{\"temperature\":0.25,\"topP\":0.5,"
                    "\"maxOutputTokens\":64,\"stopSequences\":[\"END\",\"###\"],"
                    "\"candidateCount\":2}}",
    },
    {
        .name = "defaults fill what the client left out",
        MSGS(M(USR, "x")),
        .defaults = &defaults_100_05,
        .exp_body = "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"x\"}]}],"
                    "\"generationConfig\":{\"temperature\":0.5,\"maxOutputTokens\":100}}",
    },
    {
        .name = "client zero beats defaults",
        MSGS(M(USR, "x")),
        .req = { .has_temperature = true, .temperature = 0, .has_max_tokens = true,
                 .max_tokens = 1 },
        .defaults = &defaults_100_05,
        .exp_body = "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"x\"}]}],"
                    "\"generationConfig\":{\"temperature\":0,\"maxOutputTokens\":1}}",
    },
    {
        .name = "five stop sequences",
        MSGS(M(USR, "x")),
        .req = { .stop = (char *[]){ "a", "b", "c", "d", "e" }, .n_stop = 5 },
        .exp_body = "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"x\"}]}],"
                    "\"generationConfig\":{\"stopSequences\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}}",
    },
    {
        .name = "six stop sequences",
        MSGS(M(USR, "x")),
        .req = { .stop = (char *[]){ "a", "b", "c", "d", "e", "f" }, .n_stop = 6 },
        .exp_r = -EINVAL,
        .exp_status = 400,
        .exp_param = "stop",
        .exp_message = "Gemini backends accept at most 5 stop sequences, got 6",
    },
    {
        .name = "non-finite temperature",
        MSGS(M(USR, "x")),
        .req = { .has_temperature = true, .temperature = INFINITY },
        .exp_r = -EINVAL,
        .exp_status = 400,
        .exp_param = "temperature",
        .exp_message = "temperature must be a finite number",
    },
    {
        .name = "non-finite top_p",
        MSGS(M(USR, "x")),
        .req = { .has_top_p = true, .top_p = NAN },
        .exp_r = -EINVAL,
        .exp_status = 400,
        .exp_param = "top_p",
        .exp_message = "top_p must be a finite number",
    },
    {
        .name = "dropped fields are reported",
        MSGS(M(USR, "x")),
        .raw = "{\"model\":\"g\",\"messages\":[],\"tools\":[],\"user\":\"u\",\"stream\":true,"
               "\"stream_options\":{},\"presence_penalty\":0,\"max_completion_tokens\":3,"
               "\"temperature\":1,\"top_p\":1,\"max_tokens\":1,\"stop\":null,\"n\":1,"
               "\"bad\\nname\":1}",
        .exp_body = "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"x\"}]}]}",
        .exp_dropped = "tools,user,presence_penalty,bad name",
    },
    {
        .name = "nothing dropped",
        MSGS(M(USR, "x")),
        .raw = "{\"model\":\"g\",\"messages\":[]}",
        .exp_body = "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"x\"}]}]}",
    },
};

static void run_build_case(const struct build_case *c, bool want_dropped) {
    struct aigw_chat_message msgs[8];
    struct aigw_chat_request req = c->req;
    struct aigw_error err = {};
    char *body = (char *) "untouched", *dropped = (char *) "untouched";
    int r;

    for (size_t i = 0; i < c->n_msgs; i++)
        msgs[i] = (struct aigw_chat_message) {
            .role = c->msgs[i].role,
            .parts = (char **) c->msgs[i].parts,
            .n_parts = c->msgs[i].n,
        };
    req.messages = msgs;
    req.n_messages = c->n_msgs;
    req.raw = c->raw ? cJSON_Parse(c->raw) : NULL;
    if (c->raw && !req.raw)
        fail_msg("%s: raw does not parse", c->name);

    r = aigw_gemini_build_request(&req, c->defaults, &body, want_dropped ? &dropped : NULL, &err);
    cJSON_Delete(req.raw);
    if (r != c->exp_r)
        fail_msg("%s: r=%d, expected %d (%s)", c->name, r, c->exp_r, err.message);
    if (r < 0) {
        assert_err(c->name, &err, c->exp_status, "invalid_request_error", NULL, c->exp_param,
                   c->exp_message);
        assert_string_equal(body, "untouched");
        assert_string_equal(dropped, "untouched");
        return;
    }
    assert_json_str_eq(c->name, c->exp_body, body);
    free(body);
    if (want_dropped) {
        assert_str_eq_or_null(c->name, c->exp_dropped, dropped);
        free(dropped);
    } else
        assert_string_equal(dropped, "untouched");
}

static void test_build_request(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(build_cases); i++) {
        run_build_case(&build_cases[i], true);
        run_build_case(&build_cases[i], false);
    }
}

static void test_build_request_dropped_bounded(void **state) {
    struct aigw_chat_message msg = { .role = AIGW_ROLE_USER, .parts = (char *[]){ "x" },
                                     .n_parts = 1 };
    struct aigw_chat_request req = { .messages = &msg, .n_messages = 1 };
    struct aigw_error err = {};
    char *body = NULL, *dropped = NULL;
    char name[200];

    req.raw = cJSON_CreateObject();
    assert_non_null(req.raw);
    for (int i = 0; i < 100; i++) {
        /* 80-byte names are cut to 64 */
        snprintf(name, sizeof name, "f%02d%077d", i, 0);
        assert_non_null(cJSON_AddNumberToObject(req.raw, name, i));
    }
    assert_int_equal(aigw_gemini_build_request(&req, NULL, &body, &dropped, &err), 0);
    cJSON_Delete(req.raw);
    assert_non_null(dropped);
    assert_true(strlen(dropped) <= 512);
    assert_int_equal(strncmp(dropped, "f00", 3), 0);
    assert_string_equal(dropped + strlen(dropped) - 4, ",...");
    /* 7 names of 64 bytes plus commas fit under 508, the 8th does not */
    assert_int_equal(strlen(dropped), 7 * 64 + 6 + 4);
    free(body);
    free(dropped);
}

/* --- URL ----------------------------------------------------------------- */

static void test_url(void **state) {
    static const struct {
        const char *base, *model;
        bool stream;
        int exp_r;
        const char *exp;
    } cases[] = {
        { "https://g.example", "gemini-2.0-flash", false, 0,
          "https://g.example/v1beta/models/gemini-2.0-flash:generateContent" },
        { "https://g.example//", "gemini-1.5-pro", true, 0,
          "https://g.example/v1beta/models/gemini-1.5-pro:streamGenerateContent?alt=sse" },
        { "https://g.example/", "models/gemini-pro", false, 0,
          "https://g.example/v1beta/models/gemini-pro:generateContent" },
        { "http://h:8080/proxy", "a/b c?key=x#y", false, 0,
          "http://h:8080/proxy/v1beta/models/a%2Fb%20c%3Fkey%3Dx%23y:generateContent" },
        { "http://h", "\xc3\xa9~_.-", false, 0,
          "http://h/v1beta/models/%C3%A9~_.-:generateContent" },
        { "", "m", false, -EINVAL, NULL },
        { "///", "m", false, -EINVAL, NULL },
        { "https://g.example?key=1", "m", false, -EINVAL, NULL },
        { "https://g.example#x", "m", false, -EINVAL, NULL },
        { "https://g.example", "", false, -EINVAL, NULL },
        { "https://g.example", "models/", false, -EINVAL, NULL },
        { NULL, "m", false, -EINVAL, NULL },
        { "https://g.example", NULL, false, -EINVAL, NULL },
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        char *url = (char *) "untouched";
        int r = aigw_gemini_url(cases[i].base, cases[i].model, cases[i].stream, &url);

        if (r != cases[i].exp_r)
            fail_msg("url case %zu: r=%d", i, r);
        if (r < 0) {
            assert_string_equal(url, "untouched");
            continue;
        }
        assert_string_equal(url, cases[i].exp);
        free(url);
    }
}

/* --- parse_response ------------------------------------------------------ */

static cJSON *response_to_json(const struct aigw_chat_response *resp) {
    cJSON *o = cJSON_CreateObject(), *choices;

    if (resp->id)
        cJSON_AddStringToObject(o, "id", resp->id);
    if (resp->model)
        cJSON_AddStringToObject(o, "model", resp->model);
    choices = cJSON_AddArrayToObject(o, "choices");
    for (size_t i = 0; i < resp->n_choices; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "index", resp->choices[i].index);
        cJSON_AddStringToObject(c, "content", resp->choices[i].content);
        cJSON_AddStringToObject(c, "finish_reason", resp->choices[i].finish_reason);
        cJSON_AddItemToArray(choices, c);
    }
    if (resp->usage.present) {
        cJSON *u = cJSON_AddObjectToObject(o, "usage");
        cJSON_AddNumberToObject(u, "prompt", (double) resp->usage.prompt_tokens);
        cJSON_AddNumberToObject(u, "completion", (double) resp->usage.completion_tokens);
        cJSON_AddNumberToObject(u, "total", (double) resp->usage.total_tokens);
    }
    return o;
}

struct parse_case {
    const char *name;
    const char *body;
    size_t len; /* 0: strlen(body) */
    int exp_r;
    const char *exp; /* response_to_json() form */
    const char *exp_unmapped;
    int exp_status;
    const char *exp_type;
    const char *exp_message;
};

#define INVALID(n, b)                                                                              \
    { .name = n, .body = b, .exp_r = -EBADMSG, .exp_status = 502, .exp_type = "api_error",         \
      .exp_message = "upstream sent an invalid response" }
#define NO_CANDIDATES(n, b)                                                                        \
    { .name = n, .body = b, .exp_r = -EBADMSG, .exp_status = 502, .exp_type = "api_error",         \
      .exp_message = "upstream sent no candidates" }

static const struct parse_case parse_cases[] = {
    {
        .name = "basic",
        .body = "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":"
                "\"Hello\"}]},\"finishReason\":\"STOP\",\"index\":0,\"safetyRatings\":[]}],"
                "\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":1,"
                "\"totalTokenCount\":4},\"modelVersion\":\"gemini-2.0-flash-001\","
                "\"responseId\":\"abc123\"}",
        .exp = "{\"id\":\"abc123\",\"model\":\"gemini-2.0-flash-001\",\"choices\":[{\"index\":0,"
               "\"content\":\"Hello\",\"finish_reason\":\"stop\"}],\"usage\":{\"prompt\":3,"
               "\"completion\":1,\"total\":4}}",
    },
    {
        .name = "multi-part content is concatenated, non-text parts skipped",
        .body = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"},{\"text\":\"b\"},"
                "{\"inlineData\":{\"mimeType\":\"image/png\",\"data\":\"AA==\"}},"
                "{\"text\":\"c\"}]},\"finishReason\":\"STOP\"}]}",
        .exp = "{\"choices\":[{\"index\":0,\"content\":\"abc\",\"finish_reason\":\"stop\"}]}",
    },
    {
        .name = "thought parts are skipped",
        .body = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hmm\",\"thought\":true},"
                "{\"text\":\"ans\",\"thought\":false},{\"text\":\"wer\"}]},"
                "\"finishReason\":\"STOP\"}]}",
        .exp = "{\"choices\":[{\"index\":0,\"content\":\"answer\",\"finish_reason\":\"stop\"}]}",
    },
    {
        .name = "finishReason without content keeps the choice",
        .body = "{\"candidates\":[{\"finishReason\":\"SAFETY\",\"index\":0,\"safetyRatings\":"
                "[{\"category\":\"HARM_CATEGORY_HARASSMENT\",\"probability\":\"HIGH\","
                "\"blocked\":true}]}]}",
        .exp = "{\"choices\":[{\"index\":0,\"content\":\"\","
               "\"finish_reason\":\"content_filter\"}]}",
    },
    {
        .name = "content without parts",
        .body = "{\"candidates\":[{\"content\":{\"role\":\"model\"},"
                "\"finishReason\":\"MAX_TOKENS\"}]}",
        .exp = "{\"choices\":[{\"index\":0,\"content\":\"\",\"finish_reason\":\"length\"}]}",
    },
    {
        .name = "JSON nulls count as absent",
        .body = "{\"candidates\":[{\"content\":null,\"finishReason\":\"STOP\",\"index\":null}],"
                "\"usageMetadata\":null,\"modelVersion\":null}",
        .exp = "{\"choices\":[{\"index\":0,\"content\":\"\",\"finish_reason\":\"stop\"}]}",
    },
    {
        .name = "missing finishReason is stop, not unmapped",
        .body = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]}}]}",
        .exp = "{\"choices\":[{\"index\":0,\"content\":\"x\",\"finish_reason\":\"stop\"}]}",
    },
    {
        .name = "several candidates, index or position",
        .body = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"zero\"}]},"
                "\"finishReason\":\"STOP\"},{\"content\":{\"parts\":[{\"text\":\"one\"}]},"
                "\"finishReason\":\"MAX_TOKENS\",\"index\":1},{\"finishReason\":\"NEW_THING\","
                "\"index\":7},{\"finishReason\":\"OTHER\",\"index\":8}]}",
        .exp = "{\"choices\":[{\"index\":0,\"content\":\"zero\",\"finish_reason\":\"stop\"},"
               "{\"index\":1,\"content\":\"one\",\"finish_reason\":\"length\"},"
               "{\"index\":7,\"content\":\"\",\"finish_reason\":\"stop\"},"
               "{\"index\":8,\"content\":\"\",\"finish_reason\":\"stop\"}]}",
        .exp_unmapped = "NEW_THING",
    },
    {
        .name = "unmapped reason is sanitized",
        .body = "{\"candidates\":[{\"finishReason\":\"BAD\\nREASON\\u0001\"}]}",
        .exp = "{\"choices\":[{\"index\":0,\"content\":\"\",\"finish_reason\":\"stop\"}]}",
        .exp_unmapped = "BAD REASON ",
    },
    {
        .name = "blocked prompt",
        .body = "{\"promptFeedback\":{\"blockReason\":\"SAFETY\",\"safetyRatings\":[]},"
                "\"usageMetadata\":{\"promptTokenCount\":5,\"totalTokenCount\":5},"
                "\"modelVersion\":\"m\"}",
        .exp = "{\"model\":\"m\",\"choices\":[{\"index\":0,\"content\":\"\","
               "\"finish_reason\":\"content_filter\"}],\"usage\":{\"prompt\":5,"
               "\"completion\":0,\"total\":5}}",
    },
    {
        .name = "blocked prompt with empty candidates",
        .body = "{\"candidates\":[],\"promptFeedback\":{\"blockReason\":\"OTHER\"}}",
        .exp = "{\"choices\":[{\"index\":0,\"content\":\"\","
               "\"finish_reason\":\"content_filter\"}]}",
    },
    {
        .name = "usage counts thoughts as completion",
        .body = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},"
                "\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":10,"
                "\"candidatesTokenCount\":5,\"thoughtsTokenCount\":7,\"totalTokenCount\":22,"
                "\"cachedContentTokenCount\":4}}",
        .exp = "{\"choices\":[{\"index\":0,\"content\":\"x\",\"finish_reason\":\"stop\"}],"
               "\"usage\":{\"prompt\":10,\"completion\":12,\"total\":22}}",
    },
    {
        .name = "usage total falls back to the sum",
        .body = "{\"candidates\":[{\"finishReason\":\"STOP\"}],\"usageMetadata\":"
                "{\"promptTokenCount\":10,\"candidatesTokenCount\":5,\"thoughtsTokenCount\":2}}",
        .exp = "{\"choices\":[{\"index\":0,\"content\":\"\",\"finish_reason\":\"stop\"}],"
               "\"usage\":{\"prompt\":10,\"completion\":7,\"total\":17}}",
    },
    {
        .name = "empty usage",
        .body = "{\"candidates\":[{\"finishReason\":\"STOP\"}],\"usageMetadata\":{}}",
        .exp = "{\"choices\":[{\"index\":0,\"content\":\"\",\"finish_reason\":\"stop\"}],"
               "\"usage\":{\"prompt\":0,\"completion\":0,\"total\":0}}",
    },
    {
        .name = "trailing whitespace",
        .body = "{\"candidates\":[{\"finishReason\":\"STOP\"}]}\r\n \t",
        .exp = "{\"choices\":[{\"index\":0,\"content\":\"\",\"finish_reason\":\"stop\"}]}",
    },
    {
        .name = "length bounds the parse",
        .body = "{\"candidates\":[{\"finishReason\":\"STOP\"}]}garbage",
        .len = 40,
        .exp = "{\"choices\":[{\"index\":0,\"content\":\"\",\"finish_reason\":\"stop\"}]}",
    },
    {
        .name = "error object in a 200 body",
        .body = "{\"error\":{\"code\":429,\"message\":\"quota\","
                "\"status\":\"RESOURCE_EXHAUSTED\"}}",
        .exp_r = -EREMOTEIO,
        .exp_status = 429,
        .exp_type = "rate_limit_error",
        .exp_message = "Gemini RESOURCE_EXHAUSTED: quota",
    },
    NO_CANDIDATES("no candidates", "{\"usageMetadata\":{\"promptTokenCount\":1}}"),
    NO_CANDIDATES("empty candidates", "{\"candidates\":[]}"),
    NO_CANDIDATES("promptFeedback without blockReason", "{\"promptFeedback\":{}}"),
    INVALID("empty", ""),
    INVALID("not JSON", "not json"),
    INVALID("truncated", "{\"candidates\":[{\"finishReason\":\"STOP\"}"),
    INVALID("array", "[]"),
    INVALID("string", "\"x\""),
    INVALID("trailing garbage", "{\"candidates\":[]} x"),
    INVALID("candidates object", "{\"candidates\":{}}"),
    INVALID("candidate number", "{\"candidates\":[1]}"),
    INVALID("content string", "{\"candidates\":[{\"content\":\"x\"}]}"),
    INVALID("parts object", "{\"candidates\":[{\"content\":{\"parts\":{}}}]}"),
    INVALID("part string", "{\"candidates\":[{\"content\":{\"parts\":[\"x\"]}}]}"),
    INVALID("text number", "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":1}]}}]}"),
    INVALID("thought string",
            "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\",\"thought\":\"y\"}]}}]}"),
    INVALID("finishReason number", "{\"candidates\":[{\"finishReason\":3}]}"),
    INVALID("negative index", "{\"candidates\":[{\"index\":-1}]}"),
    INVALID("fractional index", "{\"candidates\":[{\"index\":1.5}]}"),
    INVALID("huge index", "{\"candidates\":[{\"index\":1e12}]}"),
    INVALID("usage string", "{\"candidates\":[{}],\"usageMetadata\":\"x\"}"),
    INVALID("negative count", "{\"candidates\":[{}],\"usageMetadata\":{\"promptTokenCount\":-1}}"),
    INVALID("huge count",
            "{\"candidates\":[{}],\"usageMetadata\":{\"totalTokenCount\":1e300}}"),
    INVALID("fractional count",
            "{\"candidates\":[{}],\"usageMetadata\":{\"candidatesTokenCount\":0.5}}"),
    INVALID("promptFeedback string", "{\"promptFeedback\":\"SAFETY\"}"),
    INVALID("blockReason number", "{\"promptFeedback\":{\"blockReason\":1}}"),
    INVALID("responseId number", "{\"candidates\":[{}],\"responseId\":1}"),
    INVALID("modelVersion object", "{\"candidates\":[{}],\"modelVersion\":{}}"),
};

static void run_parse_case(const struct parse_case *c) {
    struct aigw_chat_response resp = { .id = (char *) "untouched" };
    struct aigw_error err = {};
    char *unmapped = (char *) "untouched";
    size_t len = c->len ?: strlen(c->body);
    int r;

    r = aigw_gemini_parse_response(c->body, len, &resp, &unmapped, &err);
    if (r != c->exp_r)
        fail_msg("%s: r=%d, expected %d (%s)", c->name, r, c->exp_r, err.message);
    if (r < 0) {
        assert_err(c->name, &err, c->exp_status, c->exp_type, NULL, NULL, c->exp_message);
        assert_string_equal(resp.id, "untouched");
        assert_null(resp.choices);
        assert_string_equal(unmapped, "untouched");
        return;
    }
    _cleanup_(cJSON_Deletep) cJSON *got = response_to_json(&resp);
    assert_json_eq(c->name, c->exp, got);
    assert_str_eq_or_null(c->name, c->exp_unmapped, unmapped);
    assert_int_equal(resp.created, 0);
    for (size_t i = 0; i < resp.n_choices; i++)
        assert_non_null(resp.choices[i].content);
    free(unmapped);
    aigw_chat_response_free(&resp);

    /* ret_unmapped_finish is optional */
    assert_int_equal(aigw_gemini_parse_response(c->body, len, &resp, NULL, &err), 0);
    aigw_chat_response_free(&resp);
}

static void test_parse_response(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(parse_cases); i++)
        run_parse_case(&parse_cases[i]);
}

/* Every finishReason in the notes, plus unknown ones. */
static const struct {
    const char *gemini;
    const char *exp;
    bool unmapped;
} finish_cases[] = {
    { "FINISH_REASON_UNSPECIFIED", "stop", true },
    { "STOP", "stop", false },
    { "MAX_TOKENS", "length", false },
    { "SAFETY", "content_filter", false },
    { "RECITATION", "content_filter", false },
    { "LANGUAGE", "content_filter", false },
    { "OTHER", "stop", true },
    { "BLOCKLIST", "content_filter", false },
    { "PROHIBITED_CONTENT", "content_filter", false },
    { "SPII", "content_filter", false },
    { "MALFORMED_FUNCTION_CALL", "stop", true },
    { "IMAGE_SAFETY", "content_filter", false },
    { "IMAGE_PROHIBITED_CONTENT", "content_filter", false },
    { "IMAGE_RECITATION", "content_filter", false },
    { "IMAGE_OTHER", "stop", true },
    { "NO_IMAGE", "stop", true },
    { "UNEXPECTED_TOOL_CALL", "stop", true },
    { "TOO_MANY_TOOL_CALLS", "stop", true },
    { "MISSING_THOUGHT_SIGNATURE", "stop", true },
    { "SOMETHING_NEW", "stop", true },
    { "stop", "stop", true },
    { "", "stop", true },
};

static void test_finish_reasons(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(finish_cases); i++) {
        struct aigw_chat_response resp = {};
        struct aigw_error err = {};
        char body[256], *unmapped = NULL;
        bool um = !finish_cases[i].unmapped;

        assert_string_equal(aigw_gemini_finish_reason(finish_cases[i].gemini, &um),
                            finish_cases[i].exp);
        assert_int_equal(um, finish_cases[i].unmapped);
        assert_string_equal(aigw_gemini_finish_reason(finish_cases[i].gemini, NULL),
                            finish_cases[i].exp);

        snprintf(body, sizeof body,
                 "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"t\"}]},"
                 "\"finishReason\":\"%s\",\"index\":0}]}",
                 finish_cases[i].gemini);
        assert_int_equal(aigw_gemini_parse_response(body, strlen(body), &resp, &unmapped, &err),
                         0);
        assert_int_equal(resp.n_choices, 1);
        assert_string_equal(resp.choices[0].content, "t");
        assert_string_equal(resp.choices[0].finish_reason, finish_cases[i].exp);
        if (finish_cases[i].unmapped)
            assert_str_eq_or_null(finish_cases[i].gemini, finish_cases[i].gemini, unmapped);
        else
            assert_null(unmapped);
        free(unmapped);
        aigw_chat_response_free(&resp);
    }
}

/* --- streaming ----------------------------------------------------------- */

static cJSON *chunks_to_json(const struct aigw_chat_chunk *chunks, size_t n) {
    cJSON *a = cJSON_CreateArray();

    for (size_t i = 0; i < n; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "index", chunks[i].index);
        if (chunks[i].role)
            cJSON_AddTrueToObject(c, "role");
        if (chunks[i].content)
            cJSON_AddStringToObject(c, "content", chunks[i].content);
        if (chunks[i].finish_reason)
            cJSON_AddStringToObject(c, "finish_reason", chunks[i].finish_reason);
        if (chunks[i].usage.present) {
            cJSON *u = cJSON_AddObjectToObject(c, "usage");
            cJSON_AddNumberToObject(u, "prompt", (double) chunks[i].usage.prompt_tokens);
            cJSON_AddNumberToObject(u, "completion", (double) chunks[i].usage.completion_tokens);
            cJSON_AddNumberToObject(u, "total", (double) chunks[i].usage.total_tokens);
        }
        cJSON_AddItemToArray(a, c);
    }
    return a;
}

#define TEXT_EV(idx, text, tail)                                                                   \
    "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"" text "\"}]},"     \
    "\"index\":" #idx tail "}]}"

struct stream_case {
    const char *name;
    const char *events[20];
    int fail_at;      /* 1-based event expected to fail, 0: none */
    int fail_r;
    int fail_status;
    const char *fail_type;
    const char *fail_message;
    /* one array per event call, then one for finish (unless fail_at) */
    const char *exp;
    int finish_r; /* expected finish() result */
    const char *exp_unmapped;
    bool exp_missing;
    const char *exp_id, *exp_model;
};

static const struct stream_case stream_cases[] = {
    {
        .name = "STOP on every chunk: only the last chunk has finish_reason",
        .events = {
            "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}],\"role\":\"model\"},"
            "\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":2,"
            "\"candidatesTokenCount\":1,\"totalTokenCount\":3},\"modelVersion\":\"gemini-pro\","
            "\"responseId\":\"r1\"}",
            TEXT_EV(0, "lo", ",\"finishReason\":\"STOP\""),
            "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"!\"}],\"role\":\"model\"},"
            "\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":2,"
            "\"candidatesTokenCount\":3,\"totalTokenCount\":5},\"modelVersion\":\"other\","
            "\"responseId\":\"r2\"}",
        },
        .exp = "[[{\"index\":0,\"role\":true,\"content\":\"Hel\"}],"
               "[{\"index\":0,\"content\":\"lo\"}],[{\"index\":0,\"content\":\"!\"}],"
               "[{\"index\":0,\"finish_reason\":\"stop\"},{\"index\":-1,\"usage\":{\"prompt\":2,"
               "\"completion\":3,\"total\":5}}]]",
        .exp_id = "r1",
        .exp_model = "gemini-pro",
    },
    {
        .name = "MAX_TOKENS final event without parts",
        .events = {
            TEXT_EV(0, "abc", ""),
            "{\"candidates\":[{\"content\":{\"role\":\"model\"},\"finishReason\":\"MAX_TOKENS\","
            "\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":1,\"candidatesTokenCount\":8,"
            "\"totalTokenCount\":9}}",
        },
        .exp = "[[{\"index\":0,\"role\":true,\"content\":\"abc\"}],[],"
               "[{\"index\":0,\"finish_reason\":\"length\"},{\"index\":-1,\"usage\":{\"prompt\":1,"
               "\"completion\":8,\"total\":9}}]]",
    },
    {
        .name = "usage from the last event, not summed",
        .events = {
            "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}],\"usageMetadata\":"
            "{\"promptTokenCount\":5,\"candidatesTokenCount\":1,\"totalTokenCount\":6}}",
            "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}]}}],\"usageMetadata\":"
            "{\"promptTokenCount\":5,\"candidatesTokenCount\":3,\"totalTokenCount\":8}}",
            "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"c\"}]},\"finishReason\":"
            "\"STOP\"}]}",
            "{\"usageMetadata\":{\"promptTokenCount\":5,\"candidatesTokenCount\":7,"
            "\"thoughtsTokenCount\":2,\"totalTokenCount\":14}}",
        },
        .exp = "[[{\"index\":0,\"role\":true,\"content\":\"a\"}],[{\"index\":0,\"content\":\"b\"}],"
               "[{\"index\":0,\"content\":\"c\"}],[],"
               "[{\"index\":0,\"finish_reason\":\"stop\"},{\"index\":-1,\"usage\":{\"prompt\":5,"
               "\"completion\":9,\"total\":14}}]]",
    },
    {
        .name = "no usage, no usage chunk",
        .events = { TEXT_EV(0, "a", ",\"finishReason\":\"STOP\"") },
        .exp = "[[{\"index\":0,\"role\":true,\"content\":\"a\"}],"
               "[{\"index\":0,\"finish_reason\":\"stop\"}]]",
    },
    {
        .name = "blocked prompt",
        .events = {
            "{\"promptFeedback\":{\"blockReason\":\"PROHIBITED_CONTENT\"},\"usageMetadata\":"
            "{\"promptTokenCount\":4,\"totalTokenCount\":4},\"modelVersion\":\"m\"}",
        },
        .exp = "[[],[{\"index\":0,\"role\":true,\"finish_reason\":\"content_filter\"},"
               "{\"index\":-1,\"usage\":{\"prompt\":4,\"completion\":0,\"total\":4}}]]",
        .exp_model = "m",
    },
    {
        .name = "safety stop mid-stream",
        .events = {
            TEXT_EV(0, "once upon", ""),
            "{\"candidates\":[{\"finishReason\":\"SAFETY\",\"index\":0}]}",
        },
        .exp = "[[{\"index\":0,\"role\":true,\"content\":\"once upon\"}],[],"
               "[{\"index\":0,\"finish_reason\":\"content_filter\"}]]",
    },
    {
        .name = "latest finish reason wins",
        .events = {
            TEXT_EV(0, "a", ",\"finishReason\":\"STOP\""),
            TEXT_EV(0, "b", ",\"finishReason\":\"MAX_TOKENS\""),
        },
        .exp = "[[{\"index\":0,\"role\":true,\"content\":\"a\"}],[{\"index\":0,\"content\":\"b\"}],"
               "[{\"index\":0,\"finish_reason\":\"length\"}]]",
    },
    {
        .name = "error inside the stream",
        .events = {
            TEXT_EV(0, "a", ""),
            "{\"error\":{\"code\":503,\"message\":\"The model is overloaded.\","
            "\"status\":\"UNAVAILABLE\"}}",
        },
        .fail_at = 2,
        .fail_r = -EREMOTEIO,
        .fail_status = 503,
        .fail_type = "api_error",
        .fail_message = "Gemini UNAVAILABLE: The model is overloaded.",
        .exp = "[[{\"index\":0,\"role\":true,\"content\":\"a\"}]]",
    },
    {
        .name = "rate limit inside the stream, status from error.code",
        .events = { "{\"error\":{\"code\":429,\"message\":\"slow down\"}}" },
        .fail_at = 1,
        .fail_r = -EREMOTEIO,
        .fail_status = 429,
        .fail_type = "rate_limit_error",
        .fail_message = "Gemini HTTP 429: slow down",
        .exp = "[]",
    },
    {
        .name = "garbage event",
        .events = { TEXT_EV(0, "a", ""), "{\"candidates\":[{\"content\":" },
        .fail_at = 2,
        .fail_r = -EBADMSG,
        .fail_status = 502,
        .fail_type = "api_error",
        .fail_message = "upstream sent an invalid response",
        .exp = "[[{\"index\":0,\"role\":true,\"content\":\"a\"}]]",
    },
    {
        .name = "bad event leaves state untouched",
        .events = {
            TEXT_EV(0, "a", ""),
            /* valid first candidate, bad second one */
            "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}]},\"index\":1,"
            "\"finishReason\":\"SAFETY\"},7],\"usageMetadata\":{\"promptTokenCount\":1}}",
        },
        .fail_at = 2,
        .fail_r = -EBADMSG,
        .fail_status = 502,
        .fail_type = "api_error",
        .fail_message = "upstream sent an invalid response",
        /* finish still runs after the failure in this harness */
        .exp = "[[{\"index\":0,\"role\":true,\"content\":\"a\"}],"
               "[{\"index\":0,\"finish_reason\":\"stop\"}]]",
        .exp_missing = true,
    },
    {
        .name = "thought parts are not emitted; role goes on the first real chunk",
        .events = {
            "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"thinking\",\"thought\":true}]}"
            ",\"index\":0}]}",
            "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\"}]},\"index\":0}]}",
            TEXT_EV(0, "answer", ",\"finishReason\":\"STOP\""),
        },
        .exp = "[[],[],[{\"index\":0,\"role\":true,\"content\":\"answer\"}],"
               "[{\"index\":0,\"finish_reason\":\"stop\"}]]",
    },
    {
        .name = "empty event data is ignored",
        .events = { "", TEXT_EV(0, "a", ",\"finishReason\":\"STOP\"") },
        .exp = "[[],[{\"index\":0,\"role\":true,\"content\":\"a\"}],"
               "[{\"index\":0,\"finish_reason\":\"stop\"}]]",
    },
    {
        .name = "no finish reason at all",
        .events = { TEXT_EV(0, "a", "") },
        .exp = "[[{\"index\":0,\"role\":true,\"content\":\"a\"}],"
               "[{\"index\":0,\"finish_reason\":\"stop\"}]]",
        .exp_missing = true,
    },
    {
        .name = "unknown finish reason",
        .events = { TEXT_EV(0, "a", ",\"finishReason\":\"WEIRD\""),
                    TEXT_EV(0, "b", ",\"finishReason\":\"OTHER\"") },
        .exp = "[[{\"index\":0,\"role\":true,\"content\":\"a\"}],[{\"index\":0,\"content\":\"b\"}],"
               "[{\"index\":0,\"finish_reason\":\"stop\"}]]",
        .exp_unmapped = "WEIRD",
    },
    {
        .name = "two candidates",
        .events = {
            "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]}},{\"content\":"
            "{\"parts\":[{\"text\":\"y\"}]},\"index\":1}]}",
            "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"z\"}]},\"index\":1,"
            "\"finishReason\":\"MAX_TOKENS\"},{\"finishReason\":\"STOP\",\"index\":0}]}",
        },
        .exp = "[[{\"index\":0,\"role\":true,\"content\":\"x\"},{\"index\":1,\"role\":true,"
               "\"content\":\"y\"}],[{\"index\":1,\"content\":\"z\"}],"
               "[{\"index\":0,\"finish_reason\":\"stop\"},"
               "{\"index\":1,\"finish_reason\":\"length\"}]]",
    },
    {
        .name = "a candidate that only finishes gets role on its final chunk",
        .events = {
            TEXT_EV(0, "x", ""),
            "{\"candidates\":[{\"finishReason\":\"RECITATION\",\"index\":3}]}",
        },
        .exp = "[[{\"index\":0,\"role\":true,\"content\":\"x\"}],[],"
               "[{\"index\":0,\"finish_reason\":\"stop\"},"
               "{\"index\":3,\"role\":true,\"finish_reason\":\"content_filter\"}]]",
        .exp_missing = true,
    },
    {
        .name = "no candidates in the whole stream",
        .events = { "{\"usageMetadata\":{\"promptTokenCount\":1}}" },
        .exp = "[[]]",
        .finish_r = -EBADMSG,
    },
    {
        .name = "no events",
        .exp = "[]",
        .finish_r = -EBADMSG,
    },
    {
        .name = "too many candidates",
        .events = {
            "{\"candidates\":[{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}]}",
        },
        .fail_at = 1,
        .fail_r = -EBADMSG,
        .fail_status = 502,
        .fail_type = "api_error",
        .fail_message = "upstream sent an invalid response",
        .exp = "[]",
    },
};

static void run_stream_case(const struct stream_case *c) {
    _cleanup_(cJSON_Deletep) cJSON *all = cJSON_CreateArray();
    struct aigw_gemini_stream s;
    struct aigw_chat_chunk *chunks;
    struct aigw_error err = {};
    size_t n;
    int r;

    aigw_gemini_stream_init(&s);
    for (int i = 0; i < (int) ELEMENTSOF(c->events) && c->events[i]; i++) {
        chunks = (struct aigw_chat_chunk *) c;
        n = 12345;
        r = aigw_gemini_stream_event(&s, c->events[i], strlen(c->events[i]), &chunks, &n, &err);
        if (i + 1 == c->fail_at) {
            if (r != c->fail_r)
                fail_msg("%s: event %d r=%d, expected %d", c->name, i + 1, r, c->fail_r);
            assert_err(c->name, &err, c->fail_status, c->fail_type, NULL, NULL,
                       c->fail_message);
            assert_ptr_equal(chunks, c);
            assert_int_equal(n, 12345);
            break;
        }
        if (r != 0)
            fail_msg("%s: event %d r=%d (%s)", c->name, i + 1, r, err.message);
        if (n == 0)
            assert_null(chunks);
        cJSON_AddItemToArray(all, chunks_to_json(chunks, n));
        aigw_chat_chunks_free(chunks, n);
    }

    if (!c->fail_at || strstr(c->name, "state untouched")) {
        r = aigw_gemini_stream_finish(&s, &chunks, &n, &err);
        if (r != c->finish_r)
            fail_msg("%s: finish r=%d, expected %d", c->name, r, c->finish_r);
        if (r < 0)
            assert_err(c->name, &err, 502, "api_error", NULL, NULL,
                       "upstream sent no candidates");
        else {
            cJSON_AddItemToArray(all, chunks_to_json(chunks, n));
            aigw_chat_chunks_free(chunks, n);
            assert_string_equal(s.unmapped_finish, c->exp_unmapped ?: "");
            assert_int_equal(s.missing_finish, c->exp_missing);

            /* nothing after finish */
            assert_int_equal(aigw_gemini_stream_event(&s, "{}", 2, &chunks, &n, &err), -EINVAL);
            assert_int_equal(err.status, 500);
            assert_int_equal(aigw_gemini_stream_finish(&s, &chunks, &n, &err), -EINVAL);
        }
    }
    assert_json_eq(c->name, c->exp, all);
    assert_str_eq_or_null(c->name, c->exp_id, s.id);
    assert_str_eq_or_null(c->name, c->exp_model, s.model);
    aigw_gemini_stream_done(&s);
    aigw_gemini_stream_done(NULL);
}

static void test_stream(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(stream_cases); i++)
        run_stream_case(&stream_cases[i]);
}

/* --- errors -------------------------------------------------------------- */

#define KEY_MSG_PREFIX                                                                             \
    "the gateway's Gemini API key was rejected; this is not a problem with your key "             \
    "(operator: check the backend's api_key_credential, api_key_env or api_key_file): "

static void test_map_error(void **state) {
    static const struct {
        long http;
        const char *body;
        int status;
        const char *type, *code, *message;
    } cases[] = {
        { 400,
          "{\"error\":{\"code\":400,\"message\":\"Request contains an invalid argument.\","
          "\"status\":\"INVALID_ARGUMENT\"}}",
          400, "invalid_request_error", NULL,
          "Gemini INVALID_ARGUMENT: Request contains an invalid argument." },
        { 400,
          "{\"error\":{\"code\":400,\"message\":\"User location is not supported\","
          "\"status\":\"FAILED_PRECONDITION\"}}",
          400, "invalid_request_error", NULL,
          "Gemini FAILED_PRECONDITION: User location is not supported" },
        { 400,
          "{\"error\":{\"code\":400,\"message\":\"API key not valid. Please pass a valid API "
          "key.\",\"status\":\"INVALID_ARGUMENT\",\"details\":[{\"@type\":"
          "\"type.googleapis.com/google.rpc.ErrorInfo\",\"reason\":\"API_KEY_INVALID\","
          "\"domain\":\"googleapis.com\"}]}}",
          502, "api_error", NULL,
          KEY_MSG_PREFIX "API key not valid. Please pass a valid API key." },
        { 401,
          "{\"error\":{\"code\":401,\"message\":\"no creds\",\"status\":\"UNAUTHENTICATED\"}}",
          502, "api_error", NULL, KEY_MSG_PREFIX "no creds" },
        { 403,
          "{\"error\":{\"code\":403,\"message\":\"denied\",\"status\":\"PERMISSION_DENIED\"}}",
          502, "api_error", NULL, KEY_MSG_PREFIX "denied" },
        { 404,
          "{\"error\":{\"code\":404,\"message\":\"models/x is not found\","
          "\"status\":\"NOT_FOUND\"}}",
          404, "not_found_error", "model_not_found", "Gemini NOT_FOUND: models/x is not found" },
        { 429,
          "{\"error\":{\"code\":429,\"message\":\"Resource has been exhausted\","
          "\"status\":\"RESOURCE_EXHAUSTED\"}}",
          429, "rate_limit_error", NULL, "Gemini RESOURCE_EXHAUSTED: Resource has been exhausted" },
        { 504,
          "{\"error\":{\"code\":504,\"message\":\"late\",\"status\":\"DEADLINE_EXCEEDED\"}}",
          504, "timeout_error", NULL, "Gemini DEADLINE_EXCEEDED: late" },
        { 503,
          "{\"error\":{\"code\":503,\"message\":\"overloaded\",\"status\":\"UNAVAILABLE\"}}",
          503, "api_error", NULL, "Gemini UNAVAILABLE: overloaded" },
        { 500,
          "{\"error\":{\"code\":500,\"message\":\"oops\",\"status\":\"INTERNAL\"}}",
          502, "api_error", NULL, "Gemini INTERNAL: oops" },
        { 500, "{\"error\":{\"code\":500,\"message\":\"?\",\"status\":\"BRAND_NEW\"}}",
          502, "api_error", NULL, "Gemini BRAND_NEW: ?" },
        { 429, "{\"error\":{\"message\":\"x\",\"status\":\"BRAND_NEW\"}}",
          429, "rate_limit_error", NULL, "Gemini BRAND_NEW: x" },
        { 400,
          "[{\"error\":{\"code\":400,\"message\":\"bad\",\"status\":\"INVALID_ARGUMENT\"}}]",
          400, "invalid_request_error", NULL, "Gemini INVALID_ARGUMENT: bad" },
        { 0, "{\"error\":{\"code\":404,\"message\":\"gone\"}}",
          404, "not_found_error", "model_not_found", "Gemini HTTP 404: gone" },
        { 200, "{\"error\":{\"code\":504}}",
          504, "timeout_error", NULL, "Gemini HTTP 504: (no error message)" },
        { 502, "{\"error\":\"flat string\"}",
          502, "api_error", NULL, "Gemini HTTP 502: (no error message)" },
        { 500,
          "{\"error\":{\"message\":\"bad\\r\\nthing\\u0001\\u0085end\",\"status\":"
          "\"INTERNAL\"}}",
          502, "api_error", NULL, "Gemini INTERNAL: bad  thing  end" },
        /* non-JSON bodies: the HTTP status decides */
        { 400, "<html>", 400, "invalid_request_error", NULL,
          "Gemini HTTP 400: (no error message)" },
        { 401, "<html>", 502, "api_error", NULL, KEY_MSG_PREFIX "(no error message)" },
        { 403, "", 502, "api_error", NULL, KEY_MSG_PREFIX "(no error message)" },
        { 404, "nope", 404, "not_found_error", "model_not_found",
          "Gemini HTTP 404: (no error message)" },
        { 408, "x", 504, "timeout_error", NULL, "Gemini HTTP 408: (no error message)" },
        { 429, "x", 429, "rate_limit_error", NULL, "Gemini HTTP 429: (no error message)" },
        { 500, "x", 502, "api_error", NULL, "Gemini HTTP 500: (no error message)" },
        { 502, "x", 502, "api_error", NULL, "Gemini HTTP 502: (no error message)" },
        { 503, "<html>503</html>", 503, "api_error", NULL,
          "Gemini HTTP 503: (no error message)" },
        { 504, "x", 504, "timeout_error", NULL, "Gemini HTTP 504: (no error message)" },
        { 418, "x", 502, "api_error", NULL, "Gemini HTTP 418: (no error message)" },
        { 0, "x", 502, "api_error", NULL, "Gemini error: (no error message)" },
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        struct aigw_error err = {};
        char name[32];

        snprintf(name, sizeof name, "map_error case %zu", i);
        aigw_gemini_map_error(cases[i].http, cases[i].body, strlen(cases[i].body), &err);
        assert_err(name, &err, cases[i].status, cases[i].type, cases[i].code, NULL,
                   cases[i].message);
    }
}

static bool valid_utf8_no_controls(const char *s) {
    const unsigned char *p = (const unsigned char *) s;

    while (*p) {
        size_t l = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : 4;
        if (*p < 0x20 || *p == 0x7f)
            return false;
        for (size_t i = 1; i < l; i++)
            if ((p[i] & 0xc0) != 0x80)
                return false;
        p += l;
    }
    return true;
}

static void test_map_error_bounded(void **state) {
    struct aigw_error err = {};
    _cleanup_free_ char *body = malloc(4096);
    size_t o;

    /* 2-byte characters across the cut, raw invalid bytes */
    o = (size_t) snprintf(body, 4096, "{\"error\":{\"status\":\"INTERNAL\",\"message\":\"a");
    for (int i = 0; i < 400; i++) {
        memcpy(body + o, "\xc3\xa9", 2);
        o += 2;
    }
    snprintf(body + o, 4096 - o, "\"}}");
    aigw_gemini_map_error(500, body, strlen(body), &err);
    assert_int_equal(err.status, 502);
    assert_true(valid_utf8_no_controls(err.message));
    /* prefix + 'a' + 149 characters of 2 bytes: 299 bytes, under the bound */
    assert_int_equal(strlen(err.message), strlen("Gemini INTERNAL: ") + 1 + 149 * 2);

    snprintf(body, 4096, "{\"error\":{\"status\":\"INTERNAL\",\"message\":\"x\xff\xfe\xc3(\"}}");
    aigw_gemini_map_error(500, body, strlen(body), &err);
    assert_string_equal(err.message, "Gemini INTERNAL: x??" "?(");

    /* the longest prefix with a full-length message still fits unclipped */
    o = (size_t) snprintf(body, 4096,
                          "{\"error\":{\"status\":\"PERMISSION_DENIED\",\"message\":\"");
    memset(body + o, 'k', 1000);
    snprintf(body + o + 1000, 4096 - o - 1000, "\"}}");
    aigw_gemini_map_error(403, body, strlen(body), &err);
    assert_int_equal(strlen(err.message), strlen(KEY_MSG_PREFIX) + 300);
}

static void test_retryable(void **state) {
    static const struct {
        long status;
        bool retryable;
    } cases[] = {
        { 429, true },  { 500, true },  { 502, true },  { 503, true },  { 504, true },
        { 0, false },   { 200, false }, { 400, false }, { 401, false }, { 403, false },
        { 404, false }, { 408, false }, { 501, false }, { 505, false },
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++)
        if (aigw_gemini_status_retryable(cases[i].status) != cases[i].retryable)
            fail_msg("retryable(%ld)", cases[i].status);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_request),
        cmocka_unit_test(test_build_request_dropped_bounded),
        cmocka_unit_test(test_url),
        cmocka_unit_test(test_parse_response),
        cmocka_unit_test(test_finish_reasons),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_map_error),
        cmocka_unit_test(test_map_error_bounded),
        cmocka_unit_test(test_retryable),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
