/* SPDX-License-Identifier: MIT */
#include "aigw/json-check.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigw/macro.h"
#include "aigw/utf8.h"

/* What the parser expects next (after skipping whitespace). */
enum state {
    EXPECT_VALUE,
    EXPECT_VALUE_OR_CLOSE, /* just after '[' */
    EXPECT_KEY_OR_CLOSE,   /* just after '{' */
    EXPECT_KEY,            /* after ',' in an object */
    EXPECT_COLON,
    EXPECT_SEPARATOR, /* after a value: ',', a closing bracket, or the end */
};

struct frame {
    bool is_object;
    size_t count;       /* items or keys so far */
    size_t first_key;   /* this object's keys are keys[first_key..n_keys) */
    size_t arena_start; /* and their bytes are arena[arena_start..arena_len) */
};

/* A key of an open object, unescaped into the arena. */
struct key {
    size_t off; /* in arena */
    size_t len;
    size_t pos; /* input offset of its opening quote */
};

struct checker {
    const unsigned char *p;
    size_t len;
    const struct aigw_json_limits *lim;
    struct aigw_json_error *err;

    struct frame *stack; /* lim->max_depth entries */
    size_t depth;

    char *arena;
    size_t arena_len;
    size_t arena_alloc;

    struct key *keys;
    size_t n_keys;
    size_t keys_alloc;

    struct key *sort_tmp;
    size_t sort_tmp_alloc;
};

_printf_(4, 5) static int fail(struct checker *c, int r, size_t offset, const char *fmt, ...) {
    if (c->err) {
        va_list ap;

        c->err->offset = offset;
        va_start(ap, fmt);
        (void)vsnprintf(c->err->message, sizeof(c->err->message), fmt, ap);
        va_end(ap);
    }
    return r;
}

static int fail_oom(struct checker *c, size_t offset) {
    return fail(c, -ENOMEM, offset, "out of memory at byte %zu", offset);
}

/* Grow *p (an array of *alloc elements of size sz) to hold need elements. */
static int grow(void **p, size_t *alloc, size_t need, size_t sz) {
    if (need <= *alloc)
        return 0;

    size_t n = MAX(*alloc, (size_t)16);
    while (n < need) {
        if (n > SIZE_MAX / 2 / sz)
            return -ENOMEM;
        n *= 2;
    }
    void *m = realloc(*p, n * sz);
    if (!m)
        return -ENOMEM;
    *p = m;
    *alloc = n;
    return 0;
}

static bool is_ws(unsigned char b) {
    return b == ' ' || b == '\t' || b == '\n' || b == '\r';
}

static bool is_digit(unsigned char b) {
    return b >= '0' && b <= '9';
}

