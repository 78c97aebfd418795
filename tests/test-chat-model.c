/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aigw/chat-model.h"
#include "aigw/macro.h"

#define M_USER "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static int parse(const char *body, const struct aigw_chat_limits *lim,
                 struct aigw_chat_request *ret, struct aigw_error *err) {
    return aigw_chat_request_parse(body, strlen(body), lim, ret, err);
}

/* ------------------------------------------------------------------ */
/* Request validation errors */

static const struct aigw_chat_limits small_limits = {
    .max_messages = 2, .max_total_chars = 5, .max_n = 2, .max_stop = 5
};

static const struct {
    const char *body;
    const struct aigw_chat_limits *lim;
    const char *code;
    const char *param;
    const char *message;
} bad_requests[] = {
    { "[]", NULL, "invalid_type", NULL,
      "Invalid type for the request body: expected an object, but got an array instead." },
    { "\"x\"", NULL, "invalid_type", NULL,
      "Invalid type for the request body: expected an object, but got a string instead." },
    { "{\"model\":\"a\",\"model\":\"b\"," M_USER "}", NULL, "duplicate_key", NULL,
      "The request body has the key 'model' more than once." },
    { "{\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"content\":\"bbbbbbbb\"}]}", NULL,
      "duplicate_key", NULL, "The request body has the key 'content' more than once." },
    { "{\"tools\":[{\"k0\":0,\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,"
      "\"k8\":8,\"k9\":9,\"ka\":10,\"kb\":11,\"kc\":12,\"kd\":13,\"ke\":14,\"kf\":15,"
      "\"kg\":16,\"k3\":17}]," M_USER "}",
      NULL, "duplicate_key", NULL, "The request body has the key 'k3' more than once." },
    { "{\"model\":5," M_USER "}", NULL, "invalid_type", "model",
      "Invalid type for 'model': expected a string, but got an integer instead." },
    { "{\"model\":\"\"," M_USER "}", NULL, "empty_string", "model",
      "Invalid 'model': empty string. Expected a string with minimum length 1, but got an "
      "empty string instead." },
    { "{}", NULL, "missing_required_parameter", "messages",
      "Missing required parameter: 'messages'." },
    { "{\"messages\":null}", NULL, "missing_required_parameter", "messages",
      "Missing required parameter: 'messages'." },
    { "{\"messages\":{}}", NULL, "invalid_type", "messages",
      "Invalid type for 'messages': expected an array, but got an object instead." },
    { "{\"messages\":[]}", NULL, "empty_array", "messages",
      "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
      "empty array instead." },
    { "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":\"b\"},"
      "{\"role\":\"user\",\"content\":\"c\"}]}",
      &small_limits, "array_above_max_length", "messages",
      "Invalid 'messages': array too long. Expected an array with maximum length 2, but got an "
      "array with length 3 instead." },
    { "{\"messages\":[\"hi\"]}", NULL, "invalid_type", "messages[0]",
      "Invalid type for 'messages[0]': expected an object, but got a string instead." },
    { "{\"messages\":[{\"content\":\"x\"}]}", NULL, "missing_required_parameter",
      "messages[0].role", "Missing required parameter: 'messages[0].role'." },
    { "{\"messages\":[{\"role\":5,\"content\":\"x\"}]}", NULL, "invalid_type", "messages[0].role",
      "Invalid type for 'messages[0].role': expected a string, but got an integer instead." },
    { "{\"messages\":[{\"role\":\"function\",\"content\":\"x\"}]}", NULL, "invalid_value",
      "messages[0].role",
      "Invalid value for 'messages[0].role': 'function'. Supported values are: 'system', "
      "'developer', 'user', 'assistant', and 'tool'." },
    { "{\"messages\":[{\"role\":\"us\\ner\",\"content\":\"x\"}]}", NULL, "invalid_value",
      "messages[0].role",
      "Invalid value for 'messages[0].role': 'us er'. Supported values are: 'system', "
      "'developer', 'user', 'assistant', and 'tool'." },
    { "{\"messages\":[{\"role\":\"user\"}]}", NULL, "missing_required_parameter",
      "messages[0].content", "Missing required parameter: 'messages[0].content'." },
    { "{\"messages\":[{\"role\":\"user\",\"content\":null}]}", NULL, "invalid_type",
      "messages[0].content",
      "Invalid type for 'messages[0].content': expected one of a string or array of objects, "
      "but got null instead." },
    { "{\"messages\":[{\"role\":\"tool\",\"content\":null,\"tool_calls\":[]}]}", NULL,
      "invalid_type", "messages[0].content",
      "Invalid type for 'messages[0].content': expected one of a string or array of objects, "
      "but got null instead." },
    { "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", NULL, "invalid_type",
      "messages[0].content",
      "Invalid type for 'messages[0].content': expected one of a string or array of objects, "
      "but got an integer instead." },
    { "{\"messages\":[{\"role\":\"system\",\"content\":true}]}", NULL, "invalid_type",
      "messages[0].content",
      "Invalid type for 'messages[0].content': expected one of a string or array of objects, "
      "but got a boolean instead." },
    { "{\"messages\":[{\"role\":\"user\",\"content\":{}}]}", NULL, "invalid_type",
      "messages[0].content",
      "Invalid type for 'messages[0].content': expected one of a string or array of objects, "
      "but got an object instead." },
    { "{\"messages\":[{\"role\":\"user\",\"content\":[]}]}", NULL, "empty_array",
      "messages[0].content",
      "Invalid 'messages[0].content': empty array. Expected an array with minimum length 1, but "
      "got an empty array instead." },
    { "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":"
      "\"b\"},{\"role\":\"user\",\"content\":[\"x\"]}]}",
      NULL, "invalid_type", "messages[2].content[0]",
      "Invalid type for 'messages[2].content[0]': expected an object, but got a string "
      "instead." },
    { "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}", NULL,
      "missing_required_parameter", "messages[0].content[0].type",
      "Missing required parameter: 'messages[0].content[0].type'." },
    { "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":1,\"text\":\"x\"}]}]}", NULL,
      "invalid_type", "messages[0].content[0].type",
      "Invalid type for 'messages[0].content[0].type': expected a string, but got an integer "
      "instead." },
    { "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"},"
      "{\"type\":\"image_url\",\"image_url\":{\"url\":\"http://x/y.png\"}}]}]}",
      NULL, "invalid_value", "messages[0].content[1].type",
      "Invalid value for 'messages[0].content[1].type': 'image_url'. Only text content parts "
      "are supported." },
    { "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", NULL,
      "missing_required_parameter", "messages[0].content[0].text",
      "Missing required parameter: 'messages[0].content[0].text'." },
    { "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":5}]}]}", NULL,
      "invalid_type", "messages[0].content[0].text",
      "Invalid type for 'messages[0].content[0].text': expected a string, but got an integer "
      "instead." },
    { "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":"
      "null}]}",
      NULL, "missing_required_parameter", "messages[1].content",
      "Missing required parameter: 'messages[1].content' (an assistant message needs content "
      "unless it has tool_calls)." },
    { "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\"}]}", NULL,
      "missing_required_parameter", "messages[1].content",
      "Missing required parameter: 'messages[1].content' (an assistant message needs content "
      "unless it has tool_calls)." },
    { "{\"messages\":[{\"role\":\"user\",\"content\":\"h\xc3\xa9llo!\"}]}", &small_limits,
      "context_length_exceeded", "messages",
      "This gateway accepts at most 5 characters of message text, but the messages have 6. "
      "Please reduce the length of the messages." },
    { "{\"messages\":[{\"role\":\"system\",\"content\":\"abc\"},{\"role\":\"user\",\"content\":"
      "[{\"type\":\"text\",\"text\":\"de\"},{\"type\":\"text\",\"text\":\"f\"}]}]}",
      &small_limits, "context_length_exceeded", "messages",
      "This gateway accepts at most 5 characters of message text, but the messages have 6. "
      "Please reduce the length of the messages." },
    { "{" M_USER ",\"temperature\":\"0.5\"}", NULL, "invalid_type", "temperature",
      "Invalid type for 'temperature': expected a number, but got a string instead." },
    { "{" M_USER ",\"temperature\":2.5}", NULL, "decimal_above_max_value", "temperature",
      "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 2.5 "
      "instead." },
    { "{" M_USER ",\"temperature\":-0.1}", NULL, "decimal_below_min_value", "temperature",
      "Invalid 'temperature': decimal below minimum value. Expected a value >= 0, but got -0.1 "
      "instead." },
    { "{" M_USER ",\"temperature\":1e999}", NULL, "decimal_above_max_value", "temperature",
      "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got inf "
      "instead." },
    { "{" M_USER ",\"top_p\":1.5}", NULL, "decimal_above_max_value", "top_p",
      "Invalid 'top_p': decimal above maximum value. Expected a value <= 1, but got 1.5 "
      "instead." },
    { "{" M_USER ",\"top_p\":true}", NULL, "invalid_type", "top_p",
      "Invalid type for 'top_p': expected a number, but got a boolean instead." },
    { "{" M_USER ",\"max_tokens\":0}", NULL, "integer_below_min_value", "max_tokens",
      "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got 0 "
      "instead." },
    { "{" M_USER ",\"max_tokens\":5.5}", NULL, "invalid_type", "max_tokens",
      "Invalid type for 'max_tokens': expected an integer, but got a decimal number instead." },
    { "{" M_USER ",\"max_tokens\":\"5\"}", NULL, "invalid_type", "max_tokens",
      "Invalid type for 'max_tokens': expected an integer, but got a string instead." },
    { "{" M_USER ",\"max_tokens\":2147483648}", NULL, "integer_above_max_value", "max_tokens",
      "Invalid 'max_tokens': integer above maximum value. Expected a value <= 2147483647, but "
      "got 2147483648 instead." },
    { "{" M_USER ",\"max_tokens\":1e300}", NULL, "integer_above_max_value", "max_tokens",
      "Invalid 'max_tokens': integer above maximum value. Expected a value <= 2147483647, but "
      "got 1e+300 instead." },
    { "{" M_USER ",\"max_completion_tokens\":-1}", NULL, "integer_below_min_value",
      "max_completion_tokens",
      "Invalid 'max_completion_tokens': integer below minimum value. Expected a value >= 1, but "
      "got -1 instead." },
    { "{" M_USER ",\"max_tokens\":10,\"max_completion_tokens\":20}", NULL, "invalid_value",
      "max_tokens",
      "Invalid 'max_tokens': when both 'max_tokens' and 'max_completion_tokens' are given they "
      "must be equal, but got 10 and 20." },
    { "{" M_USER ",\"n\":0}", NULL, "integer_below_min_value", "n",
      "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead." },
    { "{" M_USER ",\"n\":9}", NULL, "integer_above_max_value", "n",
      "Invalid 'n': integer above maximum value. Expected a value <= 8, but got 9 instead." },
    { "{" M_USER ",\"n\":3}", &small_limits, "integer_above_max_value", "n",
      "Invalid 'n': integer above maximum value. Expected a value <= 2, but got 3 instead." },
    { "{" M_USER ",\"n\":1.5}", NULL, "invalid_type", "n",
      "Invalid type for 'n': expected an integer, but got a decimal number instead." },
    { "{" M_USER ",\"stop\":5}", NULL, "invalid_type", "stop",
      "Invalid type for 'stop': expected one of a string or array of strings, but got an "
      "integer instead." },
    { "{" M_USER ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", NULL, "array_above_max_length",
      "stop",
      "Invalid 'stop': array too long. Expected an array with maximum length 4, but got an "
      "array with length 5 instead." },
    { "{" M_USER ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\"]}", &small_limits,
      "array_above_max_length", "stop",
      "Invalid 'stop': array too long. Expected an array with maximum length 5, but got an "
      "array with length 6 instead." },
    { "{" M_USER ",\"stop\":[\"a\",1]}", NULL, "invalid_type", "stop[1]",
      "Invalid type for 'stop[1]': expected a string, but got an integer instead." },
    { "{" M_USER ",\"stream\":\"true\"}", NULL, "invalid_type", "stream",
      "Invalid type for 'stream': expected a boolean, but got a string instead." },
    { "{" M_USER ",\"stream\":1}", NULL, "invalid_type", "stream",
      "Invalid type for 'stream': expected a boolean, but got an integer instead." },
    { "{" M_USER ",\"stream_options\":{\"include_usage\":true}}", NULL, "invalid_value",
      "stream_options",
      "The 'stream_options' parameter is only allowed when 'stream' is enabled." },
    { "{" M_USER ",\"stream\":false,\"stream_options\":{}}", NULL, "invalid_value",
      "stream_options",
      "The 'stream_options' parameter is only allowed when 'stream' is enabled." },
    { "{" M_USER ",\"stream\":true,\"stream_options\":5}", NULL, "invalid_type",
      "stream_options",
      "Invalid type for 'stream_options': expected an object, but got an integer instead." },
    { "{" M_USER ",\"stream\":true,\"stream_options\":{\"include_usage\":\"yes\"}}", NULL,
      "invalid_type", "stream_options.include_usage",
      "Invalid type for 'stream_options.include_usage': expected a boolean, but got a string "
      "instead." },
    { "{" M_USER ",\"user\":5}", NULL, "invalid_type", "user",
      "Invalid type for 'user': expected a string, but got an integer instead." },
    { "{" M_USER ",\"user\":[]}", NULL, "invalid_type", "user",
      "Invalid type for 'user': expected a string, but got an array instead." },
};

