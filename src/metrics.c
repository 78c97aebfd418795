/* SPDX-License-Identifier: MIT */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aigw/macro.h"
#include "aigw/metrics.h"
#include "aigw/utf8.h"

/* Bucket upper bounds, in microseconds; +Inf is implicit. LLM calls take
 * from tens of milliseconds (a cached short reply) to minutes (long
 * generations), so the request-level set spans 5 ms..300 s. */
static const uint64_t llm_buckets_usec[] = {
    5000,     10000,    25000,    50000,    100000,    250000,    500000,    1000000,  2500000,
    5000000,  10000000, 20000000, 30000000, 60000000, 120000000, 180000000, 300000000,
};

/* What the gateway adds on top of the upstream: parsing, routing, auth. */
static const uint64_t overhead_buckets_usec[] = {
    10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
};

struct bucket_set {
    const uint64_t *le_usec;
    size_t n;
};

static const struct bucket_set llm_buckets = {llm_buckets_usec, ELEMENTSOF(llm_buckets_usec)};
static const struct bucket_set overhead_buckets = {overhead_buckets_usec,
                                                   ELEMENTSOF(overhead_buckets_usec)};

/* Histogram value slots: one per finite bucket (not cumulative), one for
 * +Inf, then the sum. The count is the sum of the buckets, so a scrape
 * always renders a _count equal to the +Inf bucket. */
#define HIST_SLOTS(n) ((n) + 2)
#define MAX_SLOTS HIST_SLOTS(ELEMENTSOF(llm_buckets_usec))
#define OVERHEAD_SLOTS HIST_SLOTS(ELEMENTSOF(overhead_buckets_usec))
#define MAX_LABELS 3

enum family_type {
    TYPE_COUNTER,
    TYPE_GAUGE,
    TYPE_HISTOGRAM,
};

/* Rendering order is the order of this enum. */
enum family {
    F_HTTP_REQUESTS,
    F_HTTP_DURATION,
    F_UPSTREAM_REQUESTS,
    F_UPSTREAM_DURATION,
    F_TTFT,
    F_OVERHEAD,
    F_TOKENS,
    F_INFLIGHT,
    F_RATELIMITED,
    F_AUTH_FAILURES,
    F_BACKEND_UP,
    F_UPSTREAM_RETRIES,
    F_FALLBACKS,
    F_WEBHOOK_REQUESTS,
    F_WEBHOOK_FALLBACKS,
    F_WEBHOOK_TIMEOUTS,
    F_BUILD_INFO,
    _F_MAX,
};

struct family_desc {
    const char *name;
    const char *help;
    enum family_type type;
    bool dynamic; /* label values chosen at run time: lives in the series table */
    unsigned n_labels;
    const char *labels[MAX_LABELS];
    const struct bucket_set *buckets;
};

static const struct family_desc families[_F_MAX] = {
    [F_HTTP_REQUESTS] = {"aigw_http_requests_total", "HTTP requests answered, by route and status code.",
                         TYPE_COUNTER, true, 2, {"route", "code"}, NULL},
    [F_HTTP_DURATION] = {"aigw_http_request_duration_seconds",
                         "Time from request received to response complete.", TYPE_HISTOGRAM, true, 1,
                         {"route"}, &llm_buckets},
    [F_UPSTREAM_REQUESTS] = {"aigw_upstream_requests_total", "Upstream attempts, by outcome.",
                             TYPE_COUNTER, true, 3, {"backend", "model", "outcome"}, NULL},
    [F_UPSTREAM_DURATION] = {"aigw_upstream_duration_seconds",
                             "Time from upstream request sent to upstream response complete.",
                             TYPE_HISTOGRAM, true, 2, {"backend", "model"}, &llm_buckets},
    [F_TTFT] = {"aigw_time_to_first_token_seconds",
                "Time from upstream request sent to first streamed token.", TYPE_HISTOGRAM, true, 2,
                {"backend", "model"}, &llm_buckets},
    [F_OVERHEAD] = {"aigw_gateway_overhead_seconds",
                    "Time spent in the gateway itself, excluding waiting for the upstream.",
                    TYPE_HISTOGRAM, false, 0, {NULL}, &overhead_buckets},
    [F_TOKENS] = {"aigw_tokens_total", "Tokens reported by upstreams, by kind.", TYPE_COUNTER, true, 3,
                  {"backend", "model", "kind"}, NULL},
    [F_INFLIGHT] = {"aigw_inflight_requests", "Requests being processed.", TYPE_GAUGE, false, 0,
                    {NULL}, NULL},
    [F_RATELIMITED] = {"aigw_ratelimited_total", "Requests rejected by rate limiting, by reason.",
                       TYPE_COUNTER, false, 1, {"reason"}, NULL},
    [F_AUTH_FAILURES] = {"aigw_auth_failures_total", "Requests rejected by authentication, by reason.",
                         TYPE_COUNTER, false, 1, {"reason"}, NULL},
    [F_BACKEND_UP] = {"aigw_backend_up", "Whether the backend passes its health checks (1) or not (0).",
                      TYPE_GAUGE, false, 1, {"backend"}, NULL},
    [F_UPSTREAM_RETRIES] = {"aigw_upstream_retries_total", "Upstream attempts that were retries.",
                            TYPE_COUNTER, true, 2, {"backend", "model"}, NULL},
    [F_FALLBACKS] = {"aigw_fallbacks_total", "Requests moved from one model to its fallback.",
                     TYPE_COUNTER, true, 2, {"from_model", "to_model"}, NULL},
    [F_WEBHOOK_REQUESTS] = {"aigw_webhook_requests_total", "Webhook requests, by kind and outcome.",
                            TYPE_COUNTER, true, 2, {"kind", "outcome"}, NULL},
    [F_WEBHOOK_FALLBACKS] = {"aigw_webhook_fallbacks_total",
                             "Webhook requests answered with the fallback reply.", TYPE_COUNTER, false,
                             0, {NULL}, NULL},
    [F_WEBHOOK_TIMEOUTS] = {"aigw_webhook_timeouts_total",
                            "Webhook requests whose model call exceeded the webhook deadline.",
                            TYPE_COUNTER, false, 0, {NULL}, NULL},
    [F_BUILD_INFO] = {"aigw_build_info", "Build information; always 1.", TYPE_GAUGE, false, 1,
                      {"version"}, NULL},
};

