/* SPDX-License-Identifier: MIT */

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aigw/backend-gemini.h"
#include "aigw/json-writer.h"
#include "aigw/chat-model.h"
#include "aigw/macro.h"
#include "aigw/utf8.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete);

/* Gemini caps stopSequences at 5 and answers 400 beyond that; failing here
 * names the client's field instead of relaying Gemini's wording. */
#define GEMINI_MAX_STOP 5

/* Upstream text copied into error messages: short enough that the longest
 * prefix plus this still fits struct aigw_error's message unclipped, so
 * vsnprintf never cuts a UTF-8 sequence. */
#define UPSTREAM_MESSAGE_MAX 300
#define ID_MAX 256
#define DROPPED_NAME_MAX 64
#define DROPPED_MAX 512

/* Token counts beyond 2^53 are not exact in a double; no real count gets
 * near, so larger values are garbage. */
#define COUNT_MAX 9007199254740992.0

static int oom(struct aigw_error *err) {
    aigw_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    return -ENOMEM;
}

static int invalid_response(struct aigw_error *err) {
    aigw_error_set(err, 502, "api_error", NULL, NULL, "upstream sent an invalid response");
    return -EBADMSG;
}

static int no_candidates(struct aigw_error *err) {
    aigw_error_set(err, 502, "api_error", NULL, NULL, "upstream sent no candidates");
    return -EBADMSG;
}

/* --- text helpers -------------------------------------------------------- */

/* Upstream text reaches logs and clients' error messages through this:
 * valid UTF-8 only, and every control character (C0, DEL, C1) a space. */
static size_t sanitize_copy(char *dst, size_t size, const char *src, size_t n) {
    return aigw_utf8_sanitize(dst, size, src, n, AIGW_UTF8_SANITIZE_C1);
}

static char *sanitize_dup(const char *src, size_t max) {
    _cleanup_free_ char *p = malloc(max + 1);
    if (!p)
        return NULL;
    sanitize_copy(p, max + 1, src, strlen(src));
    return TAKE_PTR(p);
}

struct buf {
    char *p;
    size_t len;
    size_t cap;
};

