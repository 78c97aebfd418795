/* SPDX-License-Identifier: MIT */
/* The OpenAI wire format in both directions; see aigw/chat-model.h. */

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigw/chat-model.h"
#include "aigw/json-writer.h"
#include "aigw/macro.h"
#include "aigw/utf8.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete)

/* Upstream text quoted in an error message is cut to this many bytes, so
 * the message around it stays within struct aigw_error.message. */
#define UPSTREAM_TEXT_MAX 400
/* Client-sent values quoted back in a message ('image_url', a role). */
#define ECHO_MAX 64

/* ---------------------------------------------------------------------- */
/* UTF-8 */

/* Copy untrusted text for quoting in a message: valid UTF-8 only (invalid
 * bytes become '?'), C0 controls and DEL become ' ', cut on a character
 * boundary to fit size. Clients choke on invalid UTF-8 in a JSON body, and
 * cJSON copies it through unchanged. */
static void sanitize_text(char *buf, size_t size, const char *s, size_t len) {
    aigw_utf8_sanitize(buf, size, s, len, 0);
}

/* Drop a trailing partial UTF-8 sequence left by a truncating snprintf. */
static void utf8_trim_partial(char *s) {
    size_t len = strlen(s), start = len;

    /* A sequence is at most 4 bytes: look back over at most 3 continuation
     * bytes for its lead byte. */
    while (start > 0 && len - start < 4 && ((unsigned char)s[start - 1] & 0xC0) == 0x80)
        start--;
    if (start == 0 || len - start >= 4)
        return;
    start--; /* the lead byte (or an ASCII byte) */
    if (aigw_utf8_decode((const unsigned char *)s + start, len - start, NULL) == 0 &&
        (unsigned char)s[start] >= 0x80)
        s[start] = '\0';
}

static size_t utf8_count_chars(const char *s) {
    size_t n = 0;

    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xC0) != 0x80)
            n++;
    return n;
}

/* ---------------------------------------------------------------------- */
/* Errors and destructors */

static void error_setv(struct aigw_error *err, int status, const char *type, const char *code,
                       const char *param, const char *fmt, va_list ap) _printf_(6, 0);

static void error_setv(struct aigw_error *err, int status, const char *type, const char *code,
                       const char *param, const char *fmt, va_list ap) {
    int k;

    if (!err)
        return;
    err->status = status;
    err->type = type;
    err->code = code;
    err->param_buf[0] = '\0';
    if (param) {
        snprintf(err->param_buf, sizeof(err->param_buf), "%s", param);
        utf8_trim_partial(err->param_buf);
        err->param = err->param_buf;
    } else
        err->param = NULL;
    k = vsnprintf(err->message, sizeof(err->message), fmt, ap);
    if (k < 0)
        err->message[0] = '\0';
    else if ((size_t)k >= sizeof(err->message))
        utf8_trim_partial(err->message);
}

void aigw_error_set(struct aigw_error *err, int status, const char *type, const char *code,
                    const char *param, const char *fmt, ...) {
    va_list ap;

    va_start(ap, fmt);
    error_setv(err, status, type, code, param, fmt, ap);
    va_end(ap);
}

void aigw_error_copy(struct aigw_error *dst, const struct aigw_error *src) {
    *dst = *src;
    if (src->param) {
        if (src->param_buf[0] == '\0')
            snprintf(dst->param_buf, sizeof(dst->param_buf), "%s", src->param);
        dst->param = dst->param_buf;
    }
}

static int error_oom(struct aigw_error *err) {
    aigw_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    return -ENOMEM;
}

static void message_clear(struct aigw_chat_message *m) {
    for (size_t i = 0; i < m->n_parts; i++)
        free(m->parts[i]);
    free(m->parts);
}

void aigw_chat_request_free(struct aigw_chat_request *req) {
    if (!req)
        return;
    free(req->model);
    for (size_t i = 0; i < req->n_messages; i++)
        message_clear(&req->messages[i]);
    free(req->messages);
    for (size_t i = 0; i < req->n_stop; i++)
        free(req->stop[i]);
    free(req->stop);
    free(req->user);
    cJSON_Delete(req->raw);
    *req = (struct aigw_chat_request){};
}

void aigw_chat_response_free(struct aigw_chat_response *resp) {
    if (!resp)
        return;
    free(resp->id);
    free(resp->model);
    for (size_t i = 0; i < resp->n_choices; i++)
        free(resp->choices[i].content);
    free(resp->choices);
    cJSON_Delete(resp->raw);
    *resp = (struct aigw_chat_response){};
}

void aigw_chat_chunk_clear(struct aigw_chat_chunk *chunk) {
    if (!chunk)
        return;
    free(chunk->content);
    cJSON_Delete(chunk->raw);
    *chunk = (struct aigw_chat_chunk){};
}

void aigw_chat_chunks_free(struct aigw_chat_chunk *chunks, size_t n) {
    if (!chunks)
        return;
    for (size_t i = 0; i < n; i++)
        aigw_chat_chunk_clear(&chunks[i]);
    free(chunks);
}

/* ---------------------------------------------------------------------- */
/* Numbers */

/* Without floor(): the module needs no -lm. Every double of magnitude
 * 2^52 or more is an integer; below that the cast is exact and defined. */
static bool is_integral(double d) {
    if (!isfinite(d))
        return false;
    if (d >= 0x1p52 || d <= -0x1p52)
        return true;
    return d == (double)(int64_t)d;
}

/* Converting an out-of-range double to an integer is undefined: check
 * first. 2^63 is exact in a double; INT64_MAX is not. */
static bool double_to_int64(double d, int64_t *ret) {
    if (!is_integral(d) || d < -0x1p63 || d >= 0x1p63)
        return false;
    *ret = (int64_t)d;
    return true;
}

/* The shortest form that reads back as the same double, as OpenAI quotes
 * values back ("got 2.5", not "got 2.500000"). */
static void format_number(char *buf, size_t size, double d) {
    int64_t i;

    if (double_to_int64(d, &i)) {
        snprintf(buf, size, "%" PRId64, i);
        return;
    }
    snprintf(buf, size, "%.15g", d);
    if (strtod(buf, NULL) != d)
        snprintf(buf, size, "%.17g", d);
}

/* ---------------------------------------------------------------------- */
/* Request validation */

static const char *json_type_name(const cJSON *j) {
    if (cJSON_IsString(j))
        return "a string";
    if (cJSON_IsBool(j))
        return "a boolean";
    if (cJSON_IsNull(j))
        return "null";
    if (cJSON_IsArray(j))
        return "an array";
    if (cJSON_IsObject(j))
        return "an object";
    if (cJSON_IsNumber(j))
        return is_integral(j->valuedouble) ? "an integer" : "a decimal number";
    return "an unknown value";
}

