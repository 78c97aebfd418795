/* SPDX-License-Identifier: MIT */
/* /chat and /v1/chat/completions: validate, pick the model, call its
 * backend on the worker's loop, retry and fall back while nothing has been
 * sent, and answer whole or as an SSE stream with backpressure.
 *
 * Lifetime: a chat_call is malloc'd (it may outlive a client that went
 * away) and freed exactly once, when the request is disposed (the client
 * got its answer or left). If the request is disposed while an upstream
 * call or timer runs, they are cancelled first. */

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "aigw/app.h"
#include "aigw/backend-gemini.h"
#include "aigw/backend-mock.h"
#include "aigw/backend-state.h"
#include "aigw/chat-model.h"
#include "aigw/handlers.h"
#include "aigw/http-util.h"
#include "aigw/json-check.h"
#include "aigw/log.h"
#include "aigw/macro.h"
#include "aigw/server.h"
#include "aigw/sse.h"
#include "aigw/upstream.h"

#define MAX_PLAN 17               /* a model and up to 16 fallbacks */
#define ERROR_BODY_MAX (64 * 1024) /* of a non-2xx upstream answer */
#define HIGH_WATER (64 * 1024)     /* client output queued: pause upstream */
#define LOW_WATER (16 * 1024)
#define RETRY_CAP_USEC (10 * USEC_PER_SEC)
#define RETRY_AFTER_MAX_USEC (30 * USEC_PER_SEC)

struct buf {
    char *p;
    size_t len, cap;
};

