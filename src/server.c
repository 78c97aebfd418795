/* SPDX-License-Identifier: MIT */
/* Worker threads and their h2o loops: start, accept, tick, drain. */

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aigw/handlers.h"
#include "aigw/http-util.h"
#include "aigw/log.h"
#include "aigw/macro.h"
#include "aigw/routes.h"
#include "aigw/server.h"
#include "aigw/upstream.h"

#define TICK_MSEC 100
#define ACCEPT_BATCH 32

struct listener {
    struct aigw_worker *worker;
    h2o_accept_ctx_t *accept_ctx;
    enum listen_role role;
};

uint64_t now_monotonic_usec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t now_realtime_usec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
}

static void close_listeners(struct aigw_worker *w);

/* A connection accepted by one worker and handed to another. */
struct handoff {
    h2o_multithread_message_t super;
    h2o_socket_export_t info;
    enum listen_role role;
};

static void on_handoff(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages) {
    struct aigw_worker *w = (struct aigw_worker *)((char *)receiver - offsetof(struct aigw_worker, handoff_receiver));
    while (!h2o_linklist_is_empty(messages)) {
        struct handoff *m = H2O_STRUCT_FROM_MEMBER(struct handoff, super.link, messages->next);
        h2o_linklist_unlink(&m->super.link);
        h2o_socket_t *sock = h2o_socket_import(w->loop, &m->info);
        h2o_accept(m->role == LISTEN_METRICS ? &w->accept_metrics : &w->accept_http, sock);
        free(m);
    }
}

/* Connections are dealt out round-robin: whichever loop wakes first for a
 * burst of new connections would otherwise take them all (both loops wait
 * on the same listening socket), and one core would serve every
 * keep-alive connection of a client. */
static void dispatch(struct aigw_worker *self, struct listener *l, enum listen_role role, h2o_socket_t *sock) {
    struct aigw_server *s = self->server;
    unsigned target = s->n_workers > 1 ? atomic_fetch_add_explicit(&s->next_worker, 1, memory_order_relaxed) % s->n_workers
                                       : self->index;
    struct aigw_worker *t = &s->workers[target];
    if (t == self || atomic_load_explicit(&t->exited, memory_order_acquire)) {
        h2o_accept(l->accept_ctx, sock);
        return;
    }
    struct handoff *m = calloc(1, sizeof(*m));
    /* h2o_socket_export closes the socket only once it succeeded */
    if (!m || h2o_socket_export(sock, &m->info) != 0) {
        free(m);
        h2o_accept(l->accept_ctx, sock);
        return;
    }
    m->role = role;
    h2o_multithread_send_message(&t->handoff_receiver, &m->super);
}

static void on_accept(h2o_socket_t *listener, const char *err) {
    struct listener *l = listener->data;
    if (err)
        return;
    /* Draining: leave new connections in the queue (systemd's socket: for
     * the next process) instead of taking them until the next tick. */
    if (atomic_load_explicit(&l->worker->server->draining, memory_order_acquire)) {
        close_listeners(l->worker);
        return;
    }
    /* Bounded: other workers share the queue, and this loop has other
     * work; a level-triggered listener calls back if more are waiting. */
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (!sock)
            break;
        dispatch(l->worker, l, l->role, sock);
    }
}

static void close_listeners(struct aigw_worker *w) {
    for (size_t i = 0; i < w->n_listeners; i++) {
        if (!w->listeners[i])
            continue;
        struct listener *l = w->listeners[i]->data;
        h2o_socket_read_stop(w->listeners[i]);
        /* closes only this worker's dup; systemd's socket stays open and
         * queues new connections for the next process */
        h2o_socket_close(w->listeners[i]);
        w->listeners[i] = NULL;
        free(l);
    }
}

void server_worker_refresh(struct aigw_worker *w) {
    struct aigw_server *s = w->server;
    unsigned gen = atomic_load_explicit(&s->config_generation, memory_order_acquire);
    if (gen == w->config_generation)
        return;
    pthread_mutex_lock(&s->lock);
    struct aigw_config *c = config_ref(s->config);
    gen = atomic_load_explicit(&s->config_generation, memory_order_acquire);
    pthread_mutex_unlock(&s->lock);
    config_unref(w->config);
    w->config = c;
    w->config_generation = gen;
    upstream_config_changed(w->upstream, c);
}

static void on_tick(h2o_timeout_entry_t *entry) {
    struct aigw_worker *w = (struct aigw_worker *)((char *)entry - offsetof(struct aigw_worker, tick_entry));
    struct aigw_server *s = w->server;

    atomic_fetch_add_explicit(&w->heartbeat, 1, memory_order_relaxed);
    server_worker_refresh(w);
    chat_watch_clients(w);

    if (!w->draining && atomic_load_explicit(&s->draining, memory_order_acquire)) {
        w->draining = true;
        close_listeners(w);
        /* HTTP/2: GOAWAY; HTTP/1.1: no more keep-alive */
        h2o_context_request_shutdown(&w->ctx);
    }
    if (w->draining) {
        unsigned inflight = atomic_load_explicit(&w->inflight, memory_order_relaxed);
        uint64_t deadline = atomic_load_explicit(&s->drain_deadline_usec, memory_order_relaxed);
        if (inflight == 0 || now_monotonic_usec() >= deadline) {
            w->exit_status = inflight == 0 ? 0 : -ETIMEDOUT;
            w->stop = true;
            return;
        }
    }
    h2o_timeout_link(w->loop, &w->tick_timeout, &w->tick_entry);
}