static int invalid(struct aigw_error *err, const char *code, const char *param, const char *fmt,
                   ...) _printf_(4, 5);

static int invalid(struct aigw_error *err, const char *code, const char *param, const char *fmt,
                   ...) {
    va_list ap;

    va_start(ap, fmt);
    error_setv(err, 400, "invalid_request_error", code, param, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int invalid_type(struct aigw_error *err, const char *param, const char *expected,
                        const cJSON *got) {
    return invalid(err, "invalid_type", param,
                   "Invalid type for '%s': expected %s, but got %s instead.", param, expected,
                   json_type_name(got));
}

static int missing(struct aigw_error *err, const char *param) {
    return invalid(err, "missing_required_parameter", param, "Missing required parameter: '%s'.",
                   param);
}

static int empty_array(struct aigw_error *err, const char *param) {
    return invalid(err, "empty_array", param,
                   "Invalid '%s': empty array. Expected an array with minimum length 1, but got "
                   "an empty array instead.",
                   param);
}

static int array_too_long(struct aigw_error *err, const char *param, size_t max, size_t got) {
    return invalid(err, "array_above_max_length", param,
                   "Invalid '%s': array too long. Expected an array with maximum length %zu, but "
                   "got an array with length %zu instead.",
                   param, max, got);
}

/* A present, non-null member, or NULL. */
static const cJSON *member(const cJSON *obj, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);

    return cJSON_IsNull(j) ? NULL : j;
}

static int cmp_key(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "messages[I]SUFFIX" or "messages[I].content[K]SUFFIX" without printf:
 * built for every message of every request, only read on an error. */
static void message_param(char *buf, size_t size, size_t i, bool with_part, size_t k, const char *suffix) {
    char digits[2][24];
    size_t nd[2] = {0, 0};
    size_t v[2] = {i, k};
    for (int j = 0; j < 2; j++) {
        char tmp[24];
        size_t n = 0, x = v[j];
        do {
            tmp[n++] = (char)('0' + x % 10);
            x /= 10;
        } while (x);
        for (size_t q = 0; q < n; q++)
            digits[j][q] = tmp[n - 1 - q];
        nd[j] = n;
    }
    size_t o = 0;
#define APPEND(p, l)                                                                               \
    do {                                                                                           \
        size_t l_ = (l);                                                                           \
        if (o + l_ >= size)                                                                        \
            l_ = size - 1 - o;                                                                     \
        memcpy(buf + o, (p), l_);                                                                  \
        o += l_;                                                                                   \
    } while (0)
    APPEND("messages[", 9);
    APPEND(digits[0], nd[0]);
    APPEND("]", 1);
    if (with_part) {
        APPEND(".content[", 9);
        APPEND(digits[1], nd[1]);
        APPEND("]", 1);
    }
    APPEND(suffix, strlen(suffix));
#undef APPEND
    buf[o] = 0;
}

/* 1 and *ret_key if some object anywhere in j has a key twice, else 0.
 * Recursion depth is bounded by cJSON's nesting limit. */
static int find_duplicate_key(const cJSON *j, const char **ret_key) {
    const cJSON *c;
    size_t n = 0;
    int r;

    if (!cJSON_IsObject(j) && !cJSON_IsArray(j))
        return 0;

    if (cJSON_IsObject(j)) {
        cJSON_ArrayForEach(c, j)
            n++;
        /* Small objects, the common case, are checked pairwise without
         * allocating; big ones sorted, so a body with 100k keys costs
         * n log n, not n^2. */
        if (n <= 16) {
            for (const cJSON *a = j->child; a; a = a->next)
                for (const cJSON *b = a->next; b; b = b->next)
                    if (a->string && b->string && strcmp(a->string, b->string) == 0) {
                        *ret_key = a->string;
                        return 1;
                    }
        } else {
            _cleanup_free_ const char **keys = calloc(n, sizeof(char *));
            size_t k = 0;

            if (!keys)
                return -ENOMEM;
            cJSON_ArrayForEach(c, j) {
                if (c->string)
                    keys[k++] = c->string;
            }
            qsort(keys, k, sizeof(char *), cmp_key);
            for (size_t i = 1; i < k; i++)
                if (strcmp(keys[i - 1], keys[i]) == 0) {
                    *ret_key = keys[i];
                    return 1;
                }
        }
    }

    cJSON_ArrayForEach(c, j) {
        r = find_duplicate_key(c, ret_key);
        if (r != 0)
            return r;
    }
    return 0;
}

static int get_string(const cJSON *root, const char *key, char **ret, struct aigw_error *err) {
    const cJSON *j = member(root, key);
    char *s;

    if (!j)
        return 0;
    if (!cJSON_IsString(j))
        return invalid_type(err, key, "a string", j);
    s = strdup(j->valuestring);
    if (!s)
        return error_oom(err);
    *ret = s;
    return 0;
}

static int get_bool(const cJSON *root, const char *key, const char *param, bool *ret,
                    struct aigw_error *err) {
    const cJSON *j = member(root, key);

    if (!j)
        return 0;
    if (!cJSON_IsBool(j))
        return invalid_type(err, param, "a boolean", j);
    *ret = cJSON_IsTrue(j);
    return 0;
}

static int get_number(const cJSON *root, const char *key, double min, double max, bool *ret_has,
                      double *ret, struct aigw_error *err) {
    const cJSON *j = member(root, key);
    char got[40];

    if (!j)
        return 0;
    if (!cJSON_IsNumber(j))
        return invalid_type(err, key, "a number", j);
    format_number(got, sizeof(got), j->valuedouble);
    if (!(j->valuedouble >= min))
        return invalid(err, "decimal_below_min_value", key,
                       "Invalid '%s': decimal below minimum value. Expected a value >= %g, but "
                       "got %s instead.",
                       key, min, got);
    if (!(j->valuedouble <= max))
        return invalid(err, "decimal_above_max_value", key,
                       "Invalid '%s': decimal above maximum value. Expected a value <= %g, but "
                       "got %s instead.",
                       key, max, got);
    *ret_has = true;
    *ret = j->valuedouble;
    return 0;
}

static int get_integer(const cJSON *root, const char *key, int64_t min, int64_t max,
                       bool *ret_has, int64_t *ret, struct aigw_error *err) {
    const cJSON *j = member(root, key);
    char got[40];
    int64_t v;

    if (!j)
        return 0;
    if (!cJSON_IsNumber(j) || !is_integral(j->valuedouble))
        return invalid_type(err, key, "an integer", j);
    format_number(got, sizeof(got), j->valuedouble);
    /* Bounds up to 2^53 compare exactly as doubles; beyond that (an absurd
     * configured max_n) double_to_int64() below still keeps this safe. */
    if (j->valuedouble < (double)min)
        return invalid(err, "integer_below_min_value", key,
                       "Invalid '%s': integer below minimum value. Expected a value >= %" PRId64
                       ", but got %s instead.",
                       key, min, got);
    if (j->valuedouble > (double)max)
        return invalid(err, "integer_above_max_value", key,
                       "Invalid '%s': integer above maximum value. Expected a value <= %" PRId64
                       ", but got %s instead.",
                       key, max, got);
    if (!double_to_int64(j->valuedouble, &v))
        return invalid_type(err, key, "an integer", j);
    *ret_has = true;
    *ret = v;
    return 0;
}

static int parse_role(const cJSON *m, size_t i, enum aigw_role *ret, struct aigw_error *err) {
    static const struct {
        const char *name;
        enum aigw_role role;
    } table[] = {
        { "system", AIGW_ROLE_SYSTEM },       { "developer", AIGW_ROLE_SYSTEM },
        { "user", AIGW_ROLE_USER },           { "assistant", AIGW_ROLE_ASSISTANT },
        { "tool", AIGW_ROLE_TOOL },
    };
    const cJSON *j = member(m, "role");
    char param[48], echo[ECHO_MAX];

    message_param(param, sizeof(param), i, false, 0, ".role");
    if (!j)
        return missing(err, param);
    if (!cJSON_IsString(j))
        return invalid_type(err, param, "a string", j);
    for (size_t k = 0; k < ELEMENTSOF(table); k++)
        if (strcmp(j->valuestring, table[k].name) == 0) {
            *ret = table[k].role;
            return 0;
        }
    sanitize_text(echo, sizeof(echo), j->valuestring, strlen(j->valuestring));
    return invalid(err, "invalid_value", param,
                   "Invalid value for '%s': '%s'. Supported values are: 'system', 'developer', "
                   "'user', 'assistant', and 'tool'.",
                   param, echo);
}

/* Fill m->parts from the message's content; *chars grows by its length. */
static int parse_content(const cJSON *msg, size_t i, struct aigw_chat_message *m, size_t *chars,
                         struct aigw_error *err) {
    const cJSON *content = member(msg, "content"), *part;
    char param[96];
    size_t n, k = 0;

    message_param(param, sizeof(param), i, false, 0, ".content");

    if (!content) {
        /* OpenAI: assistant content is "required unless tool_calls or
         * function_call is specified". */
        if (m->role == AIGW_ROLE_ASSISTANT &&
            (member(msg, "tool_calls") || member(msg, "function_call")))
            return 0;
        if (m->role == AIGW_ROLE_ASSISTANT)
            return invalid(err, "missing_required_parameter", param,
                           "Missing required parameter: '%s' (an assistant message needs "
                           "content unless it has tool_calls).",
                           param);
        if (cJSON_GetObjectItemCaseSensitive(msg, "content"))
            return invalid_type(err, param, "one of a string or array of objects",
                                cJSON_GetObjectItemCaseSensitive(msg, "content"));
        return missing(err, param);
    }

    if (cJSON_IsString(content)) {
        m->parts = calloc(1, sizeof(char *));
        if (!m->parts)
            return error_oom(err);
        m->parts[0] = strdup(content->valuestring);
        if (!m->parts[0])
            return error_oom(err);
        m->n_parts = 1;
        *chars += utf8_count_chars(content->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(content))
        return invalid_type(err, param, "one of a string or array of objects", content);

    n = (size_t)cJSON_GetArraySize(content);
    if (n == 0)
        return empty_array(err, param);
    m->parts = calloc(n, sizeof(char *));
    if (!m->parts)
        return error_oom(err);

    cJSON_ArrayForEach(part, content) {
        const cJSON *type, *text;
        char echo[ECHO_MAX];

        message_param(param, sizeof(param), i, true, k, "");
        if (!cJSON_IsObject(part))
            return invalid_type(err, param, "an object", part);

        message_param(param, sizeof(param), i, true, k, ".type");
        type = member(part, "type");
        if (!type)
            return missing(err, param);
        if (!cJSON_IsString(type))
            return invalid_type(err, param, "a string", type);
        if (strcmp(type->valuestring, "text") != 0) {
            sanitize_text(echo, sizeof(echo), type->valuestring, strlen(type->valuestring));
            return invalid(err, "invalid_value", param,
                           "Invalid value for '%s': '%s'. Only text content parts are "
                           "supported.",
                           param, echo);
        }

        message_param(param, sizeof(param), i, true, k, ".text");
        text = member(part, "text");
        if (!text)
            return missing(err, param);
        if (!cJSON_IsString(text))
            return invalid_type(err, param, "a string", text);

        m->parts[k] = strdup(text->valuestring);
        if (!m->parts[k])
            return error_oom(err);
        m->n_parts = ++k;
        *chars += utf8_count_chars(text->valuestring);
    }
    return 0;
}

static int parse_messages(const cJSON *root, const struct aigw_chat_limits *lim,
                          struct aigw_chat_request *req, struct aigw_error *err) {
    const cJSON *messages = member(root, "messages"), *msg;
    size_t n, i = 0, chars = 0;
    int r;

    if (!messages)
        return missing(err, "messages");
    if (!cJSON_IsArray(messages))
        return invalid_type(err, "messages", "an array", messages);
    n = (size_t)cJSON_GetArraySize(messages);
    if (n == 0)
        return empty_array(err, "messages");
    if (n > lim->max_messages)
        return array_too_long(err, "messages", lim->max_messages, n);

    req->messages = calloc(n, sizeof(struct aigw_chat_message));
    if (!req->messages)
        return error_oom(err);

    cJSON_ArrayForEach(msg, messages) {
        struct aigw_chat_message *m = &req->messages[i];
        char param[48];

        message_param(param, sizeof(param), i, false, 0, "");
        if (!cJSON_IsObject(msg))
            return invalid_type(err, param, "an object", msg);
        r = parse_role(msg, i, &m->role, err);
        if (r < 0)
            return r;
        /* Counted now so that message_clear() sees what was allocated. */
        req->n_messages = ++i;
        r = parse_content(msg, i - 1, m, &chars, err);
        if (r < 0)
            return r;
    }

    if (chars > lim->max_total_chars)
        return invalid(err, "context_length_exceeded", "messages",
                       "This gateway accepts at most %zu characters of message text, but the "
                       "messages have %zu. Please reduce the length of the messages.",
                       lim->max_total_chars, chars);
    return 0;
}

static int parse_stop(const cJSON *root, size_t max, struct aigw_chat_request *req,
                      struct aigw_error *err) {
    const cJSON *stop = member(root, "stop"), *s;
    size_t n, k = 0;

    if (!stop)
        return 0;
    if (cJSON_IsString(stop)) {
        req->stop = calloc(1, sizeof(char *));
        if (!req->stop)
            return error_oom(err);
        req->stop[0] = strdup(stop->valuestring);
        if (!req->stop[0])
            return error_oom(err);
        req->n_stop = 1;
        return 0;
    }
    if (!cJSON_IsArray(stop))
        return invalid_type(err, "stop", "one of a string or array of strings", stop);

    n = (size_t)cJSON_GetArraySize(stop);
    if (n > max)
        return array_too_long(err, "stop", max, n);
    if (n == 0)
        return 0;
    req->stop = calloc(n, sizeof(char *));
    if (!req->stop)
        return error_oom(err);
    cJSON_ArrayForEach(s, stop) {
        char param[32];

        snprintf(param, sizeof(param), "stop[%zu]", k);
        if (!cJSON_IsString(s))
            return invalid_type(err, param, "a string", s);
        req->stop[k] = strdup(s->valuestring);
        if (!req->stop[k])
            return error_oom(err);
        req->n_stop = ++k;
    }
    return 0;
}

static struct aigw_chat_limits limits_or_default(const struct aigw_chat_limits *lim) {
    static const struct aigw_chat_limits def = AIGW_CHAT_LIMITS_DEFAULT;
    struct aigw_chat_limits l = lim ? *lim : def;

    if (l.max_messages == 0)
        l.max_messages = def.max_messages;
    if (l.max_total_chars == 0)
        l.max_total_chars = def.max_total_chars;
    if (l.max_n <= 0)
        l.max_n = def.max_n;
    if (l.max_stop == 0)
        l.max_stop = def.max_stop;
    l.max_stop = MIN(l.max_stop, (size_t)AIGW_MAX_STOP);
    return l;
}

int aigw_chat_request_parse(const char *body, size_t len, const struct aigw_chat_limits *lim,
                            struct aigw_chat_request *ret, struct aigw_error *err) {
    _cleanup_(aigw_chat_request_free) struct aigw_chat_request req = {};
    struct aigw_chat_limits l = limits_or_default(lim);
    const cJSON *so;
    const char *dup = NULL;
    int64_t max_tokens = 0, max_completion_tokens = 0;
    bool has_max_tokens = false, has_max_completion_tokens = false;
    char echo[ECHO_MAX];
    int r;

    req.raw = cJSON_ParseWithLength(body, len);
    if (!req.raw)
        /* The caller checked the JSON already; this is cJSON's own limits
         * (nesting depth) or memory. */
        return invalid(err, NULL, NULL, "We could not parse the JSON body of your request.");
    if (!cJSON_IsObject(req.raw))
        return invalid(err, "invalid_type", NULL,
                       "Invalid type for the request body: expected an object, but got %s "
                       "instead.",
                       json_type_name(req.raw));

    r = find_duplicate_key(req.raw, &dup);
    if (r < 0)
        return error_oom(err);
    if (r > 0) {
        sanitize_text(echo, sizeof(echo), dup, strlen(dup));
        return invalid(err, "duplicate_key", NULL,
                       "The request body has the key '%s' more than once.", echo);
    }

    r = get_string(req.raw, "model", &req.model, err);
    if (r < 0)
        return r;
    if (req.model && req.model[0] == '\0')
        return invalid(err, "empty_string", "model",
                       "Invalid 'model': empty string. Expected a string with minimum length "
                       "1, but got an empty string instead.");

    r = parse_messages(req.raw, &l, &req, err);
    if (r < 0)
        return r;

    r = get_number(req.raw, "temperature", 0, 2, &req.has_temperature, &req.temperature, err);
    if (r < 0)
        return r;
    r = get_number(req.raw, "top_p", 0, 1, &req.has_top_p, &req.top_p, err);
    if (r < 0)
        return r;

    r = get_integer(req.raw, "max_tokens", 1, AIGW_MAX_TOKENS_LIMIT, &has_max_tokens,
                    &max_tokens, err);
    if (r < 0)
        return r;
    r = get_integer(req.raw, "max_completion_tokens", 1, AIGW_MAX_TOKENS_LIMIT,
                    &has_max_completion_tokens, &max_completion_tokens, err);
    if (r < 0)
        return r;
    if (has_max_tokens && has_max_completion_tokens && max_tokens != max_completion_tokens)
        return invalid(err, "invalid_value", "max_tokens",
                       "Invalid 'max_tokens': when both 'max_tokens' and "
                       "'max_completion_tokens' are given they must be equal, but got %" PRId64
                       " and %" PRId64 ".",
                       max_tokens, max_completion_tokens);
    req.has_max_tokens = has_max_tokens || has_max_completion_tokens;
    req.max_tokens = has_max_completion_tokens ? max_completion_tokens : max_tokens;

    r = get_integer(req.raw, "n", 1, l.max_n, &req.has_n, &req.n, err);
    if (r < 0)
        return r;

    r = parse_stop(req.raw, l.max_stop, &req, err);
    if (r < 0)
        return r;

    r = get_bool(req.raw, "stream", "stream", &req.stream, err);
    if (r < 0)
        return r;

    so = member(req.raw, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so))
            return invalid_type(err, "stream_options", "an object", so);
        if (!req.stream)
            return invalid(err, "invalid_value", "stream_options",
                           "The 'stream_options' parameter is only allowed when 'stream' is "
                           "enabled.");
        r = get_bool(so, "include_usage", "stream_options.include_usage", &req.include_usage,
                     err);
        if (r < 0)
            return r;
    }

    r = get_string(req.raw, "user", &req.user, err);
    if (r < 0)
        return r;

    *ret = req;
    req = (struct aigw_chat_request){};
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Upstream request */

/* Set obj[key] = item (taking it), in place of an existing member so the
 * body keeps the client's order. Every further occurrence goes too: an
 * upstream that takes the last of duplicated keys must see aigw's value
 * (aigw_chat_request_parse() rejects duplicates, but req->raw may come
 * from elsewhere). */
static int json_set(cJSON *obj, const char *key, cJSON *item) {
    cJSON *cur;

    if (!item)
        return -ENOMEM;
    cur = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cur) {
        if (!cJSON_AddItemToObject(obj, key, item)) {
            cJSON_Delete(item);
            return -ENOMEM;
        }
        return 0;
    }
    if (!cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item)) {
        cJSON_Delete(item);
        return -ENOMEM;
    }
    for (cJSON *c = item->next, *next; c; c = next) {
        next = c->next;
        if (c->string && strcmp(c->string, key) == 0)
            cJSON_Delete(cJSON_DetachItemViaPointer(obj, c));
    }
    return 0;
}

