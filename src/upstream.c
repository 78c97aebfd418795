/* SPDX-License-Identifier: MIT */
/* curl's multi interface on the worker's h2o loop.
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when
 * to call it back (CURLMOPT_TIMERFUNCTION). Both go into a private epoll
 * instance: the sockets directly, the timeout through a timerfd. That
 * epoll fd is registered with h2o as one socket; when it is readable, we
 * drain it with a zero timeout and feed curl. h2o's epoll is
 * level-triggered, so nothing pending is ever missed.
 *
 * Mapping each curl socket onto its own h2o socket does not work with
 * h2o 2.2.5: write notifications cannot be cancelled and disposing an h2o
 * socket closes the fd curl still owns. */

#include <errno.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <curl/curl.h>

#include "aigw/macro.h"
#include "aigw/server.h"
#include "aigw/upstream.h"

#define MAX_EVENTS 64
#define MAX_TIMERS_PER_TURN 256
#define EASY_POOL 64

struct upstream_timer {
    struct aigw_upstream *u;
    uint64_t due_usec;
    void (*cb)(void *userdata);
    void *userdata;
    struct upstream_timer *prev, *next; /* sorted by due_usec */
};

static void on_idle_check(void *userdata);

struct aigw_upstream {
    struct aigw_worker *worker;
    CURLM *multi;
    int epfd;
    int timerfd;
    h2o_socket_t *sock;
    uint64_t curl_due_usec; /* when curl wants a timeout callback; 0: none */
    struct upstream_timer *timers;
    size_t n_calls;
    int in_curl; /* >0 while inside curl_multi_socket_action */
    uint64_t armed_usec; /* what the timerfd is set to; 0: not armed */
    h2o_timeout_entry_t kick; /* curl asked for a timeout of 0 */
    /* Easy handles are reset and reused: setting one up from scratch
     * (allocation, zeroing, defaults) was a large share of a call. */
    CURL *spare[EASY_POOL];
    size_t n_spare;
};

struct upstream_call {
    struct aigw_upstream *u;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    const struct upstream_call_ops *ops;
    void *userdata;
    long status;
    bool status_sent;
    bool paused;
    bool cancelled;
    int abort_error; /* set when on_data asked to abort */
    uint64_t start_usec;
    uint64_t first_byte_usec;
    uint64_t received;
    uint64_t max_response;
    uint64_t retry_after_usec;
    uint64_t idle_usec;
    uint64_t last_activity_usec;
    struct upstream_timer *idle_timer;
    char errbuf[CURL_ERROR_SIZE];
};

static void arm_timerfd(struct aigw_upstream *u) {
    uint64_t due = u->curl_due_usec;
    if (u->timers && (due == 0 || u->timers->due_usec < due))
        due = u->timers->due_usec;
    /* timerfd_settime costs a syscall per call: a timer that fires too
     * early (or for nothing) is cheaper, since expiry re-checks and re-arms */
    if (due == 0)
        return;
    uint64_t now = now_monotonic_usec();
    if (u->armed_usec && u->armed_usec <= due && u->armed_usec > now)
        return;
    struct itimerspec its = {0};
    /* 0 would disarm: fire as soon as possible instead */
    uint64_t delta = due > now ? due - now : 1;
    its.it_value.tv_sec = (time_t)(delta / USEC_PER_SEC);
    its.it_value.tv_nsec = (long)(delta % USEC_PER_SEC) * 1000;
    (void)timerfd_settime(u->timerfd, 0, &its, NULL);
    u->armed_usec = due;
}

static void check_multi_info(struct aigw_upstream *u);
static void run_timers(struct aigw_upstream *u);

static void on_kick(h2o_timeout_entry_t *entry) {
    struct aigw_upstream *u = (struct aigw_upstream *)((char *)entry - offsetof(struct aigw_upstream, kick));
    int running;
    u->in_curl++;
    curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    u->in_curl--;
    check_multi_info(u);
    run_timers(u);
    arm_timerfd(u);
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
    struct aigw_upstream *u = userp;
    struct epoll_event ev = {.data.fd = s};
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (socketp) {
            (void)epoll_ctl(u->epfd, EPOLL_CTL_DEL, s, NULL);
            curl_multi_assign(u->multi, s, NULL);
        }
        return 0;
    }
    if (what & CURL_POLL_IN)
        ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev.events |= EPOLLOUT;
    if (socketp)
        return epoll_ctl(u->epfd, EPOLL_CTL_MOD, s, &ev) < 0 ? -1 : 0;
    if (epoll_ctl(u->epfd, EPOLL_CTL_ADD, s, &ev) < 0)
        return -1;
    /* any non-NULL marks "registered" */
    curl_multi_assign(u->multi, s, u);
    return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
    struct aigw_upstream *u = userp;
    (void)multi;
    if (timeout_ms == 0) {
        /* "at once" (every new transfer): later in this loop turn through
         * h2o's zero timeout, not a timerfd round trip through epoll */
        u->curl_due_usec = 0;
        if (!h2o_timeout_is_linked(&u->kick))
            h2o_timeout_link(u->worker->loop, &u->worker->ctx.zero_timeout, &u->kick);
        return 0;
    }
    if (timeout_ms < 0)
        u->curl_due_usec = 0;
    else
        u->curl_due_usec = now_monotonic_usec() + (uint64_t)timeout_ms * USEC_PER_MSEC;
    arm_timerfd(u);
    return 0;
}

