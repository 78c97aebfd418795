/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "aigw/handlers.h"
#include "aigw/http-util.h"
#include "aigw/log.h"
#include "aigw/macro.h"
#include "aigw/routes.h"

struct aigw_handler {
    h2o_handler_t super;
    struct aigw_server *server;
    enum routes_set set;
};

static const struct route api_routes[] = {
    {"/health", "health", METHOD_GET | METHOD_HEAD, handle_health},
    {"/ready", "ready", METHOD_GET | METHOD_HEAD, handle_ready},
    {"/v1/chat/completions", "chat_completions", METHOD_POST, handle_chat_completions},
    {"/chat", "chat", METHOD_POST, handle_chat},
    {"/v1/models", "models", METHOD_GET | METHOD_HEAD, handle_models},
    {"/models", "models", METHOD_GET | METHOD_HEAD, handle_models},
    {"/metrics", "metrics", METHOD_GET | METHOD_HEAD, handle_metrics},
    {"/webhook", "webhook", METHOD_POST, handle_webhook},
};

static const struct route metrics_routes[] = {
    {"/metrics", "metrics", METHOD_GET | METHOD_HEAD, handle_metrics},
    {"/health", "health", METHOD_GET | METHOD_HEAD, handle_health},
};

unsigned routes_method_bit(const char *m, size_t len) {
    if (len == 3 && memcmp(m, "GET", 3) == 0)
        return METHOD_GET;
    if (len == 4 && memcmp(m, "HEAD", 4) == 0)
        return METHOD_HEAD;
    if (len == 4 && memcmp(m, "POST", 4) == 0)
        return METHOD_POST;
    return 0;
}

const struct route *routes_find(enum routes_set set, const char *path, size_t len) {
    const struct route *table = set == ROUTES_API ? api_routes : metrics_routes;
    size_t n = set == ROUTES_API ? ELEMENTSOF(api_routes) : ELEMENTSOF(metrics_routes);
    /* a trailing slash is the same resource, as most API servers treat it */
    if (len > 1 && path[len - 1] == '/')
        len--;
    for (size_t i = 0; i < n; i++)
        if (strlen(table[i].path) == len && memcmp(table[i].path, path, len) == 0)
            return &table[i];
    return NULL;
}

size_t routes_allow_header(const struct route *rt, char *buf, size_t size) {
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{METHOD_GET, "GET"}, {METHOD_HEAD, "HEAD"}, {METHOD_POST, "POST"}};
    size_t len = 0;
    if (size == 0)
        return 0;
    buf[0] = 0;
    for (size_t i = 0; i < ELEMENTSOF(names); i++) {
        if (!(rt->methods & names[i].bit))
            continue;
        int n = snprintf(buf + len, size - len, "%s%s", len ? ", " : "", names[i].name);
        if (n < 0 || (size_t)n >= size - len) {
            buf[len] = 0; /* never a half-written name */
            break;
        }
        len += (size_t)n;
    }
    return len;
}

size_t routes_h2o_entity_limit(const struct aigw_config *c) {
    /* Bodies up to 8x max_body (at least max_body + 1 MiB) reach the
     * handler, which answers 413 with a JSON body over HTTP/1.1 and HTTP/2
     * alike. Beyond that h2o refuses on its own (HTTP/1.1: 413, HTTP/2:
     * RST_STREAM), so a hostile client cannot make a stream buffer more. */
    uint64_t lim = MAX(c->server.max_body * 8, c->server.max_body + (1u << 20));
    return (size_t)lim;
}

static void format_peer(h2o_req_t *req, char *buf, size_t size) {
    struct sockaddr_storage ss;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    buf[0] = 0;
    if (len == 0)
        return;
    char host[INET6_ADDRSTRLEN];
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        snprintf(buf, size, "%s:%u", host, ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        snprintf(buf, size, "[%s]:%u", host, ntohs(a->sin6_port));
    }
}

static const char *protocol_name(h2o_req_t *req) {
    /* the connection's TLS state, not :scheme, which a proxy may set */
    h2o_socket_t *sock = req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
    bool tls = sock && sock->ssl;
    if (req->version >= 0x200)
        return tls ? "h2" : "h2c";
    return req->version == 0x101 ? "http/1.1" : "http/1.0";
}