int aigw_openai_build_request(const struct aigw_chat_request *req, const char *upstream_model,
                              const struct aigw_model_defaults *defaults, char **ret_body) {
    _cleanup_(cJSON_Deletep) cJSON *root = NULL;
    cJSON *msg;
    char *body;
    int r;

    if (!cJSON_IsObject(req->raw) || !upstream_model || upstream_model[0] == '\0')
        return -EINVAL;

    root = cJSON_Duplicate(req->raw, true);
    if (!root)
        return -ENOMEM;

    r = json_set(root, "model", cJSON_CreateString(upstream_model));
    if (r < 0)
        return r;

    /* "developer" is OpenAI's newer name for "system"; chat templates of
     * vLLM and Ollama models know only the old one (and may fail on the
     * new), while OpenAI and LiteLLM accept both. */
    cJSON_ArrayForEach(msg, cJSON_GetObjectItemCaseSensitive(root, "messages")) {
        cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");

        if (cJSON_IsString(role) && strcmp(role->valuestring, "developer") == 0) {
            r = json_set(msg, "role", cJSON_CreateString("system"));
            if (r < 0)
                return r;
        }
    }

    if (defaults && defaults->has_max_tokens && !req->has_max_tokens) {
        r = json_set(root, "max_tokens", cJSON_CreateNumber((double)defaults->max_tokens));
        if (r < 0)
            return r;
    }
    if (defaults && defaults->has_temperature && !req->has_temperature) {
        r = json_set(root, "temperature", cJSON_CreateNumber(defaults->temperature));
        if (r < 0)
            return r;
    }

    if (req->stream) {
        cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");

        if (!cJSON_IsObject(so)) {
            so = cJSON_CreateObject();
            r = json_set(root, "stream_options", so);
            if (r < 0)
                return r;
        }
        r = json_set(so, "include_usage", cJSON_CreateTrue());
        if (r < 0)
            return r;
    }

    body = jw_print_cjson(root, 64u << 20);
    if (!body)
        return -ENOMEM;
    *ret_body = body;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Upstream answers */

static int bad_upstream(struct aigw_error *err, const char *fmt, ...) _printf_(2, 3);

static int bad_upstream(struct aigw_error *err, const char *fmt, ...) {
    char what[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    aigw_error_set(err, 502, "api_error", NULL, NULL, "upstream sent an invalid response: %s",
                   what);
    return -EBADMSG;
}

static const char *map_finish_reason(const char *s) {
    static const char *const known[] = {
        AIGW_FINISH_STOP,       AIGW_FINISH_LENGTH, AIGW_FINISH_CONTENT_FILTER,
        AIGW_FINISH_TOOL_CALLS, "function_call",
    };

    for (size_t i = 0; i < ELEMENTSOF(known); i++)
        if (strcmp(s, known[i]) == 0)
            return known[i];
    return AIGW_FINISH_STOP;
}

/* Token counts are charged against rate limits: never negative, never
 * from a value that is not an integer. */
static int64_t usage_field(const cJSON *u, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(u, key);
    int64_t v;

    if (!cJSON_IsNumber(j) || !double_to_int64(j->valuedouble, &v) || v < 0)
        return 0;
    return v;
}

static void parse_usage(const cJSON *u, struct aigw_usage *ret) {
    struct aigw_usage usage = { .present = true };

    usage.prompt_tokens = usage_field(u, "prompt_tokens");
    usage.completion_tokens = usage_field(u, "completion_tokens");
    usage.total_tokens = usage_field(u, "total_tokens");
    /* Each is below 2^63, so the sum cannot wrap an unsigned. */
    if ((uint64_t)usage.prompt_tokens + (uint64_t)usage.completion_tokens >
        (uint64_t)usage.total_tokens)
        usage.total_tokens = (int64_t)MIN((uint64_t)usage.prompt_tokens +
                                              (uint64_t)usage.completion_tokens,
                                          (uint64_t)INT64_MAX);
    *ret = usage;
}

/* The choice's index, or its position when absent. */
static bool parse_index(const cJSON *choice, size_t pos, int *ret) {
    const cJSON *j = member(choice, "index");
    int64_t v;

    if (!j) {
        if (pos > INT32_MAX)
            return false;
        *ret = (int)pos;
        return true;
    }
    if (!cJSON_IsNumber(j) || !double_to_int64(j->valuedouble, &v) || v < 0 || v > INT32_MAX)
        return false;
    *ret = (int)v;
    return true;
}

static int dup_optional_string(const cJSON *obj, const char *key, char **ret) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);

    if (!cJSON_IsString(j))
        return 0;
    *ret = strdup(j->valuestring);
    return *ret ? 0 : -ENOMEM;
}

