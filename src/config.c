/* SPDX-License-Identifier: MIT */
/* aigw.conf parsing: inih feeds (section, key, value) triples; a table per
 * section type says how each key is stored and checked. Every problem is
 * collected with file:line, so --check-config can print them all at once. */

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <ini.h>

#include "aigw/config.h"
#include "aigw/keys.h"
#include "aigw/netaddr.h"
#include "aigw/macro.h"

#define MAX_ERRORS 200
#define MAX_SECTIONS 256
#define MAX_LIST_ITEMS 16
#define MAX_SECRET_BYTES 4096

/* ---- errors ---------------------------------------------------------------------------- */

void config_errors_clear(struct aigw_config_errors *e) {
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        free(e->lines[i]);
    free(e->lines);
    e->lines = NULL;
    e->n = 0;
}

_printf_(2, 3) static void add_error(struct aigw_config_errors *e, const char *fmt, ...) {
    if (!e || e->n >= MAX_ERRORS)
        return;
    char buf[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    char **n = realloc(e->lines, (e->n + 1) * sizeof(char *));
    if (!n)
        return;
    e->lines = n;
    e->lines[e->n] = strdup(buf);
    if (e->lines[e->n])
        e->n++;
}

/* ---- value parsers --------------------------------------------------------------------- */

static int parse_u64_prefix(const char *s, uint64_t *ret, const char **ret_end) {
    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    *ret = v;
    *ret_end = end;
    return 0;
}

int parse_duration(const char *s, uint64_t *ret_usec) {
    static const struct {
        const char *suffix;
        uint64_t mult;
    } units[] = {
        {"us", 1},           {"ms", USEC_PER_MSEC},           {"s", USEC_PER_SEC},
        {"", USEC_PER_SEC}, /* a bare number is seconds, as in systemd */
        {"m", 60 * USEC_PER_SEC}, {"min", 60 * USEC_PER_SEC}, {"h", 3600 * USEC_PER_SEC},
    };
    uint64_t v;
    const char *end;
    if (!s)
        return -EINVAL;
    int r = parse_u64_prefix(s, &v, &end);
    if (r < 0)
        return r; /* -ERANGE for a number too large, like a unit overflow */
    for (size_t i = 0; i < ELEMENTSOF(units); i++) {
        if (strcmp(end, units[i].suffix) != 0)
            continue;
        if (v > UINT64_MAX / units[i].mult)
            return -ERANGE;
        *ret_usec = v * units[i].mult;
        return 0;
    }
    return -EINVAL;
}

int parse_size(const char *s, uint64_t *ret_bytes) {
    static const struct {
        const char *suffix;
        uint64_t mult;
    } units[] = {
        {"", 1},           {"B", 1},          {"K", 1ULL << 10}, {"KiB", 1ULL << 10},
        {"M", 1ULL << 20}, {"MiB", 1ULL << 20}, {"G", 1ULL << 30}, {"GiB", 1ULL << 30},
    };
    uint64_t v;
    const char *end;
    if (!s)
        return -EINVAL;
    int r = parse_u64_prefix(s, &v, &end);
    if (r < 0)
        return r; /* -ERANGE for a number too large, like a unit overflow */
    for (size_t i = 0; i < ELEMENTSOF(units); i++) {
        if (strcmp(end, units[i].suffix) != 0)
            continue;
        if (v > UINT64_MAX / units[i].mult)
            return -ERANGE;
        *ret_bytes = v * units[i].mult;
        return 0;
    }
    return -EINVAL;
}

int parse_bool(const char *s, bool *ret) {
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *ret = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *ret = false;
            return 0;
        }
    }
    return -EINVAL;
}

const char *backend_type_to_string(enum aigw_backend_type t) {
    switch (t) {
    case AIGW_BACKEND_OPENAI:
        return "openai";
    case AIGW_BACKEND_GEMINI:
        return "gemini";
    case AIGW_BACKEND_MOCK:
        return "mock";
    }
    return "unknown";
}

/* ---- key tables ------------------------------------------------------------------------ */

enum key_type {
    K_STRING,
    K_DURATION,
    K_SIZE,
    K_UINT,
    K_BOOL,
    K_LOGLEVEL,
    K_BACKEND_TYPE,
    K_LIST,
    K_OPT_INT,    /* model defaults: has_ flag + int64 */
    K_OPT_DOUBLE, /* model defaults: has_ flag + double */
    K_URL,
};

struct key_def {
    const char *name;
    enum key_type type;
    size_t offset;
    size_t aux_offset; /* count for K_LIST, has_ flag for K_OPT_* */
    uint64_t min, max; /* K_UINT, K_DURATION, K_SIZE bounds (0,0: none) */
};

#define S(f) offsetof(struct aigw_config, f)
#define B(f) offsetof(struct aigw_backend_conf, f)
#define M(f) offsetof(struct aigw_model_conf, f)
#define W(f) offsetof(struct aigw_webhook_override, f)