static int buf_append(struct buf *b, const char *s, size_t n) {
    if (n > SIZE_MAX - b->len - 1)
        return -ENOMEM;
    if (b->len + n + 1 > b->cap) {
        size_t cap = MAX(b->cap, (size_t) 64);
        while (cap < b->len + n + 1)
            cap = cap > SIZE_MAX / 2 ? b->len + n + 1 : cap * 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* --- JSON helpers -------------------------------------------------------- */

/* JSON null counts as absent: protobuf JSON may spell an unset field so. */
static const cJSON *field(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(v) ? NULL : v;
}

/* Parse exactly [data, data+len): cJSON stops after the first value, so
 * trailing bytes other than whitespace would otherwise go unnoticed. */
static cJSON *parse_json(const char *data, size_t len) {
    const char *end = NULL;
    cJSON *root;

    if (!data || len == 0)
        return NULL;
    root = cJSON_ParseWithLengthOpts(data, len, &end, false);
    if (!root)
        return NULL;
    for (const char *p = end; p && p < data + len; p++)
        if (!strchr(" \t\r\n", *p) || *p == '\0') {
            cJSON_Delete(root);
            return NULL;
        }
    return root;
}

/* 0: absent, 1: *ret set, -EBADMSG: not a non-negative integer. */
static int get_count(const cJSON *obj, const char *key, int64_t *ret) {
    const cJSON *v = field(obj, key);
    if (!v)
        return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > COUNT_MAX || v->valuedouble != (double) (int64_t) v->valuedouble)
        return -EBADMSG;
    *ret = (int64_t) v->valuedouble;
    return 1;
}

/* 0: absent (*ret NULL), 1: *ret is the string, -EBADMSG: not a string. */
static int get_string(const cJSON *obj, const char *key, const char **ret) {
    const cJSON *v = field(obj, key);
    *ret = NULL;
    if (!v)
        return 0;
    if (!cJSON_IsString(v) || !v->valuestring)
        return -EBADMSG;
    *ret = v->valuestring;
    return 1;
}

/* --- request ------------------------------------------------------------- */

static int add_text_parts(cJSON *parts, const struct aigw_chat_message *m) {
    for (size_t i = 0; i < m->n_parts; i++) {
        if (!m->parts[i])
            continue;
        cJSON *part = cJSON_CreateObject();
        if (!part)
            return -ENOMEM;
        cJSON_AddItemToArray(parts, part);
        if (!cJSON_AddStringToObject(part, "text", m->parts[i]))
            return -ENOMEM;
    }
    return 0;
}

static bool message_has_parts(const struct aigw_chat_message *m) {
    for (size_t i = 0; i < m->n_parts; i++)
        if (m->parts[i])
            return true;
    return false;
}

/* Request fields the Gemini request carries (or the caller handles:
 * stream picks the URL, stream_options the usage chunk). */
static const char *const mapped_fields[] = {
    "model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens",
    "stop",  "n",        "stream",      "stream_options",
};

static bool is_mapped_field(const char *name) {
    for (size_t i = 0; i < ELEMENTSOF(mapped_fields); i++)
        if (strcmp(name, mapped_fields[i]) == 0)
            return true;
    return false;
}

/* Names are client-chosen: sanitized, each and the whole list bounded. */
static int collect_dropped(const cJSON *raw, char **ret) {
    struct buf b = {};
    const cJSON *item;

    if (!cJSON_IsObject(raw)) {
        *ret = NULL;
        return 0;
    }
    cJSON_ArrayForEach(item, raw) {
        char name[DROPPED_NAME_MAX + 1];
        size_t l;
        int r;

        if (!item->string || is_mapped_field(item->string))
            continue;
        l = sanitize_copy(name, sizeof name, item->string, strlen(item->string));
        if (b.len + 1 + l > DROPPED_MAX - 4) {
            r = buf_append(&b, b.len > 0 ? ",..." : "...", b.len > 0 ? 4 : 3);
            if (r < 0) {
                free(b.p);
                return r;
            }
            break;
        }
        r = b.len > 0 ? buf_append(&b, ",", 1) : 0;
        if (r >= 0)
            r = buf_append(&b, name, l);
        if (r < 0) {
            free(b.p);
            return r;
        }
    }
    *ret = b.p;
    return 0;
}

/* cJSON_AddItemToObject() leaves the item unowned when copying the key
 * fails; this one deletes it then. */
static bool add_item(cJSON *obj, const char *key, cJSON *item) {
    if (cJSON_AddItemToObject(obj, key, item))
        return true;
    cJSON_Delete(item);
    return false;
}

static int add_number(cJSON *obj, const char *key, double v) {
    return cJSON_AddNumberToObject(obj, key, v) ? 0 : -ENOMEM;
}

static int build_generation_config(const struct aigw_chat_request *req,
                                   const struct aigw_model_defaults *defaults, cJSON *root,
                                   struct aigw_error *err) {
    cJSON *gc;
    int r = 0;

    if (req->has_temperature && !isfinite(req->temperature)) {
        aigw_error_set(err, 400, "invalid_request_error", NULL, "temperature",
                       "temperature must be a finite number");
        return -EINVAL;
    }
    if (req->has_top_p && !isfinite(req->top_p)) {
        aigw_error_set(err, 400, "invalid_request_error", NULL, "top_p",
                       "top_p must be a finite number");
        return -EINVAL;
    }
    if (req->n_stop > GEMINI_MAX_STOP) {
        aigw_error_set(err, 400, "invalid_request_error", NULL, "stop",
                       "Gemini backends accept at most %d stop sequences, got %zu",
                       GEMINI_MAX_STOP, req->n_stop);
        return -EINVAL;
    }

    gc = cJSON_CreateObject();
    if (!gc)
        return oom(err);
    if (req->has_temperature)
        r = add_number(gc, "temperature", req->temperature);
    else if (defaults && defaults->has_temperature)
        r = add_number(gc, "temperature", defaults->temperature);
    if (r >= 0 && req->has_top_p)
        r = add_number(gc, "topP", req->top_p);
    if (r >= 0 && req->has_max_tokens)
        r = add_number(gc, "maxOutputTokens", (double) req->max_tokens);
    else if (r >= 0 && defaults && defaults->has_max_tokens)
        r = add_number(gc, "maxOutputTokens", (double) defaults->max_tokens);
    if (r >= 0 && req->n_stop > 0) {
        cJSON *stop = cJSON_AddArrayToObject(gc, "stopSequences");
        for (size_t i = 0; r >= 0 && i < req->n_stop; i++) {
            cJSON *s = stop && req->stop[i] ? cJSON_CreateString(req->stop[i]) : NULL;
            if (!stop || (req->stop[i] && !s))
                r = -ENOMEM;
            else if (s)
                cJSON_AddItemToArray(stop, s);
        }
    }
    if (r >= 0 && req->has_n)
        r = add_number(gc, "candidateCount", (double) req->n);
    if (r < 0) {
        cJSON_Delete(gc);
        return oom(err);
    }
    /* An empty generationConfig is legal but noise in upstream logs. */
    if (!gc->child) {
        cJSON_Delete(gc);
        return 0;
    }
    return add_item(root, "generationConfig", gc) ? 0 : oom(err);
}

int aigw_gemini_build_request(const struct aigw_chat_request *req,
                              const struct aigw_model_defaults *defaults, char **ret_body,
                              char **ret_dropped, struct aigw_error *err) {
    _cleanup_(cJSON_Deletep) cJSON *root = NULL, *sys_parts = NULL, *contents = NULL;
    _cleanup_free_ char *body = NULL, *dropped = NULL;
    cJSON *last_parts = NULL;
    const char *last_role = NULL;
    int r;

    for (size_t i = 0; i < req->n_messages; i++) {
        enum aigw_role role = req->messages[i].role;
        if (role == AIGW_ROLE_SYSTEM || role == AIGW_ROLE_USER || role == AIGW_ROLE_ASSISTANT)
            continue;
        char param[48];
        snprintf(param, sizeof param, "messages[%zu].role", i);
        aigw_error_set(err, 400, "invalid_request_error", NULL, param, "%s",
                       role == AIGW_ROLE_TOOL ? "tool messages are not supported by Gemini backends"
                                              : "unsupported role");
        return -EINVAL;
    }

    root = cJSON_CreateObject();
    sys_parts = cJSON_CreateArray();
    contents = cJSON_CreateArray();
    if (!root || !sys_parts || !contents)
        return oom(err);

    for (size_t i = 0; i < req->n_messages; i++) {
        const struct aigw_chat_message *m = &req->messages[i];
        const char *role;

        if (m->role == AIGW_ROLE_SYSTEM) {
            if (add_text_parts(sys_parts, m) < 0)
                return oom(err);
            continue;
        }
        /* A message without parts (an assistant turn that only called
         * tools) would be an empty content, which Gemini rejects. */
        if (!message_has_parts(m))
            continue;
        role = m->role == AIGW_ROLE_USER ? "user" : "model";
        /* Gemini wants alternating turns; merging keeps every part and its
         * order, which is what the client meant by two turns in a row. */
        if (!last_role || strcmp(last_role, role) != 0) {
            cJSON *content = cJSON_CreateObject();
            if (!content)
                return oom(err);
            cJSON_AddItemToArray(contents, content);
            if (!cJSON_AddStringToObject(content, "role", role))
                return oom(err);
            last_parts = cJSON_AddArrayToObject(content, "parts");
            if (!last_parts)
                return oom(err);
            last_role = role;
        }
        if (add_text_parts(last_parts, m) < 0)
            return oom(err);
    }

    if (cJSON_GetArraySize(contents) == 0) {
        cJSON *content, *parts;

        if (cJSON_GetArraySize(sys_parts) == 0) {
            aigw_error_set(err, 400, "invalid_request_error", NULL, "messages",
                           "messages must contain at least one message with content");
            return -EINVAL;
        }
        /* System-only conversation: see the header for why the user turn
         * repeats the system text. */
        content = cJSON_CreateObject();
        parts = cJSON_Duplicate(sys_parts, true);
        if (!content || !parts) {
            cJSON_Delete(content);
            cJSON_Delete(parts);
            return oom(err);
        }
        cJSON_AddItemToArray(contents, content);
        if (!cJSON_AddStringToObject(content, "role", "user") ||
            !add_item(content, "parts", parts))
            return oom(err);
    }

    if (cJSON_GetArraySize(sys_parts) > 0) {
        cJSON *si = cJSON_AddObjectToObject(root, "systemInstruction");
        if (!si || !add_item(si, "parts", TAKE_PTR(sys_parts)))
            return oom(err);
    }
    if (!add_item(root, "contents", TAKE_PTR(contents)))
        return oom(err);

    r = build_generation_config(req, defaults, root, err);
    if (r < 0)
        return r;

    body = jw_print_cjson(root, 64u << 20);
    if (!body)
        return oom(err);
    if (ret_dropped && collect_dropped(req->raw, &dropped) < 0)
        return oom(err);

    *ret_body = TAKE_PTR(body);
    if (ret_dropped)
        *ret_dropped = TAKE_PTR(dropped);
    return 0;
}

/* --- URL ----------------------------------------------------------------- */

int aigw_gemini_url(const char *base, const char *model, bool stream, char **ret_url) {
    static const char hex[] = "0123456789ABCDEF";
    const char *suffix = stream ? ":streamGenerateContent?alt=sse" : ":generateContent";
    struct buf b = {};
    size_t base_len;

    if (!base || !model)
        return -EINVAL;
    base_len = strlen(base);
    while (base_len > 0 && base[base_len - 1] == '/')
        base_len--;
    /* Appending a path after a query or fragment would send it nowhere. */
    if (base_len == 0 || memchr(base, '?', base_len) || memchr(base, '#', base_len))
        return -EINVAL;
    if (strncmp(model, "models/", 7) == 0)
        model += 7;
    if (model[0] == '\0')
        return -EINVAL;

    if (buf_append(&b, base, base_len) < 0 || buf_append(&b, "/v1beta/models/", 15) < 0)
        goto fail;
    for (const unsigned char *p = (const unsigned char *) model; *p; p++) {
        bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~';
        char esc[3] = { '%', hex[*p >> 4], hex[*p & 15] };
        if (buf_append(&b, plain ? (const char *) p : esc, plain ? 1 : 3) < 0)
            goto fail;
    }
    if (buf_append(&b, suffix, strlen(suffix)) < 0)
        goto fail;
    *ret_url = b.p;
    return 0;
fail:
    free(b.p);
    return -ENOMEM;
}

/* --- finish reasons ------------------------------------------------------ */

static const struct {
    const char *gemini;
    const char *openai;
    bool unmapped;
} finish_table[] = {
    { "STOP", AIGW_FINISH_STOP, false },
    { "MAX_TOKENS", AIGW_FINISH_LENGTH, false },
    { "SAFETY", AIGW_FINISH_CONTENT_FILTER, false },
    { "RECITATION", AIGW_FINISH_CONTENT_FILTER, false },
    { "LANGUAGE", AIGW_FINISH_CONTENT_FILTER, false },
    { "BLOCKLIST", AIGW_FINISH_CONTENT_FILTER, false },
    { "PROHIBITED_CONTENT", AIGW_FINISH_CONTENT_FILTER, false },
    { "SPII", AIGW_FINISH_CONTENT_FILTER, false },
    { "IMAGE_SAFETY", AIGW_FINISH_CONTENT_FILTER, false },
    { "IMAGE_PROHIBITED_CONTENT", AIGW_FINISH_CONTENT_FILTER, false },
    { "IMAGE_RECITATION", AIGW_FINISH_CONTENT_FILTER, false },
    /* aigw sends no tools, so these are no tool_calls; stop, and logged. */
    { "MALFORMED_FUNCTION_CALL", AIGW_FINISH_STOP, true },
    { "UNEXPECTED_TOOL_CALL", AIGW_FINISH_STOP, true },
    { "TOO_MANY_TOOL_CALLS", AIGW_FINISH_STOP, true },
    { "MISSING_THOUGHT_SIGNATURE", AIGW_FINISH_STOP, true },
    { "IMAGE_OTHER", AIGW_FINISH_STOP, true },
    { "NO_IMAGE", AIGW_FINISH_STOP, true },
    { "OTHER", AIGW_FINISH_STOP, true },
    { "FINISH_REASON_UNSPECIFIED", AIGW_FINISH_STOP, true },
};

const char *aigw_gemini_finish_reason(const char *gemini, bool *ret_unmapped) {
    for (size_t i = 0; gemini && i < ELEMENTSOF(finish_table); i++)
        if (strcmp(gemini, finish_table[i].gemini) == 0) {
            if (ret_unmapped)
                *ret_unmapped = finish_table[i].unmapped;
            return finish_table[i].openai;
        }
    /* Unknown: "stop" is the least misleading guess (content_filter would
     * make clients blame a policy); the caller logs the raw value. */
    if (ret_unmapped)
        *ret_unmapped = true;
    return AIGW_FINISH_STOP;
}

/* --- candidates ---------------------------------------------------------- */

struct candidate {
    int index;
    char *text;             /* never NULL once parsed */
    const char *finish_raw; /* points into the cJSON tree, NULL if absent */
};

static int parse_candidate(const cJSON *c, size_t pos, struct candidate *ret) {
    const cJSON *idx, *content, *parts = NULL, *part;
    struct buf b = {};
    const char *finish;
    int index;

    if (!cJSON_IsObject(c))
        return -EBADMSG;
    /* proto3 JSON omits index 0, so the position is the fallback. */
    idx = field(c, "index");
    if (idx) {
        if (!cJSON_IsNumber(idx) || !(idx->valuedouble >= 0 && idx->valuedouble <= INT_MAX) ||
            idx->valuedouble != (double) (int) idx->valuedouble)
            return -EBADMSG;
        index = (int) idx->valuedouble;
    } else {
        if (pos > INT_MAX)
            return -EBADMSG;
        index = (int) pos;
    }
    content = field(c, "content");
    if (content && !cJSON_IsObject(content))
        return -EBADMSG;
    if (content) {
        parts = field(content, "parts");
        if (parts && !cJSON_IsArray(parts))
            return -EBADMSG;
    }
    if (get_string(c, "finishReason", &finish) < 0)
        return -EBADMSG;

    if (buf_append(&b, "", 0) < 0)
        return -ENOMEM;
    cJSON_ArrayForEach(part, parts) {
        const cJSON *thought;
        const char *text;

        if (!cJSON_IsObject(part))
            goto bad;
        thought = field(part, "thought");
        if (thought && !cJSON_IsBool(thought))
            goto bad;
        /* Thought summaries are the model's reasoning, not its answer. */
        if (cJSON_IsTrue(thought))
            continue;
        if (get_string(part, "text", &text) < 0)
            goto bad;
        /* Parts without text (inlineData, functionCall, ...) carry nothing
         * a text-only client can use. */
        if (text && buf_append(&b, text, strlen(text)) < 0) {
            free(b.p);
            return -ENOMEM;
        }
    }
    *ret = (struct candidate) { .index = index, .text = b.p, .finish_raw = finish };
    return 0;
bad:
    free(b.p);
    return -EBADMSG;
}

/* Block reasons are all policy refusals of the prompt, whatever the value. */
static int get_block_reason(const cJSON *root, bool *ret) {
    const cJSON *pf = field(root, "promptFeedback");
    const char *reason;

    *ret = false;
    if (!pf)
        return 0;
    if (!cJSON_IsObject(pf) || get_string(pf, "blockReason", &reason) < 0)
        return -EBADMSG;
    *ret = reason != NULL;
    return 0;
}

static int parse_usage(const cJSON *root, struct aigw_usage *ret) {
    const cJSON *u = field(root, "usageMetadata");
    int64_t prompt = 0, candidates = 0, thoughts = 0, total = 0;
    int has_total;

    *ret = (struct aigw_usage) {};
    if (!u)
        return 0;
    if (!cJSON_IsObject(u))
        return -EBADMSG;
    if (get_count(u, "promptTokenCount", &prompt) < 0 ||
        get_count(u, "candidatesTokenCount", &candidates) < 0 ||
        get_count(u, "thoughtsTokenCount", &thoughts) < 0)
        return -EBADMSG;
    has_total = get_count(u, "totalTokenCount", &total);
    if (has_total < 0)
        return -EBADMSG;
    ret->present = true;
    ret->prompt_tokens = prompt;
    /* Each is at most 2^53, so neither sum overflows. */
    ret->completion_tokens = candidates + thoughts;
    ret->total_tokens = has_total ? total : prompt + candidates + thoughts;
    return 0;
}

/* ret may be NULL: then the field is only type-checked. */
static int dup_ident(const cJSON *root, const char *key, char **ret) {
    const char *s;
    int r = get_string(root, key, &s);

    if (r <= 0 || !ret)
        return r;
    *ret = sanitize_dup(s, ID_MAX);
    return *ret ? 0 : -ENOMEM;
}

/* Fill err from an "error" member (or an array whose first element has
 * one, as the non-SSE stream sends) and return true if there was one. */
static bool map_error_json(long http_status, const cJSON *root, struct aigw_error *err);

int aigw_gemini_parse_response(const char *body, size_t len, struct aigw_chat_response *ret,
                               char **ret_unmapped_finish, struct aigw_error *err) {
    _cleanup_(cJSON_Deletep) cJSON *root = NULL;
    _cleanup_free_ char *unmapped = NULL;
    struct aigw_chat_response resp = {};
    const cJSON *candidates, *c;
    bool blocked;
    size_t n, i = 0;
    int r;

    root = parse_json(body, len);
    if (!root || !cJSON_IsObject(root))
        return invalid_response(err);
    if (map_error_json(0, root, err))
        return -EREMOTEIO;

    candidates = field(root, "candidates");
    if (candidates && !cJSON_IsArray(candidates))
        return invalid_response(err);
    n = (size_t) cJSON_GetArraySize(candidates);
    if (get_block_reason(root, &blocked) < 0 || parse_usage(root, &resp.usage) < 0)
        return invalid_response(err);
    if (n == 0 && !blocked)
        return no_candidates(err);

    resp.choices = calloc(n > 0 ? n : 1, sizeof(*resp.choices));
    if (!resp.choices)
        return oom(err);

    if (n == 0) {
        /* A blocked prompt is an answer, not a failure: clients expect one
         * choice and a finish_reason they can act on, never choices: []. */
        resp.choices[0] = (struct aigw_chat_choice) {
            .index = 0, .content = strdup(""), .finish_reason = AIGW_FINISH_CONTENT_FILTER
        };
        resp.n_choices = 1;
        if (!resp.choices[0].content) {
            r = -ENOMEM;
            goto fail;
        }
    }

    cJSON_ArrayForEach(c, candidates) {
        struct candidate cand;
        bool um = false;

        r = parse_candidate(c, i++, &cand);
        if (r < 0)
            goto fail;
        resp.choices[resp.n_choices++] = (struct aigw_chat_choice) {
            .index = cand.index,
            .content = cand.text,
            .finish_reason = cand.finish_raw ? aigw_gemini_finish_reason(cand.finish_raw, &um)
                                             : AIGW_FINISH_STOP,
        };
        if (um && !unmapped && ret_unmapped_finish) {
            unmapped = sanitize_dup(cand.finish_raw, AIGW_GEMINI_UNMAPPED_MAX - 1);
            if (!unmapped) {
                r = -ENOMEM;
                goto fail;
            }
        }
    }

    r = dup_ident(root, "responseId", &resp.id);
    if (r >= 0)
        r = dup_ident(root, "modelVersion", &resp.model);
    if (r < 0)
        goto fail;

    *ret = resp;
    if (ret_unmapped_finish)
        *ret_unmapped_finish = TAKE_PTR(unmapped);
    return 0;

fail:
    aigw_chat_response_free(&resp);
    return r == -ENOMEM ? oom(err) : invalid_response(err);
}

/* --- streaming ----------------------------------------------------------- */

void aigw_gemini_stream_init(struct aigw_gemini_stream *s) {
    *s = (struct aigw_gemini_stream) {};
}

void aigw_gemini_stream_done(struct aigw_gemini_stream *s) {
    if (!s)
        return;
    free(s->id);
    free(s->model);
    aigw_gemini_stream_init(s);
}

static struct aigw_gemini_stream_choice *
choice_slot(struct aigw_gemini_stream_choice *choices, size_t *n, int index) {
    for (size_t i = 0; i < *n; i++)
        if (choices[i].index == index)
            return &choices[i];
    /* The bound keeps state fixed-size whatever indices upstream invents;
     * Gemini's candidateCount tops out well below it. */
    if (*n >= AIGW_GEMINI_STREAM_MAX_CHOICES)
        return NULL;
    choices[*n] = (struct aigw_gemini_stream_choice) { .index = index };
    return &choices[(*n)++];
}

int aigw_gemini_stream_event(struct aigw_gemini_stream *s, const char *data, size_t len,
                             struct aigw_chat_chunk **ret_chunks, size_t *ret_n,
                             struct aigw_error *err) {
    _cleanup_(cJSON_Deletep) cJSON *root = NULL;
    _cleanup_free_ char *id = NULL, *model = NULL;
    struct aigw_gemini_stream_choice choices[AIGW_GEMINI_STREAM_MAX_CHOICES];
    char unmapped[AIGW_GEMINI_UNMAPPED_MAX];
    struct aigw_chat_chunk *chunks = NULL;
    const cJSON *candidates, *c;
    struct aigw_usage usage;
    size_t n_choices, n, n_chunks = 0, i = 0;
    bool blocked;
    int r;

    if (s->finished) {
        aigw_error_set(err, 500, "server_error", NULL, NULL, "stream event after finish");
        return -EINVAL;
    }
    if (len == 0) {
        *ret_chunks = NULL;
        *ret_n = 0;
        return 0;
    }

    root = parse_json(data, len);
    if (!root || !cJSON_IsObject(root))
        return invalid_response(err);
    if (map_error_json(0, root, err))
        return -EREMOTEIO;

    candidates = field(root, "candidates");
    if (candidates && !cJSON_IsArray(candidates))
        return invalid_response(err);
    n = (size_t) cJSON_GetArraySize(candidates);
    if (get_block_reason(root, &blocked) < 0 || parse_usage(root, &usage) < 0)
        return invalid_response(err);
    /* The first id and model seen stick; later ones are only type-checked. */
    r = dup_ident(root, "responseId", s->id ? NULL : &id);
    if (r >= 0)
        r = dup_ident(root, "modelVersion", s->model ? NULL : &model);
    if (r == -ENOMEM)
        return oom(err);
    if (r < 0)
        return invalid_response(err);

    /* Work on copies so a bad event leaves the state as it was. */
    memcpy(choices, s->choices, sizeof choices);
    n_choices = s->n_choices;
    memcpy(unmapped, s->unmapped_finish, sizeof unmapped);

    if (n > 0) {
        chunks = calloc(n, sizeof(*chunks));
        if (!chunks)
            return oom(err);
    }
    cJSON_ArrayForEach(c, candidates) {
        struct aigw_gemini_stream_choice *ch;
        struct candidate cand;

        r = parse_candidate(c, i++, &cand);
        if (r < 0)
            goto fail;
        ch = choice_slot(choices, &n_choices, cand.index);
        if (!ch) {
            free(cand.text);
            r = -EBADMSG;
            goto fail;
        }
        if (cand.finish_raw) {
            bool um = false;
            /* Latest wins: older models repeat STOP on every event and the
             * real reason comes last. */
            ch->finish_reason = aigw_gemini_finish_reason(cand.finish_raw, &um);
            if (um && unmapped[0] == '\0')
                sanitize_copy(unmapped, sizeof unmapped, cand.finish_raw,
                              strlen(cand.finish_raw));
        }
        if (cand.text[0] == '\0') {
            free(cand.text);
            continue;
        }
        chunks[n_chunks++] = (struct aigw_chat_chunk) {
            .index = cand.index, .role = !ch->started, .content = cand.text
        };
        ch->started = true;
    }
    if (n == 0 && blocked) {
        struct aigw_gemini_stream_choice *ch = choice_slot(choices, &n_choices, 0);
        if (!ch) {
            r = -EBADMSG;
            goto fail;
        }
        ch->finish_reason = AIGW_FINISH_CONTENT_FILTER;
    }

    memcpy(s->choices, choices, sizeof choices);
    s->n_choices = n_choices;
    memcpy(s->unmapped_finish, unmapped, sizeof unmapped);
    if (usage.present)
        s->usage = usage;
    if (id)
        s->id = TAKE_PTR(id);
    if (model)
        s->model = TAKE_PTR(model);
    if (n_chunks == 0) {
        free(chunks);
        chunks = NULL;
    }
    *ret_chunks = chunks;
    *ret_n = n_chunks;
    return 0;

fail:
    aigw_chat_chunks_free(chunks, n_chunks);
    return r == -ENOMEM ? oom(err) : invalid_response(err);
}

int aigw_gemini_stream_finish(struct aigw_gemini_stream *s, struct aigw_chat_chunk **ret_chunks,
                              size_t *ret_n, struct aigw_error *err) {
    struct aigw_chat_chunk *chunks;
    bool missing = false;
    size_t n = 0;

    if (s->finished) {
        aigw_error_set(err, 500, "server_error", NULL, NULL, "stream finished twice");
        return -EINVAL;
    }
    if (s->n_choices == 0)
        return no_candidates(err);

    chunks = calloc(s->n_choices + 1, sizeof(*chunks));
    if (!chunks)
        return oom(err);
    for (size_t i = 0; i < s->n_choices; i++) {
        const struct aigw_gemini_stream_choice *ch = &s->choices[i];
        if (!ch->finish_reason)
            missing = true;
        chunks[n++] = (struct aigw_chat_chunk) {
            .index = ch->index,
            .role = !ch->started,
            .finish_reason = ch->finish_reason ?: AIGW_FINISH_STOP,
        };
    }
    if (s->usage.present)
        chunks[n++] = (struct aigw_chat_chunk) { .index = -1, .usage = s->usage };

    s->missing_finish = missing;
    s->finished = true;
    *ret_chunks = chunks;
    *ret_n = n;
    return 0;
}

/* --- errors -------------------------------------------------------------- */

enum error_kind {
    KIND_UNKNOWN,
    KIND_BAD_REQUEST,
    KIND_KEY_REJECTED,
    KIND_NOT_FOUND,
    KIND_RATE_LIMIT,
    KIND_TIMEOUT,
    KIND_UNAVAILABLE,
    KIND_UPSTREAM,
};

static const struct {
    const char *status;
    enum error_kind kind;
} status_table[] = {
    { "INVALID_ARGUMENT", KIND_BAD_REQUEST },
    { "FAILED_PRECONDITION", KIND_BAD_REQUEST },
    { "OUT_OF_RANGE", KIND_BAD_REQUEST },
    { "UNAUTHENTICATED", KIND_KEY_REJECTED },
    { "PERMISSION_DENIED", KIND_KEY_REJECTED },
    { "NOT_FOUND", KIND_NOT_FOUND },
    { "RESOURCE_EXHAUSTED", KIND_RATE_LIMIT },
    { "DEADLINE_EXCEEDED", KIND_TIMEOUT },
    { "UNAVAILABLE", KIND_UNAVAILABLE },
    { "INTERNAL", KIND_UPSTREAM },
    { "UNKNOWN", KIND_UPSTREAM },
    { "DATA_LOSS", KIND_UPSTREAM },
    { "ABORTED", KIND_UPSTREAM },
    { "CANCELLED", KIND_UPSTREAM },
    { "UNIMPLEMENTED", KIND_UPSTREAM },
    { "ALREADY_EXISTS", KIND_UPSTREAM },
};

static enum error_kind kind_from_http(long status) {
    switch (status) {
    case 400:
        return KIND_BAD_REQUEST;
    case 401:
    case 403:
        return KIND_KEY_REJECTED;
    case 404:
        return KIND_NOT_FOUND;
    case 408:
    case 504:
        return KIND_TIMEOUT;
    case 429:
        return KIND_RATE_LIMIT;
    case 503:
        return KIND_UNAVAILABLE;
    default:
        return KIND_UPSTREAM;
    }
}

/* Gemini reports a bad or expired key as 400 INVALID_ARGUMENT with an
 * ErrorInfo reason API_KEY_INVALID; passing that on as a 400 would tell the
 * client its own key is wrong. */
static bool has_api_key_reason(const cJSON *e) {
    const cJSON *details = field(e, "details"), *d;

    if (!cJSON_IsArray(details))
        return false;
    cJSON_ArrayForEach(d, details) {
        const cJSON *reason = cJSON_IsObject(d) ? field(d, "reason") : NULL;
        if (cJSON_IsString(reason) && strncmp(reason->valuestring, "API_KEY_", 8) == 0)
            return true;
    }
    return false;
}

static void map_error_object(long http_status, const cJSON *e, struct aigw_error *err) {
    enum error_kind kind = KIND_UNKNOWN;
    char msg[UPSTREAM_MESSAGE_MAX + 1] = "", label[48];
    const cJSON *v;

    /* Inside a stream the HTTP status was 200: error.code is the real one. */
    v = e ? field(e, "code") : NULL;
    if (http_status < 400 && cJSON_IsNumber(v) && v->valuedouble >= 400 &&
        v->valuedouble < 600)
        http_status = (long) v->valuedouble;

    v = e ? field(e, "status") : NULL;
    if (cJSON_IsString(v)) {
        for (size_t i = 0; i < ELEMENTSOF(status_table); i++)
            if (strcmp(v->valuestring, status_table[i].status) == 0)
                kind = status_table[i].kind;
    }
    if (kind == KIND_UNKNOWN)
        kind = kind_from_http(http_status);
    if (e && has_api_key_reason(e))
        kind = KIND_KEY_REJECTED;

    label[0] = '\0';
    if (cJSON_IsString(v))
        sanitize_copy(label, sizeof label, v->valuestring, strlen(v->valuestring));
    if (label[0] == '\0') {
        if (http_status >= 100 && http_status < 1000)
            snprintf(label, sizeof label, "HTTP %ld", http_status);
        else
            snprintf(label, sizeof label, "error");
    }

    v = e ? field(e, "message") : NULL;
    if (cJSON_IsString(v))
        sanitize_copy(msg, sizeof msg, v->valuestring, strlen(v->valuestring));
    if (msg[0] == '\0')
        snprintf(msg, sizeof msg, "(no error message)");

    switch (kind) {
    case KIND_BAD_REQUEST:
        aigw_error_set(err, 400, "invalid_request_error", NULL, NULL, "Gemini %s: %s", label,
                       msg);
        break;
    case KIND_KEY_REJECTED:
        aigw_error_set(err, 502, "api_error", NULL, NULL,
                       "the gateway's Gemini API key was rejected; this is not a problem with "
                       "your key (operator: check the backend's api_key_credential, "
                       "api_key_env or api_key_file): %s",
                       msg);
        break;
    case KIND_NOT_FOUND:
        aigw_error_set(err, 404, "not_found_error", "model_not_found", NULL, "Gemini %s: %s",
                       label, msg);
        break;
    case KIND_RATE_LIMIT:
        aigw_error_set(err, 429, "rate_limit_error", NULL, NULL, "Gemini %s: %s", label, msg);
        break;
    case KIND_TIMEOUT:
        aigw_error_set(err, 504, "timeout_error", NULL, NULL, "Gemini %s: %s", label, msg);
        break;
    case KIND_UNAVAILABLE:
        aigw_error_set(err, 503, "api_error", NULL, NULL, "Gemini %s: %s", label, msg);
        break;
    case KIND_UNKNOWN:
    case KIND_UPSTREAM:
        aigw_error_set(err, 502, "api_error", NULL, NULL, "Gemini %s: %s", label, msg);
        break;
    }
}

static bool map_error_json(long http_status, const cJSON *root, struct aigw_error *err) {
    const cJSON *e;

    if (cJSON_IsArray(root))
        root = cJSON_GetArrayItem(root, 0);
    e = cJSON_IsObject(root) ? field(root, "error") : NULL;
    if (!e)
        return false;
    map_error_object(http_status, cJSON_IsObject(e) ? e : NULL, err);
    return true;
}

void aigw_gemini_map_error(long http_status, const char *body, size_t len,
                           struct aigw_error *err) {
    _cleanup_(cJSON_Deletep) cJSON *root = parse_json(body, len);

    if (!map_error_json(http_status, root, err))
        map_error_object(http_status, NULL, err);
}

bool aigw_gemini_status_retryable(long http_status) {
    return http_status == 429 || http_status == 500 || http_status == 502 ||
           http_status == 503 || http_status == 504;
}