static void test_request_errors(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(bad_requests); i++) {
        struct aigw_chat_request req = { .n = 4242 };
        struct aigw_error err = {};
        char *json;

        print_message("case %zu: %s\n", i, bad_requests[i].body);
        assert_int_equal(parse(bad_requests[i].body, bad_requests[i].lim, &req, &err), -EINVAL);
        /* untouched on failure */
        assert_int_equal(req.n, 4242);
        assert_null(req.raw);
        assert_int_equal(err.status, 400);
        assert_string_equal(err.type, "invalid_request_error");
        if (bad_requests[i].code)
            assert_string_equal(err.code, bad_requests[i].code);
        else
            assert_null(err.code);
        if (bad_requests[i].param)
            assert_string_equal(err.param, bad_requests[i].param);
        else
            assert_null(err.param);
        assert_string_equal(err.message, bad_requests[i].message);

        /* the rendered form carries the same fields */
        json = aigw_error_render(&err);
        assert_non_null(json);
        assert_non_null(strstr(json, "\"type\":\"invalid_request_error\""));
        free(json);
    }
}

static void test_request_unparsable(void **state) {
    /* Deeper than cJSON's nesting limit (1000): valid JSON that cJSON
     * refuses. */
    char body[2 * 1100 + 1];
    struct aigw_chat_request req = {};
    struct aigw_error err = {};

    for (size_t i = 0; i < 1100; i++) {
        body[i] = '[';
        body[1100 + i] = ']';
    }
    body[2200] = '\0';
    assert_int_equal(parse(body, NULL, &req, &err), -EINVAL);
    assert_int_equal(err.status, 400);
    assert_null(err.code);
    assert_null(err.param);
    assert_string_equal(err.message, "We could not parse the JSON body of your request.");

    /* NULL err is allowed */
    assert_int_equal(parse("{}", NULL, &req, NULL), -EINVAL);
}

static void test_request_long_param(void **state) {
    /* An index of 20 digits still fits param_buf and the message. */
    struct aigw_error err = {};

    aigw_error_set(&err, 400, "invalid_request_error", NULL,
                   "messages[18446744073709551615].content[18446744073709551615].type", "x");
    assert_string_equal(err.param,
                        "messages[18446744073709551615].content[18446744073709551615].type");
}