static const struct key_def server_keys[] = {
    {"listen", K_STRING, S(server.listen), 0, 0, 0},
    {"metrics_listen", K_STRING, S(server.metrics_listen), 0, 0, 0},
    {"workers", K_UINT, S(server.workers), 0, 0, 256},
    {"drain_timeout", K_DURATION, S(server.drain_timeout_usec), 0, 0, 3600 * USEC_PER_SEC},
    {"max_body", K_SIZE, S(server.max_body), 0, 1024, 1ULL << 30},
    {"tls_certificate", K_STRING, S(server.tls_certificate), 0, 0, 0},
    {"tls_key", K_STRING, S(server.tls_key), 0, 0, 0},
    {"default_model", K_STRING, S(server.default_model), 0, 0, 0},
    {"max_inflight", K_UINT, S(server.max_inflight), 0, 0, 1000000},
    {"trusted_proxies", K_STRING, S(server.trusted_proxies), 0, 0, 0},
    {"request_timeout", K_DURATION, S(server.request_timeout_usec), 0, USEC_PER_SEC, 3600 * USEC_PER_SEC},
    {"idle_timeout", K_DURATION, S(server.idle_timeout_usec), 0, USEC_PER_SEC, 3600 * USEC_PER_SEC},
    {"max_messages", K_UINT, S(server.max_messages), 0, 1, 100000},
    {"max_json_depth", K_UINT, S(server.max_json_depth), 0, 4, 256},
    {"max_upstream_response", K_SIZE, S(server.max_upstream_response), 0, 4096, 1ULL << 30},
    {"max_sse_event", K_SIZE, S(server.max_sse_event), 0, 1024, 64ULL << 20},
};

static const struct key_def log_keys[] = {
    {"level", K_LOGLEVEL, S(log.level), 0, 0, 0},
    {"access_log", K_BOOL, S(log.access_log), 0, 0, 0},
};

static const struct key_def auth_keys[] = {
    {"required", K_BOOL, S(auth.required), 0, 0, 0},
    {"keys_file", K_STRING, S(auth.keys_file), 0, 0, 0},
    {"keys_credential", K_STRING, S(auth.keys_credential), 0, 0, 0},
    {"metrics_key_credential", K_STRING, S(auth.metrics_key_credential), 0, 0, 0},
};

static const struct key_def ratelimit_keys[] = {
    {"requests_per_minute", K_UINT, S(ratelimit.requests_per_minute), 0, 0, 1000000000},
    {"tokens_per_minute", K_UINT, S(ratelimit.tokens_per_minute), 0, 0, 1000000000},
    {"max_inflight_per_key", K_UINT, S(ratelimit.max_inflight_per_key), 0, 0, 1000000},
};

static const struct key_def webhook_keys[] = {
    {"model", K_STRING, S(webhook.model), 0, 0, 0},
    {"system_prompt", K_STRING, S(webhook.system_prompt), 0, 0, 0},
    {"max_reply_chars", K_UINT, S(webhook.max_reply_chars), 0, 16, 16000},
    {"time_budget", K_DURATION, S(webhook.time_budget_usec), 0, 100 * USEC_PER_MSEC, 30 * USEC_PER_SEC},
    {"fallback_text", K_STRING, S(webhook.fallback_text), 0, 0, 0},
    {"basic_auth_credential", K_STRING, S(webhook.basic_auth_credential), 0, 0, 0},
    {"header_name", K_STRING, S(webhook.header_name), 0, 0, 0},
    {"header_value_credential", K_STRING, S(webhook.header_value_credential), 0, 0, 0},
    {"max_sessions", K_UINT, S(webhook.max_sessions), 0, 0, 10000000},
    {"max_turns", K_UINT, S(webhook.max_turns), 0, 0, 100},
    {"session_ttl", K_DURATION, S(webhook.session_ttl_usec), 0, USEC_PER_SEC, 7 * 24 * 3600 * USEC_PER_SEC},
};

static const struct key_def webhook_override_keys[] = {
    {"model", K_STRING, W(model), 0, 0, 0},
    {"system_prompt", K_STRING, W(system_prompt), 0, 0, 0},
};

static const struct key_def backend_keys[] = {
    {"type", K_BACKEND_TYPE, B(type), 0, 0, 0},
    {"url", K_URL, B(url), 0, 0, 0},
    {"api_key_credential", K_STRING, B(api_key_credential), 0, 0, 0},
    {"api_key_env", K_STRING, B(api_key_env), 0, 0, 0},
    {"api_key_file", K_STRING, B(api_key_file), 0, 0, 0},
    {"connect_timeout", K_DURATION, B(connect_timeout_usec), 0, USEC_PER_MSEC, 600 * USEC_PER_SEC},
    {"timeout", K_DURATION, B(timeout_usec), 0, USEC_PER_MSEC, 24 * 3600 * USEC_PER_SEC},
    {"idle_timeout", K_DURATION, B(idle_timeout_usec), 0, USEC_PER_MSEC, 3600 * USEC_PER_SEC},
    {"max_connections", K_UINT, B(max_connections), 0, 1, 100000},
    {"max_retries", K_UINT, B(max_retries), 0, 0, 10},
    {"retry_base", K_DURATION, B(retry_base_usec), 0, 0, 60 * USEC_PER_SEC},
    {"breaker_threshold", K_UINT, B(breaker_threshold), 0, 0, 1000},
    {"breaker_cooldown", K_DURATION, B(breaker_cooldown_usec), 0, 0, 3600 * USEC_PER_SEC},
    {"probe_interval", K_DURATION, B(probe_interval_usec), 0, 0, 24 * 3600 * USEC_PER_SEC},
    {"mock_latency", K_DURATION, B(mock_latency_usec), 0, 0, 600 * USEC_PER_SEC},
    {"mock_chunk_interval", K_DURATION, B(mock_chunk_interval_usec), 0, 0, 60 * USEC_PER_SEC},
    {"mock_chunks", K_UINT, B(mock_chunks), 0, 1, 10000},
};

