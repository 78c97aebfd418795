/* SPDX-License-Identifier: MIT */

#include "aigw/dialogflow.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

#include "aigw/macro.h"
#include "aigw/utf8.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete)

#define EXPECTED_SHAPE                                                                             \
    "expected a Dialogflow ES request (queryResult.queryText, session) or a CX request "            \
    "(sessionInfo.session with text or transcript)"

/* Byte length of the character at s: a valid sequence, or 1 for a stray byte,
 * so that walking arbitrary bytes always makes progress. */
static size_t char_len(const unsigned char *s, size_t len, uint32_t *ret_cp) {
    size_t n = aigw_utf8_decode(s, len, ret_cp);

    if (n == 0) {
        *ret_cp = 0xfffd;
        return 1;
    }
    return n;
}

_printf_(4, 5) static int fail(char *errbuf, size_t errlen, int r, const char *fmt, ...) {
    if (errbuf && errlen > 0) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
    }
    return r;
}

/* A "\u0000" escape whose backslash is not itself escaped. cJSON turns it
 * into a NUL that silently ends the C string, so "a\u0000b" would read as
 * "a" and two distinct sessions would share one memory. */
static bool has_nul_escape(const char *body, size_t len) {
    size_t i = 0;

    while (i < len) {
        size_t run = 0;

        if (body[i] != '\\') {
            i++;
            continue;
        }
        while (i < len && body[i] == '\\') {
            run++;
            i++;
        }
        if (run % 2 == 1 && len - i >= 5 && body[i] == 'u' && body[i + 1] == '0' &&
            body[i + 2] == '0' && body[i + 3] == '0' && body[i + 4] == '0')
            return true;
    }
    return false;
}

static bool is_json_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Absent and JSON null both mean "not given": proto3 JSON may write either. */
static const cJSON *get_item(const cJSON *obj, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

    if (!item || cJSON_IsNull(item))
        return NULL;
    return item;
}

static int get_object(const cJSON *obj, const char *key, const char *path, const cJSON **ret,
                      char *errbuf, size_t errlen) {
    const cJSON *item = get_item(obj, key);

    if (item && !cJSON_IsObject(item))
        return fail(errbuf, errlen, -EINVAL, "%s: expected an object", path);
    *ret = item;
    return 0;
}

/* *ret is NULL when the field is absent and not required. */
static int get_string(const cJSON *obj, const char *key, const char *path, size_t max,
                      bool required, const char **ret, char *errbuf, size_t errlen) {
    const cJSON *item = get_item(obj, key);
    size_t n;

    if (!item) {
        if (required)
            return fail(errbuf, errlen, -EINVAL, "%s: missing, expected a non-empty string",
                        path);
        *ret = NULL;
        return 0;
    }
    if (!cJSON_IsString(item) || !item->valuestring)
        return fail(errbuf, errlen, -EINVAL, "%s: expected a string", path);
    n = strlen(item->valuestring);
    if (required && n == 0)
        return fail(errbuf, errlen, -EINVAL, "%s: expected a non-empty string", path);
    if (n > max)
        return fail(errbuf, errlen, -E2BIG, "%s: longer than %zu bytes", path, max);
    *ret = item->valuestring;
    return 0;
}

/* Borrowed pointers into the parsed tree; copied only once all checks pass. */
struct df_fields {
    const char *session, *text, *language_code, *intent, *tag;
    cJSON *params_parent; /* object holding "parameters", or NULL */
};

