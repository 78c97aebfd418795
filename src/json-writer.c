/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigw/json-writer.h"

void jw_init(struct jw *w, size_t max_bytes) {
    memset(w, 0, sizeof(*w));
    w->max = max_bytes;
}

void jw_free(struct jw *w) {
    free(w->buf);
    w->buf = NULL;
    w->len = w->cap = 0;
}

static void reserve(struct jw *w, size_t extra) {
    if (w->error)
        return;
    if (w->len + extra + 1 > w->max) {
        w->error = -E2BIG;
        return;
    }
    if (w->len + extra + 1 <= w->cap)
        return;
    size_t cap = w->cap ? w->cap * 2 : 512;
    while (cap < w->len + extra + 1)
        cap *= 2;
    if (cap > w->max)
        cap = w->max;
    char *n = realloc(w->buf, cap);
    if (!n) {
        w->error = -ENOMEM;
        return;
    }
    w->buf = n;
    w->cap = cap;
}

static void put(struct jw *w, const char *s, size_t len) {
    reserve(w, len);
    if (w->error)
        return;
    memcpy(w->buf + w->len, s, len);
    w->len += len;
}

static void putc_(struct jw *w, char c) {
    reserve(w, 1);
    if (w->error)
        return;
    w->buf[w->len++] = c;
}

/* Before any value (also a container): after a key nothing, else a comma
 * unless it is the first item of its container. */
static void value_prefix(struct jw *w) {
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->depth == 0)
        return;
    if (w->need_comma[w->depth - 1])
        putc_(w, ',');
    w->need_comma[w->depth - 1] = true;
}

static void open_(struct jw *w, char c) {
    value_prefix(w);
    putc_(w, c);
    if (w->depth >= JW_MAX_DEPTH) {
        w->error = w->error ? w->error : -E2BIG;
        return;
    }
    w->need_comma[w->depth++] = false;
}

static void close_(struct jw *w, char c) {
    if (w->depth == 0 || w->after_key) {
        w->error = w->error ? w->error : -EINVAL;
        return;
    }
    w->depth--;
    putc_(w, c);
}

void jw_object_begin(struct jw *w) {
    open_(w, '{');
}

void jw_object_end(struct jw *w) {
    close_(w, '}');
}

void jw_array_begin(struct jw *w) {
    open_(w, '[');
}

void jw_array_end(struct jw *w) {
    close_(w, ']');
}

static void string_body(struct jw *w, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    putc_(w, '"');
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(w, s + start, i - start);
        start = i + 1;
        switch (c) {
        case '"':
            put(w, "\\\"", 2);
            break;
        case '\\':
            put(w, "\\\\", 2);
            break;
        case '\n':
            put(w, "\\n", 2);
            break;
        case '\r':
            put(w, "\\r", 2);
            break;
        case '\t':
            put(w, "\\t", 2);
            break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(w, u, sizeof(u));
        }
        }
    }
    put(w, s + start, len - start);
    putc_(w, '"');
}

void jw_key(struct jw *w, const char *key) {
    value_prefix(w);
    string_body(w, key, strlen(key));
    putc_(w, ':');
    w->after_key = true;
}

void jw_string_len(struct jw *w, const char *s, size_t len) {
    value_prefix(w);
    string_body(w, s, len);
}

void jw_string(struct jw *w, const char *s) {
    jw_string_len(w, s, strlen(s));
}

void jw_string_or_null(struct jw *w, const char *s) {
    if (s)
        jw_string(w, s);
    else
        jw_null(w);
}

static size_t u64_to_dec(uint64_t v, char *out) {
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

void jw_int(struct jw *w, int64_t v) {
    char buf[24];
    size_t n = 0;
    uint64_t u = (uint64_t)v;
    value_prefix(w);
    if (v < 0) {
        buf[n++] = '-';
        u = (uint64_t)0 - u;
    }
    n += u64_to_dec(u, buf + n);
    put(w, buf, n);
}

void jw_double(struct jw *w, double v) {
    if (!isfinite(v)) {
        jw_null(w);
        return;
    }
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        jw_int(w, (int64_t)v);
        return;
    }
    char buf[32];
    /* the shortest of 15..17 digits that reads back as the same double */
    int n = snprintf(buf, sizeof(buf), "%.15g", v);
    if (strtod(buf, NULL) != v)
        n = snprintf(buf, sizeof(buf), "%.17g", v);
    value_prefix(w);
    if (n > 0)
        put(w, buf, (size_t)n);
}

void jw_bool(struct jw *w, bool v) {
    value_prefix(w);
    if (v)
        put(w, "true", 4);
    else
        put(w, "false", 5);
}

void jw_null(struct jw *w) {
    value_prefix(w);
    put(w, "null", 4);
}

/* cJSON's own printer formats every number with sprintf and checks it
 * with sscanf; this one writes integers directly. Depth is bounded by
 * JW_MAX_DEPTH (callers' input passed a stricter depth check already). */
void jw_cjson(struct jw *w, const cJSON *item) {
    if (w->error)
        return;
    if (!item) {
        jw_null(w);
        return;
    }
    switch (item->type & 0xff) {
    case cJSON_False:
        jw_bool(w, false);
        return;
    case cJSON_True:
        jw_bool(w, true);
        return;
    case cJSON_NULL:
        jw_null(w);
        return;
    case cJSON_Number:
        jw_double(w, item->valuedouble);
        return;
    case cJSON_String:
        jw_string(w, item->valuestring ? item->valuestring : "");
        return;
    case cJSON_Raw:
        value_prefix(w);
        if (item->valuestring)
            put(w, item->valuestring, strlen(item->valuestring));
        return;
    case cJSON_Array:
        jw_array_begin(w);
        for (const cJSON *c = item->child; c && !w->error; c = c->next)
            jw_cjson(w, c);
        jw_array_end(w);
        return;
    case cJSON_Object:
        jw_object_begin(w);
        for (const cJSON *c = item->child; c && !w->error; c = c->next) {
            jw_key(w, c->string ? c->string : "");
            jw_cjson(w, c);
        }
        jw_object_end(w);
        return;
    default:
        w->error = w->error ? w->error : -EINVAL;
        return;
    }
}

char *jw_print_cjson(const cJSON *item, size_t max_bytes) {
    struct jw w;
    jw_init(&w, max_bytes);
    jw_cjson(&w, item);
    return jw_finish(&w, NULL, NULL);
}

char *jw_finish(struct jw *w, size_t *ret_len, int *ret_error) {
    if (!w->error && w->depth != 0)
        w->error = -EINVAL;
    if (!w->error)
        reserve(w, 0);
    if (w->error) {
        if (ret_error)
            *ret_error = w->error;
        jw_free(w);
        return NULL;
    }
    w->buf[w->len] = 0;
    if (ret_len)
        *ret_len = w->len;
    char *out = w->buf;
    w->buf = NULL;
    w->len = w->cap = 0;
    return out;
}