static const struct key_def model_keys[] = {
    {"backend", K_STRING, M(backend_name), 0, 0, 0},
    {"upstream_model", K_STRING, M(upstream_model), 0, 0, 0},
    {"fallbacks", K_LIST, M(fallbacks), M(n_fallbacks), 0, 0},
    {"max_tokens", K_OPT_INT, M(defaults.max_tokens), M(defaults.has_max_tokens), 1, 10000000},
    {"temperature", K_OPT_DOUBLE, M(defaults.temperature), M(defaults.has_temperature), 0, 2},
};

/* ---- parser state ---------------------------------------------------------------------- */

enum section_kind {
    SEC_NONE,
    SEC_SERVER,
    SEC_LOG,
    SEC_AUTH,
    SEC_RATELIMIT,
    SEC_WEBHOOK,
    SEC_WEBHOOK_OVERRIDE,
    SEC_BACKEND,
    SEC_MODEL,
    SEC_INVALID,
};

struct seen_key {
    char *section; /* the raw section header */
    char *key;
};

struct parse_state {
    struct aigw_config *c;
    struct aigw_config_errors *errors;
    const char *path;
    unsigned line;          /* the line the reader returned last */
    bool line_indented;     /* that line started with white space */
    bool line_too_long;
    bool in_pair; /* inih has a previous key: an indented line continues it */
    const char *text, *pos; /* the input */

    char *cur_section;      /* raw header text of the current section */
    enum section_kind kind;
    void *target; /* struct the current section fills */
    char *last_key;

    struct seen_key *seen;
    size_t n_seen;
    int n_errors_before;
};

static bool key_seen(struct parse_state *st, const char *section, const char *key) {
    for (size_t i = 0; i < st->n_seen; i++)
        if (strcmp(st->seen[i].section, section) == 0 && strcmp(st->seen[i].key, key) == 0)
            return true;
    return false;
}

static void remember_key(struct parse_state *st, const char *section, const char *key) {
    struct seen_key *n = realloc(st->seen, (st->n_seen + 1) * sizeof(*n));
    if (!n)
        return;
    st->seen = n;
    n[st->n_seen].section = strdup(section);
    n[st->n_seen].key = strdup(key);
    st->n_seen++;
}

static bool valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!isalnum(ch) && !strchr("._:-/@", ch))
            return false;
    }
    return true;
}

static bool valid_override_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 200)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || ch == '"')
            return false;
    }
    return true;
}

/* `backend "NAME"` → kind and NAME. */
static enum section_kind classify_section(const char *sec, char **ret_name) {
    static const struct {
        const char *name;
        enum section_kind kind;
    } plain[] = {
        {"server", SEC_SERVER}, {"log", SEC_LOG},         {"auth", SEC_AUTH},
        {"ratelimit", SEC_RATELIMIT}, {"webhook", SEC_WEBHOOK},
    };
    *ret_name = NULL;
    for (size_t i = 0; i < ELEMENTSOF(plain); i++)
        if (strcmp(sec, plain[i].name) == 0)
            return plain[i].kind;

    const char *sp = strchr(sec, ' ');
    if (!sp)
        return SEC_INVALID;
    size_t kw = (size_t)(sp - sec);
    enum section_kind kind;
    if (kw == 7 && strncmp(sec, "backend", kw) == 0)
        kind = SEC_BACKEND;
    else if (kw == 5 && strncmp(sec, "model", kw) == 0)
        kind = SEC_MODEL;
    else if (kw == 7 && strncmp(sec, "webhook", kw) == 0)
        kind = SEC_WEBHOOK_OVERRIDE;
    else
        return SEC_INVALID;
    const char *q = sp + 1;
    while (*q == ' ')
        q++;
    size_t len = strlen(q);
    if (len < 3 || q[0] != '"' || q[len - 1] != '"')
        return SEC_INVALID;
    char *name = strndup(q + 1, len - 2);
    if (!name)
        return SEC_INVALID;
    *ret_name = name;
    return kind;
}

static void *grow(void **arr, size_t *n, size_t elem) {
    if (*n >= MAX_SECTIONS)
        return NULL;
    void *p = realloc(*arr, (*n + 1) * elem);
    if (!p)
        return NULL;
    *arr = p;
    void *item = (char *)p + *n * elem;
    memset(item, 0, elem);
    (*n)++;
    return item;
}

static void backend_defaults(struct aigw_backend_conf *b) {
    b->type = AIGW_BACKEND_OPENAI;
    b->connect_timeout_usec = 5 * USEC_PER_SEC;
    b->timeout_usec = 300 * USEC_PER_SEC;
    b->idle_timeout_usec = 60 * USEC_PER_SEC;
    b->max_connections = 64;
    b->max_retries = 2;
    b->retry_base_usec = 250 * USEC_PER_MSEC;
    b->breaker_threshold = 5;
    b->breaker_cooldown_usec = 30 * USEC_PER_SEC;
    b->probe_interval_usec = 30 * USEC_PER_SEC;
    b->mock_latency_usec = 0;
    b->mock_chunks = 4;
}

/* grow() failed: the section is ignored rather than left with a NULL target
 * that its keys would be written through. */
static int too_many_sections(struct parse_state *st, const char *section) {
    add_error(st->errors, "%s:%u: [%s]: too many sections (at most %d)", st->path, st->line, section,
              MAX_SECTIONS);
    st->kind = SEC_INVALID;
    return 0;
}