static int parse_es(const cJSON *root, const cJSON *qr, size_t max_text, struct df_fields *f,
                    char *errbuf, size_t errlen) {
    const cJSON *intent, *params;
    int r;

    if (!cJSON_IsObject(qr))
        return fail(errbuf, errlen, -EINVAL, "queryResult: expected an object");
    r = get_string(root, "session", "session", AIGW_DF_FIELD_MAX, true, &f->session, errbuf,
                   errlen);
    if (r < 0)
        return r;
    /* Absent for event-triggered requests: proto3 JSON omits empty strings. */
    r = get_string(qr, "queryText", "queryResult.queryText", max_text, false, &f->text, errbuf,
                   errlen);
    if (r < 0)
        return r;
    r = get_string(qr, "languageCode", "queryResult.languageCode", AIGW_DF_FIELD_MAX, false,
                   &f->language_code, errbuf, errlen);
    if (r < 0)
        return r;
    r = get_object(qr, "intent", "queryResult.intent", &intent, errbuf, errlen);
    if (r < 0)
        return r;
    if (intent) {
        r = get_string(intent, "displayName", "queryResult.intent.displayName",
                       AIGW_DF_FIELD_MAX, false, &f->intent, errbuf, errlen);
        if (r < 0)
            return r;
    }
    r = get_object(qr, "parameters", "queryResult.parameters", &params, errbuf, errlen);
    if (r < 0)
        return r;
    f->params_parent = params ? (cJSON *)qr : NULL;
    return 0;
}

static int parse_cx(const cJSON *root, const cJSON *si, size_t max_text, struct df_fields *f,
                    char *errbuf, size_t errlen) {
    const cJSON *info, *params;
    const char *transcript;
    int r;

    if (!cJSON_IsObject(si))
        return fail(errbuf, errlen, -EINVAL, "sessionInfo: expected an object");
    r = get_string(si, "session", "sessionInfo.session", AIGW_DF_FIELD_MAX, true, &f->session,
                   errbuf, errlen);
    if (r < 0)
        return r;
    r = get_object(si, "parameters", "sessionInfo.parameters", &params, errbuf, errlen);
    if (r < 0)
        return r;
    f->params_parent = params ? (cJSON *)si : NULL;

    /* text and transcript are members of a oneof, so at most one is set;
     * triggerIntent, triggerEvent and dtmfDigits calls carry neither. */
    r = get_string(root, "text", "text", max_text, false, &f->text, errbuf, errlen);
    if (r < 0)
        return r;
    r = get_string(root, "transcript", "transcript", max_text, false, &transcript, errbuf,
                   errlen);
    if (r < 0)
        return r;
    if (!f->text)
        f->text = transcript;

    r = get_string(root, "languageCode", "languageCode", AIGW_DF_FIELD_MAX, false,
                   &f->language_code, errbuf, errlen);
    if (r < 0)
        return r;
    r = get_object(root, "fulfillmentInfo", "fulfillmentInfo", &info, errbuf, errlen);
    if (r < 0)
        return r;
    if (info) {
        r = get_string(info, "tag", "fulfillmentInfo.tag", AIGW_DF_FIELD_MAX, false, &f->tag,
                       errbuf, errlen);
        if (r < 0)
            return r;
    }
    r = get_object(root, "intentInfo", "intentInfo", &info, errbuf, errlen);
    if (r < 0)
        return r;
    if (info) {
        r = get_string(info, "displayName", "intentInfo.displayName", AIGW_DF_FIELD_MAX, false,
                       &f->intent, errbuf, errlen);
        if (r < 0)
            return r;
    }
    return 0;
}

static int strdup_opt(const char *s, char **ret) {
    char *copy;

    if (!s) {
        *ret = NULL;
        return 0;
    }
    copy = strdup(s);
    if (!copy)
        return -ENOMEM;
    *ret = copy;
    return 0;
}

void aigw_df_request_clear(struct aigw_df_request *req) {
    if (!req)
        return;
    free(req->session);
    free(req->text);
    free(req->language_code);
    free(req->intent);
    free(req->tag);
    cJSON_Delete(req->parameters);
    *req = (struct aigw_df_request){0};
}

