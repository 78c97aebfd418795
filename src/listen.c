/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "aigw/listen.h"
#include "aigw/macro.h"

#define LISTEN_BACKLOG 4096

enum listen_role listen_role_from_name(const char *name) {
    return name && strcmp(name, "metrics") == 0 ? LISTEN_METRICS : LISTEN_HTTP;
}

int listen_parse_address(const char *s, struct sockaddr_storage *ret, unsigned *ret_len) {
    if (!s)
        return -EINVAL;
    const char *colon = strrchr(s, ':');
    /* digits only: strtol would also take "+80" and " 80" */
    if (!colon || colon[1] < '0' || colon[1] > '9')
        return -EINVAL;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || *end || port <= 0 || port > 65535)
        return -EINVAL;

    char host[INET6_ADDRSTRLEN + 2];
    size_t hl = (size_t)(colon - s);
    if (hl >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, hl);
    host[hl] = 0;

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = 0;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) != 1)
            return -EINVAL;
        *ret_len = sizeof(*a6);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        if (hl == 0 || strcmp(host, "*") == 0)
            a4->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
            return -EINVAL; /* host names would need DNS at start: refuse them */
        *ret_len = sizeof(*a4);
    }
    *ret = ss;
    return 0;
}

static int bind_one(const char *addr, int *ret_fd) {
    struct sockaddr_storage ss;
    unsigned len;
    int r = listen_parse_address(addr, &ss, &len);
    if (r < 0)
        return r;
    _cleanup_close_ int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return negative_errno();
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0)
        return negative_errno();
    if (listen(fd, LISTEN_BACKLOG) < 0)
        return negative_errno();
    *ret_fd = TAKE_FD(fd);
    return 0;
}

static int add_socket(struct listen_set *s, int fd, enum listen_role role, const char *name) {
    struct listen_socket *n = realloc(s->sockets, (s->n + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    s->sockets = n;
    n[s->n].fd = fd;
    n[s->n].role = role;
    snprintf(n[s->n].name, sizeof(n[s->n].name), "%s", name ? name : "");
    s->n++;
    return 0;
}

int listen_collect(const char *http_addr, const char *metrics_addr, struct listen_set *ret) {
    struct listen_set s = {0};
    char **names = NULL;
    int r;

    int n = sd_listen_fds_with_names(1, &names);
    if (n < 0)
        return n;
    if (n > 0) {
        s.from_systemd = true;
        for (int i = 0; i < n; i++) {
            int fd = SD_LISTEN_FDS_START + i;
            const char *name = names && names[i] ? names[i] : "unknown";
            if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
                r = -ENOTSOCK;
                goto fail;
            }
            /* h2o's loop expects non-blocking listeners */
            int fl = fcntl(fd, F_GETFL);
            if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
                r = negative_errno();
                goto fail;
            }
            r = add_socket(&s, fd, listen_role_from_name(name), name);
            if (r < 0)
                goto fail;
        }
        for (int i = 0; i < n; i++)
            free(names ? names[i] : NULL);
        free(names);
        *ret = s;
        return 0;
    }
    free(names);
    names = NULL;

    int fd;
    r = bind_one(http_addr, &fd);
    if (r < 0)
        goto fail;
    r = add_socket(&s, fd, LISTEN_HTTP, http_addr);
    if (r < 0) {
        close(fd);
        goto fail;
    }
    if (metrics_addr) {
        r = bind_one(metrics_addr, &fd);
        if (r < 0)
            goto fail;
        r = add_socket(&s, fd, LISTEN_METRICS, metrics_addr);
        if (r < 0) {
            close(fd);
            goto fail;
        }
    }
    *ret = s;
    return 0;

fail:
    if (names) {
        for (int i = 0; i < n; i++)
            free(names[i]);
        free(names);
    }
    if (!s.from_systemd)
        listen_set_close(&s);
    else
        free(s.sockets);
    return r;
}

void listen_set_close(struct listen_set *s) {
    for (size_t i = 0; i < s->n; i++)
        if (s->sockets[i].fd >= 0)
            close(s->sockets[i].fd);
    free(s->sockets);
    s->sockets = NULL;
    s->n = 0;
}