static int map_curl_error(CURLcode rc) {
    switch (rc) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return -ECONNRESET;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
        return -EHOSTUNREACH;
    case CURLE_FILESIZE_EXCEEDED:
        return -EFBIG;
    default:
        return -EPROTO;
    }
}

static void call_free(struct upstream_call *c) {
    if (!c)
        return;
    upstream_timer_cancel(c->idle_timer);
    c->idle_timer = NULL;
    if (c->easy) {
        curl_multi_remove_handle(c->u->multi, c->easy);
        if (c->u->n_spare < EASY_POOL) {
            curl_easy_reset(c->easy);
            c->u->spare[c->u->n_spare++] = c->easy;
        } else
            curl_easy_cleanup(c->easy);
    }
    curl_slist_free_all(c->headers);
    free(c->body);
    c->u->n_calls--;
    free(c);
}

static void check_multi_info(struct aigw_upstream *u) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(u->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct upstream_call *c = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        CURLcode rc = msg->data.result;
        if (c->cancelled) {
            call_free(c);
            continue;
        }
        struct upstream_result res = {
            .result = c->abort_error ? c->abort_error : map_curl_error(rc),
            .retry_after_usec = c->retry_after_usec,
            .duration_usec = now_monotonic_usec() - c->start_usec,
            .ttfb_usec = c->first_byte_usec ? c->first_byte_usec - c->start_usec : 0,
        };
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &res.http_status);
        char err[CURL_ERROR_SIZE];
        snprintf(err, sizeof(err), "%s", c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
        res.error = err;
        /* removed before the callback: on_done may start a retry at once */
        const struct upstream_call_ops *ops = c->ops;
        void *ud = c->userdata;
        call_free(c);
        ops->on_done(ud, &res);
    }
}

static void run_timers(struct aigw_upstream *u) {
    uint64_t now = now_monotonic_usec();
    for (int i = 0; i < MAX_TIMERS_PER_TURN && u->timers && u->timers->due_usec <= now; i++) {
        struct upstream_timer *t = u->timers;
        u->timers = t->next;
        if (u->timers)
            u->timers->prev = NULL;
        void (*cb)(void *) = t->cb;
        void *ud = t->userdata;
        free(t);
        cb(ud);
    }
}

static void on_epoll_ready(h2o_socket_t *sock, const char *err) {
    struct aigw_upstream *u = sock->data;
    struct epoll_event events[MAX_EVENTS];
    (void)err;

    int n = epoll_wait(u->epfd, events, MAX_EVENTS, 0);
    int running;
    u->in_curl++;
    for (int i = 0; i < n; i++) {
        int fd = events[i].data.fd;
        if (fd == u->timerfd) {
            uint64_t expirations;
            ssize_t rd = read(u->timerfd, &expirations, sizeof(expirations));
            (void)rd;
            u->armed_usec = 0;
            if (u->curl_due_usec && u->curl_due_usec <= now_monotonic_usec()) {
                u->curl_due_usec = 0;
                curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &running);
            }
            continue;
        }
        int mask = 0;
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
            mask |= CURL_CSELECT_IN;
        if (events[i].events & EPOLLOUT)
            mask |= CURL_CSELECT_OUT;
        if (events[i].events & EPOLLERR)
            mask |= CURL_CSELECT_ERR;
        curl_multi_socket_action(u->multi, fd, mask, &running);
    }
    u->in_curl--;
    check_multi_info(u);
    run_timers(u);
    arm_timerfd(u);
}