int aigw_dialogflow_parse(const char *body, size_t len, size_t max_text,
                          struct aigw_df_request *ret, char *errbuf, size_t errlen) {
    _cleanup_(cJSON_Deletep) cJSON *root = NULL;
    _cleanup_(aigw_df_request_clear) struct aigw_df_request req = {0};
    struct df_fields f = {0};
    const cJSON *qr, *si;
    const char *end = NULL;
    int r;

    if (!ret || (!body && len > 0))
        return fail(errbuf, errlen, -EINVAL, "invalid arguments");
    if (len == 0)
        return fail(errbuf, errlen, -EINVAL, "empty body, " EXPECTED_SHAPE);
    /* A raw NUL is never valid JSON, and cJSON would stop at it. */
    if (memchr(body, '\0', len) || !aigw_utf8_valid(body, len))
        return fail(errbuf, errlen, -EINVAL, "body is not valid UTF-8 text");
    if (has_nul_escape(body, len))
        return fail(errbuf, errlen, -EINVAL, "strings must not contain \\u0000");

    root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (!root)
        return fail(errbuf, errlen, -EINVAL, "body is not valid JSON");
    /* cJSON stops after the first value; "{...}{...}" must not pass as the first. */
    for (const char *p = end; p < body + len; p++)
        if (!is_json_space(*p))
            return fail(errbuf, errlen, -EINVAL, "trailing data after the JSON value");
    if (!cJSON_IsObject(root))
        return fail(errbuf, errlen, -EINVAL, "body is not a JSON object, " EXPECTED_SHAPE);

    qr = get_item(root, "queryResult");
    si = get_item(root, "sessionInfo");
    if (qr && si)
        return fail(errbuf, errlen, -EINVAL,
                    "ambiguous request with both queryResult (ES) and sessionInfo (CX)");
    if (qr) {
        req.kind = AIGW_DF_ES;
        r = parse_es(root, qr, max_text, &f, errbuf, errlen);
    } else if (si) {
        req.kind = AIGW_DF_CX;
        r = parse_cx(root, si, max_text, &f, errbuf, errlen);
    } else
        r = fail(errbuf, errlen, -EINVAL, EXPECTED_SHAPE);
    if (r < 0)
        return r;

    if (strdup_opt(f.session, &req.session) < 0 || strdup_opt(f.text ?: "", &req.text) < 0 ||
        strdup_opt(f.language_code, &req.language_code) < 0 ||
        strdup_opt(f.intent, &req.intent) < 0 || strdup_opt(f.tag, &req.tag) < 0)
        return fail(errbuf, errlen, -ENOMEM, "out of memory");
    /* Detached rather than duplicated: the tree is deleted on return anyway. */
    if (f.params_parent)
        req.parameters = cJSON_DetachItemFromObjectCaseSensitive(f.params_parent, "parameters");

    *ret = req;
    req = (struct aigw_df_request){0};
    return 0;
}

/* {"text":{"text":[reply]}}, the one message shape both versions share. */
static cJSON *text_message(const char *reply) {
    _cleanup_(cJSON_Deletep) cJSON *msg = cJSON_CreateObject();
    cJSON *inner, *arr, *s;

    if (!msg)
        return NULL;
    inner = cJSON_AddObjectToObject(msg, "text");
    if (!inner)
        return NULL;
    arr = cJSON_AddArrayToObject(inner, "text");
    if (!arr)
        return NULL;
    s = cJSON_CreateStringReference(reply);
    if (!s || !cJSON_AddItemToArray(arr, s)) {
        cJSON_Delete(s);
        return NULL;
    }
    return TAKE_PTR(msg);
}

static int add_item(cJSON *obj, const char *key, cJSON *item) {
    if (!item)
        return -ENOMEM;
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return -ENOMEM;
    }
    return 0;
}

static int build_es(cJSON *root, const char *reply) {
    cJSON *msgs;
    int r;

    r = add_item(root, "fulfillmentText", cJSON_CreateStringReference(reply));
    if (r < 0)
        return r;
    msgs = cJSON_AddArrayToObject(root, "fulfillmentMessages");
    if (!msgs)
        return -ENOMEM;
    return cJSON_AddItemToArray(msgs, text_message(reply)) ? 0 : -ENOMEM;
}