static const char *const outcome_names[_AIGW_UPSTREAM_OUTCOME_MAX] = {
    [AIGW_UPSTREAM_SUCCESS] = "success",   [AIGW_UPSTREAM_ERROR] = "error",
    [AIGW_UPSTREAM_TIMEOUT] = "timeout",   [AIGW_UPSTREAM_HTTP_4XX] = "http_4xx",
    [AIGW_UPSTREAM_HTTP_5XX] = "http_5xx", [AIGW_UPSTREAM_CANCELLED] = "cancelled",
};

static const char *const token_kind_names[_AIGW_TOKENS_KIND_MAX] = {
    [AIGW_TOKENS_PROMPT] = "prompt",
    [AIGW_TOKENS_COMPLETION] = "completion",
};

static const char *const ratelimit_reason_names[_AIGW_RATELIMIT_REASON_MAX] = {
    [AIGW_RATELIMIT_REQUESTS] = "requests",
    [AIGW_RATELIMIT_TOKENS] = "tokens",
    [AIGW_RATELIMIT_INFLIGHT] = "inflight",
    [AIGW_RATELIMIT_GLOBAL_INFLIGHT] = "global_inflight",
};
/* Rendered sorted by label value. */
static const enum aigw_ratelimit_reason ratelimit_render_order[] = {
    AIGW_RATELIMIT_GLOBAL_INFLIGHT,
    AIGW_RATELIMIT_INFLIGHT,
    AIGW_RATELIMIT_REQUESTS,
    AIGW_RATELIMIT_TOKENS,
};

static const char *const auth_reason_names[_AIGW_AUTH_FAILURE_REASON_MAX] = {
    [AIGW_AUTH_FAILURE_MISSING] = "missing",
    [AIGW_AUTH_FAILURE_INVALID] = "invalid",
};
static const enum aigw_auth_failure_reason auth_render_order[] = {
    AIGW_AUTH_FAILURE_INVALID,
    AIGW_AUTH_FAILURE_MISSING,
};

static const char *const overflow_values[MAX_LABELS] = {
    AIGW_METRICS_OVERFLOW_VALUE,
    AIGW_METRICS_OVERFLOW_VALUE,
    AIGW_METRICS_OVERFLOW_VALUE,
};

/* Twice the capacity keeps linear probes short. */
#define INDEX_SIZE (2 * AIGW_METRICS_SERIES_MAX)
#define INDEX_MASK (INDEX_SIZE - 1)
/* Sized for the worst case, so the series count is the only limit;
 * calloc'd, so pages never written stay unbacked. */
#define VALUES_MAX (AIGW_METRICS_SERIES_MAX * MAX_SLOTS)
#define STRINGS_MAX (AIGW_METRICS_SERIES_MAX * MAX_LABELS * (AIGW_METRICS_LABEL_VALUE_MAX + 1))

/* Immutable once published by the release store of shard.n_series. */
struct series {
    const char *values[MAX_LABELS]; /* into shard.strings */
    uint64_t hash;
    uint32_t value_off; /* into shard.values */
    uint8_t len[MAX_LABELS];
    uint8_t family;
};

_Static_assert(AIGW_METRICS_SERIES_MAX < UINT16_MAX, "shard.index holds series index + 1");
_Static_assert((INDEX_SIZE & INDEX_MASK) == 0, "INDEX_SIZE must be a power of two");
_Static_assert(AIGW_METRICS_LABEL_VALUE_MAX <= UINT8_MAX, "series.len is a uint8_t");
_Static_assert(_F_MAX <= UINT8_MAX, "series.family is a uint8_t");

struct shard {
    /* Shared with the scraper. */
    _Atomic uint32_t n_series;
    _Atomic bool overflow_used[_F_MAX];
    _Atomic uint64_t overflow[_F_MAX][MAX_SLOTS];
    _Atomic int64_t inflight;
    _Atomic uint64_t overhead[OVERHEAD_SLOTS];
    _Atomic uint64_t ratelimited[_AIGW_RATELIMIT_REASON_MAX];
    _Atomic uint64_t auth_failures[_AIGW_AUTH_FAILURE_REASON_MAX];
    _Atomic uint64_t webhook_fallbacks;
    _Atomic uint64_t webhook_timeouts;
    struct series series[AIGW_METRICS_SERIES_MAX];
    _Atomic uint64_t values[VALUES_MAX];
    char strings[STRINGS_MAX];

    /* Owner only. */
    uint32_t values_used;
    size_t strings_used;
    uint16_t index[INDEX_SIZE]; /* series index + 1; 0 is empty */
};

struct aigw_metrics {
    unsigned n_workers;
    char *version;
    struct shard *shards[];
};

/* The single writer of a value: no read-modify-write instruction needed,
 * only untorn loads and stores. */
