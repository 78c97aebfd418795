/* SPDX-License-Identifier: MIT */
#pragma once

/* The h2o side: one worker thread per event loop, each with its own h2o
 * context, its own dup of every listening socket and its own upstream
 * client. A request lives and dies on one worker. */

#define H2O_USE_LIBUV 0
#include <h2o.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "aigw/config.h"
#include "aigw/listen.h"

struct aigw_server;
struct aigw_upstream;
struct aigw_worker;

struct aigw_worker {
    unsigned index;
    struct aigw_server *server;
    pthread_t thread;
    h2o_evloop_t *loop;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_http;
    h2o_accept_ctx_t accept_metrics;
    h2o_socket_t **listeners;
    size_t n_listeners;
    /* connections handed over by the worker that accepted them */
    h2o_multithread_queue_t *handoff_queue;
    h2o_multithread_receiver_t handoff_receiver;

    /* A periodic tick proves the loop turns (heartbeat for the watchdog),
     * picks up a new config snapshot and checks for the end of draining. */
    h2o_timeout_t tick_timeout;
    h2o_timeout_entry_t tick_entry;
    atomic_uint_fast64_t heartbeat;

    struct aigw_config *config; /* this worker's current snapshot */
    unsigned config_generation;
    bool draining;
    bool stop; /* leave the loop */
    atomic_bool exited;

    atomic_uint inflight;
    atomic_uint_fast64_t served;

    struct aigw_upstream *upstream; /* the worker's curl multi handle */
    h2o_linklist_t chat_watch;      /* HTTP/1.x chats awaiting an answer */
    uint64_t rng[2];                /* xorshift state for request ids */
    int exit_status;
};

struct aigw_server {
    h2o_globalconf_t globalconf;
    h2o_globalconf_t metrics_globalconf; /* only its hosts are used */
    SSL_CTX *ssl_ctx;
    struct listen_set listeners;

    struct aigw_worker *workers;
    unsigned n_workers;

    /* Workers report here once their listeners are registered. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned n_started;
    unsigned n_receivers; /* workers ready to take handed-over connections */
    int start_error;

    /* The current config; swapped under lock, generation bumped, and each
     * worker takes its own reference at its next tick. */
    struct aigw_config *config;
    atomic_uint config_generation;

    atomic_bool draining;
    atomic_uint next_worker; /* round-robin of accepted connections */
    atomic_uint_fast64_t drain_deadline_usec;
    uint64_t start_realtime_usec;
    uint64_t start_monotonic_usec;

    void *metrics; /* struct aigw_metrics *, set by issue-4 code */
};

/* What a request carries from start to its access-log entry. Allocated in
 * the request's pool: it goes away with the request. */
struct aigw_request {
    h2o_req_t *req;
    struct aigw_worker *worker;
    struct aigw_config *config; /* the snapshot the request started with */
    const char *route;
    const char *protocol;
    char method[16];
    char path[256];
    char id[72];
    char peer[64];
    uint64_t start_usec;
    uint64_t upstream_usec; /* time spent waiting for upstreams */
    int status;
    const char *model;   /* strings owned by config */
    const char *backend; /* ditto */
    char key_name[72];
    bool streaming;
    bool admitted; /* holds an in-flight slot (released at dispose) */
    struct chat_call *chat; /* the chat in progress, if any */
    bool counted_inflight;
    void (*cleanup)(void *data); /* called when the request is disposed */
    void *cleanup_data;
    bool on_metrics_listener;
    char rl_id[160];      /* rate-limit identity: key:NAME or addr:ADDRESS */
    uint64_t tpm;         /* the token limit that applied */
    uint64_t tokens_used; /* from the upstream's usage */
};

int server_init(struct aigw_server *s, struct aigw_config *c, struct listen_set *listeners);
/* Start the workers and wait until every one accepts. */
int server_start(struct aigw_server *s);
/* Make c the config new requests use; in-flight ones keep theirs. */
void server_set_config(struct aigw_server *s, struct aigw_config *c);
/* Begin the graceful shutdown: stop accepting, GOAWAY, finish in-flight. */
void server_begin_drain(struct aigw_server *s, uint64_t deadline_usec);
/* Join the workers (after draining finished or the deadline passed). */
int server_join(struct aigw_server *s);
void server_done(struct aigw_server *s);

/* Take the current config if a reload installed a new one (one atomic
 * load when nothing changed): called at every request's start, so that
 * once RELOADING=1 ... READY=1 is sent, every new request sees it. */
void server_worker_refresh(struct aigw_worker *w);

uint64_t server_requests_served(struct aigw_server *s);
unsigned server_requests_inflight(struct aigw_server *s);
/* True when every worker's heartbeat moved since the last call. */
bool server_heartbeats_advanced(struct aigw_server *s, uint64_t *last, size_t n_last);

uint64_t now_monotonic_usec(void);
uint64_t now_realtime_usec(void);