static int begin_section(struct parse_state *st, const char *section) {
    free(st->cur_section);
    st->cur_section = strdup(section);
    free(st->last_key);
    st->last_key = NULL;
    st->target = NULL;

    _cleanup_free_ char *name = NULL;
    st->kind = classify_section(section, &name);
    struct aigw_config *c = st->c;
    switch (st->kind) {
    case SEC_SERVER:
    case SEC_LOG:
    case SEC_AUTH:
    case SEC_RATELIMIT:
    case SEC_WEBHOOK:
        st->target = c;
        return 0;
    case SEC_WEBHOOK_OVERRIDE:
        /* Dialogflow intent names are free text ("Default Welcome Intent",
         * "Tisch reservieren – Abend"): anything printable will do */
        if (!valid_override_name(name)) {
            add_error(st->errors, "%s:%u: invalid name in section [%s] (at most 200 bytes, no control "
                      "characters or quotes)", st->path, st->line, section);
            st->kind = SEC_INVALID;
            return 0;
        }
        break;
    case SEC_BACKEND:
    case SEC_MODEL:
        if (!valid_name(name)) {
            add_error(st->errors, "%s:%u: invalid name in section [%s] (letters, digits and ._:-/@ only)",
                      st->path, st->line, section);
            st->kind = SEC_INVALID;
            return 0;
        }
        break;
    case SEC_NONE:
    case SEC_INVALID:
        add_error(st->errors,
                  "%s:%u: unknown section [%s] (expected server, log, auth, ratelimit, webhook, "
                  "backend \"NAME\", model \"NAME\" or webhook \"tag:NAME\")",
                  st->path, st->line, section);
        st->kind = SEC_INVALID;
        return 0;
    }

    if (st->kind == SEC_BACKEND) {
        for (size_t i = 0; i < c->n_backends; i++)
            if (strcmp(c->backends[i].name, name) == 0) {
                add_error(st->errors, "%s:%u: backend \"%s\" is defined twice", st->path, st->line, name);
                st->kind = SEC_INVALID;
                return 0;
            }
        struct aigw_backend_conf *b = grow((void **)&c->backends, &c->n_backends, sizeof(*b));
        if (!b)
            return too_many_sections(st, section);
        backend_defaults(b);
        b->name = TAKE_PTR(name);
        b->line = st->line;
        st->target = b;
    } else if (st->kind == SEC_MODEL) {
        for (size_t i = 0; i < c->n_models; i++)
            if (strcmp(c->models[i].name, name) == 0) {
                add_error(st->errors, "%s:%u: model \"%s\" is defined twice", st->path, st->line, name);
                st->kind = SEC_INVALID;
                return 0;
            }
        struct aigw_model_conf *m = grow((void **)&c->models, &c->n_models, sizeof(*m));
        if (!m)
            return too_many_sections(st, section);
        m->name = TAKE_PTR(name);
        m->line = st->line;
        st->target = m;
    } else {
        if (strncmp(name, "tag:", 4) != 0 && strncmp(name, "intent:", 7) != 0) {
            add_error(st->errors, "%s:%u: [webhook \"%s\"]: the name must start with tag: or intent:",
                      st->path, st->line, name);
            st->kind = SEC_INVALID;
            return 0;
        }
        for (size_t i = 0; i < c->webhook.n_overrides; i++)
            if (strcmp(c->webhook.overrides[i].match, name) == 0) {
                add_error(st->errors, "%s:%u: [webhook \"%s\"] is defined twice", st->path, st->line, name);
                st->kind = SEC_INVALID;
                return 0;
            }
        struct aigw_webhook_override *o =
            grow((void **)&c->webhook.overrides, &c->webhook.n_overrides, sizeof(*o));
        if (!o)
            return too_many_sections(st, section);
        o->match = TAKE_PTR(name);
        st->target = o;
    }
    return 0;
}

static int split_list(const char *value, char ***ret, size_t *ret_n) {
    char **items = NULL;
    size_t n = 0;
    const char *p = value;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if (n >= MAX_LIST_ITEMS)
            goto fail_range;
        char **grown = realloc(items, (n + 1) * sizeof(char *));
        if (!grown)
            goto fail_nomem;
        items = grown;
        items[n] = strndup(start, (size_t)(p - start));
        if (!items[n])
            goto fail_nomem;
        n++;
    }
    *ret = items;
    *ret_n = n;
    return 0;
fail_range:
    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
    return -E2BIG;
fail_nomem:
    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
    return -ENOMEM;
}

static bool valid_url(const char *s) {
    if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
        return false;
    const char *host = strstr(s, "://") + 3;
    if (!*host || *host == '/')
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '?' || *p == '#')
            return false;
    return true;
}

static const char *log_level_names[] = {
    [AIGW_LOG_ERR] = "err", [AIGW_LOG_WARNING] = "warning", [AIGW_LOG_NOTICE] = "notice",
    [AIGW_LOG_INFO] = "info", [AIGW_LOG_DEBUG] = "debug",
};