/* ------------------------------------------------------------------ */
/* Request parsing: accepted inputs */

static void test_request_full(void **state) {
    static const char body[] =
        "{\"model\":\"gpt-4o\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"developer\",\"content\":\"really\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"part one\"},"
        "{\"type\":\"text\",\"text\":\"part two\"}],\"name\":\"bob\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\"}]},"
        "{\"role\":\"tool\",\"content\":\"42\",\"tool_call_id\":\"c1\"},"
        "{\"role\":\"assistant\",\"function_call\":{\"name\":\"f\"}}],"
        "\"temperature\":0.7,\"top_p\":1,\"max_tokens\":5.0,\"n\":2,"
        "\"stop\":[\"END\",\"\"],\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},\"user\":\"u-1\","
        "\"tools\":[{\"type\":\"function\"}],\"seed\":7}";
    struct aigw_chat_request req = {};
    struct aigw_error err = {};

    assert_int_equal(parse(body, NULL, &req, &err), 0);
    assert_string_equal(req.model, "gpt-4o");
    assert_int_equal(req.n_messages, 6);
    assert_int_equal(req.messages[0].role, AIGW_ROLE_SYSTEM);
    assert_int_equal(req.messages[0].n_parts, 1);
    assert_string_equal(req.messages[0].parts[0], "be brief");
    assert_int_equal(req.messages[1].role, AIGW_ROLE_SYSTEM);
    assert_string_equal(req.messages[1].parts[0], "really");
    assert_int_equal(req.messages[2].role, AIGW_ROLE_USER);
    assert_int_equal(req.messages[2].n_parts, 2);
    assert_string_equal(req.messages[2].parts[0], "part one");
    assert_string_equal(req.messages[2].parts[1], "part two");
    assert_int_equal(req.messages[3].role, AIGW_ROLE_ASSISTANT);
    assert_int_equal(req.messages[3].n_parts, 0);
    assert_null(req.messages[3].parts);
    assert_int_equal(req.messages[4].role, AIGW_ROLE_TOOL);
    assert_string_equal(req.messages[4].parts[0], "42");
    assert_int_equal(req.messages[5].role, AIGW_ROLE_ASSISTANT);
    assert_int_equal(req.messages[5].n_parts, 0);

    assert_true(req.has_temperature);
    assert_true(req.temperature == 0.7);
    assert_true(req.has_top_p);
    assert_true(req.top_p == 1.0);
    assert_true(req.has_max_tokens);
    assert_int_equal(req.max_tokens, 5);
    assert_true(req.has_n);
    assert_int_equal(req.n, 2);
    assert_int_equal(req.n_stop, 2);
    assert_string_equal(req.stop[0], "END");
    assert_string_equal(req.stop[1], "");
    assert_true(req.stream);
    assert_true(req.include_usage);
    assert_string_equal(req.user, "u-1");
    assert_non_null(cJSON_GetObjectItemCaseSensitive(req.raw, "tools"));

    aigw_chat_request_free(&req);
    assert_null(req.raw);
    assert_null(req.messages);
    aigw_chat_request_free(&req); /* twice is harmless */
    aigw_chat_request_free(NULL);
}

static void test_request_minimal_and_nulls(void **state) {
    static const char body[] =
        "{\"model\":null,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
        "\"temperature\":null,\"top_p\":null,\"max_tokens\":null,"
        "\"max_completion_tokens\":null,\"n\":null,\"stop\":null,\"stream\":null,"
        "\"stream_options\":null,\"user\":null}";
    struct aigw_chat_request req = {};
    struct aigw_error err = {};

    assert_int_equal(parse(body, NULL, &req, &err), 0);
    assert_null(req.model);
    assert_int_equal(req.n_messages, 1);
    assert_false(req.has_temperature);
    assert_false(req.has_top_p);
    assert_false(req.has_max_tokens);
    assert_false(req.has_n);
    assert_int_equal(req.n_stop, 0);
    assert_null(req.stop);
    assert_false(req.stream);
    assert_false(req.include_usage);
    assert_null(req.user);
    aigw_chat_request_free(&req);
}

static void test_request_stop_and_tokens(void **state) {
    static const struct {
        const char *extra;
        size_t n_stop;
        const char *stop0;
        bool has_max_tokens;
        int64_t max_tokens;
        bool stream, include_usage;
    } cases[] = {
        { ",\"stop\":\"\\n\\n\"", 1, "\n\n", false, 0, false, false },
        { ",\"stop\":[]", 0, NULL, false, 0, false, false },
        { ",\"stop\":[\"x\",\"y\",\"z\",\"w\"]", 4, "x", false, 0, false, false },
        { ",\"max_completion_tokens\":300", 0, NULL, true, 300, false, false },
        { ",\"max_tokens\":300,\"max_completion_tokens\":300", 0, NULL, true, 300, false, false },
        { ",\"max_tokens\":2147483647", 0, NULL, true, 2147483647, false, false },
        { ",\"max_tokens\":1e3", 0, NULL, true, 1000, false, false },
        { ",\"stream\":true", 0, NULL, false, 0, true, false },
        { ",\"stream\":true,\"stream_options\":{}", 0, NULL, false, 0, true, false },
        { ",\"stream\":true,\"stream_options\":{\"include_usage\":false}", 0, NULL, false, 0, true,
          false },
        { ",\"stream\":true,\"stream_options\":{\"include_usage\":null}", 0, NULL, false, 0, true,
          false },
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        struct aigw_chat_request req = {};
        struct aigw_error err = {};
        char body[512];

        snprintf(body, sizeof(body), "{" M_USER "%s}", cases[i].extra);
        print_message("case %zu: %s\n", i, body);
        assert_int_equal(parse(body, NULL, &req, &err), 0);
        assert_int_equal(req.n_stop, cases[i].n_stop);
        if (cases[i].stop0)
            assert_string_equal(req.stop[0], cases[i].stop0);
        assert_int_equal(req.has_max_tokens, cases[i].has_max_tokens);
        assert_int_equal(req.max_tokens, cases[i].max_tokens);
        assert_int_equal(req.stream, cases[i].stream);
        assert_int_equal(req.include_usage, cases[i].include_usage);
        aigw_chat_request_free(&req);
    }
}

static void test_request_limits(void **state) {
    struct aigw_chat_request req = {};
    struct aigw_error err = {};
    /* Zero fields take the defaults. */
    struct aigw_chat_limits zero = { .max_total_chars = 5 };
    struct aigw_chat_limits big_stop = { .max_stop = 100 };

    /* 5 code points, 6 bytes: counted as characters */
    assert_int_equal(parse("{\"messages\":[{\"role\":\"user\",\"content\":\"h\xc3\xa9llo\"}]}",
                           &small_limits, &req, &err),
                     0);
    aigw_chat_request_free(&req);

    assert_int_equal(parse("{" M_USER ",\"n\":8,\"stop\":[\"a\",\"b\",\"c\",\"d\"]}", &zero, &req,
                           &err),
                     0);
    aigw_chat_request_free(&req);
    assert_int_equal(parse("{" M_USER ",\"n\":9}", &zero, &req, &err), -EINVAL);
    assert_string_equal(err.param, "n");

    /* max_stop is capped at AIGW_MAX_STOP */
    {
        char body[512];
        int k = snprintf(body, sizeof(body), "{" M_USER ",\"stop\":[");

        for (int i = 0; i <= AIGW_MAX_STOP; i++)
            k += snprintf(body + k, sizeof(body) - (size_t)k, "%s\"s%d\"", i ? "," : "", i);
        snprintf(body + k, sizeof(body) - (size_t)k, "]}");
        assert_int_equal(parse(body, &big_stop, &req, &err), -EINVAL);
        assert_string_equal(err.code, "array_above_max_length");
    }
}

