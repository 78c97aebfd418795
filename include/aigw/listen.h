/* SPDX-License-Identifier: MIT */
#pragma once

/* Listening sockets: from systemd (LISTEN_FDS with FileDescriptorName=
 * names choosing each socket's role), or bound by aigw itself. */

#include <stdbool.h>
#include <stddef.h>

enum listen_role {
    LISTEN_HTTP,    /* the API: every route */
    LISTEN_METRICS, /* /metrics only (FileDescriptorName=metrics) */
};

struct listen_socket {
    int fd;
    enum listen_role role;
    char name[64]; /* fd name or the address bound */
};

struct listen_set {
    struct listen_socket *sockets;
    size_t n;
    bool from_systemd;
};

/* From LISTEN_FDS when set (unsetting the variables), else bind http_addr
 * and, if given, metrics_addr. */
int listen_collect(const char *http_addr, const char *metrics_addr, struct listen_set *ret);
void listen_set_close(struct listen_set *s);

/* "127.0.0.1:5002", "[::1]:5002", "*:5002", ":5002" → sockaddr. Pure. */
struct sockaddr_storage;
int listen_parse_address(const char *s, struct sockaddr_storage *ret, unsigned *ret_len);
/* Role for a systemd fd name: "metrics" → METRICS, anything else → HTTP. */
enum listen_role listen_role_from_name(const char *name);