static int worker_listen(struct aigw_worker *w) {
    struct aigw_server *s = w->server;
    w->listeners = calloc(s->listeners.n, sizeof(h2o_socket_t *));
    if (!w->listeners)
        return -ENOMEM;
    w->n_listeners = s->listeners.n;
    for (size_t i = 0; i < s->listeners.n; i++) {
        int fd = fcntl(s->listeners.sockets[i].fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
            return negative_errno();
        struct listener *l = calloc(1, sizeof(*l));
        if (!l) {
            close(fd);
            return -ENOMEM;
        }
        l->worker = w;
        l->role = s->listeners.sockets[i].role;
        l->accept_ctx = l->role == LISTEN_METRICS ? &w->accept_metrics : &w->accept_http;
        h2o_socket_t *sock = h2o_evloop_socket_create(w->loop, fd, H2O_SOCKET_FLAG_DONT_READ);
        sock->data = l;
        w->listeners[i] = sock;
        h2o_socket_read_start(sock, on_accept);
    }
    return 0;
}

static void *worker_main(void *arg) {
    struct aigw_worker *w = arg;
    struct aigw_server *s = w->server;
    int r;

    rng_seed(w->rng);
    h2o_linklist_init_anchor(&w->chat_watch);
    w->loop = h2o_evloop_create();
    h2o_context_init(&w->ctx, w->loop, &s->globalconf);
    w->accept_http = (h2o_accept_ctx_t){.ctx = &w->ctx, .hosts = s->globalconf.hosts, .ssl_ctx = s->ssl_ctx};
    w->accept_metrics = (h2o_accept_ctx_t){.ctx = &w->ctx, .hosts = s->metrics_globalconf.hosts};

    pthread_mutex_lock(&s->lock);
    w->config = config_ref(s->config);
    w->config_generation = atomic_load(&s->config_generation);
    pthread_mutex_unlock(&s->lock);

    w->handoff_queue = h2o_multithread_create_queue(w->loop);
    h2o_multithread_register_receiver(w->handoff_queue, &w->handoff_receiver, on_handoff);
    /* No worker accepts before every worker can receive a hand-off (with
     * socket activation a connection is already waiting at start). */
    pthread_mutex_lock(&s->lock);
    s->n_receivers++;
    pthread_cond_broadcast(&s->cond);
    while (s->n_receivers < s->n_workers)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);

    r = upstream_new(w, &w->upstream);
    if (r >= 0)
        r = worker_listen(w);
    if (r >= 0 && w->index == 0)
        probes_start(w);

    h2o_timeout_init(w->loop, &w->tick_timeout, TICK_MSEC);
    w->tick_entry = (h2o_timeout_entry_t){.cb = on_tick};
    h2o_timeout_link(w->loop, &w->tick_timeout, &w->tick_entry);

    pthread_mutex_lock(&s->lock);
    if (r < 0 && s->start_error == 0)
        s->start_error = r;
    s->n_started++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        return NULL;

    while (!w->stop)
        h2o_evloop_run(w->loop, INT32_MAX);

    /* Let h2o flush GOAWAYs and final bytes queued in this turn. */
    h2o_evloop_run(w->loop, 0);
    if (w->index == 0)
        probes_stop(w);
    close_listeners(w);
    free(w->listeners);
    w->listeners = NULL;
    upstream_free(w->upstream);
    w->upstream = NULL;
    atomic_store_explicit(&w->exited, true, memory_order_release);
    return NULL;
}

static SSL_CTX *make_ssl_ctx(const struct aigw_config *c) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, c->server.tls_certificate) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, c->server.tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        unsigned long e = ERR_get_error();
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        log_error("TLS: cannot load %s / %s: %s", c->server.tls_certificate, c->server.tls_key, buf);
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* h2 first; http/1.1 named too, so clients that offer only it get a
     * negotiated protocol (h2o's own list has h2 and its old drafts only) */
    static char h2[] = "h2", h1[] = "http/1.1";
    static const h2o_iovec_t alpn[] = {{h2, sizeof(h2) - 1}, {h1, sizeof(h1) - 1}, {NULL, 0}};
    h2o_ssl_register_alpn_protocols(ctx, alpn);
    return ctx;
}