static void set_value(struct parse_state *st, const struct key_def *k, const char *key, const char *value) {
    char *base = st->target;
    void *field = base + k->offset;
    uint64_t u;
    int r;

    switch (k->type) {
    case K_STRING:
    case K_URL: {
        if (k->type == K_URL && !valid_url(value)) {
            add_error(st->errors, "%s:%u: %s: \"%s\" is not an http:// or https:// URL", st->path, st->line,
                      key, value);
            return;
        }
        char *dup = strdup(value);
        if (!dup)
            return;
        if (k->type == K_URL) {
            size_t len = strlen(dup);
            while (len > 0 && dup[len - 1] == '/')
                dup[--len] = 0; /* callers append "/v1/..." */
        }
        free(*(char **)field);
        *(char **)field = dup;
        return;
    }
    case K_DURATION:
        r = parse_duration(value, &u);
        if (r < 0) {
            add_error(st->errors, "%s:%u: %s: \"%s\" is not a duration (e.g. 250ms, 30s, 5m, 1h)", st->path,
                      st->line, key, value);
            return;
        }
        goto check_range;
    case K_SIZE:
        r = parse_size(value, &u);
        if (r < 0) {
            add_error(st->errors, "%s:%u: %s: \"%s\" is not a size (e.g. 65536, 64K, 1M)", st->path,
                      st->line, key, value);
            return;
        }
        goto check_range;
    case K_UINT: {
        const char *end;
        if (parse_u64_prefix(value, &u, &end) < 0 || *end) {
            add_error(st->errors, "%s:%u: %s: \"%s\" is not a non-negative integer", st->path, st->line,
                      key, value);
            return;
        }
        goto check_range;
    }
    case K_BOOL: {
        bool b;
        if (parse_bool(value, &b) < 0) {
            add_error(st->errors, "%s:%u: %s: \"%s\" is not a boolean (yes/no)", st->path, st->line, key,
                      value);
            return;
        }
        *(bool *)field = b;
        return;
    }
    case K_LOGLEVEL:
        for (size_t i = 0; i < ELEMENTSOF(log_level_names); i++)
            if (log_level_names[i] && strcmp(value, log_level_names[i]) == 0) {
                *(enum aigw_log_level *)field = (enum aigw_log_level)i;
                return;
            }
        add_error(st->errors, "%s:%u: %s: \"%s\" is not one of err, warning, notice, info, debug", st->path,
                  st->line, key, value);
        return;
    case K_BACKEND_TYPE:
        for (int t = AIGW_BACKEND_OPENAI; t <= AIGW_BACKEND_MOCK; t++)
            if (strcmp(value, backend_type_to_string((enum aigw_backend_type)t)) == 0) {
                *(enum aigw_backend_type *)field = (enum aigw_backend_type)t;
                return;
            }
        add_error(st->errors, "%s:%u: %s: \"%s\" is not one of openai, gemini, mock", st->path, st->line,
                  key, value);
        return;
    case K_LIST: {
        char **items;
        size_t n;
        r = split_list(value, &items, &n);
        if (r < 0) {
            add_error(st->errors, "%s:%u: %s: at most %d entries", st->path, st->line, key, MAX_LIST_ITEMS);
            return;
        }
        char ***dst = field;
        size_t *dst_n = (size_t *)(base + k->aux_offset);
        for (size_t i = 0; i < *dst_n; i++)
            free((*dst)[i]);
        free(*dst);
        *dst = items;
        *dst_n = n;
        return;
    }
    case K_OPT_INT: {
        const char *end;
        if (parse_u64_prefix(value, &u, &end) < 0 || *end || u < k->min || u > k->max) {
            add_error(st->errors, "%s:%u: %s: \"%s\" must be an integer from %" PRIu64 " to %" PRIu64,
                      st->path, st->line, key, value, k->min, k->max);
            return;
        }
        *(int64_t *)field = (int64_t)u;
        *(bool *)(base + k->aux_offset) = true;
        return;
    }
    case K_OPT_DOUBLE: {
        char *end;
        errno = 0;
        double d = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(d) || d < (double)k->min || d > (double)k->max) {
            add_error(st->errors, "%s:%u: %s: \"%s\" must be a number from %" PRIu64 " to %" PRIu64,
                      st->path, st->line, key, value, k->min, k->max);
            return;
        }
        *(double *)field = d;
        *(bool *)(base + k->aux_offset) = true;
        return;
    }
    }
    return;

check_range:
    if ((k->min || k->max) && (u < k->min || u > k->max)) {
        add_error(st->errors, "%s:%u: %s: \"%s\" is out of range", st->path, st->line, key, value);
        return;
    }
    if (k->type == K_UINT)
        *(unsigned *)field = (unsigned)u;
    else
        *(uint64_t *)field = u;
}

static const struct key_def *keys_for(enum section_kind kind, size_t *ret_n) {
#define T(arr)                                                                                     \
    do {                                                                                           \
        *ret_n = ELEMENTSOF(arr);                                                                  \
        return arr;                                                                                \
    } while (0)
    switch (kind) {
    case SEC_SERVER:
        T(server_keys);
    case SEC_LOG:
        T(log_keys);
    case SEC_AUTH:
        T(auth_keys);
    case SEC_RATELIMIT:
        T(ratelimit_keys);
    case SEC_WEBHOOK:
        T(webhook_keys);
    case SEC_WEBHOOK_OVERRIDE:
        T(webhook_override_keys);
    case SEC_BACKEND:
        T(backend_keys);
    case SEC_MODEL:
        T(model_keys);
    default:
        *ret_n = 0;
        return NULL;
    }
#undef T
}

/* Multi-line values: inih hands each indented continuation line to the
 * handler under the previous key; they are joined with a newline. Only
 * string keys (system prompts, fallback texts) may continue. */
static bool append_continuation(struct parse_state *st, const struct key_def *k, const char *value) {
    if (k->type != K_STRING)
        return false;
    char **field = (char **)((char *)st->target + k->offset);
    size_t a = *field ? strlen(*field) : 0, b = strlen(value);
    char *n = realloc(*field, a + 1 + b + 1);
    if (!n)
        return true;
    n[a] = '\n';
    memcpy(n + a + 1, value, b + 1);
    *field = n;
    return true;
}