static inline void value_add(_Atomic uint64_t *v, uint64_t d) {
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + d, memory_order_relaxed);
}

static inline uint64_t value_get(const _Atomic uint64_t *v) {
    return atomic_load_explicit((_Atomic uint64_t *)v, memory_order_relaxed);
}

static size_t family_slots(const struct family_desc *d) {
    return d->type == TYPE_HISTOGRAM ? HIST_SLOTS(d->buckets->n) : 1;
}

static void histogram_observe(_Atomic uint64_t *slots, const struct bucket_set *b, uint64_t usec) {
    size_t i = 0;

    while (i < b->n && usec > b->le_usec[i])
        i++;
    value_add(&slots[i], 1);
    value_add(&slots[b->n + 1], usec);
}

/* Prometheus rejects a scrape with a label value that is not UTF-8,
 * overlong forms and surrogates included. */
static bool label_value_ok(const char *s) {
    size_t len = strnlen(s, AIGW_METRICS_LABEL_VALUE_MAX + 1);

    return len <= AIGW_METRICS_LABEL_VALUE_MAX && aigw_utf8_valid(s, len);
}

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

/* Find the slots of (family, values) in the worker's shard, adding the
 * series if it is new and fits, else the family's overflow series. Only the
 * owning worker calls this, so the index needs no synchronisation; the
 * scraper sees a series only after the release store of n_series. */
static _Atomic uint64_t *shard_lookup(struct shard *s, enum family f, const char *const *values) {
    const struct family_desc *d = &families[f];
    size_t len[MAX_LABELS];
    uint64_t h = (FNV_OFFSET ^ (uint64_t)f) * FNV_PRIME;
    size_t j;

    for (unsigned i = 0; i < d->n_labels; i++) {
        len[i] = strnlen(values[i], AIGW_METRICS_LABEL_VALUE_MAX + 1);
        if (len[i] > AIGW_METRICS_LABEL_VALUE_MAX)
            goto overflow;
        for (size_t k = 0; k < len[i]; k++)
            h = (h ^ (unsigned char)values[i][k]) * FNV_PRIME;
        /* Separator, so ("ab","c") and ("a","bc") hash apart. */
        h = (h ^ 0xff) * FNV_PRIME;
    }

    for (j = h & INDEX_MASK; s->index[j] != 0; j = (j + 1) & INDEX_MASK) {
        const struct series *se = &s->series[s->index[j] - 1];
        bool eq = se->hash == h && se->family == f;

        for (unsigned i = 0; eq && i < d->n_labels; i++)
            eq = se->len[i] == len[i] && memcmp(se->values[i], values[i], len[i]) == 0;
        if (eq)
            return &s->values[se->value_off];
    }

    uint32_t n = atomic_load_explicit(&s->n_series, memory_order_relaxed);
    if (n >= AIGW_METRICS_SERIES_MAX)
        goto overflow;
    for (unsigned i = 0; i < d->n_labels; i++)
        if (!aigw_utf8_valid(values[i], len[i]))
            goto overflow;

    struct series *se = &s->series[n];
    *se = (struct series){.hash = h, .family = (uint8_t)f, .value_off = s->values_used};
    for (unsigned i = 0; i < d->n_labels; i++) {
        char *dst = s->strings + s->strings_used;

        memcpy(dst, values[i], len[i]);
        dst[len[i]] = '\0';
        se->values[i] = dst;
        se->len[i] = (uint8_t)len[i];
        s->strings_used += len[i] + 1;
    }
    s->values_used += (uint32_t)family_slots(d);
    s->index[j] = (uint16_t)(n + 1);
    atomic_store_explicit(&s->n_series, n + 1, memory_order_release);
    return &s->values[se->value_off];

overflow:
    atomic_store_explicit(&s->overflow_used[f], true, memory_order_relaxed);
    return s->overflow[f];
}

struct aigw_metrics *aigw_metrics_new(unsigned n_workers, const char *version) {
    struct aigw_metrics *m;

    if (n_workers == 0 || n_workers > AIGW_METRICS_WORKERS_MAX || !version ||
        !label_value_ok(version)) {
        errno = EINVAL;
        return NULL;
    }

    m = calloc(1, sizeof(*m) + n_workers * sizeof(m->shards[0]));
    if (!m)
        goto oom;
    m->n_workers = n_workers;
    m->version = strdup(version);
    if (!m->version)
        goto oom;
    for (unsigned i = 0; i < n_workers; i++) {
        m->shards[i] = calloc(1, sizeof(struct shard));
        if (!m->shards[i])
            goto oom;
    }
    return m;

oom:
    aigw_metrics_free(m);
    errno = ENOMEM;
    return NULL;
}

struct aigw_metrics *aigw_metrics_free(struct aigw_metrics *m) {
    if (!m)
        return NULL;
    for (unsigned i = 0; i < m->n_workers; i++)
        free(m->shards[i]);
    free(m->version);
    free(m);
    return NULL;
}

static struct shard *get_shard(struct aigw_metrics *m, unsigned worker) {
    if (!m || worker >= m->n_workers)
        return NULL;
    return m->shards[worker];
}

int aigw_metrics_http_request(struct aigw_metrics *m, unsigned worker, const char *route,
                              unsigned code, uint64_t duration_usec) {
    struct shard *s = get_shard(m, worker);
    char code_str[4];

    if (!s || !route || code < 100 || code > 999)
        return -EINVAL;
    code_str[0] = (char)('0' + code / 100);
    code_str[1] = (char)('0' + code / 10 % 10);
    code_str[2] = (char)('0' + code % 10);
    code_str[3] = '\0';

    value_add(shard_lookup(s, F_HTTP_REQUESTS, (const char *const[]){route, code_str}), 1);
    histogram_observe(shard_lookup(s, F_HTTP_DURATION, (const char *const[]){route}), &llm_buckets,
                      duration_usec);
    return 0;
}