static int build_cx(cJSON *root, const struct aigw_df_request *req, const char *reply) {
    cJSON *fr, *msgs, *si;
    cJSON *msg;

    fr = cJSON_AddObjectToObject(root, "fulfillmentResponse");
    if (!fr)
        return -ENOMEM;
    msgs = cJSON_AddArrayToObject(fr, "messages");
    if (!msgs)
        return -ENOMEM;
    msg = text_message(reply);
    if (!msg || !cJSON_AddItemToArray(msgs, msg)) {
        cJSON_Delete(msg);
        return -ENOMEM;
    }
    if (!req->parameters)
        return 0;
    /* Echoed unchanged: in CX a parameter set to null is deleted, so sending
     * back exactly what came in leaves the session as it was. A reference
     * keeps the request the owner of its tree. */
    si = cJSON_AddObjectToObject(root, "sessionInfo");
    if (!si)
        return -ENOMEM;
    return cJSON_AddItemReferenceToObject(si, "parameters", req->parameters) ? 0 : -ENOMEM;
}

int aigw_dialogflow_render(const struct aigw_df_request *req, const char *reply, char **ret_json) {
    _cleanup_(cJSON_Deletep) cJSON *root = NULL;
    char *json;
    size_t n, copies;
    int r;

    if (!req || !reply || !ret_json)
        return -EINVAL;
    if (req->kind != AIGW_DF_ES && req->kind != AIGW_DF_CX)
        return -EINVAL;
    if (req->parameters && !cJSON_IsObject(req->parameters))
        return -EINVAL;
    n = strlen(reply);
    /* A reply that cJSON would copy byte for byte into the output must be
     * valid UTF-8, or Dialogflow rejects the whole response. */
    if (!aigw_utf8_valid(reply, n))
        return -EINVAL;
    /* Escaping only grows the text, so this rules out hopeless replies
     * before building anything. */
    copies = req->kind == AIGW_DF_ES ? 2 : 1;
    if (n >= AIGW_DF_RESPONSE_MAX / copies)
        return -E2BIG;

    root = cJSON_CreateObject();
    if (!root)
        return -ENOMEM;
    r = req->kind == AIGW_DF_ES ? build_es(root, reply) : build_cx(root, req, reply);
    if (r < 0)
        return r;

    json = cJSON_PrintUnformatted(root);
    if (!json)
        return -ENOMEM;
    if (strlen(json) >= AIGW_DF_RESPONSE_MAX) {
        cJSON_free(json);
        return -E2BIG;
    }
    *ret_json = json;
    return 0;
}

