/* SPDX-License-Identifier: MIT */
#pragma once

/* Route handlers, and the hooks the chat path calls for admission (API
 * keys, rate limits, concurrency caps) and accounting (metrics, tokens). */

#include <stdbool.h>
#include <stdint.h>

#include "aigw/chat.h"
#include "aigw/config.h"
#include "aigw/server.h"

struct chat_call;

void handle_chat_completions(struct aigw_request *r);
void handle_chat(struct aigw_request *r);
void handle_models(struct aigw_request *r);
void handle_ready(struct aigw_request *r);
void handle_metrics(struct aigw_request *r);
void handle_webhook(struct aigw_request *r);

/* Content type, size and strict JSON; 0, or an error was sent. */
int handlers_check_json_body(struct aigw_request *r);
/* API key and request-rate limit; 0, or an error was sent. */
int handlers_admit(struct aigw_request *r);
/* Only the gateway-wide concurrency cap ([server] max_inflight); for the
 * webhook, whose caller is Dialogflow rather than a keyed client. */
int handlers_admit_global(struct aigw_request *r);
/* Concurrency caps, taken for the life of the request; 0 or error sent. */
int handlers_chat_started(struct aigw_request *r, struct chat_call *c);
/* The answer is complete (ok) or failed; usage feeds the token limits. */
void handlers_chat_finished(struct aigw_request *r, const struct aigw_model_conf *m, const struct aigw_usage *u,
                            bool ok);
void handlers_retry(struct aigw_request *r, const struct aigw_model_conf *m);
void handlers_fallback(struct aigw_request *r, const struct aigw_model_conf *from,
                       const struct aigw_model_conf *to);
void handlers_upstream_outcome(struct aigw_request *r, const struct aigw_model_conf *m, int result, long status,
                               uint64_t duration_usec, uint64_t ttfb_usec);
/* From the request's dispose hook. */
void handlers_request_done(struct aigw_request *r, uint64_t duration_usec);

void chat_call_detach(struct chat_call *c);
/* From the worker's tick: notice HTTP/1.x clients that left while their
 * chat waits for an upstream (h2o 2.2 does not read their sockets then). */
void chat_watch_clients(struct aigw_worker *w);

/* An internal chat (the webhook): the whole answer's first choice, or an
 * error, goes to cb exactly once (text NULL on error), unless cancelled
 * first. The call belongs to r and is freed with it. creq is taken. */
typedef void (*chat_result_cb)(void *userdata, const char *text, const struct aigw_error *err,
                               const struct aigw_model_conf *model, const struct aigw_usage *usage);
int chat_call_start_internal(struct aigw_request *r, struct aigw_chat_request *creq,
                             const struct aigw_model_conf *m, chat_result_cb cb, void *userdata,
                             struct chat_call **ret);
/* Stop the upstream work; no callback follows. */
void chat_call_cancel(struct chat_call *c);

struct backend_state;
/* Configured (key present if needed), breaker closed, not known down. */
bool backend_usable(const struct aigw_backend_conf *b, struct backend_state *st, uint64_t now_usec);
/* Needs an API key it does not have. */
bool backend_unconfigured(const struct aigw_backend_conf *b, const char **ret_setting);
/* Background health probes, run on worker 0's loop. */
void probes_start(struct aigw_worker *w);
void probes_stop(struct aigw_worker *w);
