/* SPDX-License-Identifier: MIT */
#pragma once

/* Prometheus metrics for the worker-per-thread daemon.
 *
 * Each worker records into its own shard, without locks: every value has a
 * single writer (the worker whose index is passed), stored with relaxed
 * atomics so a concurrent scrape never reads a torn value. A scrape, run on
 * any thread, sums the shards and renders text exposition format 0.0.4.
 *
 * Label values are copied into the recording worker's shard. Each shard holds
 * at most AIGW_METRICS_SERIES_MAX labelled series (all families together);
 * once it is full, new label sets, and values that are longer than
 * AIGW_METRICS_LABEL_VALUE_MAX bytes or not valid UTF-8, are counted in one
 * series per family whose label values are all AIGW_METRICS_OVERFLOW_VALUE.
 *
 * Durations are passed as microseconds and rendered in seconds. Only
 * aigw_process_stats_read() and aigw_metrics_render() do I/O (/proc). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aigw/macro.h"

#define AIGW_METRICS_WORKERS_MAX 1024U
#define AIGW_METRICS_SERIES_MAX 4096U
#define AIGW_METRICS_LABEL_VALUE_MAX 128U
#define AIGW_METRICS_OVERFLOW_VALUE "other"

enum aigw_upstream_outcome {
    AIGW_UPSTREAM_SUCCESS,
    AIGW_UPSTREAM_ERROR, /* connect/TLS/protocol error, unparsable reply */
    AIGW_UPSTREAM_TIMEOUT,
    AIGW_UPSTREAM_HTTP_4XX,
    AIGW_UPSTREAM_HTTP_5XX,
    AIGW_UPSTREAM_CANCELLED, /* client went away */
    _AIGW_UPSTREAM_OUTCOME_MAX,
};

enum aigw_token_kind {
    AIGW_TOKENS_PROMPT,
    AIGW_TOKENS_COMPLETION,
    _AIGW_TOKENS_KIND_MAX,
};

enum aigw_ratelimit_reason {
    AIGW_RATELIMIT_REQUESTS,
    AIGW_RATELIMIT_TOKENS,
    AIGW_RATELIMIT_INFLIGHT,
    AIGW_RATELIMIT_GLOBAL_INFLIGHT,
    _AIGW_RATELIMIT_REASON_MAX,
};

enum aigw_auth_failure_reason {
    AIGW_AUTH_FAILURE_MISSING,
    AIGW_AUTH_FAILURE_INVALID,
    _AIGW_AUTH_FAILURE_REASON_MAX,
};

/* Backend health is owned by the health checker; the scraper passes it in. */
struct aigw_metrics_backend_state {
    const char *name;
    bool up;
};

/* What the process_* families show. */
struct aigw_process_stats {
    uint64_t resident_memory_bytes;
    uint64_t virtual_memory_bytes;
    uint64_t cpu_usec;        /* user + system */
    uint64_t open_fds;
    uint64_t max_fds;         /* soft limit; UINT64_MAX when unlimited */
    uint64_t start_time_usec; /* since the Unix epoch */
};

/* The raw inputs of aigw_process_stats_parse(): file contents as read. */
struct aigw_process_sources {
    const char *stat;      /* /proc/self/stat */
    const char *statm;     /* /proc/self/statm */
    const char *limits;    /* /proc/self/limits */
    const char *proc_stat; /* /proc/stat (for btime) */
    uint64_t n_fds;        /* entries of /proc/self/fd, not counting the one reading it */
    uint64_t page_size;
    uint64_t clk_tck;
};

struct aigw_metrics;

/* n_workers in 1..AIGW_METRICS_WORKERS_MAX; version is rendered as
 * aigw_build_info{version}. Returns NULL with errno EINVAL or ENOMEM. */
struct aigw_metrics *aigw_metrics_new(unsigned n_workers, const char *version);
struct aigw_metrics *aigw_metrics_free(struct aigw_metrics *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct aigw_metrics *, aigw_metrics_free);

/* Recording. Each may only be called by the thread that owns `worker`.
 * Return 0, or -EINVAL for a worker out of range, a NULL string or an enum
 * out of range (nothing is recorded then). A series that cannot be added
 * (see above) is recorded under the overflow series, still returning 0. */

/* aigw_http_requests_total{route,code} and
 * aigw_http_request_duration_seconds{route}; code in 100..999. */
int aigw_metrics_http_request(struct aigw_metrics *m, unsigned worker, const char *route,
                              unsigned code, uint64_t duration_usec);
/* aigw_upstream_requests_total{backend,model,outcome} and
 * aigw_upstream_duration_seconds{backend,model}. */
int aigw_metrics_upstream_request(struct aigw_metrics *m, unsigned worker, const char *backend,
                                  const char *model, enum aigw_upstream_outcome outcome,
                                  uint64_t duration_usec);
int aigw_metrics_time_to_first_token(struct aigw_metrics *m, unsigned worker, const char *backend,
                                     const char *model, uint64_t usec);
int aigw_metrics_gateway_overhead(struct aigw_metrics *m, unsigned worker, uint64_t usec);
int aigw_metrics_tokens(struct aigw_metrics *m, unsigned worker, const char *backend,
                        const char *model, enum aigw_token_kind kind, uint64_t n);
/* The gauge is the sum over workers: a request must be added and removed on
 * the same worker for the sum to return to zero. */
int aigw_metrics_inflight_add(struct aigw_metrics *m, unsigned worker, int64_t delta);
int aigw_metrics_ratelimited(struct aigw_metrics *m, unsigned worker,
                             enum aigw_ratelimit_reason reason);
int aigw_metrics_auth_failure(struct aigw_metrics *m, unsigned worker,
                              enum aigw_auth_failure_reason reason);
int aigw_metrics_upstream_retry(struct aigw_metrics *m, unsigned worker, const char *backend,
                                const char *model);
int aigw_metrics_fallback(struct aigw_metrics *m, unsigned worker, const char *from_model,
                          const char *to_model);
int aigw_metrics_webhook_request(struct aigw_metrics *m, unsigned worker, const char *kind,
                                 const char *outcome);
int aigw_metrics_webhook_fallback(struct aigw_metrics *m, unsigned worker);
int aigw_metrics_webhook_timeout(struct aigw_metrics *m, unsigned worker);

/* Rendering; safe while workers record. ret_text is NUL-terminated, owned by
 * the caller; ret_len excludes the NUL. backends may be NULL when n_backends
 * is 0; a NULL name, one that is not valid UTF-8 or longer than
 * AIGW_METRICS_LABEL_VALUE_MAX, or a repeated name gives -EINVAL.
 *
 * _render_stats() is pure: proc NULL omits the process_* families.
 * _render() reads /proc itself and omits them when that fails. */
int aigw_metrics_render_stats(struct aigw_metrics *m, const struct aigw_metrics_backend_state *backends,
                              size_t n_backends, const struct aigw_process_stats *proc,
                              char **ret_text, size_t *ret_len);
int aigw_metrics_render(struct aigw_metrics *m, const struct aigw_metrics_backend_state *backends,
                        size_t n_backends, char **ret_text, size_t *ret_len);

/* -EBADMSG when a source is malformed or lacks a field, -ERANGE on overflow,
 * -EINVAL for a NULL source, a zero page_size or a clk_tck not in 1..10^6. */
int aigw_process_stats_parse(const struct aigw_process_sources *src, struct aigw_process_stats *ret);
/* Reads /proc; returns the negative errno of the first failure. Where
 * /proc/stat is hidden (systemd's ProcSubset=pid) start_time_usec is 0. */
int aigw_process_stats_read(struct aigw_process_stats *ret);