static int buf_append(struct buf *b, const char *data, size_t len, size_t max) {
    if (b->len + len > max)
        return -EFBIG;
    if (b->len + len + 1 > b->cap) {
        size_t cap = MAX(b->cap * 2, b->len + len + 1);
        cap = MAX(cap, (size_t)4096);
        char *n = realloc(b->p, cap);
        if (!n)
            return -ENOMEM;
        b->p = n;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = 0;
    return 0;
}

static void buf_free(struct buf *b) {
    free(b->p);
    *b = (struct buf){0};
}

struct chat_call {
    struct aigw_request *r; /* NULL once the request is disposed */
    struct aigw_worker *w;
    struct aigw_config *config;
    struct aigw_chat_request creq;
    bool chat_shape;

    const struct aigw_model_conf *plan[MAX_PLAN];
    size_t n_plan, plan_idx;
    unsigned attempt;
    const struct aigw_model_conf *model;
    struct backend_state *bstate;
    bool holds_probe; /* this attempt is the breaker's half-open probe */
    struct aigw_error last_error;
    bool have_error;
    bool first_error_sticky;

    struct upstream_call *call;
    struct upstream_timer *timer;
    uint64_t attempt_start_usec;
    long up_status;
    struct buf body; /* whole answer, or the error body */
    struct aigw_sse_decoder sse;
    bool sse_inited;
    struct aigw_gemini_stream gstream;
    bool gstream_inited;
    bool done_seen;
    int stream_error;           /* set by the event callback */
    struct aigw_error stream_err;
    uint64_t first_token_usec;

    /* client output (streaming) */
    h2o_generator_t gen;
    bool started;
    bool sending;
    bool finishing; /* the final h2o_send is due once pending is out */
    bool finished;
    struct buf pending;
    struct buf inflight;
    bool upstream_paused;

    /* mock */
    char *mock_text;
    unsigned mock_next;
    bool mock_due;

    /* internal callers (the webhook): the answer goes here, not to HTTP */
    chat_result_cb result_cb;
    void *result_ud;
    bool cancelled;

    /* HTTP/1.x clients waiting for an answer: h2o 2.2 does not read their
     * socket meanwhile, so the worker's tick peeks for a close (see
     * chat_watch_clients) */
    h2o_linklist_t watch_link;

    char resp_id[96];
    int64_t created;
    struct aigw_usage usage;
    int busy;
    bool dead;
};

static void release_probe(struct chat_call *c) {
    if (c->holds_probe && c->bstate)
        backend_release_probe(c->bstate);
    c->holds_probe = false;
}

static void unwatch(struct chat_call *c) {
    if (h2o_linklist_is_linked(&c->watch_link))
        h2o_linklist_unlink(&c->watch_link);
}

static void watch(struct chat_call *c) {
    if (c->r && c->r->req->version < 0x200 && !h2o_linklist_is_linked(&c->watch_link))
        h2o_linklist_insert(&c->w->chat_watch, &c->watch_link);
}

static void call_free(struct chat_call *c) {
    unwatch(c);
    release_probe(c);
    upstream_call_cancel(c->call);
    upstream_timer_cancel(c->timer);
    if (c->sse_inited)
        aigw_sse_decoder_done(&c->sse);
    if (c->gstream_inited)
        aigw_gemini_stream_done(&c->gstream);
    aigw_chat_request_free(&c->creq);
    buf_free(&c->body);
    buf_free(&c->pending);
    buf_free(&c->inflight);
    free(c->mock_text);
    config_unref(c->config);
    free(c);
}

/* Called from the request's dispose hook: the client is gone or done. */
void chat_call_detach(struct chat_call *c) {
    c->r = NULL;
    if (c->busy) {
        c->dead = true; /* freed when the outermost callback returns */
        upstream_call_cancel(c->call);
        c->call = NULL;
        return;
    }
    call_free(c);
}

static void enter(struct chat_call *c) {
    c->busy++;
}

/* Returns true when c was freed and must not be touched. */
static bool leave(struct chat_call *c) {
    if (--c->busy == 0 && c->dead) {
        call_free(c);
        return true;
    }
    return false;
}

static struct aigw_chat_limits chat_limits(const struct aigw_config *cfg) {
    struct aigw_chat_limits lim = AIGW_CHAT_LIMITS_DEFAULT;
    lim.max_messages = cfg->server.max_messages;
    return lim;
}

static void render_opts(struct chat_call *c, struct aigw_render_opts *o) {
    *o = (struct aigw_render_opts){
        .id = c->resp_id,
        .created = c->created,
        .model = c->model ? c->model->name : NULL,
        .backend = c->model ? c->model->backend->name : NULL,
        .chat_shape = c->chat_shape,
    };
}

static void add_answer_headers(struct chat_call *c) {
    struct aigw_request *r = c->r;
    char ovh[32];
    uint64_t total = now_monotonic_usec() - r->start_usec;
    uint64_t own = total > r->upstream_usec ? total - r->upstream_usec : 0;
    /* milliseconds with 3 decimals, as integers (no float printf per request) */
    snprintf(ovh, sizeof(ovh), "%" PRIu64 ".%03" PRIu64, own / 1000, own % 1000);
    http_add_header(r, "x-aigw-overhead-ms", ovh);
    if (c->model) {
        http_add_header(r, "x-aigw-model", c->model->name);
        http_add_header(r, "x-aigw-backend", c->model->backend->name);
    }
}

static void note_usage(struct chat_call *c, const struct aigw_usage *u) {
    if (u && u->present)
        c->usage = *u;
}

/* ---- errors and the end of a call ------------------------------------------------------ */

static void deliver(struct chat_call *c, const char *text, const struct aigw_error *e) {
    chat_result_cb cb = c->result_cb;
    c->result_cb = NULL; /* exactly once */
    c->finished = true;
    cb(c->result_ud, text, e, c->model, &c->usage);
}

static void respond_error(struct chat_call *c, const struct aigw_error *e) {
    unwatch(c);
    release_probe(c);
    if (!c->r || c->cancelled)
        return;
    if (c->result_cb) {
        deliver(c, NULL, e);
        return;
    }
    if (c->model) {
        c->r->model = c->model->name;
        c->r->backend = c->model->backend->name;
    }
    handlers_chat_finished(c->r, c->model, &c->usage, false);
    add_answer_headers(c);
    http_send_error(c->r, e);
}

/* ---- streaming output -------------------------------------------------------------------- */

static void flush(struct chat_call *c);

static void on_proceed(h2o_generator_t *gen, h2o_req_t *req) {
    struct chat_call *c = (struct chat_call *)((char *)gen - offsetof(struct chat_call, gen));
    (void)req;
    enter(c);
    c->sending = false;
    c->inflight.len = 0;
    flush(c);
    if (c->upstream_paused && c->pending.len < LOW_WATER && c->call) {
        c->upstream_paused = false;
        upstream_call_resume(c->call); /* may deliver more data at once */
    }
    if (c->mock_text && !c->finishing)
        flush(c);
    leave(c);
}

static void mock_stream_more(struct chat_call *c);

static void on_stop(h2o_generator_t *gen, h2o_req_t *req) {
    struct chat_call *c = (struct chat_call *)((char *)gen - offsetof(struct chat_call, gen));
    (void)req;
    /* the client went away: stop the upstream at once; the request's
     * dispose frees the call */
    upstream_call_cancel(c->call);
    c->call = NULL;
    upstream_timer_cancel(c->timer);
    c->timer = NULL;
    c->finished = true;
    release_probe(c);
    handlers_upstream_outcome(c->r, c->model, -ECANCELED, 0, 0, 0);
}

static void start_stream(struct chat_call *c) {
    struct aigw_request *r = c->r;
    h2o_req_t *req = r->req;
    unwatch(c); /* from now on a failed write tells h2o the client left */
    c->started = true;
    r->status = 200;
    r->streaming = true;
    r->model = c->model->name;
    r->backend = c->model->backend->name;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/event-stream; charset=utf-8"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    /* proxies (nginx, some Traefik setups) buffer SSE without this */
    http_add_header(r, "x-accel-buffering", "no");
    add_answer_headers(c);
    c->gen = (h2o_generator_t){.proceed = on_proceed, .stop = on_stop};
    h2o_start_response(req, &c->gen);
}

/* Send what is pending if h2o is ready for more; the final send once
 * everything is out. */
static void flush(struct chat_call *c) {
    if (!c->r || c->sending || c->finished)
        return;
    if (c->mock_text && c->pending.len == 0 && !c->finishing)
        mock_stream_more(c);
    if (c->pending.len == 0 && !c->finishing)
        return;
    struct buf t = c->inflight;
    c->inflight = c->pending;
    c->pending = t;
    c->pending.len = 0;
    h2o_iovec_t iov = h2o_iovec_init(c->inflight.p, c->inflight.len);
    bool final = c->finishing;
    c->sending = true;
    if (final)
        c->finished = true;
    h2o_send(c->r->req, &iov, c->inflight.len ? 1 : 0,
             final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static int queue_sse(struct chat_call *c, const char *json) {
    int r = buf_append(&c->pending, "data: ", 6, SIZE_MAX);
    if (r >= 0)
        r = buf_append(&c->pending, json, strlen(json), SIZE_MAX);
    if (r >= 0)
        r = buf_append(&c->pending, "\n\n", 2, SIZE_MAX);
    return r;
}

static int queue_chunks(struct chat_call *c, struct aigw_chat_chunk *chunks, size_t n) {
    struct aigw_render_opts o;
    render_opts(c, &o);
    for (size_t i = 0; i < n; i++) {
        if (chunks[i].usage.present) {
            note_usage(c, &chunks[i].usage);
            if (!c->creq.include_usage)
                continue;
        }
        if (!c->first_token_usec && chunks[i].content && *chunks[i].content)
            c->first_token_usec = now_monotonic_usec();
        _cleanup_free_ char *json = aigw_chat_chunk_render(&chunks[i], &o);
        if (!json)
            return -ENOMEM;
        int r = queue_sse(c, json);
        if (r < 0)
            return r;
    }
    return 0;
}

/* End a stream that broke after it began: an SSE error event, no [DONE]. */
static void stream_fail(struct chat_call *c, const struct aigw_error *e) {
    _cleanup_free_ char *json = aigw_error_render(e);
    if (json)
        (void)queue_sse(c, json);
    c->finishing = true;
    c->r->status = 200;
    log_struct(LOG_WARNING, NULL,
               (const struct log_field[]){{LOG_F_REQUEST_ID, c->r->id}, {LOG_F_MODEL, c->model->name},
                                          {LOG_F_BACKEND, c->model->backend->name}},
               3, "stream broke after it began: %s", e->message);
    handlers_chat_finished(c->r, c->model, &c->usage, false);
    flush(c);
}

static void stream_complete(struct chat_call *c) {
    (void)buf_append(&c->pending, "data: [DONE]\n\n", 14, SIZE_MAX);
    c->finishing = true;
    handlers_chat_finished(c->r, c->model, &c->usage, true);
    flush(c);
}

/* ---- the plan: retries and fallbacks -------------------------------------------------- */

static void start_attempt(struct chat_call *c);

static void on_retry_timer(void *userdata) {
    struct chat_call *c = userdata;
    c->timer = NULL;
    if (c->r && c->attempt_start_usec)
        c->r->upstream_usec += now_monotonic_usec() - c->attempt_start_usec;
    c->attempt_start_usec = 0;
    enter(c);
    start_attempt(c);
    leave(c);
}

static uint64_t backoff_usec(struct chat_call *c, unsigned attempt) {
    uint64_t base = c->model->backend->retry_base_usec;
    uint64_t d = base << MIN(attempt, 10u);
    d = MIN(d, RETRY_CAP_USEC);
    /* full jitter over the upper half: spreads retries of many clients */
    uint64_t half = d / 2;
    return half + (half ? rng_next(c->w->rng) % (half + 1) : 0);
}

/* The current attempt failed before anything was sent to the client. */
static void attempt_failed(struct chat_call *c, const struct aigw_error *e, bool retryable,
                           uint64_t retry_after_usec) {
    /* keep the primary model's error when it is the one that says what to
     * fix (a missing key); later fallbacks failing says less */
    if (!(c->have_error && c->plan_idx > 0 && c->first_error_sticky))
        aigw_error_copy(&c->last_error, e);
    if (!c->have_error && e->code && strcmp(e->code, "backend_not_configured") == 0)
        c->first_error_sticky = true;
    c->have_error = true;
    if (!c->r)
        return;
    const struct aigw_backend_conf *b = c->model->backend;

    if (retryable && c->attempt < b->max_retries) {
        uint64_t delay = backoff_usec(c, c->attempt);
        if (retry_after_usec > delay)
            delay = retry_after_usec;
        if (delay <= RETRY_AFTER_MAX_USEC) {
            c->attempt++;
            handlers_retry(c->r, c->model);
            c->attempt_start_usec = now_monotonic_usec();
            if (upstream_timer_start(c->w->upstream, delay, on_retry_timer, c, &c->timer) >= 0)
                return;
        }
    }
    /* a client error would fail the same way on any other model */
    bool client_error = e->status == 400 || e->status == 413 || e->status == 415;
    if (!client_error && c->plan_idx + 1 < c->n_plan) {
        const struct aigw_model_conf *from = c->model;
        c->plan_idx++;
        c->attempt = 0;
        handlers_fallback(c->r, from, c->plan[c->plan_idx]);
        log_struct(LOG_NOTICE, NULL,
                   (const struct log_field[]){{LOG_F_REQUEST_ID, c->r->id}, {LOG_F_MODEL, from->name},
                                              {LOG_F_BACKEND, from->backend->name}},
                   3, "model %s failed (%s); falling back to %s", from->name, e->message,
                   c->plan[c->plan_idx]->name);
        start_attempt(c);
        return;
    }
    respond_error(c, &c->last_error);
}

static void upstream_failure(struct chat_call *c, const struct aigw_error *e, bool retryable,
                             uint64_t retry_after_usec, bool count_for_breaker) {
    if (count_for_breaker && c->bstate) {
        backend_report_failure(c->bstate, e->message, c->model->backend->breaker_threshold,
                               c->model->backend->breaker_cooldown_usec, now_monotonic_usec());
        c->holds_probe = false;
    }
    release_probe(c);
    attempt_failed(c, e, retryable, retry_after_usec);
}

static void map_upstream_error(struct chat_call *c, long status, const char *body, size_t len,
                               struct aigw_error *e) {
    if (c->model->backend->type == AIGW_BACKEND_GEMINI)
        aigw_gemini_map_error(status, body, len, e);
    else
        aigw_openai_map_error(status, body, len, e);
}

static bool status_retryable(long status) {
    return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

static void transport_error(struct chat_call *c, int result, const char *what, struct aigw_error *e) {
    const char *b = c->model->backend->name;
    switch (result) {
    case -ETIMEDOUT:
        aigw_error_set(e, 504, "timeout_error", "upstream_timeout", NULL,
                       "backend %s did not answer in time (%s)", b, what);
        break;
    case -ECONNREFUSED:
    case -EHOSTUNREACH:
        aigw_error_set(e, 503, "api_error", "backend_unavailable", NULL, "backend %s is unreachable (%s)", b,
                       what);
        break;
    case -EFBIG:
        aigw_error_set(e, 502, "api_error", "upstream_too_large", NULL,
                       "backend %s sent more than the configured limit", b);
        break;
    case -EMSGSIZE:
        aigw_error_set(e, 502, "api_error", "upstream_event_too_large", NULL,
                       "backend %s sent a stream event larger than max_sse_event", b);
        break;
    default:
        aigw_error_set(e, 502, "api_error", "upstream_error", NULL, "backend %s failed: %s", b, what);
        break;
    }
}

/* ---- upstream callbacks ------------------------------------------------------------------ */

static void on_up_status(void *userdata, long status) {
    struct chat_call *c = userdata;
    c->up_status = status;
}

static int on_sse_event(const char *event, const char *data, size_t len, void *userdata) {
    struct chat_call *c = userdata;
    struct aigw_chat_chunk *chunks = NULL;
    size_t n = 0;
    int r;
    (void)event;

    if (c->done_seen)
        return 0; /* anything after [DONE] is ignored */
    if (c->model->backend->type == AIGW_BACKEND_GEMINI) {
        r = aigw_gemini_stream_event(&c->gstream, data, len, &chunks, &n, &c->stream_err);
        if (r < 0)
            return c->stream_error = r;
        r = queue_chunks(c, chunks, n);
        aigw_chat_chunks_free(chunks, n);
    } else {
        bool done = false;
        r = aigw_openai_parse_chunk(data, len, &chunks, &n, &done, &c->stream_err);
        if (r < 0)
            return c->stream_error = r;
        c->done_seen = done;
        r = queue_chunks(c, chunks, n);
        aigw_chat_chunks_free(chunks, n);
    }
    if (r < 0) {
        aigw_error_set(&c->stream_err, 500, "server_error", NULL, NULL, "out of memory");
        return c->stream_error = r;
    }
    return 0;
}

static int on_up_data(void *userdata, const char *data, size_t len) {
    struct chat_call *c = userdata;
    if (!c->r)
        return -ECANCELED;
    bool ok = c->up_status >= 200 && c->up_status < 300;
    if (!ok) {
        /* keep the start of an error body; the rest is not needed */
        size_t room = ERROR_BODY_MAX - MIN(c->body.len, (size_t)ERROR_BODY_MAX);
        (void)buf_append(&c->body, data, MIN(len, room), ERROR_BODY_MAX);
        return 0;
    }
    if (!c->creq.stream)
        return buf_append(&c->body, data, len, c->config->server.max_upstream_response);

    int r = aigw_sse_decoder_feed(&c->sse, data, len, on_sse_event, c);
    if (r < 0)
        return r == -EMSGSIZE ? -EMSGSIZE : -EPROTO;
    if (c->pending.len && !c->started)
        start_stream(c);
    flush(c);
    if (c->pending.len >= HIGH_WATER) {
        c->upstream_paused = true;
        return 1;
    }
    return 0;
}

static void finish_success_whole(struct chat_call *c) {
    unwatch(c);
    struct aigw_chat_response resp = {0};
    struct aigw_error e;
    int r;
    _cleanup_free_ char *unmapped = NULL;

    if (c->model->backend->type == AIGW_BACKEND_GEMINI)
        r = aigw_gemini_parse_response(c->body.p ? c->body.p : "", c->body.len, &resp, &unmapped, &e);
    else
        r = aigw_openai_parse_response(c->body.p ? c->body.p : "", c->body.len, &resp, &e);
    if (r < 0) {
        /* garbage is not worth a retry on the same backend, but another
         * model may do better */
        upstream_failure(c, &e, false, 0, true);
        return;
    }
    if (unmapped)
        log_struct(LOG_NOTICE, NULL, (const struct log_field[]){{LOG_F_REQUEST_ID, c->r->id}}, 1,
                   "Gemini finishReason %s has no OpenAI equivalent; reported as stop", unmapped);
    note_usage(c, &resp.usage);
    if (c->result_cb) {
        handlers_chat_finished(c->r, c->model, &c->usage, true);
        deliver(c, resp.n_choices ? resp.choices[0].content : "", NULL);
        aigw_chat_response_free(&resp);
        return;
    }
    struct aigw_render_opts o;
    render_opts(c, &o);
    _cleanup_free_ char *json = aigw_chat_response_render(&resp, &o);
    aigw_chat_response_free(&resp);
    if (!json) {
        aigw_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        respond_error(c, &e);
        return;
    }
    c->r->model = c->model->name;
    c->r->backend = c->model->backend->name;
    handlers_chat_finished(c->r, c->model, &c->usage, true);
    add_answer_headers(c);
    http_send_json(c->r, 200, json, strlen(json));
}

static void finish_success_stream(struct chat_call *c) {
    struct aigw_error e;
    int r = aigw_sse_decoder_finish(&c->sse, on_sse_event, c);
    if (r == 0 && c->stream_error == 0) {
        if (c->model->backend->type == AIGW_BACKEND_GEMINI) {
            struct aigw_chat_chunk *chunks = NULL;
            size_t n = 0;
            r = aigw_gemini_stream_finish(&c->gstream, &chunks, &n, &c->stream_err);
            if (r >= 0) {
                r = queue_chunks(c, chunks, n);
                aigw_chat_chunks_free(chunks, n);
            } else
                c->stream_error = r;
            if (r >= 0 && c->gstream.unmapped_finish[0])
                log_struct(LOG_NOTICE, NULL, (const struct log_field[]){{LOG_F_REQUEST_ID, c->r->id}}, 1,
                           "Gemini finishReason %s has no OpenAI equivalent; reported as stop",
                           c->gstream.unmapped_finish);
        } else if (!c->done_seen) {
            aigw_error_set(&c->stream_err, 502, "api_error", "upstream_stream_cut", NULL,
                           "backend %s ended the stream without [DONE]", c->model->backend->name);
            c->stream_error = -ECONNRESET;
        }
    } else if (r == -EPIPE && c->stream_error == 0) {
        aigw_error_set(&c->stream_err, 502, "api_error", "upstream_stream_cut", NULL,
                       "backend %s cut the stream in the middle of an event", c->model->backend->name);
        c->stream_error = -EPIPE;
    }

    if (c->stream_error) {
        aigw_error_copy(&e, &c->stream_err);
        if (!c->started) {
            /* as for whole answers: garbage is not retried on the same
             * backend; an error the upstream reported in the stream is */
            upstream_failure(c, &e, c->stream_error == -EREMOTEIO && status_retryable(e.status), 0, true);
            return;
        }
        stream_fail(c, &e);
        return;
    }
    if (!c->started)
        start_stream(c);
    stream_complete(c);
}

static void on_up_done(void *userdata, const struct upstream_result *res) {
    struct chat_call *c = userdata;
    struct aigw_error e;
    c->call = NULL;
    enter(c);
    if (c->r)
        c->r->upstream_usec += res->duration_usec;
    c->attempt_start_usec = 0;
    if (!c->r || c->finished || c->cancelled)
        goto out;

    handlers_upstream_outcome(c->r, c->model, res->result, res->http_status, res->duration_usec,
                              res->ttfb_usec);

    if (res->result < 0 && !(res->result == -EPROTO && c->stream_error)) {
        transport_error(c, res->result, res->error, &e);
        if (c->started) {
            stream_fail(c, &e);
            goto out;
        }
        bool retryable = res->result == -ETIMEDOUT || res->result == -ECONNREFUSED ||
                         res->result == -EHOSTUNREACH || res->result == -ECONNRESET;
        upstream_failure(c, &e, retryable, 0, true);
        goto out;
    }
    if (res->http_status < 200 || res->http_status >= 300) {
        map_upstream_error(c, res->http_status, c->body.p ? c->body.p : "", c->body.len, &e);
        /* a 4xx other than 429 says nothing about the backend's health */
        bool health = res->http_status >= 500 || res->http_status == 429 || res->http_status < 200;
        if (!health && c->bstate) {
            backend_report_success(c->bstate, res->duration_usec, now_monotonic_usec());
            c->holds_probe = false;
        }
        upstream_failure(c, &e, status_retryable(res->http_status), res->retry_after_usec, health);
        goto out;
    }
    if (c->bstate) {
        backend_report_success(c->bstate, res->ttfb_usec ? res->ttfb_usec : res->duration_usec,
                               now_monotonic_usec());
        c->holds_probe = false;
    }
    if (c->creq.stream)
        finish_success_stream(c);
    else
        finish_success_whole(c);
out:
    leave(c);
}

static const struct upstream_call_ops chat_upstream_ops = {
    .on_status = on_up_status,
    .on_data = on_up_data,
    .on_done = on_up_done,
};

/* ---- the mock backend --------------------------------------------------------------------- */

static void mock_chunk_due(void *userdata) {
    struct chat_call *c = userdata;
    c->timer = NULL;
    c->mock_due = true;
    enter(c);
    flush(c);
    leave(c);
}

static void mock_stream_more(struct chat_call *c) {
    uint64_t interval = c->model->backend->mock_chunk_interval_usec;
    if (interval && c->mock_next > 0 && !c->mock_due) {
        /* pace the chunks like a model generating tokens */
        if (!c->timer)
            (void)upstream_timer_start(c->w->upstream, interval, mock_chunk_due, c, &c->timer);
        return;
    }
    c->mock_due = false;
    size_t len = strlen(c->mock_text);
    unsigned n = c->model->backend->mock_chunks;
    int64_t choices = c->creq.has_n ? c->creq.n : 1;
    unsigned pieces = len == 0 ? 1 : (unsigned)MIN((size_t)n, len);

    if (c->mock_next < pieces) {
        size_t start, plen;
        mock_piece(c->mock_text, len, n, c->mock_next, &start, &plen);
        for (int64_t i = 0; i < choices; i++) {
            _cleanup_free_ char *piece = strndup(c->mock_text + start, plen);
            struct aigw_chat_chunk ch = {.index = (int)i, .role = c->mock_next == 0, .content = piece};
            if (piece)
                (void)queue_chunks(c, &ch, 1);
        }
        c->mock_next++;
        return;
    }
    for (int64_t i = 0; i < choices; i++) {
        struct aigw_chat_chunk ch = {.index = (int)i, .finish_reason = AIGW_FINISH_STOP};
        (void)queue_chunks(c, &ch, 1);
    }
    struct aigw_chat_chunk u = {.index = -1};
    mock_usage(&c->creq, c->mock_text, &u.usage);
    (void)queue_chunks(c, &u, 1);
    free(c->mock_text);
    c->mock_text = NULL;
    (void)buf_append(&c->pending, "data: [DONE]\n\n", 14, SIZE_MAX);
    c->finishing = true;
    handlers_chat_finished(c->r, c->model, &c->usage, true);
}

static void mock_answer_whole(struct chat_call *c, char *text) {
    unwatch(c);
    int64_t n = c->creq.has_n ? c->creq.n : 1;
    struct aigw_chat_choice choices[8];
    n = MIN(n, (int64_t)ELEMENTSOF(choices));
    for (int64_t i = 0; i < n; i++)
        choices[i] = (struct aigw_chat_choice){.index = (int)i, .content = text, .finish_reason = AIGW_FINISH_STOP};
    struct aigw_chat_response resp = {.choices = choices, .n_choices = (size_t)n};
    mock_usage(&c->creq, text, &resp.usage);
    note_usage(c, &resp.usage);
    if (c->result_cb) {
        handlers_chat_finished(c->r, c->model, &c->usage, true);
        deliver(c, text, NULL);
        free(text);
        return;
    }
    struct aigw_render_opts o;
    render_opts(c, &o);
    _cleanup_free_ char *json = aigw_chat_response_render(&resp, &o);
    free(text);
    c->r->model = c->model->name;
    c->r->backend = c->model->backend->name;
    handlers_chat_finished(c->r, c->model, &c->usage, true);
    add_answer_headers(c);
    if (json)
        http_send_json(c->r, 200, json, strlen(json));
    else
        http_send_error_fmt(c->r, 500, "server_error", NULL, NULL, "out of memory");
}

static void mock_answer(void *userdata) {
    struct chat_call *c = userdata;
    c->timer = NULL;
    enter(c);
    if (!c->r || c->cancelled)
        goto out;
    if (c->attempt_start_usec)
        c->r->upstream_usec += now_monotonic_usec() - c->attempt_start_usec;
    c->attempt_start_usec = 0;
    if (c->bstate) {
        backend_report_success(c->bstate, 0, now_monotonic_usec());
        c->holds_probe = false;
    }

    char *text;
    if (mock_reply(&c->creq, &text) < 0) {
        struct aigw_error e;
        aigw_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        respond_error(c, &e);
        goto out;
    }
    if (c->creq.stream) {
        c->mock_text = text;
        c->mock_next = 0;
        start_stream(c);
        flush(c);
        goto out;
    }
    mock_answer_whole(c, text);
out:
    leave(c);
}

/* ---- starting an attempt ----------------------------------------------------------------- */

static bool backend_configured(const struct aigw_backend_conf *b, const char **ret_hint) {
    if (b->type == AIGW_BACKEND_MOCK || b->api_key)
        return true;
    if (b->type == AIGW_BACKEND_GEMINI) {
        *ret_hint = b->api_key_credential ? "api_key_credential" : b->api_key_env ? "api_key_env"
                                          : b->api_key_file    ? "api_key_file"
                                                               : "api_key_credential";
        return false;
    }
    /* an OpenAI-compatible server may need no key (Ollama, LiteLLM
     * without a master key) unless one was configured and is missing */
    if (b->api_key_env || b->api_key_file) {
        *ret_hint = b->api_key_env ? "api_key_env" : "api_key_file";
        return false;
    }
    return true;
}

static void start_attempt(struct chat_call *c) {
    struct aigw_error e;
    c->model = c->plan[c->plan_idx];
    const struct aigw_backend_conf *b = c->model->backend;
    c->bstate = backend_states_find(app_backend_states(), b->name);
    c->up_status = 0;
    c->done_seen = false;
    c->stream_error = 0;
    buf_free(&c->body);
    if (c->sse_inited)
        aigw_sse_decoder_done(&c->sse);
    aigw_sse_decoder_init(&c->sse, c->config->server.max_sse_event);
    c->sse_inited = true;
    if (c->gstream_inited)
        aigw_gemini_stream_done(&c->gstream);
    aigw_gemini_stream_init(&c->gstream);
    c->gstream_inited = true;

    const char *hint = NULL;
    if (!backend_configured(b, &hint)) {
        aigw_error_set(&e, 503, "api_error", "backend_not_configured", NULL,
                       "model %s: backend %s has no API key; set %s in [backend \"%s\"] of aigw.conf "
                       "(and provide the key)",
                       c->model->name, b->name, hint, b->name);
        attempt_failed(c, &e, false, 0);
        return;
    }
    release_probe(c);
    if (c->bstate && !backend_allow(c->bstate, b->breaker_threshold, now_monotonic_usec(), &c->holds_probe)) {
        aigw_error_set(&e, 503, "api_error", "backend_unavailable", NULL,
                       "backend %s is unavailable after repeated failures (last: %s); retry later", b->name,
                       c->bstate->last_error);
        attempt_failed(c, &e, false, 0);
        return;
    }
    if (c->r) {
        c->r->model = c->model->name;
        c->r->backend = b->name;
    }
    c->attempt_start_usec = now_monotonic_usec();

    if (b->type == AIGW_BACKEND_MOCK) {
        if (upstream_timer_start(c->w->upstream, b->mock_latency_usec, mock_answer, c, &c->timer) < 0) {
            aigw_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
            respond_error(c, &e);
        }
        return;
    }

    _cleanup_free_ char *body = NULL, *url = NULL, *dropped = NULL;
    char auth[4200];
    const char *headers[6];
    size_t nh = 0;
    int r;

    headers[nh++] = "Content-Type: application/json";
    headers[nh++] = c->creq.stream ? "Accept: text/event-stream" : "Accept: application/json";
    char rid[100];
    snprintf(rid, sizeof(rid), "X-Request-Id: %s", c->r->id);
    headers[nh++] = rid;
    if (b->type == AIGW_BACKEND_GEMINI) {
        r = aigw_gemini_build_request(&c->creq, &c->model->defaults, &body, &dropped, &e);
        if (r < 0) {
            respond_error(c, &e);
            return;
        }
        if (dropped)
            log_struct(LOG_DEBUG, NULL, (const struct log_field[]){{LOG_F_REQUEST_ID, c->r->id}}, 1,
                       "fields not sent to Gemini: %s", dropped);
        r = aigw_gemini_url(b->url, c->model->upstream_model, c->creq.stream, &url);
        snprintf(auth, sizeof(auth), "x-goog-api-key: %s", b->api_key);
        headers[nh++] = auth;
    } else {
        r = aigw_openai_build_request(&c->creq, c->model->upstream_model, &c->model->defaults, &body);
        if (r >= 0 && asprintf(&url, "%s/v1/chat/completions", b->url) < 0)
            r = -ENOMEM;
        if (b->api_key) {
            snprintf(auth, sizeof(auth), "Authorization: Bearer %s", b->api_key);
            headers[nh++] = auth;
        }
    }
    headers[nh] = NULL;
    if (r < 0) {
        aigw_error_set(&e, 500, "server_error", NULL, NULL, "cannot build the upstream request");
        respond_error(c, &e);
        return;
    }
    struct upstream_request ureq = {
        .method = "POST",
        .url = url,
        .body = body,
        .body_len = strlen(body),
        .headers = headers,
        .connect_timeout_usec = b->connect_timeout_usec,
        .timeout_usec = b->timeout_usec,
        .idle_timeout_usec = b->idle_timeout_usec,
        .max_response_bytes = c->creq.stream ? 0 : c->config->server.max_upstream_response + ERROR_BODY_MAX,
    };
    r = upstream_call_start(c->w->upstream, &ureq, &chat_upstream_ops, c, &c->call);
    explicit_bzero(auth, sizeof(auth));
    if (r < 0) {
        aigw_error_set(&e, 500, "server_error", NULL, NULL, "cannot start the upstream request");
        respond_error(c, &e);
    }
}

/* ---- request entry ----------------------------------------------------------------------- */

static bool content_type_json(struct aigw_request *r) {
    size_t len;
    const char *ct = http_request_header(r, "content-type", &len);
    if (!ct)
        return true; /* clients that send none mean JSON */
    size_t i = 0;
    while (i < len && ct[i] != ';' && ct[i] != ' ')
        i++;
    if (i == 16 && strncasecmp(ct, "application/json", 16) == 0)
        return true;
    /* application/<something>+json */
    return i > 17 && strncasecmp(ct, "application/", 12) == 0 && strncasecmp(ct + i - 5, "+json", 5) == 0;
}

/* Body checks shared by every JSON endpoint: content type, size, strict
 * JSON (UTF-8, no NUL, no duplicate keys, bounded depth). 0 or an error
 * already sent. */
int handlers_check_json_body(struct aigw_request *r) {
    h2o_req_t *req = r->req;
    if (!content_type_json(r)) {
        http_send_error_fmt(r, 415, "invalid_request_error", "unsupported_media_type", NULL,
                            "Content-Type must be application/json (curl: -H 'Content-Type: application/json')");
        return -EINVAL;
    }
    if (req->entity.len > r->config->server.max_body) {
        http_send_error_fmt(r, 413, "invalid_request_error", "request_too_large", NULL,
                            "request body of %zu bytes exceeds the limit of %" PRIu64 " bytes",
                            req->entity.len, r->config->server.max_body);
        return -EFBIG;
    }
    if (!req->entity.base || req->entity.len == 0) {
        http_send_error_fmt(r, 400, "invalid_request_error", "invalid_json", NULL,
                            "request body is empty; expected a JSON object");
        return -EINVAL;
    }
    struct aigw_json_limits lim = {
        .max_depth = r->config->server.max_json_depth,
        .max_string_bytes = r->config->server.max_body,
        .max_keys_per_object = 4096,
        .max_array_items = 100000,
    };
    struct aigw_json_error jerr;
    if (aigw_json_check(req->entity.base, req->entity.len, &lim, &jerr) < 0) {
        http_send_error_fmt(r, 400, "invalid_request_error", "invalid_json", NULL, "invalid JSON body: %s",
                            jerr.message);
        return -EINVAL;
    }
    return 0;
}

static struct chat_call *call_new(struct aigw_request *r) {
    struct chat_call *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->r = r;
    c->w = r->worker;
    c->config = config_ref(r->config);
    c->created = (int64_t)(now_realtime_usec() / USEC_PER_SEC);
    snprintf(c->resp_id, sizeof(c->resp_id), "chatcmpl-%s", r->id);
    return c;
}

/* The model and its fallbacks, in order; the call now belongs to r. */
static void call_attach(struct chat_call *c, const struct aigw_model_conf *m) {
    c->plan[c->n_plan++] = m;
    for (size_t i = 0; i < m->n_fallbacks && c->n_plan < MAX_PLAN; i++) {
        const struct aigw_model_conf *f = config_find_model(c->config, m->fallbacks[i]);
        if (f)
            c->plan[c->n_plan++] = f;
    }
    c->r->model = m->name;
    c->r->backend = m->backend->name;
    c->r->chat = c;
    watch(c);
}

static void handle_chat_common(struct aigw_request *r, bool chat_shape) {
    struct aigw_error e;
    if (handlers_check_json_body(r) < 0)
        return;
    if (handlers_admit(r) < 0)
        return;

    struct chat_call *c = call_new(r);
    if (!c) {
        http_send_error_fmt(r, 500, "server_error", NULL, NULL, "out of memory");
        return;
    }
    c->chat_shape = chat_shape;

    struct aigw_chat_limits lim = chat_limits(c->config);
    if (aigw_chat_request_parse(r->req->entity.base, r->req->entity.len, &lim, &c->creq, &e) < 0) {
        call_free(c);
        http_send_error(r, &e);
        return;
    }
    const char *name = c->creq.model ? c->creq.model : c->config->server.default_model;
    const struct aigw_model_conf *m = config_find_model(c->config, name);
    if (!m) {
        if (!name)
            aigw_error_set(&e, 400, "invalid_request_error", "missing_required_parameter", "model",
                           "you must provide a model (no [server] default_model is configured)");
        else
            aigw_error_set(&e, 404, "invalid_request_error", "model_not_found", "model",
                           "the model '%.200s' does not exist; GET /v1/models lists the models", name);
        call_free(c);
        http_send_error(r, &e);
        return;
    }
    call_attach(c, m);
    if (handlers_chat_started(r, c) < 0) {
        r->chat = NULL;
        call_free(c);
        return;
    }
    enter(c);
    start_attempt(c);
    leave(c);
}

void handle_chat_completions(struct aigw_request *r) {
    handle_chat_common(r, false);
}

void handle_chat(struct aigw_request *r) {
    handle_chat_common(r, true);
}

void handle_models(struct aigw_request *r) {
    const struct aigw_config *cfg = r->config;
    const char **names = calloc(cfg->n_models + 1, sizeof(char *));
    const char **owners = calloc(cfg->n_models + 1, sizeof(char *));
    _cleanup_free_ char *json = NULL;
    if (names && owners) {
        for (size_t i = 0; i < cfg->n_models; i++) {
            names[i] = cfg->models[i].name;
            owners[i] = cfg->models[i].backend->name;
        }
        json = aigw_models_render(names, cfg->n_models, owners,
                                  (int64_t)(r->worker->server->start_realtime_usec / USEC_PER_SEC));
    }
    free(names);
    free(owners);
    if (!json) {
        http_send_error_fmt(r, 500, "server_error", NULL, NULL, "out of memory");
        return;
    }
    http_send_json(r, 200, json, strlen(json));
}

int chat_call_start_internal(struct aigw_request *r, struct aigw_chat_request *creq,
                             const struct aigw_model_conf *m, chat_result_cb cb, void *userdata,
                             struct chat_call **ret) {
    struct chat_call *c = call_new(r);
    if (!c)
        return -ENOMEM;
    c->creq = *creq;
    memset(creq, 0, sizeof(*creq)); /* taken */
    c->creq.stream = false;         /* internal callers want the whole answer */
    c->result_cb = cb;
    c->result_ud = userdata;
    call_attach(c, m);
    (void)handlers_chat_started(r, c);
    *ret = c;
    enter(c);
    start_attempt(c);
    leave(c);
    return 0;
}

void chat_call_cancel(struct chat_call *c) {
    if (!c)
        return;
    release_probe(c);
    c->cancelled = true;
    c->result_cb = NULL;
    upstream_call_cancel(c->call);
    c->call = NULL;
    upstream_timer_cancel(c->timer);
    c->timer = NULL;
    handlers_upstream_outcome(c->r, c->model, -ECANCELED, 0, 0, 0);
}

/* The client of a waiting HTTP/1.x chat closed its connection: stop the
 * upstream work now (it may run for minutes and costs tokens) and answer,
 * so that h2o notices the dead socket and disposes of the request. */
static void client_gone(struct chat_call *c) {
    unwatch(c);
    upstream_call_cancel(c->call);
    c->call = NULL;
    upstream_timer_cancel(c->timer);
    c->timer = NULL;
    release_probe(c);
    handlers_upstream_outcome(c->r, c->model, -ECANCELED, 0, 0, 0);
    c->cancelled = true;
    c->result_cb = NULL;
    c->finished = true;
    struct aigw_error e;
    aigw_error_set(&e, 499, "invalid_request_error", "client_closed_request", NULL, "client closed the request");
    http_send_error(c->r, &e);
}

void chat_watch_clients(struct aigw_worker *w) {
    h2o_linklist_t *node, *next;
    /* bounded by the chats waiting on this worker; one peek each */
    for (node = w->chat_watch.next; node != &w->chat_watch; node = next) {
        next = node->next;
        struct chat_call *c = H2O_STRUCT_FROM_MEMBER(struct chat_call, watch_link, node);
        if (!c->r || c->busy)
            continue;
        h2o_socket_t *sock = c->r->req->conn->callbacks->get_socket(c->r->req->conn);
        int fd = sock ? h2o_socket_get_fd(sock) : -1;
        if (fd < 0)
            continue;
        char byte;
        ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            client_gone(c);
    }
}