/* Quote upstream's error message: error.message (OpenAI), or a plain
 * string in "error" (Ollama), "detail" (FastAPI, older vLLM), "message".
 * Empty buf if none. */
static void upstream_error_text(const cJSON *root, char *buf, size_t size,
                                const cJSON **ret_error_obj) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error"), *m = NULL;

    *ret_error_obj = cJSON_IsObject(e) ? e : NULL;
    if (cJSON_IsObject(e))
        m = cJSON_GetObjectItemCaseSensitive(e, "message");
    else if (cJSON_IsString(e))
        m = e;
    if (!cJSON_IsString(m))
        m = cJSON_GetObjectItemCaseSensitive(root, "detail");
    if (!cJSON_IsString(m))
        m = cJSON_GetObjectItemCaseSensitive(root, "message");
    if (cJSON_IsString(m))
        sanitize_text(buf, size, m->valuestring, strlen(m->valuestring));
    else
        buf[0] = '\0';
}

/* Codes clients act on (e.g. context_length_exceeded triggers trimming);
 * err->code must be a static string, so only known ones are kept. */
static const char *known_code(const cJSON *error_obj) {
    static const char *const codes[] = {
        "context_length_exceeded",
        "model_not_found",
        "rate_limit_exceeded",
        "insufficient_quota",
        "invalid_value",
        "invalid_type",
        "missing_required_parameter",
        "unsupported_parameter",
        "unsupported_value",
        "string_above_max_length",
        "array_above_max_length",
        "integer_above_max_value",
        "integer_below_min_value",
        "decimal_above_max_value",
        "decimal_below_min_value",
        "content_filter",
        "content_policy_violation",
        "invalid_prompt",
    };
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(error_obj, "code");

    if (!cJSON_IsString(c))
        return NULL;
    for (size_t i = 0; i < ELEMENTSOF(codes); i++)
        if (strcmp(c->valuestring, codes[i]) == 0)
            return codes[i];
    return NULL;
}

