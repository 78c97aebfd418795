/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>

#include "aigw/backend-state.h"

struct backend_state *backend_states_find(struct backend_states *t, const char *name) {
    size_t n = atomic_load_explicit(&t->n, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strcmp(t->states[i].name, name) == 0)
            return &t->states[i];
    return NULL;
}

struct backend_state *backend_states_get(struct backend_states *t, const char *name) {
    struct backend_state *s = backend_states_find(t, name);
    if (s)
        return s;
    size_t n = atomic_load_explicit(&t->n, memory_order_relaxed);
    if (n >= BACKEND_STATE_MAX || strlen(name) > BACKEND_NAME_MAX)
        return NULL;
    s = &t->states[n];
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    /* published only once initialised: readers never see a half entry */
    atomic_store_explicit(&t->n, n + 1, memory_order_release);
    return s;
}

bool backend_breaker_open(struct backend_state *s, uint64_t now_usec) {
    uint64_t until = atomic_load_explicit(&s->open_until_usec, memory_order_relaxed);
    return until != 0 && now_usec < until;
}

bool backend_allow(struct backend_state *s, unsigned threshold, uint64_t now_usec, bool *ret_probe) {
    *ret_probe = false;
    if (threshold == 0)
        return true;
    uint64_t until = atomic_load_explicit(&s->open_until_usec, memory_order_relaxed);
    if (until == 0)
        return true;
    if (now_usec < until)
        return false;
    /* cooldown over: half-open, exactly one request probes */
    bool expected = false;
    if (!atomic_compare_exchange_strong(&s->probe_in_flight, &expected, true))
        return false;
    *ret_probe = true;
    return true;
}

void backend_release_probe(struct backend_state *s) {
    /* the probe request ended without a verdict (its client left, or aigw
     * refused it itself): let the next request probe instead */
    atomic_store_explicit(&s->probe_in_flight, false, memory_order_relaxed);
}

void backend_report_success(struct backend_state *s, uint64_t latency_usec, uint64_t now_usec) {
    atomic_store_explicit(&s->consecutive_failures, 0, memory_order_relaxed);
    atomic_store_explicit(&s->open_until_usec, 0, memory_order_relaxed);
    atomic_store_explicit(&s->probe_in_flight, false, memory_order_relaxed);
    atomic_store_explicit(&s->last_latency_usec, latency_usec, memory_order_relaxed);
    if (atomic_exchange_explicit(&s->health, BACKEND_UP, memory_order_relaxed) != BACKEND_UP)
        atomic_store_explicit(&s->last_change_usec, now_usec, memory_order_relaxed);
}

void backend_report_failure(struct backend_state *s, const char *error, unsigned threshold,
                            uint64_t cooldown_usec, uint64_t now_usec) {
    unsigned n = atomic_fetch_add_explicit(&s->consecutive_failures, 1, memory_order_relaxed) + 1;
    snprintf(s->last_error, sizeof(s->last_error), "%s", error ? error : "error");
    bool was_probe = atomic_exchange_explicit(&s->probe_in_flight, false, memory_order_relaxed);
    /* without a breaker (threshold 0) request failures only record the
     * error: the background probe decides whether the backend is down */
    if (threshold && (n >= threshold || was_probe)) {
        atomic_store_explicit(&s->open_until_usec, now_usec + cooldown_usec, memory_order_relaxed);
        if (atomic_exchange_explicit(&s->health, BACKEND_DOWN, memory_order_relaxed) != BACKEND_DOWN)
            atomic_store_explicit(&s->last_change_usec, now_usec, memory_order_relaxed);
    }
}

const char *backend_health_name(enum backend_health h) {
    switch (h) {
    case BACKEND_UP:
        return "up";
    case BACKEND_DOWN:
        return "down";
    case BACKEND_UNKNOWN:
        break;
    }
    return "unknown";
}