static size_t utf8_encode(uint32_t cp, unsigned char out[static 4]) {
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Report the byte at i as not allowed there. */
static int unexpected(struct checker *c, size_t i) {
    unsigned char b = c->p[i];

    if (b == 0)
        return fail(c, -EBADMSG, i, "NUL byte at byte %zu", i);
    if (b >= 0x80) {
        uint32_t cp;

        if (aigw_utf8_decode(c->p + i, c->len - i, &cp) == 0)
            return fail(c, -EILSEQ, i, "invalid UTF-8 at byte %zu", i);
        return fail(c, -EBADMSG, i, "unexpected character U+%04X at byte %zu", (unsigned)cp, i);
    }
    if (b < 0x20 || b == 0x7F)
        return fail(c, -EBADMSG, i, "unexpected byte 0x%02x at byte %zu", b, i);
    return fail(c, -EBADMSG, i, "unexpected character '%c' at byte %zu", b, i);
}

static int unexpected_end(struct checker *c) {
    return fail(c, -EBADMSG, c->len, "unexpected end of input at byte %zu", c->len);
}

static int hex_digit(unsigned char b) {
    if (b >= '0' && b <= '9')
        return b - '0';
    if (b >= 'a' && b <= 'f')
        return b - 'a' + 10;
    if (b >= 'A' && b <= 'F')
        return b - 'A' + 10;
    return -1;
}

/* The four hex digits after the "\u" at i. -EAGAIN if the input ends
 * first (the string is then unterminated), -EBADMSG if one is not hex. */
static int parse_hex4(const struct checker *c, size_t i, uint32_t *ret) {
    uint32_t v = 0;

    for (size_t k = 2; k < 6; k++) {
        if (i + k >= c->len)
            return -EAGAIN;
        int h = hex_digit(c->p[i + k]);
        if (h < 0)
            return -EBADMSG;
        v = (v << 4) | (uint32_t)h;
    }
    *ret = v;
    return 0;
}

static int append_key_bytes(struct checker *c, const void *b, size_t n, size_t pos) {
    if (n == 0)
        return 0;
    if (grow((void **)&c->arena, &c->arena_alloc, c->arena_len + n, 1) < 0)
        return fail_oom(c, pos);
    memcpy(c->arena + c->arena_len, b, n);
    c->arena_len += n;
    return 0;
}

/* Length of the run of well-formed multibyte characters at s, up to the
 * next ASCII byte or invalid sequence; 0 if s does not start with one.
 * Taking a run as one piece instead of each character as its own halves
 * the time to check CJK or emoji text. An invalid sequence after the run
 * is reported in the next round, once the run has been counted, so a
 * string already too long before it is still E2BIG first. Not inlined:
 * inside scan_string the decoder slowed the escape path by some 2%. */
__attribute__((noinline)) static size_t multibyte_run(const unsigned char *s, size_t len) {
    size_t j = 0, k;

    while (j < len && s[j] >= 0x80 && (k = aigw_utf8_decode(s + j, len - j, NULL)) > 0)
        j += k;
    return j;
}

/* The string whose opening quote is at start. Keys are unescaped into the
 * arena; values are only validated. On success *ret_end is the offset just
 * past the closing quote. */
static int scan_string(struct checker *c, size_t start, bool is_key, size_t *ret_end) {
    const unsigned char *p = c->p;
    size_t len = c->len, i = start + 1, decoded = 0;
    int r;

    for (;;) {
        if (i >= len)
            return fail(c, -EBADMSG, start, "unterminated string starting at byte %zu", start);

        unsigned char b = p[i];
        unsigned char esc[4];
        const void *out;
        size_t out_len, next;

        if (b == '"')
            break;

        if (b >= 0x20 && b < 0x80 && b != '\\') {
            /* The common case: a run of plain ASCII. */
            size_t j = i + 1;
            while (j < len && p[j] >= 0x20 && p[j] < 0x80 && p[j] != '"' && p[j] != '\\')
                j++;
            out = p + i;
            out_len = j - i;
            next = j;
        } else if (b >= 0x80) {
            size_t j = multibyte_run(p + i, len - i);
            if (j == 0)
                return fail(c, -EILSEQ, i, "invalid UTF-8 at byte %zu", i);
            out = p + i;
            out_len = j;
            next = i + j;
        } else if (b == 0) {
            return fail(c, -EBADMSG, i, "NUL byte at byte %zu", i);
        } else if (b < 0x20) {
            return fail(c, -EBADMSG, i, "control character 0x%02x in string at byte %zu", b, i);
        } else {
            /* b == '\\' */
            if (i + 1 >= len)
                return fail(c, -EBADMSG, start, "unterminated string starting at byte %zu",
                            start);

            out = esc;
            out_len = 1;
            next = i + 2;
            switch (p[i + 1]) {
            case '"':
            case '\\':
            case '/':
                esc[0] = p[i + 1];
                break;
            case 'b':
                esc[0] = '\b';
                break;
            case 'f':
                esc[0] = '\f';
                break;
            case 'n':
                esc[0] = '\n';
                break;
            case 'r':
                esc[0] = '\r';
                break;
            case 't':
                esc[0] = '\t';
                break;
            case 'u': {
                uint32_t cp, lo;

                r = parse_hex4(c, i, &cp);
                if (r == -EAGAIN)
                    return fail(c, -EBADMSG, start,
                                "unterminated string starting at byte %zu", start);
                if (r < 0)
                    return fail(c, -EBADMSG, i, "invalid \\u escape at byte %zu", i);
                next = i + 6;

                if (cp == 0)
                    /* cJSON would cut the string here. */
                    return fail(c, -EBADMSG, i, "NUL character (\\u0000) in string at byte %zu",
                                i);
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return fail(c, -EBADMSG, i, "unpaired surrogate \\u%04X at byte %zu",
                                (unsigned)cp, i);
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    for (size_t k = 0; k < 2; k++) {
                        if (next + k >= len)
                            return fail(c, -EBADMSG, start,
                                        "unterminated string starting at byte %zu", start);
                        if (p[next + k] != "\\u"[k])
                            return fail(c, -EBADMSG, i,
                                        "unpaired surrogate \\u%04X at byte %zu", (unsigned)cp,
                                        i);
                    }
                    r = parse_hex4(c, next, &lo);
                    if (r == -EAGAIN)
                        return fail(c, -EBADMSG, start,
                                    "unterminated string starting at byte %zu", start);
                    if (r < 0)
                        return fail(c, -EBADMSG, next, "invalid \\u escape at byte %zu", next);
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return fail(c, -EBADMSG, i, "unpaired surrogate \\u%04X at byte %zu",
                                    (unsigned)cp, i);
                    cp = 0x10000 + (((cp - 0xD800) << 10) | (lo - 0xDC00));
                    next += 6;
                }
                out_len = utf8_encode(cp, esc);
                break;
            }
            default:
                return fail(c, -EBADMSG, i, "invalid escape at byte %zu", i);
            }
        }

        /* Invariant: decoded <= max_string_bytes. */
        if (out_len > c->lim->max_string_bytes - decoded)
            return fail(c, -E2BIG, start, "string longer than %zu bytes at byte %zu",
                        c->lim->max_string_bytes, start);
        decoded += out_len;

        if (is_key) {
            r = append_key_bytes(c, out, out_len, start);
            if (r < 0)
                return r;
        }
        i = next;
    }

    *ret_end = i + 1;
    return 0;
}