static void map_error_json(long http_status, const cJSON *root, struct aigw_error *err) {
    const cJSON *eobj = NULL, *p;
    char text[UPSTREAM_TEXT_MAX + 1], param[sizeof(err->param_buf)];

    if (root)
        upstream_error_text(root, text, sizeof(text), &eobj);
    else
        text[0] = '\0';

    switch (http_status) {
    case 400:
    case 413:
    case 422:
        param[0] = '\0';
        p = cJSON_GetObjectItemCaseSensitive(eobj, "param");
        if (cJSON_IsString(p))
            sanitize_text(param, sizeof(param), p->valuestring, strlen(p->valuestring));
        if (text[0])
            aigw_error_set(err, 400, "invalid_request_error", known_code(eobj),
                           param[0] ? param : NULL, "%s", text);
        else
            aigw_error_set(err, 400, "invalid_request_error", NULL, NULL,
                           "the backend rejected the request (HTTP %ld)", http_status);
        return;
    case 401:
    case 403:
        aigw_error_set(err, 502, "api_error", NULL, NULL,
                       "backend rejected aigw's credentials (HTTP %ld)", http_status);
        return;
    case 404:
        if (text[0])
            aigw_error_set(err, 404, "not_found_error", "model_not_found", NULL, "%s", text);
        else
            aigw_error_set(err, 404, "not_found_error", "model_not_found", NULL,
                           "the backend does not know the model (HTTP 404)");
        return;
    case 408:
    case 504:
        aigw_error_set(err, 504, "timeout_error", NULL, NULL, "the backend timed out%s%s",
                       text[0] ? ": " : "", text);
        return;
    case 429:
        if (text[0])
            aigw_error_set(err, 429, "rate_limit_error", known_code(eobj), NULL, "%s", text);
        else
            aigw_error_set(err, 429, "rate_limit_error", NULL, NULL,
                           "the backend is rate limited (HTTP 429)");
        return;
    case 503:
        aigw_error_set(err, 503, "api_error", NULL, NULL,
                       "the backend is temporarily unavailable%s%s", text[0] ? ": " : "", text);
        return;
    case 0: /* an error event inside a stream, without a status */
        aigw_error_set(err, 502, "api_error", NULL, NULL, "upstream error: %s",
                       text[0] ? text : "(no message)");
        return;
    default:
        aigw_error_set(err, 502, "api_error", NULL, NULL, "upstream error (HTTP %ld)%s%s",
                       http_status, text[0] ? ": " : "", text);
        return;
    }
}

