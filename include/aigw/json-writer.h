/* SPDX-License-Identifier: MIT */
#pragma once

/* A small JSON writer for the hot path: responses, stream chunks and
 * errors are written straight into one growing buffer, with no tree to
 * build and free and no printf for numbers (cJSON's printing of a number
 * goes through sprintf and sscanf and dominated a request's cost).
 * Commas are placed automatically. Errors (out of memory, over the size
 * bound) are sticky and reported by jw_finish. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define JW_MAX_DEPTH 300

struct jw {
    char *buf;
    size_t len, cap, max;
    int error;
    unsigned depth;
    bool after_key;
    bool need_comma[JW_MAX_DEPTH];
};

void jw_init(struct jw *w, size_t max_bytes);
/* The text (NUL-terminated, owned by the caller) or NULL with *ret_error. */
char *jw_finish(struct jw *w, size_t *ret_len, int *ret_error);
void jw_free(struct jw *w);

void jw_object_begin(struct jw *w);
void jw_object_end(struct jw *w);
void jw_array_begin(struct jw *w);
void jw_array_end(struct jw *w);
/* An object key; the value follows with one of the calls below. */
void jw_key(struct jw *w, const char *key);
/* s may hold any bytes: control characters, quotes and backslashes are
 * escaped, everything else is copied (callers pass valid UTF-8). */
void jw_string(struct jw *w, const char *s);
void jw_string_len(struct jw *w, const char *s, size_t len);
void jw_string_or_null(struct jw *w, const char *s);
void jw_int(struct jw *w, int64_t v);
/* Integral values as integers, others with up to 17 significant digits;
 * non-finite numbers as null (JSON has no NaN). */
void jw_double(struct jw *w, double v);
void jw_bool(struct jw *w, bool v);
void jw_null(struct jw *w);
/* A cJSON value (passed-through upstream fields, whole request bodies). */
void jw_cjson(struct jw *w, const cJSON *item);
/* cJSON_PrintUnformatted's replacement: compact JSON, or NULL. */
char *jw_print_cjson(const cJSON *item, size_t max_bytes);