/* The number starting at start (a '-' or a digit). */
static int scan_number(struct checker *c, size_t start, size_t *ret_end) {
    const unsigned char *p = c->p;
    size_t len = c->len, i = start;
    size_t int_start, int_end, frac_start = 0, frac_end = 0;
    bool has_exp = false, exp_negative = false;
    long exp = 0;

    if (p[i] == '-')
        i++;
    int_start = i;
    if (i >= len || !is_digit(p[i]))
        return fail(c, -EBADMSG, start, "invalid number at byte %zu", start);
    if (p[i] == '0') {
        i++;
        if (i < len && is_digit(p[i]))
            return fail(c, -EBADMSG, start, "invalid number (leading zero) at byte %zu", start);
    } else
        while (i < len && is_digit(p[i]))
            i++;
    int_end = i;

    if (i < len && p[i] == '.') {
        i++;
        frac_start = i;
        if (i >= len || !is_digit(p[i]))
            return fail(c, -EBADMSG, start, "invalid number at byte %zu", start);
        while (i < len && is_digit(p[i]))
            i++;
        frac_end = i;
    }

    if (i < len && (p[i] == 'e' || p[i] == 'E')) {
        has_exp = true;
        i++;
        if (i < len && (p[i] == '+' || p[i] == '-')) {
            exp_negative = p[i] == '-';
            i++;
        }
        if (i >= len || !is_digit(p[i]))
            return fail(c, -EBADMSG, start, "invalid number at byte %zu", start);
        for (; i < len && is_digit(p[i]); i++)
            /* Saturate: with at most 63 mantissa digits, anything beyond
             * 10^6 in either direction is infinity or zero alike. */
            if (exp < 1000000)
                exp = exp * 10 + (p[i] - '0');
        if (exp_negative)
            exp = -exp;
    }

    if (i - start > AIGW_JSON_NUMBER_MAX)
        return fail(c, -E2BIG, start, "number longer than %d bytes at byte %zu",
                    AIGW_JSON_NUMBER_MAX, start);

    /* Without an exponent at most 63 digits: far below DBL_MAX. With one,
     * let strtod() decide, on the digits rewritten as an integer mantissa
     * and exponent: no decimal point, so the locale does not matter. */
    if (has_exp) {
        char num[AIGW_JSON_NUMBER_MAX + 32];
        size_t n = 0;

        memcpy(num + n, p + int_start, int_end - int_start);
        n += int_end - int_start;
        if (frac_end > frac_start) {
            memcpy(num + n, p + frac_start, frac_end - frac_start);
            n += frac_end - frac_start;
        }
        (void)snprintf(num + n, sizeof(num) - n, "e%ld", exp - (long)(frac_end - frac_start));

        double v = strtod(num, NULL);
        if (isinf(v))
            return fail(c, -ERANGE, start, "number out of range at byte %zu", start);
    }

    *ret_end = i;
    return 0;
}

/* The literal starting at i (first byte 't', 'f' or 'n'). */
static int scan_literal(struct checker *c, size_t i, size_t *ret_end) {
    const char *lit = c->p[i] == 't' ? "true" : c->p[i] == 'f' ? "false" : "null";

    for (size_t k = 0; lit[k]; k++) {
        if (i + k >= c->len)
            return unexpected_end(c);
        if (c->p[i + k] != (unsigned char)lit[k])
            return unexpected(c, i + k);
    }
    *ret_end = i + strlen(lit);
    return 0;
}

