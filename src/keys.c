/* SPDX-License-Identifier: MIT */
#include "aigw/keys.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "aigw/macro.h"

#define DIGEST_PREFIX "sha256:"
#define KEYGEN_RANDOM_BYTES 32

struct key_entry {
    struct aigw_key key;
    size_t line; /* for duplicate messages */
};

struct aigw_keys {
    struct key_entry *entries;
    size_t n;
};

void aigw_keys_free(struct aigw_keys *k) {
    if (!k)
        return;
    /* The digests are not secret (the file is), but a freed key set should
     * not linger in the heap either. */
    if (k->entries)
        OPENSSL_cleanse(k->entries, k->n * sizeof(*k->entries));
    free(k->entries);
    free(k);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct aigw_keys *, aigw_keys_free);

size_t aigw_keys_count(const struct aigw_keys *k) {
    return k ? k->n : 0;
}

const struct aigw_key *aigw_keys_get(const struct aigw_keys *k, size_t i) {
    if (!k || i >= k->n)
        return NULL;
    return &k->entries[i].key;
}

static bool is_name_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

bool aigw_key_name_is_valid(const char *name, size_t len) {
    if (!name || len < 1 || len > AIGW_KEY_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_name_char(name[i]))
            return false;
    return true;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

/* Next blank-separated token in [*p, end); false when none is left. */
static bool next_token(const char **p, const char *end, const char **ret_tok, size_t *ret_len) {
    const char *s = *p;
    while (s < end && is_blank(*s))
        s++;
    if (s >= end)
        return false;
    const char *t = s;
    while (t < end && !is_blank(*t))
        t++;
    *ret_tok = s;
    *ret_len = (size_t)(t - s);
    *p = t;
    return true;
}

static bool parse_digest(const char *tok, size_t len, uint8_t ret[static AIGW_KEY_DIGEST_SIZE]) {
    const size_t plen = strlen(DIGEST_PREFIX);
    uint8_t d[AIGW_KEY_DIGEST_SIZE];

    if (len != plen + 2 * AIGW_KEY_DIGEST_SIZE || memcmp(tok, DIGEST_PREFIX, plen) != 0)
        return false;
    tok += plen;
    for (size_t i = 0; i < AIGW_KEY_DIGEST_SIZE; i++) {
        int hi = hex_value(tok[2 * i]), lo = hex_value(tok[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        d[i] = (uint8_t)(hi << 4 | lo);
    }
    memcpy(ret, d, sizeof(d));
    return true;
}

/* Decimal digits only: no sign, no blanks, 1..AIGW_KEYS_LIMIT_MAX. */
static bool parse_limit(const char *s, size_t len, uint64_t *ret) {
    uint64_t v = 0;
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
        /* Checked every digit, so v*10 above can never overflow. */
        if (v > AIGW_KEYS_LIMIT_MAX)
            return false;
    }
    if (v == 0)
        return false;
    *ret = v;
    return true;
}

/* An option name is echoed in the message only when it is short and
 * printable, so a binary file cannot put control bytes into the log. */
static bool is_echo_safe(const char *s, size_t len) {
    if (len == 0 || len > 32)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '"')
            return false;
    return true;
}

static int parse_option(struct aigw_key *key, const char *tok, size_t len, char *msg,
                        size_t msglen) {
    const struct {
        const char *name;
        bool *has;
        uint64_t *value;
    } options[] = {
        {"rpm", &key->has_rpm, &key->rpm},
        {"tpm", &key->has_tpm, &key->tpm},
        {"inflight", &key->has_inflight, &key->inflight},
    };
    const char *eq = memchr(tok, '=', len);
    size_t nlen = eq ? (size_t)(eq - tok) : len;

    for (size_t i = 0; i < ELEMENTSOF(options); i++) {
        if (strlen(options[i].name) != nlen || memcmp(options[i].name, tok, nlen) != 0)
            continue;

        if (*options[i].has) {
            snprintf(msg, msglen, "duplicate option \"%s\"", options[i].name);
            return -EINVAL;
        }
        if (!eq || !parse_limit(eq + 1, len - nlen - 1, options[i].value)) {
            snprintf(msg, msglen, "%s must be an integer from 1 to %llu", options[i].name,
                     (unsigned long long)AIGW_KEYS_LIMIT_MAX);
            return -EINVAL;
        }
        *options[i].has = true;
        return 0;
    }

    if (is_echo_safe(tok, nlen))
        snprintf(msg, msglen, "unknown option \"%.*s\" (expected rpm=N, tpm=N or inflight=N)",
                 (int)nlen, tok);
    else
        snprintf(msg, msglen, "unknown option (expected rpm=N, tpm=N or inflight=N)");
    return -EINVAL;
}

/* Returns 1 and fills *ret for a key line, 0 for a blank or comment line,
 * -EINVAL with msg set for anything else. */
static int parse_line(const char *line, size_t len, struct aigw_key *ret, char *msg,
                      size_t msglen) {
    const char *end = line + len, *p = line, *tok;
    size_t toklen;
    struct aigw_key key = {};

    /* CRLF files: the CR is line-end decoration, not part of the last field. */
    while (end > line && (is_blank(end[-1]) || end[-1] == '\r'))
        end--;

    if (!next_token(&p, end, &tok, &toklen))
        return 0;
    if (tok[0] == '#')
        return 0;

    if (!aigw_key_name_is_valid(tok, toklen)) {
        snprintf(msg, msglen, "invalid key name (1-%d characters from A-Z a-z 0-9 . _ -)",
                 AIGW_KEY_NAME_MAX);
        return -EINVAL;
    }
    memcpy(key.name, tok, toklen);
    key.name[toklen] = '\0';

    if (!next_token(&p, end, &tok, &toklen)) {
        snprintf(msg, msglen, "missing digest (expected NAME sha256:HEX [options])");
        return -EINVAL;
    }
    if (!parse_digest(tok, toklen, key.digest)) {
        snprintf(msg, msglen, "digest must be sha256: followed by 64 hex digits");
        return -EINVAL;
    }

    while (next_token(&p, end, &tok, &toklen)) {
        int r = parse_option(&key, tok, toklen, msg, msglen);
        if (r < 0)
            return r;
    }

    *ret = key;
    return 1;
}

_printf_(3, 4) static void set_error(char *errbuf, size_t errlen, const char *fmt, ...) {
    va_list ap;
    if (!errbuf || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

static int cmp_name(const void *a, const void *b) {
    const struct key_entry *x = *(const struct key_entry *const *)a;
    const struct key_entry *y = *(const struct key_entry *const *)b;
    int c = strcmp(x->key.name, y->key.name);
    if (c != 0)
        return c;
    return (x->line > y->line) - (x->line < y->line);
}

static int cmp_digest(const void *a, const void *b) {
    const struct key_entry *x = *(const struct key_entry *const *)a;
    const struct key_entry *y = *(const struct key_entry *const *)b;
    int c = memcmp(x->key.digest, y->key.digest, AIGW_KEY_DIGEST_SIZE);
    if (c != 0)
        return c;
    return (x->line > y->line) - (x->line < y->line);
}

/* Sorting keeps this O(n log n) at 100000 keys. After sorting by (field,
 * line) every run of equal fields starts with its first occurrence; the
 * earliest repeated line overall is the one to report. */
static int check_duplicates(struct aigw_keys *k, char *errbuf, size_t errlen) {
    _cleanup_free_ struct key_entry **v = NULL;
    const struct key_entry *dup_name = NULL, *first_name = NULL;
    const struct key_entry *dup_digest = NULL, *first_digest = NULL;

    if (k->n < 2)
        return 0;
    v = calloc(k->n, sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < k->n; i++)
        v[i] = &k->entries[i];

    qsort(v, k->n, sizeof(*v), cmp_name);
    for (size_t i = 1; i < k->n; i++) {
        if (strcmp(v[i - 1]->key.name, v[i]->key.name) != 0)
            continue;
        /* v[i-1] starts this run: the loop skips each run once seen. */
        if (!dup_name || v[i]->line < dup_name->line) {
            dup_name = v[i];
            first_name = v[i - 1];
        }
        /* The rest of the run has later lines: nothing to report there. */
        while (i + 1 < k->n && strcmp(v[i + 1]->key.name, v[i]->key.name) == 0)
            i++;
    }

    qsort(v, k->n, sizeof(*v), cmp_digest);
    for (size_t i = 1; i < k->n; i++) {
        if (memcmp(v[i - 1]->key.digest, v[i]->key.digest, AIGW_KEY_DIGEST_SIZE) != 0)
            continue;
        if (!dup_digest || v[i]->line < dup_digest->line) {
            dup_digest = v[i];
            first_digest = v[i - 1];
        }
        while (i + 1 < k->n &&
               memcmp(v[i + 1]->key.digest, v[i]->key.digest, AIGW_KEY_DIGEST_SIZE) == 0)
            i++;
    }

    if (dup_name && (!dup_digest || dup_name->line <= dup_digest->line)) {
        set_error(errbuf, errlen, "keys file line %zu: duplicate key name \"%s\" (first on line %zu)",
                  dup_name->line, dup_name->key.name, first_name->line);
        return -EINVAL;
    }
    if (dup_digest) {
        set_error(errbuf, errlen, "keys file line %zu: duplicate digest (same key as line %zu)",
                  dup_digest->line, first_digest->line);
        return -EINVAL;
    }
    return 0;
}

int aigw_keys_parse(const char *buf, size_t len, struct aigw_keys **ret, char *errbuf,
                    size_t errlen) {
    _cleanup_(aigw_keys_freep) struct aigw_keys *k = NULL;
    size_t allocated = 0, line_no = 0, pos = 0;
    char msg[160];
    int r;

    if ((!buf && len > 0) || !ret) {
        set_error(errbuf, errlen, "keys file: invalid arguments");
        return -EINVAL;
    }

    k = calloc(1, sizeof(*k));
    if (!k)
        goto oom;

    while (pos < len) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t llen = nl ? (size_t)(nl - line) : len - pos;
        struct aigw_key key;

        line_no++;
        pos += llen + (nl ? 1 : 0);

        if (llen > AIGW_KEYS_LINE_MAX) {
            set_error(errbuf, errlen, "keys file line %zu: line too long (max %d bytes)", line_no,
                      AIGW_KEYS_LINE_MAX);
            return -EINVAL;
        }
        if (memchr(line, '\0', llen)) {
            set_error(errbuf, errlen, "keys file line %zu: contains a NUL byte", line_no);
            return -EINVAL;
        }

        r = parse_line(line, llen, &key, msg, sizeof(msg));
        if (r < 0) {
            set_error(errbuf, errlen, "keys file line %zu: %s", line_no, msg);
            return r;
        }
        if (r == 0)
            continue;

        if (k->n >= AIGW_KEYS_MAX) {
            set_error(errbuf, errlen, "keys file line %zu: too many keys (max %d)", line_no,
                      AIGW_KEYS_MAX);
            return -EINVAL;
        }
        if (k->n == allocated) {
            size_t na = allocated ? MIN(allocated * 2, (size_t)AIGW_KEYS_MAX) : 16;
            struct key_entry *ne = realloc(k->entries, na * sizeof(*ne));
            if (!ne)
                goto oom;
            k->entries = ne;
            allocated = na;
        }
        k->entries[k->n++] = (struct key_entry){.key = key, .line = line_no};
    }

    r = check_duplicates(k, errbuf, errlen);
    if (r == -ENOMEM)
        goto oom;
    if (r < 0)
        return r;

    *ret = TAKE_PTR(k);
    return 0;

oom:
    set_error(errbuf, errlen, "keys file: out of memory");
    return -ENOMEM;
}

const struct aigw_key *aigw_keys_lookup(const struct aigw_keys *k, const char *presented,
                                        size_t len) {
    uint8_t md[SHA256_DIGEST_LENGTH];
    size_t found = 0; /* index + 1 of the match, 0 for none */

    if (!k || !presented || k->n == 0)
        return NULL;

    SHA256((const unsigned char *)presented, len, md);

    /* Visit every entry and fold the result in without a branch, so the
     * time taken says nothing about which entry matched or how much of a
     * digest did. Digests are unique, so at most one entry matches. */
    for (size_t i = 0; i < k->n; i++) {
        size_t d = (size_t)(unsigned)CRYPTO_memcmp(md, k->entries[i].key.digest, sizeof(md));
        /* d is 0 on a match and small otherwise: (d - 1) has its top bit set
         * only for d == 0. */
        size_t eq = (d - 1) >> (sizeof(size_t) * 8 - 1);
        found |= ((size_t)0 - eq) & (i + 1);
    }
    OPENSSL_cleanse(md, sizeof(md));

    if (found == 0)
        return NULL;
    return &k->entries[found - 1].key;
}

static void trim_blanks(const char **s, size_t *len) {
    while (*len > 0 && is_blank((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_blank((*s)[*len - 1]))
        (*len)--;
}

/* RFC 7235 token68: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
static bool is_token68(const char *s, size_t len) {
    size_t i = 0;
    while (i < len && (is_name_char(s[i]) || s[i] == '~' || s[i] == '+' || s[i] == '/'))
        i++;
    if (i == 0)
        return false;
    while (i < len && s[i] == '=')
        i++;
    return i == len;
}

static bool is_visible_ascii(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return false;
    return len > 0;
}

int aigw_keys_extract(const char *authorization, size_t alen, const char *x_api_key, size_t xlen,
                      const char **ret_key, size_t *ret_len) {
    bool other_scheme = false;

    if (!ret_key || !ret_len)
        return -EINVAL;

    if (authorization) {
        trim_blanks(&authorization, &alen);
        if (alen > 0) {
            const char *sp = memchr(authorization, ' ', alen);
            size_t slen = sp ? (size_t)(sp - authorization) : alen;

            if (slen == strlen("Bearer") && strncasecmp(authorization, "Bearer", slen) == 0) {
                const char *t = authorization + slen;
                size_t tlen = alen - slen;
                while (tlen > 0 && *t == ' ') {
                    t++;
                    tlen--;
                }
                if (tlen > AIGW_KEY_PRESENTED_MAX || !is_token68(t, tlen))
                    return -EINVAL;
                *ret_key = t;
                *ret_len = tlen;
                return 0;
            }
            other_scheme = true;
        }
    }

    if (x_api_key) {
        trim_blanks(&x_api_key, &xlen);
        if (xlen > 0) {
            if (xlen > AIGW_KEY_PRESENTED_MAX || !is_visible_ascii(x_api_key, xlen))
                return -EINVAL;
            *ret_key = x_api_key;
            *ret_len = xlen;
            return 0;
        }
    }

    /* Credentials in a scheme aigw does not speak are not "no key": the
     * client meant to authenticate and should hear that it failed. */
    return other_scheme ? -EINVAL : -ENOKEY;
}

static size_t base64url_encode(const uint8_t *in, size_t len, char *out) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;

    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

static void cleanse_freep(char **p) {
    if (*p) {
        OPENSSL_cleanse(*p, strlen(*p));
        free(*p);
    }
}

int aigw_keygen(const char *name, char **ret_key, char **ret_line) {
    uint8_t raw[KEYGEN_RANDOM_BYTES], md[SHA256_DIGEST_LENGTH];
    _cleanup_(cleanse_freep) char *key = NULL;
    _cleanup_free_ char *line = NULL;
    size_t plen = strlen(AIGW_KEY_PREFIX), nlen, klen, llen;

    if (!name || !ret_key || !ret_line)
        return -EINVAL;
    nlen = strnlen(name, AIGW_KEY_NAME_MAX + 1);
    if (!aigw_key_name_is_valid(name, nlen))
        return -EINVAL;

    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -EIO;

    /* 4 output characters per 3 input bytes, rounded up, plus the NUL. */
    key = malloc(plen + (sizeof(raw) * 4 + 2) / 3 + 1);
    if (!key) {
        OPENSSL_cleanse(raw, sizeof(raw));
        return -ENOMEM;
    }
    memcpy(key, AIGW_KEY_PREFIX, plen);
    klen = plen + base64url_encode(raw, sizeof(raw), key + plen);
    OPENSSL_cleanse(raw, sizeof(raw));

    SHA256((const unsigned char *)key, klen, md);

    llen = nlen + 1 + strlen(DIGEST_PREFIX) + 2 * sizeof(md) + 1;
    line = malloc(llen);
    if (!line)
        return -ENOMEM;
    size_t o = (size_t)snprintf(line, llen, "%s " DIGEST_PREFIX, name);
    for (size_t i = 0; i < sizeof(md); i++, o += 2)
        snprintf(line + o, llen - o, "%02x", md[i]);

    *ret_key = TAKE_PTR(key);
    *ret_line = TAKE_PTR(line);
    return 0;
}