/* ------------------------------------------------------------------ */
/* Upstream request */

static void test_build_request(void **state) {
    static const struct aigw_model_defaults defaults = {
        .has_max_tokens = true, .max_tokens = 256, .has_temperature = true, .temperature = 0.5
    };
    static const struct {
        const char *in;
        const struct aigw_model_defaults *defaults;
        const char *out;
        bool include_usage;
    } cases[] = {
        /* unknown fields kept, model replaced in place, developer -> system */
        { "{\"model\":\"client\",\"messages\":[{\"role\":\"developer\",\"content\":\"s\"},"
          "{\"role\":\"user\",\"content\":\"hi\",\"name\":\"b\"}],\"tools\":[{\"type\":"
          "\"function\"}],\"seed\":7}",
          NULL,
          "{\"model\":\"up\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
          "{\"role\":\"user\",\"content\":\"hi\",\"name\":\"b\"}],\"tools\":[{\"type\":"
          "\"function\"}],\"seed\":7}",
          false },
        /* model absent: added */
        { "{" M_USER "}", NULL,
          "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"model\":\"up\"}", false },
        /* defaults where the client gave nothing */
        { "{" M_USER "}", &defaults,
          "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"model\":\"up\","
          "\"max_tokens\":256,\"temperature\":0.5}",
          false },
        /* client values win */
        { "{" M_USER ",\"max_tokens\":10,\"temperature\":1}", &defaults,
          "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":10,"
          "\"temperature\":1,\"model\":\"up\"}",
          false },
        { "{" M_USER ",\"max_completion_tokens\":10}", &defaults,
          "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_completion_tokens\":10,"
          "\"model\":\"up\",\"temperature\":0.5}",
          false },
        /* null counts as not given */
        { "{" M_USER ",\"temperature\":null,\"max_tokens\":null}", &defaults,
          "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.5,"
          "\"max_tokens\":256,\"model\":\"up\"}",
          false },
        /* streaming: usage always requested upstream */
        { "{" M_USER ",\"stream\":true}", NULL,
          "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true,"
          "\"model\":\"up\",\"stream_options\":{\"include_usage\":true}}",
          false },
        { "{" M_USER ",\"stream\":true,\"stream_options\":null}", NULL,
          "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true,"
          "\"stream_options\":{\"include_usage\":true},\"model\":\"up\"}",
          false },
        { "{" M_USER ",\"stream\":true,\"stream_options\":{\"include_usage\":false,\"x\":1}}",
          NULL,
          "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true,"
          "\"stream_options\":{\"include_usage\":true,\"x\":1},\"model\":\"up\"}",
          false },
        { "{" M_USER ",\"stream\":true,\"stream_options\":{\"include_usage\":true}}", NULL,
          "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true,"
          "\"stream_options\":{\"include_usage\":true},\"model\":\"up\"}",
          true },
        /* not streaming: no stream_options */
        { "{" M_USER ",\"stream\":false}", NULL,
          "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":false,"
          "\"model\":\"up\"}",
          false },
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        struct aigw_chat_request req = {};
        struct aigw_error err = {};
        char *out = NULL;

        print_message("case %zu\n", i);
        assert_int_equal(parse(cases[i].in, NULL, &req, &err), 0);
        assert_int_equal(aigw_openai_build_request(&req, "up", cases[i].defaults, &out), 0);
        assert_string_equal(out, cases[i].out);
        assert_int_equal(req.include_usage, cases[i].include_usage);
        free(out);
        aigw_chat_request_free(&req);
    }
}

static void test_build_request_errors(void **state) {
    struct aigw_chat_request req = {};
    struct aigw_error err = {};
    char *out = (char *)"untouched";

    assert_int_equal(aigw_openai_build_request(&req, "up", NULL, &out), -EINVAL);
    assert_int_equal(parse("{" M_USER "}", NULL, &req, &err), 0);
    assert_int_equal(aigw_openai_build_request(&req, NULL, NULL, &out), -EINVAL);
    assert_int_equal(aigw_openai_build_request(&req, "", NULL, &out), -EINVAL);
    assert_string_equal(out, "untouched");
    aigw_chat_request_free(&req);
}

static void test_build_request_duplicates_in_raw(void **state) {
    /* req->raw not from the parser, with duplicates: every copy of a key
     * aigw sets is replaced. */
    struct aigw_chat_request req = {
        .raw = cJSON_Parse("{\"model\":\"a\",\"x\":1,\"model\":\"b\",\"max_tokens\":1,"
                           "\"max_tokens\":99999}"),
    };
    struct aigw_model_defaults d = { .has_max_tokens = true, .max_tokens = 5 };
    char *out = NULL;

    assert_non_null(req.raw);
    assert_int_equal(aigw_openai_build_request(&req, "up", &d, &out), 0);
    assert_string_equal(out, "{\"model\":\"up\",\"x\":1,\"max_tokens\":5}");
    free(out);
    aigw_chat_request_free(&req);
}

/* ------------------------------------------------------------------ */
/* Upstream responses */

static void test_parse_response_good(void **state) {
    static const char body[] =
        "{\"id\":\"chatcmpl-up\",\"object\":\"chat.completion\",\"created\":1700000000,"
        "\"model\":\"llama3\",\"choices\":["
        "{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},"
        "\"finish_reason\":\"stop\"},"
        "{\"index\":1,\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]},"
        "\"finish_reason\":\"tool_calls\"},"
        "{\"message\":{\"role\":\"assistant\"},\"finish_reason\":\"length\"},"
        "{\"index\":7,\"message\":{\"content\":\"x\"},\"finish_reason\":\"abort\"},"
        "{\"index\":4,\"message\":{\"content\":\"y\"},\"finish_reason\":null},"
        "{\"index\":5,\"message\":{\"content\":\"z\"},\"finish_reason\":\"content_filter\"},"
        "{\"index\":6,\"message\":{\"content\":\"\"},\"finish_reason\":\"function_call\"}],"
        "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}";
    static const struct {
        int index;
        const char *content, *finish;
    } want[] = {
        { 0, "Hi", "stop" },           { 1, "", "tool_calls" }, { 2, "", "length" },
        { 7, "x", "stop" },            { 4, "y", "stop" },      { 5, "z", "content_filter" },
        { 6, "", "function_call" },
    };
    struct aigw_chat_response resp = {};
    struct aigw_error err = {};

    assert_int_equal(aigw_openai_parse_response(body, strlen(body), &resp, &err), 0);
    assert_string_equal(resp.id, "chatcmpl-up");
    assert_string_equal(resp.model, "llama3");
    assert_int_equal(resp.created, 1700000000);
    assert_int_equal(resp.n_choices, ELEMENTSOF(want));
    for (size_t i = 0; i < ELEMENTSOF(want); i++) {
        assert_int_equal(resp.choices[i].index, want[i].index);
        assert_string_equal(resp.choices[i].content, want[i].content);
        assert_string_equal(resp.choices[i].finish_reason, want[i].finish);
    }
    assert_true(resp.usage.present);
    assert_int_equal(resp.usage.prompt_tokens, 5);
    assert_int_equal(resp.usage.completion_tokens, 2);
    assert_int_equal(resp.usage.total_tokens, 7);
    assert_non_null(resp.raw);
    aigw_chat_response_free(&resp);
    assert_null(resp.raw);
    aigw_chat_response_free(NULL);
}

