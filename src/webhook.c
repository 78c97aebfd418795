/* SPDX-License-Identifier: MIT */
/* POST /webhook: Dialogflow ES and CX fulfillment answered by a chat model,
 * within a time budget (Dialogflow gives up after 5 s by default: when the
 * model is late, the configured fallback text answers instead), with a
 * few turns of memory per Dialogflow session. */

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "aigw/app.h"
#include "aigw/chat-model.h"
#include "aigw/dialogflow.h"
#include "aigw/handlers.h"
#include "aigw/http-util.h"
#include "aigw/log.h"
#include "aigw/macro.h"
#include "aigw/metrics.h"
#include "aigw/secret.h"
#include "aigw/session-store.h"
#include "aigw/upstream.h"

#define WEBHOOK_TEXT_MAX 4096
#define DEFAULT_PROMPT "You are a helpful voice assistant. Answer briefly, in plain sentences."
#define DEFAULT_FALLBACK "Sorry, I cannot answer that right now."

struct webhook_call {
    struct aigw_request *r; /* NULL once the request is gone */
    struct aigw_df_request df;
    struct chat_call *chat;
    struct upstream_timer *budget;
    const struct aigw_model_conf *model;
    char session_hash[17];
    bool answered;
};

static void webhook_free(void *p) {
    struct webhook_call *w = p;
    upstream_timer_cancel(w->budget);
    aigw_df_request_clear(&w->df);
    free(w);
}

/* Basic credentials "user:password" as Dialogflow sends them. */
static bool basic_auth_ok(struct aigw_request *r, const char *expected) {
    size_t len;
    const char *h = http_request_header(r, "authorization", &len);
    if (!h || len < 6 || strncasecmp(h, "Basic ", 6) != 0)
        return false;
    const char *b64 = h + 6;
    size_t blen = len - 6;
    while (blen && *b64 == ' ')
        b64++, blen--;
    if (blen == 0 || blen > 1024 || blen % 4 != 0)
        return false;
    unsigned char decoded[800];
    int n = EVP_DecodeBlock(decoded, (const unsigned char *)b64, (int)blen);
    if (n < 0)
        return false;
    /* EVP_DecodeBlock counts padding as data */
    while (n > 0 && blen && b64[blen - 1] == '=') {
        n--;
        blen--;
    }
    return aigw_secret_equal((const char *)decoded, (size_t)n, expected);
}

static bool authorized(struct aigw_request *r) {
    const struct aigw_config *c = r->config;
    if (!c->webhook_basic_auth && !c->webhook_header_value)
        return true; /* open, as warned at start */
    if (c->webhook_basic_auth && basic_auth_ok(r, c->webhook_basic_auth))
        return true;
    if (c->webhook_header_value && c->webhook.header_name) {
        size_t len;
        const char *v = http_request_header(r, c->webhook.header_name, &len);
        if (v && aigw_secret_equal(v, len, c->webhook_header_value))
            return true;
    }
    return false;
}

static const struct aigw_webhook_override *find_override(const struct aigw_config *c,
                                                         const struct aigw_df_request *df) {
    for (size_t i = 0; i < c->webhook.n_overrides; i++) {
        const struct aigw_webhook_override *o = &c->webhook.overrides[i];
        if (df->tag && strncmp(o->match, "tag:", 4) == 0 && strcmp(o->match + 4, df->tag) == 0)
            return o;
        if (df->intent && strncmp(o->match, "intent:", 7) == 0 && strcmp(o->match + 7, df->intent) == 0)
            return o;
    }
    return NULL;
}