void aigw_openai_map_error(long http_status, const char *body, size_t len, struct aigw_error *err) {
    _cleanup_(cJSON_Deletep) cJSON *root = NULL;

    if (body && len > 0)
        root = cJSON_ParseWithLength(body, len);
    map_error_json(http_status, cJSON_IsObject(root) ? root : NULL, err);
}

int aigw_openai_parse_response(const char *body, size_t len, struct aigw_chat_response *ret,
                               struct aigw_error *err) {
    _cleanup_(aigw_chat_response_free) struct aigw_chat_response resp = {};
    const cJSON *e, *choices, *choice, *u, *created;
    size_t n, i = 0;

    resp.raw = cJSON_ParseWithLength(body, len);
    if (!resp.raw)
        return bad_upstream(err, "not JSON");
    if (!cJSON_IsObject(resp.raw))
        return bad_upstream(err, "not a JSON object");

    e = member(resp.raw, "error");
    if (e) {
        char text[UPSTREAM_TEXT_MAX + 1];
        const cJSON *eobj;

        upstream_error_text(resp.raw, text, sizeof(text), &eobj);
        aigw_error_set(err, 502, "api_error", NULL, NULL, "upstream sent an error: %s",
                       text[0] ? text : "(no message)");
        return -EREMOTEIO;
    }

    choices = cJSON_GetObjectItemCaseSensitive(resp.raw, "choices");
    if (!cJSON_IsArray(choices))
        return bad_upstream(err, "no choices");
    n = (size_t)cJSON_GetArraySize(choices);
    if (n == 0)
        return bad_upstream(err, "empty choices");

    if (dup_optional_string(resp.raw, "id", &resp.id) < 0 ||
        dup_optional_string(resp.raw, "model", &resp.model) < 0)
        return error_oom(err);
    created = cJSON_GetObjectItemCaseSensitive(resp.raw, "created");
    if (cJSON_IsNumber(created))
        (void)double_to_int64(created->valuedouble, &resp.created);

    resp.choices = calloc(n, sizeof(struct aigw_chat_choice));
    if (!resp.choices)
        return error_oom(err);
    cJSON_ArrayForEach(choice, choices) {
        struct aigw_chat_choice *c = &resp.choices[i];
        const cJSON *msg, *content, *fr;

        if (!cJSON_IsObject(choice))
            return bad_upstream(err, "choices[%zu] is not an object", i);
        if (!parse_index(choice, i, &c->index))
            return bad_upstream(err, "choices[%zu].index is not a valid index", i);
        msg = cJSON_GetObjectItemCaseSensitive(choice, "message");
        if (!cJSON_IsObject(msg))
            return bad_upstream(err, "choices[%zu].message is not an object", i);
        content = member(msg, "content");
        if (content && !cJSON_IsString(content))
            return bad_upstream(err, "choices[%zu].message.content is not a string", i);
        fr = member(choice, "finish_reason");
        if (fr && !cJSON_IsString(fr))
            return bad_upstream(err, "choices[%zu].finish_reason is not a string", i);

        c->content = strdup(content ? content->valuestring : "");
        if (!c->content)
            return error_oom(err);
        resp.n_choices = ++i;
        c->finish_reason = fr ? map_finish_reason(fr->valuestring) : AIGW_FINISH_STOP;
    }

    u = cJSON_GetObjectItemCaseSensitive(resp.raw, "usage");
    if (cJSON_IsObject(u))
        parse_usage(u, &resp.usage);

    *ret = resp;
    resp = (struct aigw_chat_response){};
    return 0;
}