static void test_parse_response_usage(void **state) {
    static const struct {
        const char *usage;
        bool present;
        int64_t prompt, completion, total;
    } cases[] = {
        { "", false, 0, 0, 0 },
        { ",\"usage\":null", false, 0, 0, 0 },
        { ",\"usage\":{}", true, 0, 0, 0 },
        { ",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}", true, 3, 4, 7 },
        { ",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":1}", true, 3,
          4, 7 },
        { ",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":10}", true, 3,
          4, 10 },
        { ",\"usage\":{\"prompt_tokens\":-3,\"completion_tokens\":\"4\",\"total_tokens\":1.5}",
          true, 0, 0, 0 },
        { ",\"usage\":{\"prompt_tokens\":1e300,\"completion_tokens\":9.2e18,\"total_tokens\":9.2e18}",
          true, 0, 9200000000000000000, 9200000000000000000 },
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        struct aigw_chat_response resp = {};
        struct aigw_error err = {};
        char body[512];

        snprintf(body, sizeof(body), "{\"choices\":[{\"message\":{\"content\":\"a\"}}]%s}",
                 cases[i].usage);
        print_message("case %zu: %s\n", i, body);
        assert_int_equal(aigw_openai_parse_response(body, strlen(body), &resp, &err), 0);
        assert_null(resp.id);
        assert_null(resp.model);
        assert_int_equal(resp.created, 0);
        assert_int_equal(resp.usage.present, cases[i].present);
        assert_int_equal(resp.usage.prompt_tokens, cases[i].prompt);
        assert_int_equal(resp.usage.completion_tokens, cases[i].completion);
        assert_int_equal(resp.usage.total_tokens, cases[i].total);
        aigw_chat_response_free(&resp);
    }
}

static const struct {
    const char *body;
    int r;
    const char *message;
} bad_responses[] = {
    { "not json", -EBADMSG, "upstream sent an invalid response: not JSON" },
    { "", -EBADMSG, "upstream sent an invalid response: not JSON" },
    { "[1]", -EBADMSG, "upstream sent an invalid response: not a JSON object" },
    { "{}", -EBADMSG, "upstream sent an invalid response: no choices" },
    { "{\"choices\":null}", -EBADMSG, "upstream sent an invalid response: no choices" },
    { "{\"choices\":{}}", -EBADMSG, "upstream sent an invalid response: no choices" },
    { "{\"choices\":[]}", -EBADMSG, "upstream sent an invalid response: empty choices" },
    { "{\"choices\":[1]}", -EBADMSG,
      "upstream sent an invalid response: choices[0] is not an object" },
    { "{\"choices\":[{\"message\":{\"content\":\"a\"}},{}]}", -EBADMSG,
      "upstream sent an invalid response: choices[1].message is not an object" },
    { "{\"choices\":[{\"message\":\"a\"}]}", -EBADMSG,
      "upstream sent an invalid response: choices[0].message is not an object" },
    { "{\"choices\":[{\"message\":{\"content\":5}}]}", -EBADMSG,
      "upstream sent an invalid response: choices[0].message.content is not a string" },
    { "{\"choices\":[{\"message\":{\"content\":[{\"type\":\"text\"}]}}]}", -EBADMSG,
      "upstream sent an invalid response: choices[0].message.content is not a string" },
    { "{\"choices\":[{\"message\":{\"content\":\"a\"},\"finish_reason\":5}]}", -EBADMSG,
      "upstream sent an invalid response: choices[0].finish_reason is not a string" },
    { "{\"choices\":[{\"index\":-1,\"message\":{\"content\":\"a\"}}]}", -EBADMSG,
      "upstream sent an invalid response: choices[0].index is not a valid index" },
    { "{\"choices\":[{\"index\":0.5,\"message\":{\"content\":\"a\"}}]}", -EBADMSG,
      "upstream sent an invalid response: choices[0].index is not a valid index" },
    { "{\"choices\":[{\"index\":\"0\",\"message\":{\"content\":\"a\"}}]}", -EBADMSG,
      "upstream sent an invalid response: choices[0].index is not a valid index" },
    { "{\"choices\":[{\"index\":2147483648,\"message\":{\"content\":\"a\"}}]}", -EBADMSG,
      "upstream sent an invalid response: choices[0].index is not a valid index" },
    { "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}", -EREMOTEIO,
      "upstream sent an error: boom" },
    { "{\"error\":\"model is loading\"}", -EREMOTEIO, "upstream sent an error: model is loading" },
    { "{\"error\":{}}", -EREMOTEIO, "upstream sent an error: (no message)" },
};

static void test_parse_response_bad(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(bad_responses); i++) {
        struct aigw_chat_response resp = { .created = 99 };
        struct aigw_error err = {};

        print_message("case %zu: %s\n", i, bad_responses[i].body);
        assert_int_equal(aigw_openai_parse_response(bad_responses[i].body,
                                                    strlen(bad_responses[i].body), &resp, &err),
                         bad_responses[i].r);
        assert_int_equal(resp.created, 99);
        assert_null(resp.raw);
        assert_int_equal(err.status, 502);
        assert_string_equal(err.type, "api_error");
        assert_null(err.code);
        assert_null(err.param);
        assert_string_equal(err.message, bad_responses[i].message);
    }
}

/* ------------------------------------------------------------------ */
/* Stream events */

static void test_parse_chunk_done(void **state) {
    static const char *const dones[] = { "[DONE]", " [DONE]\r\n", "\n[DONE]\n" };

    for (size_t i = 0; i < ELEMENTSOF(dones); i++) {
        struct aigw_chat_chunk *chunks = (void *)1;
        size_t n = 99;
        bool done = false;

        assert_int_equal(aigw_openai_parse_chunk(dones[i], strlen(dones[i]), &chunks, &n, &done,
                                                 NULL),
                         0);
        assert_true(done);
        assert_int_equal(n, 0);
        assert_null(chunks);
    }
}

struct want_chunk {
    int index;
    bool role;
    const char *content;
    const char *finish;
    bool usage;
    int64_t total;
};

static const struct {
    const char *data;
    size_t n;
    struct want_chunk want[3];
} good_chunks[] = {
    { "{\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":"
      "{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}",
      1,
      { { 0, true, "", NULL, false, 0 } } },
    { "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"logprobs\":null,"
      "\"finish_reason\":null}],\"usage\":null}",
      1,
      { { 0, false, "Hel", NULL, false, 0 } } },
    { "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}",
      1,
      { { 0, false, NULL, "length", false, 0 } } },
    { "{\"choices\":[{\"index\":0,\"finish_reason\":\"eos\"}]}",
      1,
      { { 0, false, NULL, "stop", false, 0 } } },
    { "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}},{\"index\":1,\"delta\":"
      "{\"content\":\"b\"},\"finish_reason\":\"stop\"}]}",
      2,
      { { 0, false, "a", NULL, false, 0 }, { 1, false, "b", "stop", false, 0 } } },
    { "{\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,"
      "\"total_tokens\":12}}",
      1,
      { { -1, false, NULL, NULL, true, 12 } } },
    { "{\"choices\":[{\"delta\":{\"content\":\"z\"},\"finish_reason\":\"stop\"}],"
      "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}",
      2,
      { { 0, false, "z", "stop", false, 0 }, { -1, false, NULL, NULL, true, 2 } } },
    { "{\"choices\":[{\"index\":0,\"delta\":{\"content\":null,\"tool_calls\":[{\"index\":0}]}}]}",
      1,
      { { 0, false, NULL, NULL, false, 0 } } },
    { "{\"choices\":[]}", 0, {} },
    { "{\"choices\":null}", 0, {} },
    { "{\"object\":\"chat.completion.chunk\"}", 0, {} },
    { "{\"choices\":[],\"usage\":null,\"error\":null}", 0, {} },
};