int aigw_metrics_upstream_request(struct aigw_metrics *m, unsigned worker, const char *backend,
                                  const char *model, enum aigw_upstream_outcome outcome,
                                  uint64_t duration_usec) {
    struct shard *s = get_shard(m, worker);

    if (!s || !backend || !model || (unsigned)outcome >= _AIGW_UPSTREAM_OUTCOME_MAX)
        return -EINVAL;
    value_add(shard_lookup(s, F_UPSTREAM_REQUESTS,
                           (const char *const[]){backend, model, outcome_names[outcome]}),
              1);
    histogram_observe(shard_lookup(s, F_UPSTREAM_DURATION, (const char *const[]){backend, model}),
                      &llm_buckets, duration_usec);
    return 0;
}

int aigw_metrics_time_to_first_token(struct aigw_metrics *m, unsigned worker, const char *backend,
                                     const char *model, uint64_t usec) {
    struct shard *s = get_shard(m, worker);

    if (!s || !backend || !model)
        return -EINVAL;
    histogram_observe(shard_lookup(s, F_TTFT, (const char *const[]){backend, model}), &llm_buckets,
                      usec);
    return 0;
}

int aigw_metrics_gateway_overhead(struct aigw_metrics *m, unsigned worker, uint64_t usec) {
    struct shard *s = get_shard(m, worker);

    if (!s)
        return -EINVAL;
    histogram_observe(s->overhead, &overhead_buckets, usec);
    return 0;
}

int aigw_metrics_tokens(struct aigw_metrics *m, unsigned worker, const char *backend,
                        const char *model, enum aigw_token_kind kind, uint64_t n) {
    struct shard *s = get_shard(m, worker);

    if (!s || !backend || !model || (unsigned)kind >= _AIGW_TOKENS_KIND_MAX)
        return -EINVAL;
    value_add(shard_lookup(s, F_TOKENS, (const char *const[]){backend, model, token_kind_names[kind]}),
              n);
    return 0;
}

int aigw_metrics_inflight_add(struct aigw_metrics *m, unsigned worker, int64_t delta) {
    struct shard *s = get_shard(m, worker);

    if (!s)
        return -EINVAL;
    atomic_store_explicit(&s->inflight,
                          atomic_load_explicit(&s->inflight, memory_order_relaxed) + delta,
                          memory_order_relaxed);
    return 0;
}

int aigw_metrics_ratelimited(struct aigw_metrics *m, unsigned worker,
                             enum aigw_ratelimit_reason reason) {
    struct shard *s = get_shard(m, worker);

    if (!s || (unsigned)reason >= _AIGW_RATELIMIT_REASON_MAX)
        return -EINVAL;
    value_add(&s->ratelimited[reason], 1);
    return 0;
}

int aigw_metrics_auth_failure(struct aigw_metrics *m, unsigned worker,
                              enum aigw_auth_failure_reason reason) {
    struct shard *s = get_shard(m, worker);

    if (!s || (unsigned)reason >= _AIGW_AUTH_FAILURE_REASON_MAX)
        return -EINVAL;
    value_add(&s->auth_failures[reason], 1);
    return 0;
}

int aigw_metrics_upstream_retry(struct aigw_metrics *m, unsigned worker, const char *backend,
                                const char *model) {
    struct shard *s = get_shard(m, worker);

    if (!s || !backend || !model)
        return -EINVAL;
    value_add(shard_lookup(s, F_UPSTREAM_RETRIES, (const char *const[]){backend, model}), 1);
    return 0;
}

int aigw_metrics_fallback(struct aigw_metrics *m, unsigned worker, const char *from_model,
                          const char *to_model) {
    struct shard *s = get_shard(m, worker);

    if (!s || !from_model || !to_model)
        return -EINVAL;
    value_add(shard_lookup(s, F_FALLBACKS, (const char *const[]){from_model, to_model}), 1);
    return 0;
}

int aigw_metrics_webhook_request(struct aigw_metrics *m, unsigned worker, const char *kind,
                                 const char *outcome) {
    struct shard *s = get_shard(m, worker);

    if (!s || !kind || !outcome)
        return -EINVAL;
    value_add(shard_lookup(s, F_WEBHOOK_REQUESTS, (const char *const[]){kind, outcome}), 1);
    return 0;
}

int aigw_metrics_webhook_fallback(struct aigw_metrics *m, unsigned worker) {
    struct shard *s = get_shard(m, worker);

    if (!s)
        return -EINVAL;
    value_add(&s->webhook_fallbacks, 1);
    return 0;
}

int aigw_metrics_webhook_timeout(struct aigw_metrics *m, unsigned worker) {
    struct shard *s = get_shard(m, worker);

    if (!s)
        return -EINVAL;
    value_add(&s->webhook_timeouts, 1);
    return 0;
}

/* ---- rendering ---- */

struct out {
    char *p;
    size_t len, cap;
    bool oom;
};