static void apply_limits(h2o_globalconf_t *g, const struct aigw_config *c) {
    g->server_name = h2o_iovec_init(H2O_STRLIT("aigw"));
    /* The handler answers 413 with a JSON body itself for bodies up to
     * this; h2o's own hard limit sits above it (see routes.c). */
    g->max_request_entity_size = routes_h2o_entity_limit(c);
    g->http1.req_timeout = c->server.request_timeout_usec / USEC_PER_MSEC;
    g->http2.idle_timeout = c->server.idle_timeout_usec / USEC_PER_MSEC;
    g->http1.upgrade_to_http2 = 1;
}

int server_init(struct aigw_server *s, struct aigw_config *c, struct listen_set *listeners) {
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->config = config_ref(c);
    s->listeners = *listeners;
    s->start_realtime_usec = now_realtime_usec();
    s->start_monotonic_usec = now_monotonic_usec();

    h2o_config_init(&s->globalconf);
    apply_limits(&s->globalconf, c);
    h2o_hostconf_t *host = h2o_config_register_host(&s->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    routes_register(h2o_config_register_path(host, "/", 0), s, ROUTES_API);

    h2o_config_init(&s->metrics_globalconf);
    apply_limits(&s->metrics_globalconf, c);
    host = h2o_config_register_host(&s->metrics_globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    routes_register(h2o_config_register_path(host, "/", 0), s, ROUTES_METRICS);

    if (c->server.tls_certificate) {
        s->ssl_ctx = make_ssl_ctx(c);
        if (!s->ssl_ctx)
            return -EINVAL;
    }

    unsigned n = c->server.workers;
    if (n == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (unsigned)cpus : 1;
    }
    s->workers = calloc(n, sizeof(*s->workers));
    if (!s->workers)
        return -ENOMEM;
    s->n_workers = n;
    for (unsigned i = 0; i < n; i++) {
        s->workers[i].index = i;
        s->workers[i].server = s;
    }
    return 0;
}

int server_start(struct aigw_server *s) {
    unsigned started = 0;
    for (unsigned i = 0; i < s->n_workers; i++) {
        int r = pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);
        if (r != 0) {
            pthread_mutex_lock(&s->lock);
            s->start_error = -r;
            pthread_mutex_unlock(&s->lock);
            break;
        }
        started++;
    }
    pthread_mutex_lock(&s->lock);
    if (started < s->n_workers) {
        /* the started ones must not wait for receivers that never come */
        s->n_workers = started;
        pthread_cond_broadcast(&s->cond);
    }
    while (s->n_started < started)
        pthread_cond_wait(&s->cond, &s->lock);
    int r = s->start_error;
    pthread_mutex_unlock(&s->lock);
    if (r == 0 && started == 0)
        r = -EAGAIN;
    return r;
}

void server_set_config(struct aigw_server *s, struct aigw_config *c) {
    pthread_mutex_lock(&s->lock);
    struct aigw_config *old = s->config;
    s->config = config_ref(c);
    atomic_fetch_add_explicit(&s->config_generation, 1, memory_order_release);
    pthread_mutex_unlock(&s->lock);
    config_unref(old);
}

void server_begin_drain(struct aigw_server *s, uint64_t deadline_usec) {
    atomic_store_explicit(&s->drain_deadline_usec, deadline_usec, memory_order_relaxed);
    atomic_store_explicit(&s->draining, true, memory_order_release);
}

int server_join(struct aigw_server *s) {
    int result = 0;
    for (unsigned i = 0; i < s->n_workers; i++) {
        pthread_join(s->workers[i].thread, NULL);
        if (s->workers[i].exit_status < 0)
            result = s->workers[i].exit_status;
    }
    return result;
}

void server_done(struct aigw_server *s) {
    for (unsigned i = 0; i < s->n_workers; i++)
        config_unref(s->workers[i].config);
    free(s->workers);
    s->workers = NULL;
    config_unref(s->config);
    s->config = NULL;
    if (s->ssl_ctx)
        SSL_CTX_free(s->ssl_ctx);
}

uint64_t server_requests_served(struct aigw_server *s) {
    uint64_t n = 0;
    for (unsigned i = 0; i < s->n_workers; i++)
        n += atomic_load_explicit(&s->workers[i].served, memory_order_relaxed);
    return n;
}

unsigned server_requests_inflight(struct aigw_server *s) {
    unsigned n = 0;
    for (unsigned i = 0; i < s->n_workers; i++)
        n += atomic_load_explicit(&s->workers[i].inflight, memory_order_relaxed);
    return n;
}

bool server_heartbeats_advanced(struct aigw_server *s, uint64_t *last, size_t n_last) {
    bool all = true;
    for (unsigned i = 0; i < s->n_workers && i < n_last; i++) {
        /* a worker that finished draining has nothing left to prove */
        if (atomic_load_explicit(&s->workers[i].exited, memory_order_acquire))
            continue;
        uint64_t hb = atomic_load_explicit(&s->workers[i].heartbeat, memory_order_relaxed);
        if (hb == last[i])
            all = false;
        last[i] = hb;
    }
    return all;
}