static void test_parse_chunk_good(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(good_chunks); i++) {
        struct aigw_chat_chunk *chunks = (void *)1;
        size_t n = 99;
        bool done = true;

        print_message("case %zu: %s\n", i, good_chunks[i].data);
        assert_int_equal(aigw_openai_parse_chunk(good_chunks[i].data,
                                                 strlen(good_chunks[i].data), &chunks, &n, &done,
                                                 NULL),
                         0);
        assert_false(done);
        assert_int_equal(n, good_chunks[i].n);
        if (n == 0)
            assert_null(chunks);
        for (size_t k = 0; k < n; k++) {
            const struct want_chunk *w = &good_chunks[i].want[k];

            assert_int_equal(chunks[k].index, w->index);
            assert_int_equal(chunks[k].role, w->role);
            if (w->content)
                assert_string_equal(chunks[k].content, w->content);
            else
                assert_null(chunks[k].content);
            if (w->finish)
                assert_string_equal(chunks[k].finish_reason, w->finish);
            else
                assert_null(chunks[k].finish_reason);
            assert_int_equal(chunks[k].usage.present, w->usage);
            assert_int_equal(chunks[k].usage.total_tokens, w->total);
            assert_non_null(chunks[k].raw);
        }
        aigw_chat_chunks_free(chunks, n);
    }
    aigw_chat_chunks_free(NULL, 0);
    aigw_chat_chunk_clear(NULL);
}

static const struct {
    const char *data;
    int r;
    int status;
    const char *type;
    const char *message;
} bad_chunks[] = {
    { "{", -EBADMSG, 502, "api_error", "upstream sent an invalid response: stream event is not JSON" },
    { "", -EBADMSG, 502, "api_error", "upstream sent an invalid response: stream event is not JSON" },
    { "[DONE", -EBADMSG, 502, "api_error",
      "upstream sent an invalid response: stream event is not JSON" },
    { "[]", -EBADMSG, 502, "api_error",
      "upstream sent an invalid response: stream event is not a JSON object" },
    { "{\"choices\":5}", -EBADMSG, 502, "api_error",
      "upstream sent an invalid response: choices is not an array" },
    { "{\"choices\":[5]}", -EBADMSG, 502, "api_error",
      "upstream sent an invalid response: choices[0] is not an object" },
    { "{\"choices\":[{\"delta\":{}},{\"delta\":5}]}", -EBADMSG, 502, "api_error",
      "upstream sent an invalid response: choices[1].delta is not an object" },
    { "{\"choices\":[{\"delta\":{\"content\":5}}]}", -EBADMSG, 502, "api_error",
      "upstream sent an invalid response: choices[0].delta.content is not a string" },
    { "{\"choices\":[{\"delta\":{\"role\":true}}]}", -EBADMSG, 502, "api_error",
      "upstream sent an invalid response: choices[0].delta.role is not a string" },
    { "{\"choices\":[{\"delta\":{},\"finish_reason\":1}]}", -EBADMSG, 502, "api_error",
      "upstream sent an invalid response: choices[0].finish_reason is not a string" },
    { "{\"choices\":[{\"index\":\"x\"}]}", -EBADMSG, 502, "api_error",
      "upstream sent an invalid response: choices[0].index is not a valid index" },
    { "{\"choices\":[],\"usage\":5}", -EBADMSG, 502, "api_error",
      "upstream sent an invalid response: usage is not an object" },
    { "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"rate_limit_error\","
      "\"code\":\"429\"}}",
      -EREMOTEIO, 429, "rate_limit_error", "Rate limit reached" },
    { "{\"error\":{\"message\":\"too long\",\"code\":400}}", -EREMOTEIO, 400,
      "invalid_request_error", "too long" },
    { "{\"error\":{\"message\":\"overloaded\",\"code\":\"overloaded\"}}", -EREMOTEIO, 502,
      "api_error", "upstream error: overloaded" },
    { "{\"error\":{\"message\":\"x\",\"code\":200}}", -EREMOTEIO, 502, "api_error",
      "upstream error: x" },
    { "{\"error\":\"out of memory\"}", -EREMOTEIO, 502, "api_error",
      "upstream error: out of memory" },
    { "{\"error\":{}}", -EREMOTEIO, 502, "api_error", "upstream error: (no message)" },
};

static void test_parse_chunk_bad(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(bad_chunks); i++) {
        struct aigw_chat_chunk *chunks = (void *)1;
        size_t n = 99;
        bool done = true;
        struct aigw_error err = {};

        print_message("case %zu: %s\n", i, bad_chunks[i].data);
        assert_int_equal(aigw_openai_parse_chunk(bad_chunks[i].data, strlen(bad_chunks[i].data),
                                                 &chunks, &n, &done, &err),
                         bad_chunks[i].r);
        assert_ptr_equal(chunks, (void *)1);
        assert_int_equal(n, 99);
        assert_true(done);
        assert_int_equal(err.status, bad_chunks[i].status);
        assert_string_equal(err.type, bad_chunks[i].type);
        assert_string_equal(err.message, bad_chunks[i].message);
    }
}

/* ------------------------------------------------------------------ */
/* Upstream error mapping */

static const struct {
    long http;
    const char *body;
    int status;
    const char *type, *code, *param, *message;
} mapped[] = {
    { 400,
      "{\"error\":{\"message\":\"Invalid 'temperature'\",\"type\":\"invalid_request_error\","
      "\"param\":\"temperature\",\"code\":\"decimal_above_max_value\"}}",
      400, "invalid_request_error", "decimal_above_max_value", "temperature",
      "Invalid 'temperature'" },
    { 400, "{\"error\":{\"message\":\"bad\",\"code\":\"weird_code\",\"param\":5}}", 400,
      "invalid_request_error", NULL, NULL, "bad" },
    { 400,
      "{\"error\":{\"message\":\"This model's maximum context length is 8192 tokens\","
      "\"code\":\"context_length_exceeded\",\"param\":\"messages\"}}",
      400, "invalid_request_error", "context_length_exceeded", "messages",
      "This model's maximum context length is 8192 tokens" },
    { 400, "<html>bad</html>", 400, "invalid_request_error", NULL, NULL,
      "the backend rejected the request (HTTP 400)" },
    { 422, "{\"detail\":\"field required\"}", 400, "invalid_request_error", NULL, NULL,
      "field required" },
    { 413, "", 400, "invalid_request_error", NULL, NULL,
      "the backend rejected the request (HTTP 413)" },
    { 401, "{\"error\":{\"message\":\"Incorrect API key provided: sk-abc\"}}", 502, "api_error",
      NULL, NULL, "backend rejected aigw's credentials (HTTP 401)" },
    { 403, "forbidden", 502, "api_error", NULL, NULL,
      "backend rejected aigw's credentials (HTTP 403)" },
    { 404, "{\"error\":\"model \\\"llama9\\\" not found, try pulling it first\"}", 404,
      "not_found_error", "model_not_found", NULL,
      "model \"llama9\" not found, try pulling it first" },
    { 404, "Not Found", 404, "not_found_error", "model_not_found", NULL,
      "the backend does not know the model (HTTP 404)" },
    { 408, NULL, 504, "timeout_error", NULL, NULL, "the backend timed out" },
    { 504, "{\"message\":\"upstream timed out\"}", 504, "timeout_error", NULL, NULL,
      "the backend timed out: upstream timed out" },
    { 429, "{\"error\":{\"message\":\"slow down\",\"code\":\"rate_limit_exceeded\"}}", 429,
      "rate_limit_error", "rate_limit_exceeded", NULL, "slow down" },
    { 429, "", 429, "rate_limit_error", NULL, NULL, "the backend is rate limited (HTTP 429)" },
    { 500, "{\"error\":{\"message\":\"oops\"}}", 502, "api_error", NULL, NULL,
      "upstream error (HTTP 500): oops" },
    { 502, "<html>Bad Gateway</html>", 502, "api_error", NULL, NULL, "upstream error (HTTP 502)" },
    { 503, "{\"error\":{\"message\":\"loading\"}}", 503, "api_error", NULL, NULL,
      "the backend is temporarily unavailable: loading" },
    { 503, "[\"x\"]", 503, "api_error", NULL, NULL, "the backend is temporarily unavailable" },
    { 302, "", 502, "api_error", NULL, NULL, "upstream error (HTTP 302)" },
    { 400, "{\"error\":{\"message\":\"a\\nb\\u0001c\xff\xc3(d\"}}", 400, "invalid_request_error",
      NULL, NULL, "a b c?" "?(d" },
};