static void respond(struct webhook_call *w, const char *text, const char *outcome, bool fallback) {
    struct aigw_request *r = w->r;
    const struct aigw_config *c = r->config;
    w->answered = true;
    upstream_timer_cancel(w->budget);
    w->budget = NULL;

    size_t keep = aigw_reply_truncate(text, strlen(text), c->webhook.max_reply_chars);
    _cleanup_free_ char *reply = strndup(text, keep);
    _cleanup_free_ char *json = NULL;
    if (!reply || aigw_dialogflow_render(&w->df, reply, &json) < 0) {
        http_send_error_fmt(r, 500, "server_error", NULL, NULL, "cannot render the webhook response");
        return;
    }
    if (!fallback && w->df.text[0])
        (void)aigw_session_store_append(app_sessions(), w->df.session, w->df.text, reply, now_monotonic_usec());

    unsigned wi = r->worker->index;
    aigw_metrics_webhook_request(app_metrics(), wi, w->df.kind == AIGW_DF_ES ? "es" : "cx", outcome);
    if (fallback)
        aigw_metrics_webhook_fallback(app_metrics(), wi);

    char latency[24];
    snprintf(latency, sizeof(latency), "%" PRIu64, now_monotonic_usec() - r->start_usec);
    const struct log_field fields[] = {
        {LOG_F_REQUEST_ID, r->id},
        {"AIGW_SESSION", w->session_hash},
        {"AIGW_INTENT", w->df.intent},
        {"AIGW_TAG", w->df.tag},
        {LOG_F_MODEL, w->model ? w->model->name : NULL},
        {"AIGW_WEBHOOK_OUTCOME", outcome},
        {"AIGW_FALLBACK", fallback ? "yes" : "no"},
        {LOG_F_DURATION, latency},
    };
    log_struct(LOG_INFO, NULL, fields, ELEMENTSOF(fields), "webhook %s session %s: %s%s",
               w->df.kind == AIGW_DF_ES ? "ES" : "CX", w->session_hash, outcome,
               fallback ? " (fallback text)" : "");
    http_send_json(r, 200, json, strlen(json));
}

static void on_budget(void *userdata) {
    struct webhook_call *w = userdata;
    w->budget = NULL;
    if (w->answered || !w->r)
        return;
    chat_call_cancel(w->chat);
    aigw_metrics_webhook_timeout(app_metrics(), w->r->worker->index);
    const char *fb = w->r->config->webhook.fallback_text ? w->r->config->webhook.fallback_text : DEFAULT_FALLBACK;
    respond(w, fb, "timeout", true);
}

static void on_answer(void *userdata, const char *text, const struct aigw_error *err,
                      const struct aigw_model_conf *model, const struct aigw_usage *usage) {
    struct webhook_call *w = userdata;
    (void)usage;
    if (w->answered || !w->r)
        return;
    if (model)
        w->model = model;
    const char *fb = w->r->config->webhook.fallback_text ? w->r->config->webhook.fallback_text : DEFAULT_FALLBACK;
    if (!text) {
        log_struct(LOG_WARNING, NULL, (const struct log_field[]){{LOG_F_REQUEST_ID, w->r->id}}, 1,
                   "webhook: the model failed (%s); answering with the fallback text", err ? err->message : "?");
        respond(w, fb, "error", true);
        return;
    }
    if (!*text) {
        respond(w, fb, "empty", true);
        return;
    }
    respond(w, text, "ok", false);
}

/* The conversation sent to the model: the system prompt, the session's
 * last turns, then this query. Built as JSON and parsed by the same code
 * as client requests, so it is validated alike. */
static int build_chat(struct aigw_request *r, struct webhook_call *w, const char *prompt_tmpl,
                      struct aigw_chat_request *ret, struct aigw_error *err) {
    _cleanup_free_ char *prompt = NULL;
    struct aigw_turn *turns = NULL;
    size_t n_turns = 0;
    int k = aigw_prompt_expand(prompt_tmpl, &w->df, &prompt);
    if (k < 0)
        return k;
    (void)aigw_session_store_get(app_sessions(), w->df.session, now_monotonic_usec(), &turns, &n_turns);

    cJSON *root = cJSON_CreateObject();
    cJSON *msgs = cJSON_AddArrayToObject(root, "messages");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "system");
    cJSON_AddStringToObject(m, "content", prompt);
    cJSON_AddItemToArray(msgs, m);
    for (size_t i = 0; i < n_turns; i++) {
        m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", turns[i].user);
        cJSON_AddItemToArray(msgs, m);
        m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", turns[i].assistant);
        cJSON_AddItemToArray(msgs, m);
    }
    aigw_turns_free(turns, n_turns);
    char event[256];
    const char *text = w->df.text;
    if (!*text) {
        /* an event or intent-triggered call has no words: say what happened */
        snprintf(event, sizeof(event), "(The conversation reached %s%s without any words from the user.)",
                 w->df.intent ? "intent " : w->df.tag ? "step " : "a step",
                 w->df.intent ? w->df.intent : w->df.tag ? w->df.tag : "");
        text = event;
    }
    m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON_AddStringToObject(m, "content", text);
    cJSON_AddItemToArray(msgs, m);
    char *body = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!body)
        return -ENOMEM;
    k = aigw_chat_request_parse(body, strlen(body), NULL, ret, err);
    free(body);
    (void)r;
    return k;
}