/* In a stream the HTTP status is long sent; an error event may still say
 * which kind of error it was in error.code (LiteLLM sends "429" there). */
static long stream_error_status(const cJSON *eobj) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(eobj, "code");
    int64_t v = 0;

    if (cJSON_IsNumber(c))
        (void)double_to_int64(c->valuedouble, &v);
    else if (cJSON_IsString(c) && strlen(c->valuestring) == 3) {
        char *end;
        long l;

        errno = 0;
        l = strtol(c->valuestring, &end, 10);
        if (errno == 0 && *end == '\0')
            v = l;
    }
    return v >= 400 && v <= 599 ? (long)v : 0;
}

static int parse_stream_choice(cJSON *choice, size_t pos, struct aigw_chat_chunk *ret,
                               struct aigw_error *err) {
    const cJSON *delta, *content, *role, *fr;
    struct aigw_chat_chunk c = {};

    if (!cJSON_IsObject(choice))
        return bad_upstream(err, "choices[%zu] is not an object", pos);
    if (!parse_index(choice, pos, &c.index))
        return bad_upstream(err, "choices[%zu].index is not a valid index", pos);
    delta = member(choice, "delta");
    if (delta && !cJSON_IsObject(delta))
        return bad_upstream(err, "choices[%zu].delta is not an object", pos);
    content = member(delta, "content");
    if (content && !cJSON_IsString(content))
        return bad_upstream(err, "choices[%zu].delta.content is not a string", pos);
    role = member(delta, "role");
    if (role && !cJSON_IsString(role))
        return bad_upstream(err, "choices[%zu].delta.role is not a string", pos);
    fr = member(choice, "finish_reason");
    if (fr && !cJSON_IsString(fr))
        return bad_upstream(err, "choices[%zu].finish_reason is not a string", pos);

    c.role = role != NULL;
    c.finish_reason = fr ? map_finish_reason(fr->valuestring) : NULL;
    if (content) {
        c.content = strdup(content->valuestring);
        if (!c.content)
            return error_oom(err);
    }
    *ret = c;
    return 0;
}

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int aigw_openai_parse_chunk(const char *data, size_t len, struct aigw_chat_chunk **ret_chunks,
                            size_t *ret_n, bool *ret_done, struct aigw_error *err) {
    _cleanup_(cJSON_Deletep) cJSON *root = NULL, *choices = NULL;
    struct aigw_chat_chunk *chunks = NULL;
    const cJSON *e;
    cJSON *usage, *choice;
    size_t n_choices = 0, n = 0, b = 0, l = len;
    int r;

    while (b < l && is_space(data[b]))
        b++;
    while (l > b && is_space(data[l - 1]))
        l--;
    if (l - b == 6 && memcmp(data + b, "[DONE]", 6) == 0) {
        *ret_chunks = NULL;
        *ret_n = 0;
        *ret_done = true;
        return 0;
    }

    root = cJSON_ParseWithLength(data, len);
    if (!root)
        return bad_upstream(err, "stream event is not JSON");
    if (!cJSON_IsObject(root))
        return bad_upstream(err, "stream event is not a JSON object");

    e = member(root, "error");
    if (e) {
        const cJSON *eobj = cJSON_IsObject(e) ? e : NULL;

        map_error_json(stream_error_status(eobj), root, err);
        return -EREMOTEIO;
    }

    choices = cJSON_DetachItemFromObjectCaseSensitive(root, "choices");
    if (choices && !cJSON_IsNull(choices)) {
        if (!cJSON_IsArray(choices))
            return bad_upstream(err, "choices is not an array");
        n_choices = (size_t)cJSON_GetArraySize(choices);
    }
    usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
    if (usage && !cJSON_IsNull(usage) && !cJSON_IsObject(usage))
        return bad_upstream(err, "usage is not an object");
    if (!cJSON_IsObject(usage))
        usage = NULL;

    if (n_choices + (usage ? 1 : 0) == 0) {
        *ret_chunks = NULL;
        *ret_n = 0;
        *ret_done = false;
        return 0;
    }

    chunks = calloc(n_choices + 1, sizeof(struct aigw_chat_chunk));
    if (!chunks)
        return error_oom(err);

    /* Detaching the head each time keeps this linear; each chunk owns its
     * choice object for pass-through. */
    while (n < n_choices) {
        choice = cJSON_DetachItemFromArray(choices, 0);
        if (!choice)
            break;
        r = parse_stream_choice(choice, n, &chunks[n], err);
        if (r < 0) {
            cJSON_Delete(choice);
            aigw_chat_chunks_free(chunks, n);
            return r;
        }
        chunks[n++].raw = choice;
    }

    if (usage) {
        chunks[n].index = -1;
        parse_usage(usage, &chunks[n].usage);
        chunks[n++].raw = cJSON_DetachItemViaPointer(root, usage);
    }

    *ret_chunks = chunks;
    *ret_n = n;
    *ret_done = false;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Rendering */

static char *print_and_free(cJSON *root) {
    char *s = root ? cJSON_PrintUnformatted(root) : NULL;

    cJSON_Delete(root);
    return s;
}

static bool in_list(const char *s, const char *const *list) {
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

/* Rendering goes through the direct writer (json-writer.h): building a
 * cJSON tree and printing it cost more than everything else a request
 * does (cJSON prints every number through sprintf and sscanf). Fields
 * of an upstream's answer that aigw does not model are passed through:
 * members of the raw object that are not in `skip` are appended, and a
 * member aigw writes as null (logprobs) takes upstream's value. */

#define RENDER_MAX (64u << 20)

static void write_extras(struct jw *w, const cJSON *src, const char *const *skip) {
    const cJSON *it;

    if (!cJSON_IsObject(src))
        return;
    cJSON_ArrayForEach(it, src) {
        if (!it->string || in_list(it->string, skip))
            continue;
        jw_key(w, it->string);
        jw_cjson(w, it);
    }
}

static void write_or_upstream(struct jw *w, const char *key, const cJSON *raw) {
    const cJSON *v = cJSON_IsObject(raw) ? cJSON_GetObjectItemCaseSensitive(raw, key) : NULL;

    jw_key(w, key);
    if (v && !cJSON_IsNull(v))
        jw_cjson(w, v);
    else
        jw_null(w);
}

static const char *const usage_known[] = { "prompt_tokens", "completion_tokens", "total_tokens",
                                           NULL };

static void write_usage(struct jw *w, const struct aigw_usage *u, const cJSON *raw) {
    jw_key(w, "usage");
    jw_object_begin(w);
    jw_key(w, "prompt_tokens");
    jw_int(w, u->prompt_tokens);
    jw_key(w, "completion_tokens");
    jw_int(w, u->completion_tokens);
    jw_key(w, "total_tokens");
    jw_int(w, u->total_tokens);
    write_extras(w, raw, usage_known);
    jw_object_end(w);
}

/* The members every object starts with, in OpenAI's order. */
static void write_head(struct jw *w, const char *id, const char *object, int64_t created,
                       const char *model) {
    jw_object_begin(w);
    jw_key(w, "id");
    jw_string(w, id);
    jw_key(w, "object");
    jw_string(w, object);
    jw_key(w, "created");
    jw_int(w, created);
    jw_key(w, "model");
    jw_string(w, model);
}

static void write_backend(struct jw *w, const struct aigw_render_opts *o) {
    if (!o->chat_shape)
        return;
    jw_key(w, "backend");
    jw_string(w, o->backend ? o->backend : "");
}

static char *finish_render(struct jw *w) {
    return jw_finish(w, NULL, NULL);
}

char *aigw_chat_response_render(const struct aigw_chat_response *resp,
                                const struct aigw_render_opts *o) {
    static const char *const top_known[] = { "id",      "object", "created", "model",
                                              "choices", "usage",  "backend", NULL };
    static const char *const choice_known[] = { "index", "message", "finish_reason", "logprobs", NULL };
    static const char *const message_known[] = { "role", "content", NULL };
    const cJSON *raw_choices = cJSON_GetObjectItemCaseSensitive(resp->raw, "choices");
    const cJSON *raw_choice = cJSON_IsArray(raw_choices) ? raw_choices->child : NULL;
    struct jw w;

    jw_init(&w, RENDER_MAX);
    write_head(&w, o->id ?: resp->id ?: "chatcmpl-aigw", "chat.completion",
               o->created ?: resp->created, o->model ?: resp->model ?: "unknown");
    jw_key(&w, "choices");
    jw_array_begin(&w);
    for (size_t i = 0; i < resp->n_choices; i++) {
        const struct aigw_chat_choice *c = &resp->choices[i];

        jw_object_begin(&w);
        jw_key(&w, "index");
        jw_int(&w, c->index);
        jw_key(&w, "message");
        jw_object_begin(&w);
        jw_key(&w, "role");
        jw_string(&w, "assistant");
        jw_key(&w, "content");
        jw_string(&w, c->content ?: "");
        if (raw_choice)
            write_extras(&w, cJSON_GetObjectItemCaseSensitive(raw_choice, "message"), message_known);
        jw_object_end(&w);
        write_or_upstream(&w, "logprobs", raw_choice);
        jw_key(&w, "finish_reason");
        jw_string(&w, c->finish_reason ?: AIGW_FINISH_STOP);
        if (raw_choice) {
            write_extras(&w, raw_choice, choice_known);
            raw_choice = raw_choice->next;
        }
        jw_object_end(&w);
    }
    jw_array_end(&w);

    if (resp->usage.present)
        write_usage(&w, &resp->usage, cJSON_GetObjectItemCaseSensitive(resp->raw, "usage"));
    write_extras(&w, resp->raw, top_known);
    write_backend(&w, o);
    jw_object_end(&w);
    return finish_render(&w);
}

char *aigw_chat_chunk_render(const struct aigw_chat_chunk *c, const struct aigw_render_opts *o) {
    static const char *const choice_known[] = { "index", "delta", "finish_reason", "logprobs", NULL };
    static const char *const delta_known[] = { "role", "content", NULL };
    struct jw w;

    jw_init(&w, RENDER_MAX);
    write_head(&w, o->id ?: "chatcmpl-aigw", "chat.completion.chunk", o->created,
               o->model ?: "unknown");
    jw_key(&w, "choices");
    jw_array_begin(&w);
    if (!c->usage.present) {
        jw_object_begin(&w);
        jw_key(&w, "index");
        jw_int(&w, c->index);
        /* Always present, {} when empty: clients index delta
         * unconditionally (other gateways broke them by omitting it). */
        jw_key(&w, "delta");
        jw_object_begin(&w);
        if (c->role) {
            jw_key(&w, "role");
            jw_string(&w, "assistant");
        }
        if (c->content) {
            jw_key(&w, "content");
            jw_string(&w, c->content);
        }
        write_extras(&w, cJSON_GetObjectItemCaseSensitive(c->raw, "delta"), delta_known);
        jw_object_end(&w);
        write_or_upstream(&w, "logprobs", c->raw);
        jw_key(&w, "finish_reason");
        jw_string_or_null(&w, c->finish_reason);
        write_extras(&w, c->raw, choice_known);
        jw_object_end(&w);
    }
    jw_array_end(&w);
    if (c->usage.present)
        write_usage(&w, &c->usage, c->raw);
    write_backend(&w, o);
    jw_object_end(&w);
    return finish_render(&w);
}

char *aigw_error_render(const struct aigw_error *e) {
    const char *param = e->param ? (e->param_buf[0] ? e->param_buf : e->param) : NULL;
    struct jw w;

    jw_init(&w, RENDER_MAX);
    jw_object_begin(&w);
    jw_key(&w, "error");
    jw_object_begin(&w);
    jw_key(&w, "message");
    jw_string(&w, e->message);
    jw_key(&w, "type");
    jw_string(&w, e->type ?: "api_error");
    jw_key(&w, "param");
    jw_string_or_null(&w, param);
    jw_key(&w, "code");
    jw_string_or_null(&w, e->code);
    jw_object_end(&w);
    jw_object_end(&w);
    return finish_render(&w);
}

char *aigw_models_render(const char *const *names, size_t n, const char *const *owners,
                         int64_t created) {
    _cleanup_(cJSON_Deletep) cJSON *root = cJSON_CreateObject();
    cJSON *data;

    if (!root || !cJSON_AddStringToObject(root, "object", "list"))
        return NULL;
    data = cJSON_AddArrayToObject(root, "data");
    if (!data)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        cJSON *m = cJSON_CreateObject();

        if (!m)
            return NULL;
        cJSON_AddItemToArray(data, m);
        if (!cJSON_AddStringToObject(m, "id", names[i]) ||
            !cJSON_AddStringToObject(m, "object", "model") ||
            !cJSON_AddNumberToObject(m, "created", (double)created) ||
            !cJSON_AddStringToObject(m, "owned_by",
                                     owners && owners[i] ? owners[i] : "aigw"))
            return NULL;
    }
    return print_and_free(TAKE_PTR(root));
}