static void test_map_error(void **state) {
    for (size_t i = 0; i < ELEMENTSOF(mapped); i++) {
        struct aigw_error err = {};

        print_message("case %zu: %ld %s\n", i, mapped[i].http, mapped[i].body ?: "(null)");
        aigw_openai_map_error(mapped[i].http, mapped[i].body,
                              mapped[i].body ? strlen(mapped[i].body) : 0, &err);
        assert_int_equal(err.status, mapped[i].status);
        assert_string_equal(err.type, mapped[i].type);
        if (mapped[i].code)
            assert_string_equal(err.code, mapped[i].code);
        else
            assert_null(err.code);
        if (mapped[i].param)
            assert_string_equal(err.param, mapped[i].param);
        else
            assert_null(err.param);
        assert_string_equal(err.message, mapped[i].message);
    }
}

static void test_map_error_long(void **state) {
    /* 1000 x and then 300 two-byte characters: cut to a bound, on a
     * character boundary. */
    char body[2000], msg[1700];
    struct aigw_error err = {};
    size_t k = 0;

    memset(msg, 'x', 1000);
    k = 1000;
    for (int i = 0; i < 300; i++) {
        msg[k++] = '\xc3';
        msg[k++] = '\xa9';
    }
    msg[k] = '\0';
    snprintf(body, sizeof(body), "{\"error\":{\"message\":\"%s\"}}", msg);
    aigw_openai_map_error(400, body, strlen(body), &err);
    assert_int_equal(strlen(err.message), 400);

    snprintf(body, sizeof(body), "{\"error\":{\"message\":\"%s\"}}", msg + 999);
    aigw_openai_map_error(400, body, strlen(body), &err);
    /* "x" plus 199 two-byte characters fit 400 bytes; the 200th does not */
    assert_int_equal(strlen(err.message), 399);
    assert_int_equal((unsigned char)err.message[398], 0xa9);
}

/* ------------------------------------------------------------------ */
/* Errors */

static void test_error_set(void **state) {
    struct aigw_error err = {}, copy;
    char big[700];
    char *json;

    /* truncated on a character boundary */
    for (size_t i = 0; i < 350; i++) {
        big[2 * i] = '\xc3';
        big[2 * i + 1] = '\xa9';
    }
    big[sizeof(big) - 1] = '\0'; /* 349 characters and a stray lead byte */
    aigw_error_set(&err, 400, "invalid_request_error", NULL, NULL, "%s", big);
    assert_int_equal(strlen(err.message), 510);
    aigw_error_set(&err, 400, "invalid_request_error", NULL, NULL, "x%s", big);
    assert_int_equal(strlen(err.message), 511);

    /* param is copied: the caller's buffer may go away */
    {
        char param[32];

        snprintf(param, sizeof(param), "messages[%d].content", 3);
        aigw_error_set(&err, 400, "invalid_request_error", "invalid_type", param, "m %d", 1);
        memset(param, 0, sizeof(param));
    }
    assert_string_equal(err.param, "messages[3].content");
    assert_ptr_equal(err.param, err.param_buf);
    assert_string_equal(err.message, "m 1");

    /* a struct copied by value still renders its own param; aigw_error_copy
     * repoints param */
    copy = err;
    aigw_error_set(&err, 500, "server_error", NULL, "other", "x");
    json = aigw_error_render(&copy);
    assert_string_equal(json, "{\"error\":{\"message\":\"m 1\",\"type\":\"invalid_request_error\","
                              "\"param\":\"messages[3].content\",\"code\":\"invalid_type\"}}");
    free(json);
    aigw_error_copy(&copy, &err);
    assert_ptr_equal(copy.param, copy.param_buf);
    assert_string_equal(copy.param, "other");

    aigw_error_set(&err, 404, "not_found_error", NULL, NULL, "gone");
    assert_null(err.param);
    assert_string_equal(err.param_buf, "");
    json = aigw_error_render(&err);
    assert_string_equal(json, "{\"error\":{\"message\":\"gone\",\"type\":\"not_found_error\","
                              "\"param\":null,\"code\":null}}");
    free(json);

    /* a static param set by hand renders too */
    err = (struct aigw_error){ .status = 400, .type = "invalid_request_error", .param = "stop",
                               .code = "c", .message = "quote \" and \n" };
    json = aigw_error_render(&err);
    assert_string_equal(json, "{\"error\":{\"message\":\"quote \\\" and \\n\",\"type\":"
                              "\"invalid_request_error\",\"param\":\"stop\",\"code\":\"c\"}}");
    free(json);
    aigw_error_copy(&copy, &err);
    assert_string_equal(copy.param, "stop");
    assert_ptr_equal(copy.param, copy.param_buf);

    aigw_error_set(NULL, 400, "x", NULL, NULL, "no crash");
}

/* ------------------------------------------------------------------ */
/* Rendering */

static void test_render_response(void **state) {
    struct aigw_chat_choice choices[] = {
        { .index = 0, .content = (char *)"Hi \"there\"", .finish_reason = AIGW_FINISH_STOP },
        { .index = 1, .content = (char *)"", .finish_reason = AIGW_FINISH_LENGTH },
    };
    struct aigw_chat_response resp = {
        .id = (char *)"upstream-id",
        .model = (char *)"llama3:8b",
        .created = 5,
        .choices = choices,
        .n_choices = 1,
        .usage = { .present = true, .prompt_tokens = 5, .completion_tokens = 2,
                   .total_tokens = 7 },
    };
    struct aigw_render_opts o = { .id = "chatcmpl-req1", .created = 1700000000,
                                  .model = "gpt-client", .backend = "ollama" };
    char *json;

    json = aigw_chat_response_render(&resp, &o);
    assert_string_equal(json,
                        "{\"id\":\"chatcmpl-req1\",\"object\":\"chat.completion\",\"created\":"
                        "1700000000,\"model\":\"gpt-client\",\"choices\":[{\"index\":0,"
                        "\"message\":{\"role\":\"assistant\",\"content\":\"Hi \\\"there\\\"\"},"
                        "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{"
                        "\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}");
    free(json);

    /* /chat shape, no usage, two choices, fallbacks from the response */
    resp.n_choices = 2;
    resp.usage.present = false;
    o = (struct aigw_render_opts){ .chat_shape = true, .backend = "ollama" };
    json = aigw_chat_response_render(&resp, &o);
    assert_string_equal(json,
                        "{\"id\":\"upstream-id\",\"object\":\"chat.completion\",\"created\":5,"
                        "\"model\":\"llama3:8b\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                        "\"assistant\",\"content\":\"Hi \\\"there\\\"\"},\"logprobs\":null,"
                        "\"finish_reason\":\"stop\"},{\"index\":1,\"message\":{\"role\":"
                        "\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":"
                        "\"length\"}],\"backend\":\"ollama\"}");
    free(json);

    /* nothing to fall back on */
    resp = (struct aigw_chat_response){};
    o = (struct aigw_render_opts){};
    json = aigw_chat_response_render(&resp, &o);
    assert_string_equal(json, "{\"id\":\"chatcmpl-aigw\",\"object\":\"chat.completion\","
                              "\"created\":0,\"model\":\"unknown\",\"choices\":[]}");
    free(json);
}