static bool is_space_byte(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_closer(uint32_t cp) {
    switch (cp) {
    case '"':
    case '\'':
    case ')':
    case ']':
    case 0x00bb: /* » */
    case 0x2019: /* ’ */
    case 0x201d: /* ” */
    case 0x300d: /* 」 */
    case 0x300f: /* 』 */
    case 0xff09: /* ） */
        return true;
    default:
        return false;
    }
}

static size_t rtrim(const unsigned char *s, size_t n) {
    while (n > 0 && is_space_byte(s[n - 1]))
        n--;
    return n;
}

size_t aigw_reply_truncate(const char *text, size_t len, size_t max_chars) {
    const unsigned char *s = (const unsigned char *)text;
    size_t limit = 0, chars = 0, sentence_end = 0, word_end = 0;
    bool seen_word = false;
    uint32_t cp;

    if (!text)
        return 0;
    while (limit < len && chars < max_chars) {
        limit += char_len(s + limit, len - limit, &cp);
        chars++;
    }
    if (limit == len)
        return rtrim(s, len);

    /* Positions up to and including limit are candidates: a space right at
     * the limit means the word before it is complete. */
    for (size_t p = 0; p <= limit;) {
        size_t n, q;
        bool cjk;

        if (is_space_byte(s[p])) {
            if (seen_word)
                word_end = p;
            p++;
            continue;
        }
        if (p == limit)
            break;
        seen_word = true;
        n = char_len(s + p, len - p, &cp);
        cjk = cp == 0x3002 || cp == 0xff01 || cp == 0xff1f;
        if (cjk || cp == '.' || cp == '!' || cp == '?' || cp == 0x2026) {
            q = p + n;
            while (q < len) {
                uint32_t c2;
                size_t m = char_len(s + q, len - q, &c2);

                if (!is_closer(c2))
                    break;
                q += m;
            }
            if (q <= limit && (cjk || q == len || is_space_byte(s[q])))
                sentence_end = q;
        }
        p += n;
    }

    if (sentence_end > 0)
        return rtrim(s, sentence_end);
    if (word_end > 0)
        return rtrim(s, word_end);
    return rtrim(s, limit);
}

struct expand_buf {
    char *buf; /* NULL in the sizing pass */
    size_t len;
};

static void expand_put(struct expand_buf *b, const char *s, size_t n) {
    if (b->buf && n > 0)
        memcpy(b->buf + b->len, s, n);
    b->len += n;
}

/* Run once to size and once to fill, so the bound is checked before any
 * allocation and the second pass cannot overflow. Stops adding as soon as
 * the bound is passed, which also keeps len from overflowing. */
static void expand_run(const char *tmpl, const struct aigw_df_request *req, struct expand_buf *b) {
    static const struct {
        const char *name;
        size_t offset;
    } vars[] = {
        {"{language}", offsetof(struct aigw_df_request, language_code)},
        {"{intent}", offsetof(struct aigw_df_request, intent)},
        {"{tag}", offsetof(struct aigw_df_request, tag)},
    };
    const char *p = tmpl;

    while (*p && b->len <= AIGW_PROMPT_MAX) {
        const char *brace = strpbrk(p, "{}");
        bool matched = false;

        if (!brace) {
            expand_put(b, p, strlen(p));
            break;
        }
        expand_put(b, p, (size_t)(brace - p));
        p = brace;
        if (p[0] == p[1]) {
            expand_put(b, p, 1);
            p += 2;
            continue;
        }
        if (p[0] == '{')
            for (size_t i = 0; i < ELEMENTSOF(vars); i++) {
                size_t n = strlen(vars[i].name);
                const char *v;

                if (strncmp(p, vars[i].name, n) != 0)
                    continue;
                v = *(char *const *)((const char *)req + vars[i].offset);
                if (v)
                    expand_put(b, v, strlen(v));
                p += n;
                matched = true;
                break;
            }
        if (!matched) {
            expand_put(b, p, 1);
            p++;
        }
    }
}

int aigw_prompt_expand(const char *tmpl, const struct aigw_df_request *req, char **ret) {
    struct expand_buf b = {0};

    if (!tmpl || !req || !ret)
        return -EINVAL;
    expand_run(tmpl, req, &b);
    if (b.len > AIGW_PROMPT_MAX)
        return -E2BIG;
    b.buf = malloc(b.len + 1);
    if (!b.buf)
        return -ENOMEM;
    b.len = 0;
    expand_run(tmpl, req, &b);
    b.buf[b.len] = '\0';
    *ret = b.buf;
    return 0;
}

void aigw_session_hash(const char *session, char ret_hex[17]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char md[SHA256_DIGEST_LENGTH] = {0};

    if (!session)
        session = "";
    /* SHA256() only fails on allocation failure inside OpenSSL; the zeroed
     * digest then still names no session in particular. */
    (void)SHA256((const unsigned char *)session, strlen(session), md);
    for (size_t i = 0; i < 8; i++) {
        ret_hex[2 * i] = hex[md[i] >> 4];
        ret_hex[2 * i + 1] = hex[md[i] & 0xf];
    }
    ret_hex[16] = '\0';
}
