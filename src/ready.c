/* SPDX-License-Identifier: MIT */
/* /ready and the background health probes. /health is liveness only;
 * /ready says whether the default model can be served right now. */

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "aigw/app.h"
#include "aigw/backend-state.h"
#include "aigw/handlers.h"
#include "aigw/http-util.h"
#include "aigw/log.h"
#include "aigw/macro.h"
#include "aigw/upstream.h"

#define PROBE_TICK_USEC USEC_PER_SEC
#define PROBE_TIMEOUT_USEC (10 * USEC_PER_SEC)

bool backend_unconfigured(const struct aigw_backend_conf *b, const char **ret_setting) {
    if (b->type == AIGW_BACKEND_MOCK || b->api_key)
        return false;
    const char *setting = b->api_key_credential ? "api_key_credential"
                          : b->api_key_env      ? "api_key_env"
                          : b->api_key_file     ? "api_key_file"
                                                : NULL;
    /* OpenAI-compatible servers often need no key (Ollama, a LiteLLM
     * without master key); a configured but missing env or file does */
    bool missing = b->type == AIGW_BACKEND_GEMINI || (b->api_key_env || b->api_key_file);
    if (missing && ret_setting)
        *ret_setting = setting ? setting : "api_key_credential";
    return missing;
}

bool backend_usable(const struct aigw_backend_conf *b, struct backend_state *st, uint64_t now_usec) {
    if (backend_unconfigured(b, NULL))
        return false;
    if (!st)
        return true;
    if (backend_breaker_open(st, now_usec))
        return false;
    return atomic_load(&st->health) != BACKEND_DOWN;
}

static const char *backend_state_word(const struct aigw_backend_conf *b, struct backend_state *st, uint64_t now) {
    if (backend_unconfigured(b, NULL))
        return "unconfigured";
    if (!st)
        return "up";
    if (backend_breaker_open(st, now) || atomic_load(&st->health) == BACKEND_DOWN)
        return "down";
    return "up";
}

void handle_ready(struct aigw_request *r) {
    const struct aigw_config *c = r->config;
    uint64_t now = now_monotonic_usec();
    cJSON *root = cJSON_CreateObject();
    cJSON *backends = cJSON_AddObjectToObject(root, "backends");

    for (size_t i = 0; i < c->n_backends; i++) {
        const struct aigw_backend_conf *b = &c->backends[i];
        struct backend_state *st = backend_states_find(app_backend_states(), b->name);
        cJSON *o = cJSON_AddObjectToObject(backends, b->name);
        cJSON_AddStringToObject(o, "type", backend_type_to_string(b->type));
        cJSON_AddStringToObject(o, "state", backend_state_word(b, st, now));
        const char *setting = NULL;
        if (backend_unconfigured(b, &setting)) {
            char hint[160];
            snprintf(hint, sizeof(hint), "no API key: set %s", setting);
            cJSON_AddStringToObject(o, "last_error", hint);
        } else if (st && st->last_error[0] && atomic_load(&st->health) == BACKEND_DOWN)
            cJSON_AddStringToObject(o, "last_error", st->last_error);
        else
            cJSON_AddNullToObject(o, "last_error");
        uint64_t lat = st ? atomic_load(&st->last_latency_usec) : 0;
        if (st && atomic_load(&st->health) != BACKEND_UNKNOWN)
            cJSON_AddNumberToObject(o, "last_latency_ms", (double)lat / 1000.0);
        else
            cJSON_AddNullToObject(o, "last_latency_ms");
        cJSON_AddBoolToObject(o, "checked", st && atomic_load(&st->health) != BACKEND_UNKNOWN);
    }

    /* ready when the default model, or one of its fallbacks, can answer */
    bool ready = false;
    const struct aigw_model_conf *m = config_find_model(c, c->server.default_model);
    if (m) {
        const struct aigw_model_conf *plan[17] = {m};
        size_t n = 1;
        for (size_t i = 0; i < m->n_fallbacks && n < ELEMENTSOF(plan); i++)
            if ((plan[n] = config_find_model(c, m->fallbacks[i])))
                n++;
        for (size_t i = 0; i < n && !ready; i++)
            ready = backend_usable(plan[i]->backend, backend_states_find(app_backend_states(), plan[i]->backend->name),
                                   now);
    }
    bool draining = atomic_load(&r->worker->server->draining);
    cJSON_AddStringToObject(root, "status", draining ? "draining" : ready ? "ready" : "unavailable");
    if (c->server.default_model)
        cJSON_AddStringToObject(root, "default_model", c->server.default_model);
    else
        cJSON_AddNullToObject(root, "default_model");

    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) {
        http_send_error_fmt(r, 500, "server_error", NULL, NULL, "out of memory");
        return;
    }
    http_send_json(r, ready && !draining ? 200 : 503, json, strlen(json));
    free(json);
}

/* ---- probes ------------------------------------------------------------------------------ */