static void test_render_response_passthrough(void **state) {
    static const char body[] =
        "{\"id\":\"chatcmpl-up\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"gpt-4o\","
        "\"system_fingerprint\":\"fp_1\",\"backend\":\"evil\",\"choices\":[{\"index\":0,"
        "\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\","
        "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}],"
        "\"refusal\":null},\"logprobs\":{\"content\":[]},\"finish_reason\":\"tool_calls\"}],"
        "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7,"
        "\"completion_tokens_details\":{\"reasoning_tokens\":0}}}";
    struct aigw_chat_response resp = {};
    struct aigw_render_opts o = { .id = "chatcmpl-req2", .created = 1700000000,
                                  .model = "client-model", .backend = "litellm",
                                  .chat_shape = true };
    struct aigw_error err = {};
    char *json;

    assert_int_equal(aigw_openai_parse_response(body, strlen(body), &resp, &err), 0);
    json = aigw_chat_response_render(&resp, &o);
    assert_string_equal(
        json,
        "{\"id\":\"chatcmpl-req2\",\"object\":\"chat.completion\",\"created\":1700000000,"
        "\"model\":\"client-model\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
        "\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
        "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}],\"refusal\":null},\"logprobs\":{"
        "\"content\":[]},\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":5,"
        "\"completion_tokens\":2,\"total_tokens\":7,\"completion_tokens_details\":{"
        "\"reasoning_tokens\":0}},\"system_fingerprint\":\"fp_1\",\"backend\":\"litellm\"}");
    free(json);
    aigw_chat_response_free(&resp);
}

static void test_render_chunks(void **state) {
    static const struct {
        struct aigw_chat_chunk c;
        bool chat_shape;
        const char *want;
    } cases[] = {
        { { .index = 0, .role = true, .content = (char *)"" }, false,
          "{\"id\":\"chatcmpl-r\",\"object\":\"chat.completion.chunk\",\"created\":42,\"model\":"
          "\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
          "\"logprobs\":null,\"finish_reason\":null}]}" },
        { { .index = 1, .content = (char *)"Hel\u00e9" }, false,
          "{\"id\":\"chatcmpl-r\",\"object\":\"chat.completion.chunk\",\"created\":42,\"model\":"
          "\"m\",\"choices\":[{\"index\":1,\"delta\":{\"content\":\"Hel\u00e9\"},\"logprobs\":"
          "null,\"finish_reason\":null}]}" },
        /* the final chunk keeps an empty delta */
        { { .index = 0, .finish_reason = AIGW_FINISH_LENGTH }, false,
          "{\"id\":\"chatcmpl-r\",\"object\":\"chat.completion.chunk\",\"created\":42,\"model\":"
          "\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":"
          "\"length\"}]}" },
        { { .index = -1, .usage = { .present = true, .prompt_tokens = 9,
                                    .completion_tokens = 3, .total_tokens = 12 } },
          false,
          "{\"id\":\"chatcmpl-r\",\"object\":\"chat.completion.chunk\",\"created\":42,\"model\":"
          "\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,"
          "\"total_tokens\":12}}" },
        { { .index = 0, .content = (char *)"x" }, true,
          "{\"id\":\"chatcmpl-r\",\"object\":\"chat.completion.chunk\",\"created\":42,\"model\":"
          "\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"logprobs\":null,"
          "\"finish_reason\":null}],\"backend\":\"gemini\"}" },
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        struct aigw_render_opts o = { .id = "chatcmpl-r", .created = 42, .model = "m",
                                      .backend = "gemini", .chat_shape = cases[i].chat_shape };
        char *json = aigw_chat_chunk_render(&cases[i].c, &o);

        print_message("case %zu\n", i);
        assert_string_equal(json, cases[i].want);
        free(json);
    }

    {
        struct aigw_chat_chunk c = {};
        struct aigw_render_opts o = {};
        char *json = aigw_chat_chunk_render(&c, &o);

        assert_string_equal(json, "{\"id\":\"chatcmpl-aigw\",\"object\":\"chat.completion.chunk\","
                                  "\"created\":0,\"model\":\"unknown\",\"choices\":[{\"index\":0,"
                                  "\"delta\":{},\"logprobs\":null,\"finish_reason\":null}]}");
        free(json);
    }
}

static void test_render_chunks_passthrough(void **state) {
    static const char data[] =
        "{\"id\":\"up\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":"
        "null,\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"function\":{\"arguments\":\"\"}}]},"
        "\"logprobs\":null,\"finish_reason\":null}],\"usage\":{\"prompt_tokens\":1,"
        "\"completion_tokens\":2,\"total_tokens\":3,\"prompt_tokens_details\":{"
        "\"cached_tokens\":0}}}";
    struct aigw_chat_chunk *chunks = NULL;
    struct aigw_render_opts o = { .id = "chatcmpl-r", .created = 42, .model = "m" };
    size_t n = 0;
    bool done = true;
    char *json;

    assert_int_equal(aigw_openai_parse_chunk(data, strlen(data), &chunks, &n, &done, NULL), 0);
    assert_int_equal(n, 2);
    json = aigw_chat_chunk_render(&chunks[0], &o);
    assert_string_equal(json,
                        "{\"id\":\"chatcmpl-r\",\"object\":\"chat.completion.chunk\",\"created\":"
                        "42,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                        "\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"function\":{"
                        "\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}]}");
    free(json);
    json = aigw_chat_chunk_render(&chunks[1], &o);
    assert_string_equal(json,
                        "{\"id\":\"chatcmpl-r\",\"object\":\"chat.completion.chunk\",\"created\":"
                        "42,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,"
                        "\"completion_tokens\":2,\"total_tokens\":3,\"prompt_tokens_details\":{"
                        "\"cached_tokens\":0}}}");
    free(json);
    aigw_chat_chunks_free(chunks, n);
}

static void test_render_models(void **state) {
    static const char *const names[] = { "gpt-4o", "gemini-2.0-flash" };
    static const char *const owners[] = { "openai-proxy", NULL };
    char *json;

    json = aigw_models_render(names, 2, owners, 1700000000);
    assert_string_equal(json,
                        "{\"object\":\"list\",\"data\":[{\"id\":\"gpt-4o\",\"object\":\"model\","
                        "\"created\":1700000000,\"owned_by\":\"openai-proxy\"},{\"id\":"
                        "\"gemini-2.0-flash\",\"object\":\"model\",\"created\":1700000000,"
                        "\"owned_by\":\"aigw\"}]}");
    free(json);
    json = aigw_models_render(names, 1, NULL, 0);
    assert_string_equal(json, "{\"object\":\"list\",\"data\":[{\"id\":\"gpt-4o\",\"object\":"
                              "\"model\",\"created\":0,\"owned_by\":\"aigw\"}]}");
    free(json);
    json = aigw_models_render(NULL, 0, NULL, 0);
    assert_string_equal(json, "{\"object\":\"list\",\"data\":[]}");
    free(json);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_errors),
        cmocka_unit_test(test_request_unparsable),
        cmocka_unit_test(test_request_long_param),
        cmocka_unit_test(test_request_full),
        cmocka_unit_test(test_request_minimal_and_nulls),
        cmocka_unit_test(test_request_stop_and_tokens),
        cmocka_unit_test(test_request_limits),
        cmocka_unit_test(test_build_request),
        cmocka_unit_test(test_build_request_errors),
        cmocka_unit_test(test_build_request_duplicates_in_raw),
        cmocka_unit_test(test_parse_response_good),
        cmocka_unit_test(test_parse_response_usage),
        cmocka_unit_test(test_parse_response_bad),
        cmocka_unit_test(test_parse_chunk_done),
        cmocka_unit_test(test_parse_chunk_good),
        cmocka_unit_test(test_parse_chunk_bad),
        cmocka_unit_test(test_map_error),
        cmocka_unit_test(test_map_error_long),
        cmocka_unit_test(test_error_set),
        cmocka_unit_test(test_render_response),
        cmocka_unit_test(test_render_response_passthrough),
        cmocka_unit_test(test_render_chunks),
        cmocka_unit_test(test_render_chunks_passthrough),
        cmocka_unit_test(test_render_models),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
