/* SPDX-License-Identifier: MIT */
/* Admission (API keys, rate limits, concurrency caps) and accounting
 * (metrics, token buckets) around the chat path; /metrics. */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "aigw/app.h"
#include "aigw/backend-state.h"
#include "aigw/handlers.h"
#include "aigw/http-util.h"
#include "aigw/keys.h"
#include "aigw/log.h"
#include "aigw/macro.h"
#include "aigw/metrics.h"
#include "aigw/netaddr.h"
#include "aigw/ratelimit.h"
#include "aigw/secret.h"

static void auth_failed(struct aigw_request *r, enum aigw_auth_failure_reason reason, const char *msg) {
    aigw_metrics_auth_failure(app_metrics(), r->worker->index, reason);
    http_add_header(r, "www-authenticate", "Bearer realm=\"aigw\"");
    http_send_error_fmt(r, 401, "authentication_error", "invalid_api_key", NULL, "%s", msg);
}

/* Who is this client, for the logs and the rate limits: the key's name,
 * or (without keys) its address, through trusted proxies. */
static void client_address(struct aigw_request *r, char *buf, size_t size) {
    struct sockaddr_storage ss;
    h2o_req_t *req = r->req;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    if (len == 0) {
        snprintf(buf, size, "unknown");
        return;
    }
    size_t xlen = 0;
    const char *xff = http_request_header(r, "x-forwarded-for", &xlen);
    if (aigw_client_address((struct sockaddr *)&ss, xff, xlen, r->config->trusted, buf, size) < 0)
        snprintf(buf, size, "unknown");
}

static void add_limit_headers(struct aigw_request *r, const char *kind, const struct aigw_rl_window *w) {
    char name[48], value[32];
    if (w->limit == 0)
        return;
    snprintf(name, sizeof(name), "x-ratelimit-limit-%s", kind);
    snprintf(value, sizeof(value), "%" PRIu64, w->limit);
    http_add_header(r, name, value);
    snprintf(name, sizeof(name), "x-ratelimit-remaining-%s", kind);
    snprintf(value, sizeof(value), "%" PRIu64, w->remaining);
    http_add_header(r, name, value);
    /* OpenAI's format: a duration such as "1s" or "6m0s"; ms precision */
    snprintf(name, sizeof(name), "x-ratelimit-reset-%s", kind);
    uint64_t ms = (w->reset_usec + 999) / 1000;
    if (ms < 1000)
        snprintf(value, sizeof(value), "%" PRIu64 "ms", ms);
    else if (ms < 60000)
        snprintf(value, sizeof(value), "%" PRIu64 ".%03" PRIu64 "s", ms / 1000, ms % 1000);
    else
        snprintf(value, sizeof(value), "%" PRIu64 "m%" PRIu64 "s", ms / 60000, (ms % 60000 + 999) / 1000);
    http_add_header(r, name, value);
}