static int key_cmp(const struct checker *c, const struct key *a, const struct key *b) {
    size_t n = MIN(a->len, b->len);
    if (n > 0) { /* with only empty keys the arena may not exist */
        int r = memcmp(c->arena + a->off, c->arena + b->off, n);
        if (r != 0)
            return r;
    }
    return a->len < b->len ? -1 : a->len > b->len;
}

/* Stable bottom-up merge sort of v[0..n): O(n log n) comparisons whatever
 * the input (qsort() promises neither, and a crafted body must not be able
 * to make the check quadratic). tmp has room for n. */
static void sort_keys(const struct checker *c, struct key *v, size_t n, struct key *tmp) {
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = MIN(lo + width, n), hi = MIN(lo + 2 * width, n);
            size_t a = lo, b = mid, o = lo;

            while (a < mid && b < hi)
                tmp[o++] = key_cmp(c, &v[b], &v[a]) < 0 ? v[b++] : v[a++];
            while (a < mid)
                tmp[o++] = v[a++];
            while (b < hi)
                tmp[o++] = v[b++];
        }
        memcpy(v, tmp, n * sizeof(*v));
        if (width > SIZE_MAX / 2)
            break;
    }
}

/* The key quoted for an error message: at most ~48 bytes, JSON-style
 * escapes for what is not printable, never cutting a UTF-8 sequence. */
static void format_key(char *out, size_t size, const char *k, size_t n) {
    size_t o = 0;
    const size_t budget = MIN(size - 4, (size_t)48); /* room for "..." and NUL */

    for (size_t i = 0; i < n;) {
        unsigned char b = (unsigned char)k[i];
        char piece[8];
        size_t plen, used;

        if (b == '"' || b == '\\') {
            piece[0] = '\\';
            piece[1] = (char)b;
            plen = 2;
            used = 1;
        } else if (b < 0x20 || b == 0x7F) {
            plen = (size_t)snprintf(piece, sizeof(piece), "\\u%04x", b);
            used = 1;
        } else {
            /* Keys in the arena are valid UTF-8: the checker made sure. */
            used = aigw_utf8_decode((const unsigned char *)k + i, n - i, NULL);
            if (used == 0)
                used = 1;
            memcpy(piece, k + i, used);
            plen = used;
        }

        if (o + plen > budget) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(out + o, piece, plen);
        o += plen;
        i += used;
    }
    out[o] = '\0';
}

static int check_duplicates(struct checker *c, const struct frame *f, size_t close_pos) {
    size_t n = c->n_keys - f->first_key;

    if (n < 2)
        return 0; /* c->keys may not even exist */
    struct key *v = c->keys + f->first_key;

    if (grow((void **)&c->sort_tmp, &c->sort_tmp_alloc, n, sizeof(struct key)) < 0)
        return fail_oom(c, close_pos);
    sort_keys(c, v, n, c->sort_tmp);

    /* Stable sort: within a run of equal keys, document order. The
     * second member of each adjacent equal pair is a repetition; report
     * the first repetition in the document. */
    const struct key *dup = NULL;
    for (size_t j = 1; j < n; j++)
        if (key_cmp(c, &v[j - 1], &v[j]) == 0 && (!dup || v[j].pos < dup->pos))
            dup = &v[j];
    if (!dup)
        return 0;

    char shown[64];
    format_key(shown, sizeof(shown), dup->len > 0 ? c->arena + dup->off : "", dup->len);
    return fail(c, -ENOTUNIQ, dup->pos, "duplicate key \"%s\" at byte %zu", shown, dup->pos);
}

static int open_container(struct checker *c, size_t i, bool is_object) {
    if (c->depth >= c->lim->max_depth)
        return fail(c, -E2BIG, i, "nesting deeper than %u at byte %zu", c->lim->max_depth, i);

    if (!c->stack) {
        c->stack = calloc(c->lim->max_depth, sizeof(struct frame));
        if (!c->stack)
            return fail_oom(c, i);
    }

    c->stack[c->depth++] = (struct frame){
        .is_object = is_object,
        .first_key = c->n_keys,
        .arena_start = c->arena_len,
    };
    return 0;
}

static int close_container(struct checker *c, size_t i) {
    struct frame *f = &c->stack[c->depth - 1];

    if (f->is_object) {
        int r = check_duplicates(c, f, i);
        if (r < 0)
            return r;
        /* A closed object's keys never matter again. */
        c->n_keys = f->first_key;
        c->arena_len = f->arena_start;
    }
    c->depth--;
    return 0;
}