void handle_webhook(struct aigw_request *r) {
    const struct aigw_config *c = r->config;
    char errbuf[256];

    if (!authorized(r)) {
        aigw_metrics_auth_failure(app_metrics(), r->worker->index, AIGW_AUTH_FAILURE_INVALID);
        if (c->webhook_basic_auth)
            http_add_header(r, "www-authenticate", "Basic realm=\"aigw-webhook\"");
        http_send_error_fmt(r, 401, "authentication_error", "invalid_credentials", NULL,
                            "the webhook needs the credentials configured in [webhook]");
        return;
    }
    if (handlers_check_json_body(r) < 0)
        return;
    if (r->req->entity.len > AIGW_DF_RESPONSE_MAX * 4) {
        http_send_error_fmt(r, 413, "invalid_request_error", "request_too_large", NULL,
                            "a Dialogflow webhook request of %zu bytes is larger than any Dialogflow sends",
                            r->req->entity.len);
        return;
    }

    struct webhook_call *w = calloc(1, sizeof(*w));
    if (!w) {
        http_send_error_fmt(r, 500, "server_error", NULL, NULL, "out of memory");
        return;
    }
    w->r = r;
    r->cleanup = webhook_free;
    r->cleanup_data = w;

    if (aigw_dialogflow_parse(r->req->entity.base, r->req->entity.len, WEBHOOK_TEXT_MAX, &w->df, errbuf,
                              sizeof(errbuf)) < 0) {
        http_send_error_fmt(r, 400, "invalid_request_error", "invalid_webhook_request", NULL, "%s", errbuf);
        return;
    }
    aigw_session_hash(w->df.session, w->session_hash);

    const struct aigw_webhook_override *o = find_override(c, &w->df);
    const char *model_name = o && o->model ? o->model : c->webhook.model ? c->webhook.model : c->server.default_model;
    const char *prompt = o && o->system_prompt ? o->system_prompt
                         : c->webhook.system_prompt ? c->webhook.system_prompt
                                                    : DEFAULT_PROMPT;
    w->model = config_find_model(c, model_name);
    if (!w->model) {
        http_send_error_fmt(r, 503, "api_error", "no_model", NULL,
                            "no model for the webhook: set [webhook] model or [server] default_model");
        return;
    }

    /* the gateway-wide concurrency cap holds here too, but Dialogflow is
     * better served by the fallback text than by a 503 */
    if (handlers_admit_global(r) < 0) {
        aigw_metrics_ratelimited(app_metrics(), r->worker->index, AIGW_RATELIMIT_GLOBAL_INFLIGHT);
        respond(w, c->webhook.fallback_text ? c->webhook.fallback_text : DEFAULT_FALLBACK, "overloaded", true);
        return;
    }

    struct aigw_chat_request creq = {0};
    struct aigw_error err;
    if (build_chat(r, w, prompt, &creq, &err) < 0) {
        aigw_chat_request_free(&creq);
        respond(w, c->webhook.fallback_text ? c->webhook.fallback_text : DEFAULT_FALLBACK, "error", true);
        return;
    }
    if (upstream_timer_start(r->worker->upstream, c->webhook.time_budget_usec, on_budget, w, &w->budget) < 0 ||
        chat_call_start_internal(r, &creq, w->model, on_answer, w, &w->chat) < 0) {
        aigw_chat_request_free(&creq);
        if (!w->answered)
            respond(w, c->webhook.fallback_text ? c->webhook.fallback_text : DEFAULT_FALLBACK, "error", true);
    }
}