int upstream_new(struct aigw_worker *w, struct aigw_upstream **ret) {
    struct aigw_upstream *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    u->worker = w;
    u->kick.cb = on_kick;
    u->epfd = epoll_create1(EPOLL_CLOEXEC);
    u->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    u->multi = curl_multi_init();
    if (u->epfd < 0 || u->timerfd < 0 || !u->multi) {
        int r = u->multi ? negative_errno() : -ENOMEM;
        if (u->epfd >= 0)
            close(u->epfd);
        if (u->timerfd >= 0)
            close(u->timerfd);
        if (u->multi)
            curl_multi_cleanup(u->multi);
        free(u);
        return r;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = u->timerfd};
    epoll_ctl(u->epfd, EPOLL_CTL_ADD, u->timerfd, &ev);

    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, 256L);
    upstream_config_changed(u, w->config);

    /* h2o must not read() the epoll fd: DONT_READ makes it only notify */
    u->sock = h2o_evloop_socket_create(w->loop, u->epfd, H2O_SOCKET_FLAG_DONT_READ);
    u->sock->data = u;
    h2o_socket_read_start(u->sock, on_epoll_ready);
    *ret = u;
    return 0;
}

void upstream_config_changed(struct aigw_upstream *u, struct aigw_config *c) {
    if (!u || !c)
        return;
    /* One multi handle serves every backend of this worker: the per-host
     * cap is the largest max_connections shared out over the workers. */
    unsigned workers = u->worker->server->n_workers ? u->worker->server->n_workers : 1;
    unsigned max = 0;
    for (size_t i = 0; i < c->n_backends; i++)
        max = MAX(max, c->backends[i].max_connections);
    long per_worker = max ? (long)((max + workers - 1) / workers) : 0;
    curl_multi_setopt(u->multi, CURLMOPT_MAX_HOST_CONNECTIONS, per_worker);
}

void upstream_free(struct aigw_upstream *u) {
    if (!u)
        return;
    if (h2o_timeout_is_linked(&u->kick))
        h2o_timeout_unlink(&u->kick);
    /* calls still running at exit are abandoned with the process */
    while (u->timers) {
        struct upstream_timer *t = u->timers;
        u->timers = t->next;
        free(t);
    }
    if (u->sock) {
        h2o_socket_read_stop(u->sock);
        /* h2o_socket_close closes epfd */
        h2o_socket_close(u->sock);
    } else
        close(u->epfd);
    close(u->timerfd);
    while (u->n_spare)
        curl_easy_cleanup(u->spare[--u->n_spare]);
    curl_multi_cleanup(u->multi);
    free(u);
}

size_t upstream_active_calls(const struct aigw_upstream *u) {
    return u->n_calls;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
    struct upstream_call *c = userdata;
    size_t len = size * nmemb;
    if (c->cancelled)
        return 0;
    if (!c->status_sent) {
        c->status_sent = true;
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->status);
        if (c->ops->on_status)
            c->ops->on_status(c->userdata, c->status);
        if (c->cancelled)
            return 0;
    }
    c->last_activity_usec = now_monotonic_usec();
    if (!c->first_byte_usec && len)
        c->first_byte_usec = c->last_activity_usec;
    c->received += len;
    if (c->max_response && c->received > c->max_response) {
        c->abort_error = -EFBIG;
        return 0;
    }
    int r = c->ops->on_data(c->userdata, ptr, len);
    if (r < 0) {
        c->abort_error = r;
        return 0;
    }
    if (r == 1) {
        /* curl hands the same bytes again after the unpause: undo the count */
        c->received -= len;
        c->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    return len;
}

/* Only Retry-After is of interest; the seconds form (what LLM APIs send).
 * An HTTP-date would need the clock: treated as absent. */
static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata) {
    struct upstream_call *c = userdata;
    size_t len = size * nitems;
    c->last_activity_usec = now_monotonic_usec();
    static const char name[] = "retry-after:";
    if (len > sizeof(name) - 1 && strncasecmp(buf, name, sizeof(name) - 1) == 0) {
        const char *p = buf + sizeof(name) - 1, *end = buf + len;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        uint64_t secs = 0;
        bool digits = false;
        while (p < end && *p >= '0' && *p <= '9' && secs < 86400) {
            secs = secs * 10 + (uint64_t)(*p - '0');
            digits = true;
            p++;
        }
        if (digits)
            c->retry_after_usec = MIN(secs, (uint64_t)86400) * USEC_PER_SEC;
    }
    return len;
}