int handlers_admit(struct aigw_request *r) {
    const struct aigw_config *c = r->config;
    const struct aigw_key *key = NULL;

    if (c->keys) {
        size_t alen = 0, xlen = 0, klen = 0;
        const char *authz = http_request_header(r, "authorization", &alen);
        const char *xkey = http_request_header(r, "x-api-key", &xlen);
        const char *presented = NULL;
        int k = aigw_keys_extract(authz, alen, xkey, xlen, &presented, &klen);
        if (k == -ENOKEY) {
            if (c->auth.required) {
                auth_failed(r, AIGW_AUTH_FAILURE_MISSING,
                            "missing API key: send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'");
                return -EACCES;
            }
        } else if (k < 0) {
            auth_failed(r, AIGW_AUTH_FAILURE_INVALID,
                        "malformed Authorization header: expected 'Bearer KEY'");
            return -EACCES;
        } else {
            key = aigw_keys_lookup(c->keys, presented, klen);
            if (!key) {
                auth_failed(r, AIGW_AUTH_FAILURE_INVALID, "invalid API key");
                return -EACCES;
            }
            snprintf(r->key_name, sizeof(r->key_name), "%s", key->name);
        }
    }

    char addr[AIGW_ADDRSTRLEN];
    if (key)
        snprintf(r->rl_id, sizeof(r->rl_id), "key:%s", key->name);
    else {
        client_address(r, addr, sizeof(addr));
        snprintf(r->rl_id, sizeof(r->rl_id), "addr:%s", addr);
    }
    struct aigw_rl_limits lim = {
        .rpm = key && key->has_rpm ? key->rpm : c->ratelimit.requests_per_minute,
        .tpm = key && key->has_tpm ? key->tpm : c->ratelimit.tokens_per_minute,
        .inflight = key && key->has_inflight ? key->inflight : c->ratelimit.max_inflight_per_key,
        .global_inflight = c->server.max_inflight,
    };
    struct aigw_rl_decision d;
    int k = aigw_ratelimit_acquire(app_ratelimit(), r->rl_id, strlen(r->rl_id), &lim, now_monotonic_usec(), &d);
    if (k == -ENOSPC) {
        http_add_header(r, "retry-after", "1");
        http_send_error_fmt(r, 503, "api_error", "overloaded", NULL,
                            "too many distinct clients are being tracked; retry shortly");
        return -ENOSPC;
    }
    if (k < 0) {
        http_send_error_fmt(r, 500, "server_error", NULL, NULL, "rate limiter failed: %s", strerror(-k));
        return k;
    }
    add_limit_headers(r, "requests", &d.requests);
    add_limit_headers(r, "tokens", &d.tokens);
    if (d.verdict != AIGW_RL_ALLOWED) {
        char ra[24];
        snprintf(ra, sizeof(ra), "%" PRIu64, d.retry_after_sec ? d.retry_after_sec : 1);
        http_add_header(r, "retry-after", ra);
        static const enum aigw_ratelimit_reason reasons[] = {
            [AIGW_RL_REFUSED_REQUESTS] = AIGW_RATELIMIT_REQUESTS,
            [AIGW_RL_REFUSED_TOKENS] = AIGW_RATELIMIT_TOKENS,
            [AIGW_RL_REFUSED_INFLIGHT] = AIGW_RATELIMIT_INFLIGHT,
            [AIGW_RL_REFUSED_GLOBAL_INFLIGHT] = AIGW_RATELIMIT_GLOBAL_INFLIGHT,
        };
        aigw_metrics_ratelimited(app_metrics(), r->worker->index, reasons[d.verdict]);
        switch (d.verdict) {
        case AIGW_RL_REFUSED_REQUESTS:
            http_send_error_fmt(r, 429, "rate_limit_error", "rate_limit_exceeded", NULL,
                                "rate limit reached: %" PRIu64 " requests per minute; retry in %s s",
                                d.requests.limit, ra);
            break;
        case AIGW_RL_REFUSED_TOKENS:
            http_send_error_fmt(r, 429, "rate_limit_error", "rate_limit_exceeded", NULL,
                                "token rate limit reached: %" PRIu64 " tokens per minute; retry in %s s",
                                d.tokens.limit, ra);
            break;
        case AIGW_RL_REFUSED_INFLIGHT:
            http_send_error_fmt(r, 503, "api_error", "too_many_concurrent_requests", NULL,
                                "too many concurrent requests for this client (limit %" PRIu64 ")", lim.inflight);
            break;
        default:
            http_send_error_fmt(r, 503, "api_error", "overloaded", NULL,
                                "the gateway is at its limit of %" PRIu64 " concurrent requests", lim.global_inflight);
            break;
        }
        return -EBUSY;
    }
    r->admitted = true;
    r->tpm = lim.tpm;
    return 0;
}

int handlers_admit_global(struct aigw_request *r) {
    const struct aigw_config *c = r->config;
    struct aigw_rl_limits lim = {.global_inflight = c->server.max_inflight};
    struct aigw_rl_decision d;
    snprintf(r->rl_id, sizeof(r->rl_id), "webhook");
    int k = aigw_ratelimit_acquire(app_ratelimit(), r->rl_id, strlen(r->rl_id), &lim, now_monotonic_usec(), &d);
    if (k < 0)
        return k;
    if (d.verdict != AIGW_RL_ALLOWED)
        return -EBUSY;
    r->admitted = true;
    r->tpm = 0;
    return 0;
}

int handlers_chat_started(struct aigw_request *r, struct chat_call *c) {
    (void)c;
    aigw_metrics_inflight_add(app_metrics(), r->worker->index, 1);
    r->counted_inflight = true;
    return 0;
}

void handlers_chat_finished(struct aigw_request *r, const struct aigw_model_conf *m, const struct aigw_usage *u,
                            bool ok) {
    (void)ok;
    if (!r || !m || !u || !u->present)
        return;
    r->tokens_used = (uint64_t)MAX(u->total_tokens, (int64_t)0);
    /* Debit the tokens (and free the slot) now, before the client has the
     * last byte: its next request must already see them. */
    if (r->admitted) {
        aigw_ratelimit_release(app_ratelimit(), r->rl_id, strlen(r->rl_id), r->tokens_used, r->tpm,
                               now_monotonic_usec());
        r->admitted = false;
    }
    aigw_metrics_tokens(app_metrics(), r->worker->index, m->backend->name, m->name, AIGW_TOKENS_PROMPT,
                        (uint64_t)MAX(u->prompt_tokens, (int64_t)0));
    aigw_metrics_tokens(app_metrics(), r->worker->index, m->backend->name, m->name, AIGW_TOKENS_COMPLETION,
                        (uint64_t)MAX(u->completion_tokens, (int64_t)0));
}