/* The request is gone: count it, log it, release its config. */
static void on_request_dispose(void *p) {
    struct aigw_request *r = p;
    struct aigw_worker *w = r->worker;
    uint64_t dur = now_monotonic_usec() - r->start_usec;
    /* no answer was sent: the client went away first (nginx's 499) */
    if (r->status == 0)
        r->status = 499;

    atomic_fetch_sub_explicit(&w->inflight, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->served, 1, memory_order_relaxed);
    handlers_request_done(r, dur);

    if (r->config->log.access_log) {
        char status[16], duration[24], overhead[24];
        snprintf(status, sizeof(status), "%d", r->status);
        snprintf(duration, sizeof(duration), "%" PRIu64, dur);
        uint64_t ovh = dur > r->upstream_usec ? dur - r->upstream_usec : 0;
        snprintf(overhead, sizeof(overhead), "%" PRIu64, ovh);
        const struct log_field fields[] = {
            {LOG_F_REQUEST_ID, r->id},
            {LOG_F_ROUTE, r->route},
            {LOG_F_METHOD, r->method},
            {LOG_F_STATUS, status},
            {LOG_F_DURATION, duration},
            {LOG_F_PEER, r->peer},
            {LOG_F_PROTOCOL, r->protocol},
            {LOG_F_MODEL, r->model},
            {LOG_F_BACKEND, r->backend},
            {LOG_F_KEY, r->key_name[0] ? r->key_name : NULL},
            {LOG_F_OVERHEAD, r->upstream_usec ? overhead : NULL},
        };
        log_struct(LOG_INFO, NULL, fields, ELEMENTSOF(fields), "%s %s %d %" PRIu64 "us", r->method, r->path,
                   r->status, dur);
    }
    config_unref(r->config);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req) {
    struct aigw_handler *h = (struct aigw_handler *)self;
    struct aigw_worker *w = (struct aigw_worker *)((char *)req->conn->ctx - offsetof(struct aigw_worker, ctx));

    server_worker_refresh(w);
    struct aigw_request *r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), on_request_dispose);
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->worker = w;
    r->config = config_ref(w->config);
    r->start_usec = now_monotonic_usec();
    r->status = 0;
    r->route = "unknown";
    r->protocol = protocol_name(req);
    r->on_metrics_listener = h->set == ROUTES_METRICS;
    atomic_fetch_add_explicit(&w->inflight, 1, memory_order_relaxed);

    size_t ml = MIN(req->method.len, sizeof(r->method) - 1);
    memcpy(r->method, req->method.base, ml);
    r->method[ml] = 0;
    size_t pl = req->path_normalized.len;
    /* the query string is not logged: it may carry secrets */
    size_t keep = MIN(pl, sizeof(r->path) - 1);
    memcpy(r->path, req->path_normalized.base, keep);
    r->path[keep] = 0;
    format_peer(req, r->peer, sizeof(r->peer));

    size_t idlen;
    const char *id = http_request_header(r, "x-request-id", &idlen);
    if (id && request_id_valid(id, idlen)) {
        memcpy(r->id, id, idlen);
        r->id[idlen] = 0;
    } else
        request_id_generate(w->rng, r->id);
    http_add_header(r, "x-request-id", r->id);

    const struct route *rt = routes_find(h->set, req->path_normalized.base, req->path_normalized.len);
    if (!rt) {
        r->route = "not_found";
        http_send_error_fmt(r, 404, "invalid_request_error", "not_found", NULL, "no route for %s %s",
                            r->method, r->path);
        return 0;
    }
    r->route = rt->name;
    if (!(rt->methods & routes_method_bit(req->method.base, req->method.len))) {
        char allow[64];
        routes_allow_header(rt, allow, sizeof(allow));
        http_add_header(r, "allow", allow);
        http_send_error_fmt(r, 405, "invalid_request_error", "method_not_allowed", NULL,
                            "%s is not allowed on %s (allowed: %s)", r->method, rt->path, allow);
        return 0;
    }
    rt->handler(r);
    return 0;
}

void routes_register(h2o_pathconf_t *pathconf, struct aigw_server *s, enum routes_set set) {
    struct aigw_handler *h = (struct aigw_handler *)h2o_create_handler(pathconf, sizeof(*h));
    h->super.on_req = on_req;
    h->server = s;
    h->set = set;
}

void handle_health(struct aigw_request *r) {
    struct aigw_server *s = r->worker->server;
    char body[192];
    int n;
    /* Pure liveness: nothing here may wait on a backend or on a lock that
     * slow work can hold, or a busy gateway would look dead. */
    if (atomic_load_explicit(&s->draining, memory_order_relaxed)) {
        n = snprintf(body, sizeof(body), "{\"status\":\"draining\",\"version\":\"%s\"}", AIGW_VERSION);
        http_send_json(r, 503, body, (size_t)n);
        return;
    }
    uint64_t up = (now_monotonic_usec() - s->start_monotonic_usec) / USEC_PER_SEC;
    n = snprintf(body, sizeof(body), "{\"status\":\"ok\",\"version\":\"%s\",\"uptime_seconds\":%" PRIu64 "}",
                 AIGW_VERSION, up);
    http_send_json(r, 200, body, (size_t)n);
}