static int on_ini_pair(void *user, const char *section, const char *key, const char *value) {
    struct parse_state *st = user;

    /* The reader tracks sections itself: inih truncates section names to 49
     * bytes, which would turn a long [model "NAME"] into another section. */
    if (!st->cur_section && begin_section(st, section) < 0) /* keys before any [section] */
        return 0;
    section = st->cur_section;
    if (st->line_too_long)
        return 1; /* reported by the reader */
    if (!key) /* a section header alone */
        return 1;
    if (st->kind == SEC_INVALID)
        return 1;

    size_t n;
    const struct key_def *defs = keys_for(st->kind, &n);
    const struct key_def *k = NULL;
    for (size_t i = 0; i < n; i++)
        if (strcmp(defs[i].name, key) == 0)
            k = &defs[i];
    if (!k) {
        add_error(st->errors, "%s:%u: unknown key \"%s\" in section [%s]", st->path, st->line, key, section);
        return 1;
    }

    if (key_seen(st, section, key)) {
        if (st->line_indented && st->last_key && strcmp(st->last_key, key) == 0 &&
            append_continuation(st, k, value))
            return 1;
        add_error(st->errors, "%s:%u: key \"%s\" is set twice in section [%s]", st->path, st->line, key,
                  section);
        return 1;
    }
    remember_key(st, section, key);
    free(st->last_key);
    st->last_key = strdup(key);
    set_value(st, k, key, value);
    return 1;
}

/* inih's scan: the first of chars, or the start of an inline comment (';'
 * after white space), or the end. */
static const char *ini_scan(const char *s, const char *chars) {
    bool was_space = false;
    for (; *s && !strchr(chars, *s); s++) {
        if (was_space && *s == ';')
            break;
        was_space = isspace((unsigned char)*s);
    }
    return s;
}

/* inih's reader interface gives us the line number and lets us refuse lines
 * longer than its fixed buffer instead of silently splitting them. */
static char *read_ini_line(char *str, int num, void *stream) {
    struct parse_state *st = stream;
    if (!*st->pos)
        return NULL;
    const char *nl = strchr(st->pos, '\n');
    size_t len = nl ? (size_t)(nl - st->pos) + 1 : strlen(st->pos);
    st->line++;
    st->line_too_long = false;
    if (len >= (size_t)num) {
        add_error(st->errors, "%s:%u: line longer than %d characters (split long values over indented "
                  "continuation lines)", st->path, st->line, num - 2);
        st->line_too_long = true;
        /* hand inih a comment line so it keeps its state */
        str[0] = '#';
        str[1] = 0;
        st->pos += len;
        return str;
    }
    memcpy(str, st->pos, len);
    str[len] = 0;
    st->pos += len;

    /* Section headers are handled here rather than in on_ini_pair: inih
     * reports a section only with its first key, and an unknown section
     * with no keys must still be an error. The classification below is
     * inih's own, in its order, so that both agree on what each line is:
     * an indented "[x]" after a key is a continuation line, not a header. */
    const char *line = str, *p;
    if (st->line == 1 && (unsigned char)line[0] == 0xEF && (unsigned char)line[1] == 0xBB &&
        (unsigned char)line[2] == 0xBF)
        line += 3; /* inih skips a UTF-8 BOM */
    for (p = line; *p && isspace((unsigned char)*p); p++)
        ;
    st->line_indented = p > line;
    if (!*p || *p == '#' || *p == ';')
        ; /* comment or blank: inih keeps the previous key */
    else if (st->in_pair && st->line_indented)
        ; /* continuation */
    else if (*p == '[') {
        const char *end = ini_scan(p + 1, "]");
        if (*end == ']') {
            _cleanup_free_ char *name = strndup(p + 1, (size_t)(end - p - 1));
            if (name)
                (void)begin_section(st, name);
            st->in_pair = false;
        }
    } else if (*ini_scan(p, "=:"))
        st->in_pair = true;
    return str;
}

/* ---- whole-config checks --------------------------------------------------------------- */