int upstream_call_start(struct aigw_upstream *u, const struct upstream_request *req,
                        const struct upstream_call_ops *ops, void *userdata, struct upstream_call **ret) {
    struct upstream_call *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->u = u;
    c->ops = ops;
    c->userdata = userdata;
    c->start_usec = now_monotonic_usec();
    c->max_response = req->max_response_bytes;
    u->n_calls++;

    c->easy = u->n_spare ? u->spare[--u->n_spare] : curl_easy_init();
    if (!c->easy) {
        call_free(c);
        return -ENOMEM;
    }
    for (const char *const *h = req->headers; h && *h; h++) {
        struct curl_slist *n = curl_slist_append(c->headers, *h);
        if (!n) {
            call_free(c);
            return -ENOMEM;
        }
        c->headers = n;
    }
    if (req->body) {
        c->body = malloc(req->body_len ? req->body_len : 1);
        if (!c->body) {
            call_free(c);
            return -ENOMEM;
        }
        memcpy(c->body, req->body, req->body_len);
    }

    CURL *e = c->easy;
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    /* h2 through ALPN only: Debian's curl 7.88 breaks on reused cleartext
     * prior-knowledge connections (curl #10634) */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* Only where ALPN can answer h2: on cleartext HTTP/1.1 upstreams
     * PIPEWAIT holds every new request until the first response on the
     * first connection has told curl it cannot multiplex. */
    if (strncasecmp(req->url, "https:", 6) == 0)
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* what curl can decode */
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(req->connect_timeout_usec / USEC_PER_MSEC));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(req->timeout_usec / USEC_PER_MSEC));
    /* The longest silence inside a response is our own timer, checked
     * lazily (curl's low-speed limit averages over seconds and would fire
     * several seconds late). */
    c->idle_usec = req->idle_timeout_usec;
    if (req->method && strcmp(req->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body ? c->body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }

    CURLMcode mc = curl_multi_add_handle(u->multi, e);
    if (mc != CURLM_OK) {
        curl_easy_cleanup(c->easy);
        c->easy = NULL;
        call_free(c);
        return -ENOMEM;
    }
    if (c->idle_usec) {
        /* the silence is counted from the start while connecting and
         * waiting for the first byte too; connect_timeout is shorter */
        c->last_activity_usec = c->start_usec;
        (void)upstream_timer_start(u, c->idle_usec, on_idle_check, c, &c->idle_timer);
    }
    *ret = c;
    return 0;
}

static void on_idle_check(void *userdata) {
    struct upstream_call *c = userdata;
    c->idle_timer = NULL;
    if (c->cancelled)
        return;
    uint64_t now = now_monotonic_usec();
    uint64_t silent = now - c->last_activity_usec;
    /* a paused transfer is our client being slow, not the upstream */
    if (c->paused || silent < c->idle_usec) {
        uint64_t wait = c->paused ? c->idle_usec : c->idle_usec - silent;
        (void)upstream_timer_start(c->u, wait, on_idle_check, c, &c->idle_timer);
        return;
    }
    /* run from the loop's timer list, never inside curl: the handle may go */
    struct upstream_result res = {
        .result = -ETIMEDOUT,
        .duration_usec = now - c->start_usec,
        .ttfb_usec = c->first_byte_usec ? c->first_byte_usec - c->start_usec : 0,
        .retry_after_usec = c->retry_after_usec,
    };
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &res.http_status);
    char err[96];
    snprintf(err, sizeof(err), "no data for %llu ms (idle_timeout)",
             (unsigned long long)(c->idle_usec / USEC_PER_MSEC));
    res.error = err;
    const struct upstream_call_ops *ops = c->ops;
    void *ud = c->userdata;
    call_free(c);
    ops->on_done(ud, &res);
}

void upstream_call_cancel(struct upstream_call *c) {
    if (!c || c->cancelled)
        return;
    c->cancelled = true;
    upstream_timer_cancel(c->idle_timer);
    c->idle_timer = NULL;
    /* never remove a handle from inside curl: finished at the next turn */
    if (c->u->in_curl)
        return;
    call_free(c);
}

void upstream_call_resume(struct upstream_call *c) {
    if (!c || !c->paused || c->cancelled)
        return;
    c->paused = false;
    /* may deliver data synchronously through on_write */
    c->u->in_curl++;
    curl_easy_pause(c->easy, CURLPAUSE_CONT);
    c->u->in_curl--;
}

uint64_t upstream_call_ttfb_usec(const struct upstream_call *c) {
    return c->first_byte_usec ? c->first_byte_usec - c->start_usec : 0;
}

int upstream_timer_start(struct aigw_upstream *u, uint64_t delay_usec, void (*cb)(void *userdata),
                         void *userdata, struct upstream_timer **ret) {
    struct upstream_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->u = u;
    t->due_usec = now_monotonic_usec() + delay_usec;
    t->cb = cb;
    t->userdata = userdata;
    /* sorted insert; the list holds a few entries per in-flight request */
    struct upstream_timer **pp = &u->timers, *prev = NULL;
    while (*pp && (*pp)->due_usec <= t->due_usec) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    t->next = *pp;
    t->prev = prev;
    if (*pp)
        (*pp)->prev = t;
    *pp = t;
    arm_timerfd(u);
    if (ret)
        *ret = t;
    return 0;
}

void upstream_timer_cancel(struct upstream_timer *t) {
    if (!t)
        return;
    struct aigw_upstream *u = t->u;
    if (t->prev)
        t->prev->next = t->next;
    else
        u->timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    free(t);
}