struct probe {
    struct aigw_worker *w;
    char backend[BACKEND_NAME_MAX + 1];
    unsigned threshold;
    uint64_t cooldown;
};

struct probe_state {
    struct upstream_timer *timer;
    uint64_t next_due[BACKEND_STATE_MAX];
    bool in_flight[BACKEND_STATE_MAX];
};

static struct probe_state probe_state; /* worker 0 only */

static int probe_data(void *userdata, const char *buf, size_t len) {
    (void)userdata;
    (void)buf;
    (void)len;
    return 0; /* the body is not needed */
}

static void probe_done(void *userdata, const struct upstream_result *res) {
    struct probe *p = userdata;
    struct backend_state *st = backend_states_find(app_backend_states(), p->backend);
    size_t idx = st ? (size_t)(st - app_backend_states()->states) : 0;
    if (st) {
        probe_state.in_flight[idx] = false;
        uint64_t now = now_monotonic_usec();
        bool was_down = atomic_load(&st->health) == BACKEND_DOWN;
        if (res->result == 0 && res->http_status >= 200 && res->http_status < 300) {
            backend_report_success(st, res->duration_usec, now);
            if (was_down)
                log_notice("backend %s is up again (probe answered in %llu ms)", p->backend,
                           (unsigned long long)(res->duration_usec / USEC_PER_MSEC));
        } else {
            char err[200];
            if (res->result < 0)
                snprintf(err, sizeof(err), "probe: %s", res->error);
            else
                snprintf(err, sizeof(err), "probe: HTTP %ld", res->http_status);
            backend_report_failure(st, err, p->threshold, p->cooldown, now);
            /* a probe failure marks the backend down even below the breaker's threshold */
            atomic_store(&st->health, BACKEND_DOWN);
            if (!was_down)
                log_warning("backend %s is down: %s", p->backend, err);
        }
    }
    free(p);
}

static const struct upstream_call_ops probe_ops = {.on_data = probe_data, .on_done = probe_done};

static void probe_one(struct aigw_worker *w, const struct aigw_backend_conf *b, struct backend_state *st,
                      size_t idx) {
    char url[2048], auth[4200];
    const char *headers[3] = {NULL};
    if (b->type == AIGW_BACKEND_MOCK) {
        backend_report_success(st, 0, now_monotonic_usec());
        return;
    }
    if (backend_unconfigured(b, NULL))
        return;
    if (b->type == AIGW_BACKEND_GEMINI) {
        snprintf(url, sizeof(url), "%s/v1beta/models?pageSize=1", b->url);
        snprintf(auth, sizeof(auth), "x-goog-api-key: %s", b->api_key);
        headers[0] = auth;
    } else {
        snprintf(url, sizeof(url), "%s/v1/models", b->url);
        if (b->api_key) {
            snprintf(auth, sizeof(auth), "Authorization: Bearer %s", b->api_key);
            headers[0] = auth;
        }
    }
    struct probe *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->w = w;
    snprintf(p->backend, sizeof(p->backend), "%s", b->name);
    p->threshold = b->breaker_threshold;
    p->cooldown = b->breaker_cooldown_usec;
    struct upstream_request req = {
        .method = "GET",
        .url = url,
        .headers = headers,
        .connect_timeout_usec = b->connect_timeout_usec,
        .timeout_usec = MIN(b->timeout_usec, PROBE_TIMEOUT_USEC),
        .max_response_bytes = 4 << 20,
    };
    struct upstream_call *call;
    if (upstream_call_start(w->upstream, &req, &probe_ops, p, &call) < 0)
        free(p);
    else
        probe_state.in_flight[idx] = true;
    explicit_bzero(auth, sizeof(auth));
}

static void probe_tick(void *userdata) {
    struct aigw_worker *w = userdata;
    const struct aigw_config *c = w->config;
    uint64_t now = now_monotonic_usec();
    probe_state.timer = NULL;

    for (size_t i = 0; i < c->n_backends; i++) {
        const struct aigw_backend_conf *b = &c->backends[i];
        struct backend_state *st = backend_states_find(app_backend_states(), b->name);
        if (!st || b->probe_interval_usec == 0)
            continue;
        size_t idx = (size_t)(st - app_backend_states()->states);
        if (probe_state.in_flight[idx] || now < probe_state.next_due[idx])
            continue;
        probe_state.next_due[idx] = now + b->probe_interval_usec;
        probe_one(w, b, st, idx);
    }
    if (!w->draining && !w->stop)
        (void)upstream_timer_start(w->upstream, PROBE_TICK_USEC, probe_tick, w, &probe_state.timer);
}

void probes_start(struct aigw_worker *w) {
    /* the first round right away: /ready should know soon after start */
    (void)upstream_timer_start(w->upstream, 0, probe_tick, w, &probe_state.timer);
}

void probes_stop(struct aigw_worker *w) {
    (void)w;
    upstream_timer_cancel(probe_state.timer);
    probe_state.timer = NULL;
}