static void resolve(struct parse_state *st) {
    struct aigw_config *c = st->c;

    for (size_t i = 0; i < c->n_backends; i++) {
        struct aigw_backend_conf *b = &c->backends[i];
        int sources = !!b->api_key_credential + !!b->api_key_env + !!b->api_key_file;
        if (sources > 1)
            add_error(st->errors, "%s:%u: backend \"%s\": set only one of api_key_credential, api_key_env, "
                      "api_key_file", st->path, b->line, b->name);
        if (b->type == AIGW_BACKEND_GEMINI && !b->url)
            b->url = strdup("https://generativelanguage.googleapis.com");
        if (b->type == AIGW_BACKEND_OPENAI && !b->url)
            add_error(st->errors, "%s:%u: backend \"%s\": type openai needs url (e.g. http://127.0.0.1:4000)",
                      st->path, b->line, b->name);
        if (b->api_key_credential && (strchr(b->api_key_credential, '/') || !valid_name(b->api_key_credential)))
            add_error(st->errors, "%s:%u: backend \"%s\": api_key_credential must be a credential name, not a path",
                      st->path, b->line, b->name);
    }

    for (size_t i = 0; i < c->n_models; i++) {
        struct aigw_model_conf *m = &c->models[i];
        if (!m->backend_name) {
            add_error(st->errors, "%s:%u: model \"%s\": backend is not set", st->path, m->line, m->name);
            continue;
        }
        for (size_t j = 0; j < c->n_backends; j++)
            if (strcmp(c->backends[j].name, m->backend_name) == 0)
                m->backend = &c->backends[j];
        if (!m->backend)
            add_error(st->errors, "%s:%u: model \"%s\": backend \"%s\" is not defined", st->path, m->line, m->name,
                      m->backend_name);
        if (!m->upstream_model)
            m->upstream_model = strdup(m->name);
        for (size_t f = 0; f < m->n_fallbacks; f++) {
            if (strcmp(m->fallbacks[f], m->name) == 0)
                add_error(st->errors, "%s:%u: model \"%s\": lists itself as a fallback", st->path, m->line, m->name);
            else if (!config_find_model(c, m->fallbacks[f]))
                add_error(st->errors, "%s:%u: model \"%s\": fallback \"%s\" is not a defined model", st->path,
                          m->line, m->name, m->fallbacks[f]);
        }
    }

    if (c->server.default_model && !config_find_model(c, c->server.default_model))
        add_error(st->errors, "%s: [server] default_model \"%s\" is not a defined model", st->path,
                  c->server.default_model);
    if (!!c->server.tls_certificate != !!c->server.tls_key)
        add_error(st->errors, "%s: [server] tls_certificate and tls_key must be set together", st->path);
    if (c->auth.keys_file && c->auth.keys_credential)
        add_error(st->errors, "%s: [auth] set only one of keys_file and keys_credential", st->path);
    if (c->webhook.model && !config_find_model(c, c->webhook.model))
        add_error(st->errors, "%s: [webhook] model \"%s\" is not a defined model", st->path, c->webhook.model);
    for (size_t i = 0; i < c->webhook.n_overrides; i++) {
        const struct aigw_webhook_override *o = &c->webhook.overrides[i];
        if (o->model && !config_find_model(c, o->model))
            add_error(st->errors, "%s: [webhook \"%s\"] model \"%s\" is not a defined model", st->path,
                      o->match, o->model);
    }
    if (c->webhook.header_name && !c->webhook.header_value_credential)
        add_error(st->errors, "%s: [webhook] header_name needs header_value_credential", st->path);
}

static void config_defaults(struct aigw_config *c) {
    c->server.listen = strdup("127.0.0.1:5002");
    c->server.workers = 0;
    c->server.drain_timeout_usec = 30 * USEC_PER_SEC;
    c->server.max_body = 1ULL << 20;
    c->server.request_timeout_usec = 10 * USEC_PER_SEC;
    c->server.idle_timeout_usec = 30 * USEC_PER_SEC;
    c->server.max_messages = 1000;
    c->server.max_json_depth = 32;
    c->server.max_upstream_response = 8ULL << 20;
    c->server.max_sse_event = 1ULL << 20;
    c->log.level = AIGW_LOG_INFO;
    c->log.access_log = true;
    c->auth.required = false;
    c->webhook.max_reply_chars = 640;
    c->webhook.time_budget_usec = 4 * USEC_PER_SEC;
    c->webhook.max_sessions = 10000;
    c->webhook.max_turns = 6;
    c->webhook.session_ttl_usec = 30 * 60 * USEC_PER_SEC;
}

int config_parse_string(const char *text, const char *path, struct aigw_config **ret,
                        struct aigw_config_errors *errors) {
    struct aigw_config *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    atomic_init(&c->refcount, 1);
    c->path = strdup(path ? path : "<string>");
    config_defaults(c);

    struct parse_state st = {
        .c = c,
        .errors = errors,
        .path = c->path,
        .text = text,
        .pos = text,
    };
    size_t errors_before = errors->n;
    bool auth_required_set;

    int r = ini_parse_stream(read_ini_line, &st, on_ini_pair, &st);
    if (r > 0)
        add_error(errors, "%s:%d: syntax error (expected [section], key = value, or a # comment)", c->path, r);
    else if (r < 0)
        add_error(errors, "%s: could not be parsed (out of memory)", c->path);

    auth_required_set = key_seen(&st, "auth", "required");
    if (!auth_required_set && (c->auth.keys_file || c->auth.keys_credential))
        c->auth.required = true; /* keys configured: they are enforced */
    if (auth_required_set && c->auth.required && !c->auth.keys_file && !c->auth.keys_credential)
        add_error(errors, "%s: [auth] required = yes needs keys_file or keys_credential", c->path);

    resolve(&st);

    for (size_t i = 0; i < st.n_seen; i++) {
        free(st.seen[i].section);
        free(st.seen[i].key);
    }
    free(st.seen);
    free(st.cur_section);
    free(st.last_key);

    if (errors->n > errors_before) {
        config_unref(c);
        return -EINVAL;
    }
    *ret = c;
    return 0;
}

/* Reads a whole small file with a size bound; used for the config and for
 * secrets (never on an event loop: at start and on reload only). */
static int read_small_file(const char *path, size_t max, char **ret, size_t *ret_len) {
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return negative_errno();
    struct stat stbuf;
    if (fstat(fd, &stbuf) < 0)
        return negative_errno();
    if (!S_ISREG(stbuf.st_mode))
        return -EINVAL;
    if ((uint64_t)stbuf.st_size > max)
        return -EFBIG;
    _cleanup_free_ char *buf = malloc(max + 1);
    if (!buf)
        return -ENOMEM;
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, max + 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return negative_errno();
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max)
            return -EFBIG;
    }
    buf[len] = 0;
    *ret = TAKE_PTR(buf);
    if (ret_len)
        *ret_len = len;
    return 0;
}