void handlers_retry(struct aigw_request *r, const struct aigw_model_conf *m) {
    aigw_metrics_upstream_retry(app_metrics(), r->worker->index, m->backend->name, m->name);
}

void handlers_fallback(struct aigw_request *r, const struct aigw_model_conf *from,
                       const struct aigw_model_conf *to) {
    aigw_metrics_fallback(app_metrics(), r->worker->index, from->name, to->name);
}

void handlers_upstream_outcome(struct aigw_request *r, const struct aigw_model_conf *m, int result, long status,
                               uint64_t duration_usec, uint64_t ttfb_usec) {
    if (!r || !m)
        return;
    enum aigw_upstream_outcome o;
    if (result == -ECANCELED)
        o = AIGW_UPSTREAM_CANCELLED;
    else if (result == -ETIMEDOUT)
        o = AIGW_UPSTREAM_TIMEOUT;
    else if (result < 0)
        o = AIGW_UPSTREAM_ERROR;
    else if (status >= 500)
        o = AIGW_UPSTREAM_HTTP_5XX;
    else if (status >= 400)
        o = AIGW_UPSTREAM_HTTP_4XX;
    else
        o = AIGW_UPSTREAM_SUCCESS;
    unsigned w = r->worker->index;
    aigw_metrics_upstream_request(app_metrics(), w, m->backend->name, m->name, o, duration_usec);
    if (o == AIGW_UPSTREAM_SUCCESS && ttfb_usec)
        aigw_metrics_time_to_first_token(app_metrics(), w, m->backend->name, m->name, ttfb_usec);
}

void handlers_request_done(struct aigw_request *r, uint64_t duration_usec) {
    unsigned w = r->worker->index;
    struct aigw_metrics *m = app_metrics();
    if (r->cleanup)
        r->cleanup(r->cleanup_data);
    r->cleanup = NULL;
    if (r->chat)
        chat_call_detach(r->chat);
    r->chat = NULL;
    if (r->admitted)
        aigw_ratelimit_release(app_ratelimit(), r->rl_id, strlen(r->rl_id), r->tokens_used, r->tpm,
                               now_monotonic_usec());
    if (r->counted_inflight) {
        aigw_metrics_inflight_add(m, w, -1);
        uint64_t own = duration_usec > r->upstream_usec ? duration_usec - r->upstream_usec : 0;
        aigw_metrics_gateway_overhead(m, w, own);
    }
    aigw_metrics_http_request(m, w, r->route, r->status >= 100 && r->status <= 999 ? (unsigned)r->status : 499,
                              duration_usec);
}

void handle_metrics(struct aigw_request *r) {
    const struct aigw_config *c = r->config;
    struct aigw_server *s = r->worker->server;

    if (!r->on_metrics_listener) {
        /* with a metrics socket, /metrics lives there only */
        for (size_t i = 0; i < s->listeners.n; i++)
            if (s->listeners.sockets[i].role == LISTEN_METRICS) {
                http_send_error_fmt(r, 404, "invalid_request_error", "not_found", NULL,
                                    "/metrics is served on the metrics socket");
                return;
            }
        if (c->metrics_key) {
            size_t alen = 0, klen = 0;
            const char *authz = http_request_header(r, "authorization", &alen);
            const char *presented = NULL;
            if (aigw_keys_extract(authz, alen, NULL, 0, &presented, &klen) < 0 ||
                !aigw_secret_equal(presented, klen, c->metrics_key)) {
                auth_failed(r, presented ? AIGW_AUTH_FAILURE_INVALID : AIGW_AUTH_FAILURE_MISSING,
                            "/metrics needs the metrics key as 'Authorization: Bearer KEY'");
                return;
            }
        }
    }

    struct aigw_metrics_backend_state states[BACKEND_STATE_MAX];
    size_t n = 0;
    for (size_t i = 0; i < c->n_backends && n < ELEMENTSOF(states); i++) {
        const struct aigw_backend_conf *b = &c->backends[i];
        struct backend_state *st = backend_states_find(app_backend_states(), b->name);
        bool up = backend_usable(b, st, now_monotonic_usec());
        states[n++] = (struct aigw_metrics_backend_state){.name = b->name, .up = up};
    }
    char *text = NULL;
    size_t len = 0;
    struct aigw_process_stats proc;
    bool have_proc = app_process_stats(&proc);
    int k = aigw_metrics_render_stats(app_metrics(), states, n, have_proc ? &proc : NULL, &text, &len);
    if (k < 0) {
        http_send_error_fmt(r, 500, "server_error", NULL, NULL, "cannot render metrics: %s", strerror(-k));
        return;
    }
    h2o_req_t *req = r->req;
    r->status = 200;
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/plain; version=0.0.4; charset=utf-8"));
    h2o_send_inline(req, text, len);
    free(text);
}
