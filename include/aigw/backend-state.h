/* SPDX-License-Identifier: MIT */
#pragma once

/* Health of each backend, shared by every worker: a circuit breaker fed by
 * real requests and background probes, and what /ready and the
 * aigw_backend_up metric report. Lock-free (atomics), time injected. A
 * state is found by backend name and survives reloads. */

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BACKEND_STATE_MAX 256
#define BACKEND_NAME_MAX 128

enum backend_health {
    BACKEND_UNKNOWN, /* no request or probe yet: treated as usable */
    BACKEND_UP,
    BACKEND_DOWN,
};

struct backend_state {
    char name[BACKEND_NAME_MAX + 1];
    atomic_uint consecutive_failures;
    atomic_uint_fast64_t open_until_usec; /* breaker open until then; 0: closed */
    atomic_bool probe_in_flight;          /* half-open: one request may try */
    atomic_int health;                    /* enum backend_health */
    atomic_uint_fast64_t last_latency_usec;
    atomic_uint_fast64_t last_change_usec;
    /* last error text: written under a seqlock-free scheme: a fixed buffer
     * whose readers may see a mix of two messages, never out of bounds */
    char last_error[160];
};

struct backend_states {
    struct backend_state states[BACKEND_STATE_MAX];
    atomic_size_t n;
};

/* Main thread only (start, reload): find or add. NULL when full. */
struct backend_state *backend_states_get(struct backend_states *t, const char *name);
/* Any thread. */
struct backend_state *backend_states_find(struct backend_states *t, const char *name);

/* May a request go to this backend now? With the breaker open, false until
 * the cooldown has passed; then true for exactly one caller (the probe,
 * *ret_probe set), which must report its outcome or release the slot.
 * threshold 0 disables the breaker. */
bool backend_allow(struct backend_state *s, unsigned threshold, uint64_t now_usec, bool *ret_probe);
/* The probe request (ret_probe above) ended without success or failure
 * being reported: free the half-open slot for the next request. */
void backend_release_probe(struct backend_state *s);
void backend_report_success(struct backend_state *s, uint64_t latency_usec, uint64_t now_usec);
void backend_report_failure(struct backend_state *s, const char *error, unsigned threshold,
                            uint64_t cooldown_usec, uint64_t now_usec);
bool backend_breaker_open(struct backend_state *s, uint64_t now_usec);
const char *backend_health_name(enum backend_health h);