static void out_add(struct out *o, const char *s, size_t n) {
    if (o->oom)
        return;
    if (n >= o->cap - o->len) {
        size_t cap = o->cap ? o->cap : 4096;
        char *p;

        while (n >= cap - o->len) {
            if (cap > SIZE_MAX / 2) {
                o->oom = true;
                return;
            }
            cap *= 2;
        }
        p = realloc(o->p, cap);
        if (!p) {
            o->oom = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void out_str(struct out *o, const char *s) {
    out_add(o, s, strlen(s));
}

static void out_u64(struct out *o, uint64_t v) {
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%" PRIu64, v);

    out_add(o, buf, (size_t)n);
}

static void out_i64(struct out *o, int64_t v) {
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%" PRId64, v);

    out_add(o, buf, (size_t)n);
}

/* Exact decimal seconds without floating point: 1500000 -> "1.5",
 * 10 -> "0.00001", 2000000 -> "2". */
static void out_seconds(struct out *o, uint64_t usec) {
    char buf[32];
    uint64_t frac = usec % USEC_PER_SEC;
    int n;

    if (frac == 0)
        n = snprintf(buf, sizeof(buf), "%" PRIu64, (uint64_t)(usec / USEC_PER_SEC));
    else {
        n = snprintf(buf, sizeof(buf), "%" PRIu64 ".%06" PRIu64, (uint64_t)(usec / USEC_PER_SEC), frac);
        while (buf[n - 1] == '0')
            n--;
    }
    out_add(o, buf, (size_t)n);
}

static void out_label_value(struct out *o, const char *v) {
    const char *run = v;

    for (const char *p = v; *p; p++) {
        const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;

        if (!esc)
            continue;
        out_add(o, run, (size_t)(p - run));
        out_str(o, esc);
        run = p + 1;
    }
    out_str(o, run);
}

static void out_header(struct out *o, const char *name, const char *help, const char *type) {
    out_str(o, "# HELP ");
    out_str(o, name);
    out_str(o, " ");
    out_str(o, help);
    out_str(o, "\n# TYPE ");
    out_str(o, name);
    out_str(o, " ");
    out_str(o, type);
    out_str(o, "\n");
}

/* name{l1="v1",...,le="x"}; extra_* adds one more label (le) when set. */
static void out_series_name(struct out *o, const char *name, const char *suffix,
                            const struct family_desc *d, const char *const *values,
                            const char *extra_name, uint64_t extra_usec, bool extra_inf) {
    bool any = d->n_labels > 0 || extra_name;

    out_str(o, name);
    out_str(o, suffix);
    if (!any) {
        out_str(o, " ");
        return;
    }
    out_str(o, "{");
    for (unsigned i = 0; i < d->n_labels; i++) {
        if (i > 0)
            out_str(o, ",");
        out_str(o, d->labels[i]);
        out_str(o, "=\"");
        out_label_value(o, values[i]);
        out_str(o, "\"");
    }
    if (extra_name) {
        if (d->n_labels > 0)
            out_str(o, ",");
        out_str(o, extra_name);
        out_str(o, "=\"");
        if (extra_inf)
            out_str(o, "+Inf");
        else
            out_seconds(o, extra_usec);
        out_str(o, "\"");
    }
    out_str(o, "} ");
}

static void out_histogram(struct out *o, const struct family_desc *d, const char *const *values,
                          const uint64_t *slots) {
    const struct bucket_set *b = d->buckets;
    uint64_t cum = 0;

    for (size_t i = 0; i <= b->n; i++) {
        cum += slots[i];
        out_series_name(o, d->name, "_bucket", d, values, "le", i < b->n ? b->le_usec[i] : 0,
                        i == b->n);
        out_u64(o, cum);
        out_str(o, "\n");
    }
    out_series_name(o, d->name, "_sum", d, values, NULL, 0, false);
    out_seconds(o, slots[b->n + 1]);
    out_str(o, "\n");
    out_series_name(o, d->name, "_count", d, values, NULL, 0, false);
    out_u64(o, cum);
    out_str(o, "\n");
}

static void out_series(struct out *o, const struct family_desc *d, const char *const *values,
                       const uint64_t *slots) {
    if (d->type == TYPE_HISTOGRAM)
        out_histogram(o, d, values, slots);
    else {
        out_series_name(o, d->name, "", d, values, NULL, 0, false);
        out_u64(o, slots[0]);
        out_str(o, "\n");
    }
}

static void out_family_header(struct out *o, const struct family_desc *d) {
    out_header(o, d->name, d->help,
               d->type == TYPE_COUNTER ? "counter" : d->type == TYPE_GAUGE ? "gauge" : "histogram");
}

/* One shard's series (or overflow series) as seen by this scrape. */
struct ref {
    const char *const *values;
    const _Atomic uint64_t *slots;
    unsigned family;
};

static int ref_cmp(const void *a, const void *b) {
    const struct ref *x = a, *y = b;

    if (x->family != y->family)
        return x->family < y->family ? -1 : 1;
    for (unsigned i = 0; i < families[x->family].n_labels; i++) {
        int c = strcmp(x->values[i], y->values[i]);
        if (c != 0)
            return c;
    }
    return 0;
}

static bool refs_same_labels(const struct ref *x, const struct ref *y) {
    return ref_cmp(x, y) == 0;
}

static int collect_refs(struct aigw_metrics *m, struct ref **ret_refs, size_t *ret_n) {
    uint32_t counts[AIGW_METRICS_WORKERS_MAX];
    size_t total = 0, n = 0;
    struct ref *refs;

    /* Pair with the owners' release stores: every series below the count
     * read here is fully initialised. Later additions wait for the next scrape. */
    for (unsigned w = 0; w < m->n_workers; w++) {
        counts[w] = atomic_load_explicit(&m->shards[w]->n_series, memory_order_acquire);
        total += counts[w] + _F_MAX;
    }
    refs = calloc(total, sizeof(*refs));
    if (!refs)
        return -ENOMEM;

    for (unsigned w = 0; w < m->n_workers; w++) {
        struct shard *s = m->shards[w];

        for (uint32_t i = 0; i < counts[w]; i++)
            refs[n++] = (struct ref){.values = s->series[i].values,
                                     .slots = &s->values[s->series[i].value_off],
                                     .family = s->series[i].family};
        for (unsigned f = 0; f < _F_MAX; f++)
            if (atomic_load_explicit(&s->overflow_used[f], memory_order_relaxed))
                refs[n++] = (struct ref){.values = overflow_values, .slots = s->overflow[f], .family = f};
    }
    qsort(refs, n, sizeof(*refs), ref_cmp);
    *ret_refs = refs;
    *ret_n = n;
    return 0;
}

static int backend_cmp(const void *a, const void *b) {
    const struct aigw_metrics_backend_state *const *x = a, *const *y = b;

    return strcmp((*x)->name, (*y)->name);
}

/* Sorted pointers into backends; -EINVAL on bad or repeated names, which
 * would render an invalid exposition. */
static int sort_backends(const struct aigw_metrics_backend_state *backends, size_t n,
                         const struct aigw_metrics_backend_state ***ret) {
    _cleanup_free_ const struct aigw_metrics_backend_state **v = NULL;

    if (n > 0 && !backends)
        return -EINVAL;
    v = calloc(n ? n : 1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!backends[i].name || !label_value_ok(backends[i].name))
            return -EINVAL;
        v[i] = &backends[i];
    }
    qsort(v, n, sizeof(*v), backend_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(v[i - 1]->name, v[i]->name) == 0)
            return -EINVAL;
    *ret = TAKE_PTR(v);
    return 0;
}

static void out_unlabelled(struct out *o, const struct family_desc *d, uint64_t v) {
    out_family_header(o, d);
    out_str(o, d->name);
    out_str(o, " ");
    out_u64(o, v);
    out_str(o, "\n");
}

static void out_gauge_line(struct out *o, const char *name, const char *help, const char *type,
                           uint64_t v, bool seconds) {
    out_header(o, name, help, type);
    out_str(o, name);
    out_str(o, " ");
    if (seconds)
        out_seconds(o, v);
    else
        out_u64(o, v);
    out_str(o, "\n");
}

/* Names and help as the Prometheus client libraries export them, so
 * dashboards made for other exporters work unchanged. */
static void out_process(struct out *o, const struct aigw_process_stats *p) {
    out_gauge_line(o, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                   "counter", p->cpu_usec, true);
    out_gauge_line(o, "process_max_fds", "Maximum number of open file descriptors.", "gauge",
                   p->max_fds, false);
    out_gauge_line(o, "process_open_fds", "Number of open file descriptors.", "gauge", p->open_fds,
                   false);
    out_gauge_line(o, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge",
                   p->resident_memory_bytes, false);
    out_gauge_line(o, "process_start_time_seconds",
                   "Start time of the process since unix epoch in seconds.", "gauge",
                   p->start_time_usec, true);
    out_gauge_line(o, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge",
                   p->virtual_memory_bytes, false);
}

int aigw_metrics_render_stats(struct aigw_metrics *m, const struct aigw_metrics_backend_state *backends,
                              size_t n_backends, const struct aigw_process_stats *proc,
                              char **ret_text, size_t *ret_len) {
    _cleanup_free_ struct ref *refs = NULL;
    _cleanup_free_ const struct aigw_metrics_backend_state **sorted = NULL;
    _cleanup_free_ char *text = NULL;
    struct out o = {};
    size_t n_refs = 0, r = 0;
    int k;

    if (!m || !ret_text || !ret_len)
        return -EINVAL;
    k = sort_backends(backends, n_backends, &sorted);
    if (k < 0)
        return k;
    k = collect_refs(m, &refs, &n_refs);
    if (k < 0)
        return k;

    for (unsigned f = 0; f < _F_MAX; f++) {
        const struct family_desc *d = &families[f];
        uint64_t acc[MAX_SLOTS];

        if (d->dynamic) {
            size_t n_slots = family_slots(d);

            out_family_header(&o, d);
            while (r < n_refs && refs[r].family == f) {
                size_t first = r;

                memset(acc, 0, sizeof(acc));
                for (; r < n_refs && refs_same_labels(&refs[first], &refs[r]); r++)
                    for (size_t i = 0; i < n_slots; i++)
                        acc[i] += value_get(&refs[r].slots[i]);
                out_series(&o, d, refs[first].values, acc);
            }
            continue;
        }

        switch (f) {
        case F_OVERHEAD:
            memset(acc, 0, sizeof(acc));
            for (unsigned w = 0; w < m->n_workers; w++)
                for (size_t i = 0; i < OVERHEAD_SLOTS; i++)
                    acc[i] += value_get(&m->shards[w]->overhead[i]);
            out_family_header(&o, d);
            out_histogram(&o, d, NULL, acc);
            break;
        case F_INFLIGHT: {
            int64_t sum = 0;

            for (unsigned w = 0; w < m->n_workers; w++)
                sum += atomic_load_explicit(&m->shards[w]->inflight, memory_order_relaxed);
            out_family_header(&o, d);
            out_str(&o, d->name);
            out_str(&o, " ");
            out_i64(&o, sum);
            out_str(&o, "\n");
            break;
        }
        case F_RATELIMITED:
            out_family_header(&o, d);
            for (size_t i = 0; i < ELEMENTSOF(ratelimit_render_order); i++) {
                enum aigw_ratelimit_reason reason = ratelimit_render_order[i];
                uint64_t sum = 0;

                for (unsigned w = 0; w < m->n_workers; w++)
                    sum += value_get(&m->shards[w]->ratelimited[reason]);
                out_series(&o, d, (const char *const[]){ratelimit_reason_names[reason]}, &sum);
            }
            break;
        case F_AUTH_FAILURES:
            out_family_header(&o, d);
            for (size_t i = 0; i < ELEMENTSOF(auth_render_order); i++) {
                enum aigw_auth_failure_reason reason = auth_render_order[i];
                uint64_t sum = 0;

                for (unsigned w = 0; w < m->n_workers; w++)
                    sum += value_get(&m->shards[w]->auth_failures[reason]);
                out_series(&o, d, (const char *const[]){auth_reason_names[reason]}, &sum);
            }
            break;
        case F_BACKEND_UP:
            out_family_header(&o, d);
            for (size_t i = 0; i < n_backends; i++) {
                uint64_t up = sorted[i]->up;

                out_series(&o, d, (const char *const[]){sorted[i]->name}, &up);
            }
            break;
        case F_WEBHOOK_FALLBACKS:
        case F_WEBHOOK_TIMEOUTS: {
            uint64_t sum = 0;

            for (unsigned w = 0; w < m->n_workers; w++)
                sum += value_get(f == F_WEBHOOK_FALLBACKS ? &m->shards[w]->webhook_fallbacks
                                                          : &m->shards[w]->webhook_timeouts);
            out_unlabelled(&o, d, sum);
            break;
        }
        case F_BUILD_INFO: {
            uint64_t one = 1;

            out_family_header(&o, d);
            out_series(&o, d, (const char *const[]){m->version}, &one);
            break;
        }
        default:
            break;
        }
    }
    if (proc)
        out_process(&o, proc);

    text = o.p;
    if (o.oom)
        return -ENOMEM;
    *ret_text = TAKE_PTR(text);
    *ret_len = o.len;
    return 0;
}

int aigw_metrics_render(struct aigw_metrics *m, const struct aigw_metrics_backend_state *backends,
                        size_t n_backends, char **ret_text, size_t *ret_len) {
    struct aigw_process_stats proc;
    bool have;

    /* Fail on bad arguments before any I/O. */
    if (!m || !ret_text || !ret_len)
        return -EINVAL;
    have = aigw_process_stats_read(&proc) >= 0;

    return aigw_metrics_render_stats(m, backends, n_backends, have ? &proc : NULL, ret_text, ret_len);
}

/* ---- /proc ---- */

static int parse_u64(const char *s, const char **ret_end, uint64_t *ret) {
    char *end;
    unsigned long long v;

    if (*s < '0' || *s > '9')
        return -EBADMSG;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    if (end == s)
        return -EBADMSG;
    *ret_end = end;
    *ret = v;
    return 0;
}

static int mul_u64(uint64_t a, uint64_t b, uint64_t *ret) {
    if (__builtin_mul_overflow(a, b, ret))
        return -ERANGE;
    return 0;
}

/* Fields of /proc/self/stat counted from 1 as in proc(5). */
#define STAT_UTIME 14
#define STAT_STIME 15
#define STAT_STARTTIME 22

static int parse_stat(const char *stat, uint64_t *ret_ticks, uint64_t *ret_start_ticks) {
    /* comm may contain spaces and parentheses: fields resume after the last ')'. */
    const char *p = strrchr(stat, ')');
    uint64_t utime = 0, stime = 0, start = 0;
    unsigned field = 3;

    if (!p || p[1] != ' ')
        return -EBADMSG;
    p += 2;
    for (; field <= STAT_STARTTIME; field++) {
        if (field == STAT_UTIME || field == STAT_STIME || field == STAT_STARTTIME) {
            uint64_t v;
            int r = parse_u64(p, &p, &v);

            if (r < 0)
                return r;
            if (field == STAT_UTIME)
                utime = v;
            else if (field == STAT_STIME)
                stime = v;
            else
                start = v;
        } else {
            while (*p && *p != ' ')
                p++;
        }
        if (field < STAT_STARTTIME) {
            if (*p != ' ')
                return -EBADMSG;
            p++;
        }
    }
    if (__builtin_add_overflow(utime, stime, ret_ticks))
        return -ERANGE;
    *ret_start_ticks = start;
    return 0;
}

static int parse_statm(const char *statm, uint64_t *ret_size, uint64_t *ret_resident) {
    const char *p = statm;
    uint64_t size, resident;
    int r;

    r = parse_u64(p, &p, &size);
    if (r < 0)
        return r;
    if (*p != ' ')
        return -EBADMSG;
    r = parse_u64(p + 1, &p, &resident);
    if (r < 0)
        return r;
    *ret_size = size;
    *ret_resident = resident;
    return 0;
}

/* The value after "KEY" at the start of a line, past its padding. */
static const char *find_line_value(const char *text, const char *key) {
    size_t klen = strlen(key);

    for (const char *line = text; line && *line;) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
            const char *p = line + klen;

            while (*p == ' ')
                p++;
            return p;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return NULL;
}

static int parse_limits(const char *limits, uint64_t *ret) {
    const char *p = find_line_value(limits, "Max open files");

    if (!p)
        return -EBADMSG;
    if (strncmp(p, "unlimited", 9) == 0 && (p[9] == ' ' || p[9] == '\n' || p[9] == '\0')) {
        *ret = UINT64_MAX;
        return 0;
    }
    return parse_u64(p, &p, ret);
}

static int parse_btime(const char *proc_stat, uint64_t *ret) {
    const char *p = find_line_value(proc_stat, "btime");

    if (!p)
        return -EBADMSG;
    return parse_u64(p, &p, ret);
}

int aigw_process_stats_parse(const struct aigw_process_sources *src, struct aigw_process_stats *ret) {
    uint64_t ticks, start_ticks, pages, resident, max_fds, btime, t;
    struct aigw_process_stats st = {.open_fds = 0};
    int r;

    if (!src || !ret || !src->stat || !src->statm || !src->limits || !src->proc_stat ||
        src->page_size == 0 || src->clk_tck == 0 || src->clk_tck > USEC_PER_SEC)
        return -EINVAL;

    r = parse_stat(src->stat, &ticks, &start_ticks);
    if (r < 0)
        return r;
    r = parse_statm(src->statm, &pages, &resident);
    if (r < 0)
        return r;
    r = parse_limits(src->limits, &max_fds);
    if (r < 0)
        return r;
    r = parse_btime(src->proc_stat, &btime);
    if (r < 0)
        return r;

    if (mul_u64(pages, src->page_size, &st.virtual_memory_bytes) < 0 ||
        mul_u64(resident, src->page_size, &st.resident_memory_bytes) < 0)
        return -ERANGE;
    /* Whole seconds and the remainder apart, so ticks * 10^6 cannot overflow
     * where ticks alone does not. */
    if (mul_u64(ticks / src->clk_tck, USEC_PER_SEC, &st.cpu_usec) < 0)
        return -ERANGE;
    st.cpu_usec += ticks % src->clk_tck * USEC_PER_SEC / src->clk_tck;
    if (mul_u64(btime, USEC_PER_SEC, &st.start_time_usec) < 0 ||
        mul_u64(start_ticks / src->clk_tck, USEC_PER_SEC, &t) < 0 ||
        __builtin_add_overflow(st.start_time_usec, t, &st.start_time_usec) ||
        __builtin_add_overflow(st.start_time_usec,
                               start_ticks % src->clk_tck * USEC_PER_SEC / src->clk_tck,
                               &st.start_time_usec))
        return -ERANGE;
    st.open_fds = src->n_fds;
    st.max_fds = max_fds;
    *ret = st;
    return 0;
}

/* /proc/stat grows with the CPU and interrupt count; 4 MiB covers large
 * machines with room to spare. */
#define PROC_FILE_MAX (4U * 1024 * 1024)

static int read_proc_file(const char *path, char **ret) {
    _cleanup_close_ int fd = -1;
    _cleanup_free_ char *buf = NULL;
    size_t len = 0, cap = 4096;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return negative_errno();
    buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        ssize_t n;

        if (len == cap - 1) {
            char *p;

            if (cap >= PROC_FILE_MAX)
                return -EFBIG;
            p = realloc(buf, cap * 2);
            if (!p)
                return -ENOMEM;
            buf = p;
            cap *= 2;
        }
        n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return negative_errno();
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    *ret = TAKE_PTR(buf);
    return 0;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

static int count_fds(uint64_t *ret) {
    _cleanup_(closedirp) DIR *d = opendir("/proc/self/fd");
    uint64_t n = 0;
    int self;

    if (!d)
        return negative_errno();
    self = dirfd(d);
    for (;;) {
        struct dirent *de;
        char *end;
        long fd;

        errno = 0;
        de = readdir(d);
        if (!de) {
            if (errno != 0)
                return negative_errno();
            break;
        }
        if (de->d_name[0] == '.')
            continue;
        /* The descriptor reading the directory is not the daemon's. */
        fd = strtol(de->d_name, &end, 10);
        if (*end == '\0' && fd == self)
            continue;
        n++;
    }
    *ret = n;
    return 0;
}

int aigw_process_stats_read(struct aigw_process_stats *ret) {
    _cleanup_free_ char *stat = NULL, *statm = NULL, *limits = NULL, *proc_stat = NULL;
    struct aigw_process_sources src;
    long page = sysconf(_SC_PAGESIZE), tck = sysconf(_SC_CLK_TCK);
    uint64_t n_fds = 0;
    int r;

    if (!ret)
        return -EINVAL;
    if (page <= 0 || tck <= 0)
        return -EINVAL;
    r = read_proc_file("/proc/self/stat", &stat);
    if (r < 0)
        return r;
    r = read_proc_file("/proc/self/statm", &statm);
    if (r < 0)
        return r;
    r = read_proc_file("/proc/self/limits", &limits);
    if (r < 0)
        return r;
    /* /proc/stat is hidden by ProcSubset=pid (aigw.service uses it): then
     * the start time is left 0 for the caller to fill in */
    bool no_btime = read_proc_file("/proc/stat", &proc_stat) < 0;
    if (no_btime) {
        proc_stat = strdup("btime 0\n");
        if (!proc_stat)
            return -ENOMEM;
    }
    r = count_fds(&n_fds);
    if (r < 0)
        return r;

    src = (struct aigw_process_sources){
        .stat = stat,
        .statm = statm,
        .limits = limits,
        .proc_stat = proc_stat,
        .n_fds = n_fds,
        .page_size = (uint64_t)page,
        .clk_tck = (uint64_t)tck,
    };
    r = aigw_process_stats_parse(&src, ret);
    if (r >= 0 && no_btime)
        ret->start_time_usec = 0;
    return r;
}
