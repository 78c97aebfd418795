/* SPDX-License-Identifier: MIT */
#pragma once

/* Path routing, the request context's life (id, in-flight count, access
 * log), and the small handlers that need nothing else (/health). */

#include "aigw/server.h"

enum routes_set {
    ROUTES_API,     /* the main listener: every route */
    ROUTES_METRICS, /* a metrics-only listener */
};

enum {
    METHOD_GET = 1 << 0,
    METHOD_HEAD = 1 << 1,
    METHOD_POST = 1 << 2,
};

typedef void (*route_handler)(struct aigw_request *r);

struct route {
    const char *path;
    const char *name; /* for logs and metrics */
    unsigned methods;
    route_handler handler;
};

void routes_register(h2o_pathconf_t *pathconf, struct aigw_server *s, enum routes_set set);
/* The limit handed to h2o, above [server] max_body so that aigw answers
 * oversized bodies itself with a JSON 413. */
size_t routes_h2o_entity_limit(const struct aigw_config *c);

/* Pure, for tests: the route for a path, and the Allow header value. */
const struct route *routes_find(enum routes_set set, const char *path, size_t len);
size_t routes_allow_header(const struct route *rt, char *buf, size_t size);
unsigned routes_method_bit(const char *method, size_t len);

void handle_health(struct aigw_request *r);