int config_parse_file(const char *path, struct aigw_config **ret, struct aigw_config_errors *errors) {
    _cleanup_free_ char *text = NULL;
    size_t len;
    int r = read_small_file(path, 1 << 20, &text, &len);
    if (r < 0) {
        add_error(errors, "%s: cannot read: %s", path, strerror(-r));
        return r;
    }
    /* the parser would silently stop at the first NUL */
    if (strlen(text) != len) {
        add_error(errors, "%s: contains a NUL byte", path);
        return -EINVAL;
    }
    return config_parse_string(text, path, ret, errors);
}

/* A secret is the file's content minus one trailing newline (what
 * `echo KEY > file` and systemd-creds produce). */
int config_read_secret(const char *path, char **ret) {
    _cleanup_free_ char *buf = NULL;
    size_t len;
    int r = read_small_file(path, MAX_SECRET_BYTES, &buf, &len);
    if (r < 0)
        return r;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = 0;
    if (len == 0 || strlen(buf) != len)
        return -EINVAL;
    *ret = TAKE_PTR(buf);
    return 0;
}

int config_credential_path(const char *id, char **ret) {
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    if (!dir || !*dir)
        return -ENXIO;
    char *p;
    if (asprintf(&p, "%s/%s", dir, id) < 0)
        return -ENOMEM;
    *ret = p;
    return 0;
}

int config_load_secrets(struct aigw_config *c, struct aigw_config_errors *errors) {
    int result = 0;
    for (size_t i = 0; i < c->n_backends; i++) {
        struct aigw_backend_conf *b = &c->backends[i];
        free(b->api_key);
        b->api_key = NULL;
        if (b->api_key_env) {
            const char *v = getenv(b->api_key_env);
            if (v && *v)
                b->api_key = strdup(v);
            continue;
        }
        _cleanup_free_ char *path = NULL;
        const char *what = "api_key_file";
        if (b->api_key_credential) {
            what = "api_key_credential";
            int r = config_credential_path(b->api_key_credential, &path);
            if (r == -ENXIO)
                continue; /* not running with credentials: the model reports it unconfigured */
            if (r < 0)
                return r;
            if (access(path, F_OK) < 0)
                continue;
        } else if (b->api_key_file) {
            path = strdup(b->api_key_file);
            if (!path)
                return -ENOMEM;
        } else
            continue;
        int r = config_read_secret(path, &b->api_key);
        if (r < 0) {
            add_error(errors, "%s: backend \"%s\": %s: cannot read %s: %s", c->path, b->name, what, path,
                      r == -EINVAL ? "empty or binary file" : strerror(-r));
            result = -EINVAL;
        }
    }
    return result;
}

const struct aigw_model_conf *config_find_model(const struct aigw_config *c, const char *name) {
    if (!name)
        return NULL;
    for (size_t i = 0; i < c->n_models; i++)
        if (strcmp(c->models[i].name, name) == 0)
            return &c->models[i];
    return NULL;
}

const struct aigw_backend_conf *config_find_backend(const struct aigw_config *c, const char *name) {
    if (!name)
        return NULL;
    for (size_t i = 0; i < c->n_backends; i++)
        if (strcmp(c->backends[i].name, name) == 0)
            return &c->backends[i];
    return NULL;
}

struct aigw_config *config_ref(struct aigw_config *c) {
    if (c)
        atomic_fetch_add_explicit(&c->refcount, 1, memory_order_relaxed);
    return c;
}

static void free_strv(char **v, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void explicit_free(char *s) {
    if (!s)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

struct aigw_config *config_unref(struct aigw_config *c) {
    if (!c)
        return NULL;
    if (atomic_fetch_sub_explicit(&c->refcount, 1, memory_order_acq_rel) != 1)
        return NULL;
    free(c->path);
    aigw_keys_free(c->keys);
    aigw_netaddr_list_free(c->trusted);
    explicit_free(c->metrics_key);
    explicit_free(c->webhook_basic_auth);
    explicit_free(c->webhook_header_value);
    free(c->server.listen);
    free(c->server.metrics_listen);
    free(c->server.tls_certificate);
    free(c->server.tls_key);
    free(c->server.default_model);
    free(c->server.trusted_proxies);
    for (size_t i = 0; i < c->n_backends; i++) {
        struct aigw_backend_conf *b = &c->backends[i];
        free(b->name);
        free(b->url);
        free(b->api_key_credential);
        free(b->api_key_env);
        free(b->api_key_file);
        explicit_free(b->api_key);
    }
    free(c->backends);
    for (size_t i = 0; i < c->n_models; i++) {
        struct aigw_model_conf *m = &c->models[i];
        free(m->name);
        free(m->backend_name);
        free(m->upstream_model);
        free_strv(m->fallbacks, m->n_fallbacks);
    }
    free(c->models);
    free(c->auth.keys_file);
    free(c->auth.keys_credential);
    free(c->auth.metrics_key_credential);
    free(c->webhook.model);
    free(c->webhook.system_prompt);
    free(c->webhook.fallback_text);
    free(c->webhook.basic_auth_credential);
    free(c->webhook.header_name);
    free(c->webhook.header_value_credential);
    for (size_t i = 0; i < c->webhook.n_overrides; i++) {
        free(c->webhook.overrides[i].match);
        free(c->webhook.overrides[i].model);
        free(c->webhook.overrides[i].system_prompt);
    }
    free(c->webhook.overrides);
    free(c);
    return NULL;
}
