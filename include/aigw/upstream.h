/* SPDX-License-Identifier: MIT */
#pragma once

/* The only owner of libcurl: one CURLM per worker, driven from the
 * worker's h2o loop (a private epoll fd and a timerfd, wrapped as one h2o
 * socket), so no upstream call ever blocks the loop or needs a thread. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aigw_worker;
struct aigw_config;
struct aigw_upstream;
struct upstream_call;

struct upstream_result {
    /* 0 (http_status tells the rest) or a negative errno: -ETIMEDOUT
     * (whole request or idle), -ECONNREFUSED and -EHOSTUNREACH (connect
     * failed), -EPROTO (garbage), -ECONNRESET (cut), -EFBIG (response over
     * max_response_bytes) or what on_data returned. */
    int result;
    long http_status;
    const char *error;         /* curl's words, for logs */
    uint64_t retry_after_usec; /* from a Retry-After header, 0 if none */
    uint64_t duration_usec;
    uint64_t ttfb_usec;
};

struct upstream_call_ops {
    /* Response status and headers are complete. */
    void (*on_status)(void *userdata, long http_status);
    /* Bytes of the response body. Return 0 to continue, 1 to pause the
     * transfer (backpressure; resume with upstream_call_resume), or a
     * negative errno to abort it (on_done then reports that error). */
    int (*on_data)(void *userdata, const char *buf, size_t len);
    /* The call ended. Never called after upstream_call_cancel. */
    void (*on_done)(void *userdata, const struct upstream_result *res);
};

struct upstream_request {
    const char *method; /* "GET" or "POST" */
    const char *url;
    const char *body; /* copied */
    size_t body_len;
    const char *const *headers; /* "Name: value" lines, NULL-terminated; copied */
    uint64_t connect_timeout_usec;
    uint64_t timeout_usec;
    uint64_t idle_timeout_usec; /* longest gap between response bytes */
    uint64_t max_response_bytes; /* 0: unlimited (on_data bounds it) */
};

int upstream_new(struct aigw_worker *w, struct aigw_upstream **ret);
void upstream_free(struct aigw_upstream *u);
void upstream_config_changed(struct aigw_upstream *u, struct aigw_config *c);
size_t upstream_active_calls(const struct aigw_upstream *u);

int upstream_call_start(struct aigw_upstream *u, const struct upstream_request *req,
                        const struct upstream_call_ops *ops, void *userdata, struct upstream_call **ret);
/* Abort: the connection is closed at once, no callback follows. */
void upstream_call_cancel(struct upstream_call *c);
void upstream_call_resume(struct upstream_call *c);
/* Microseconds from start to the first body byte, 0 if none yet. */
uint64_t upstream_call_ttfb_usec(const struct upstream_call *c);

/* A one-shot timer on the worker's loop with any delay (h2o's timeouts
 * have one fixed duration per queue); used for retry backoff, the mock
 * backend's latency and the webhook's time budget. */
struct upstream_timer;
int upstream_timer_start(struct aigw_upstream *u, uint64_t delay_usec, void (*cb)(void *userdata),
                         void *userdata, struct upstream_timer **ret);
void upstream_timer_cancel(struct upstream_timer *t);