static int scan_key(struct checker *c, size_t i, size_t *ret_end) {
    struct frame *f = &c->stack[c->depth - 1];
    size_t off = c->arena_len;
    int r;

    if (f->count >= c->lim->max_keys_per_object)
        return fail(c, -E2BIG, i, "object has more than %zu keys at byte %zu",
                    c->lim->max_keys_per_object, i);
    f->count++;

    r = scan_string(c, i, true, ret_end);
    if (r < 0)
        return r;

    if (grow((void **)&c->keys, &c->keys_alloc, c->n_keys + 1, sizeof(struct key)) < 0)
        return fail_oom(c, i);
    c->keys[c->n_keys++] = (struct key){ .off = off, .len = c->arena_len - off, .pos = i };
    return 0;
}

static int run(struct checker *c) {
    const unsigned char *p = c->p;
    enum state state = EXPECT_VALUE;
    size_t i = 0;
    int r;

    for (;;) {
        while (i < c->len && is_ws(p[i]))
            i++;
        if (i >= c->len)
            break;

        unsigned char b = p[i];
        struct frame *top = c->depth > 0 ? &c->stack[c->depth - 1] : NULL;

        switch (state) {

        case EXPECT_VALUE_OR_CLOSE:
            if (b == ']') {
                r = close_container(c, i);
                if (r < 0)
                    return r;
                i++;
                state = EXPECT_SEPARATOR;
                break;
            }
            __attribute__((fallthrough));

        case EXPECT_VALUE:
            if (top && !top->is_object) {
                if (top->count >= c->lim->max_array_items)
                    return fail(c, -E2BIG, i, "array has more than %zu items at byte %zu",
                                c->lim->max_array_items, i);
                top->count++;
            }

            if (b == '{' || b == '[') {
                r = open_container(c, i, b == '{');
                if (r < 0)
                    return r;
                i++;
                state = b == '{' ? EXPECT_KEY_OR_CLOSE : EXPECT_VALUE_OR_CLOSE;
                break;
            }

            if (b == '"')
                r = scan_string(c, i, false, &i);
            else if (b == '-' || is_digit(b))
                r = scan_number(c, i, &i);
            else if (b == 't' || b == 'f' || b == 'n')
                r = scan_literal(c, i, &i);
            else
                r = unexpected(c, i);
            if (r < 0)
                return r;
            state = EXPECT_SEPARATOR;
            break;

        case EXPECT_KEY_OR_CLOSE:
            if (b == '}') {
                r = close_container(c, i);
                if (r < 0)
                    return r;
                i++;
                state = EXPECT_SEPARATOR;
                break;
            }
            __attribute__((fallthrough));

        case EXPECT_KEY:
            if (b != '"')
                return unexpected(c, i);
            r = scan_key(c, i, &i);
            if (r < 0)
                return r;
            state = EXPECT_COLON;
            break;

        case EXPECT_COLON:
            if (b != ':')
                return unexpected(c, i);
            i++;
            state = EXPECT_VALUE;
            break;

        case EXPECT_SEPARATOR:
            if (!top)
                return fail(c, -EBADMSG, i, "trailing data after JSON value at byte %zu", i);
            if (b == ',') {
                i++;
                state = top->is_object ? EXPECT_KEY : EXPECT_VALUE;
                break;
            }
            if (b != (top->is_object ? '}' : ']'))
                return unexpected(c, i);
            r = close_container(c, i);
            if (r < 0)
                return r;
            i++;
            break;
        }
    }

    if (state == EXPECT_SEPARATOR && c->depth == 0)
        return 0;
    if (state == EXPECT_VALUE && c->depth == 0)
        return fail(c, -ENODATA, 0, "empty body");
    return unexpected_end(c);
}

int aigw_json_check(const char *buf, size_t len, const struct aigw_json_limits *lim,
                    struct aigw_json_error *ret_err) {
    struct checker c = {
        .p = (const unsigned char *)buf,
        .len = buf ? len : 0,
        .lim = lim,
        .err = ret_err,
    };
    int r;

    if (lim->max_depth > AIGW_JSON_DEPTH_MAX)
        return fail(&c, -EINVAL, 0, "nesting limit above %d", AIGW_JSON_DEPTH_MAX);

    r = run(&c);

    free(c.stack);
    free(c.arena);
    free(c.keys);
    free(c.sort_tmp);
    return r;
}
