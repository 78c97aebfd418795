/* SPDX-License-Identifier: MIT */
/* Start-up order, signals, sd_notify, the watchdog and shutdown. The main
 * thread serves no requests: it only supervises the workers. */

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "aigw/app.h"
#include "aigw/config.h"
#include "aigw/log.h"
#include "aigw/macro.h"
#include "aigw/server.h"

#define DEFAULT_CONFIG "/etc/aigw/aigw.conf"
#define STATUS_INTERVAL_USEC (2 * USEC_PER_SEC)

static void help(void) {
    printf("Usage: aigw [OPTIONS]\n"
           "       aigw keygen NAME\n"
           "       aigw signal-reload PID\n"
           "\n"
           "AI chat gateway: OpenAI-compatible API in front of Gemini and OpenAI-compatible\n"
           "servers, supervised by systemd.\n"
           "\n"
           "  -c, --config PATH     configuration file (default " DEFAULT_CONFIG ")\n"
           "      --check-config    check the configuration, print every error, and exit\n"
           "  -l, --listen ADDR:PORT  listen here when not socket-activated\n"
           "                        (overrides [server] listen)\n"
           "  -V, --version         print the version and exit\n"
           "  -h, --help            print this help and exit\n"
           "\n"
           "  keygen NAME           print a new API key and the line for the keys file\n"
           "  signal-reload PID     for ExecReload=: tell systemd a reload begins, then\n"
           "                        send SIGHUP to PID (needs NotifyAccess=exec)\n"
           "\n"
           "Signals: SIGHUP reloads the configuration, SIGTERM drains and exits.\n"
           "See aigw(8) and aigw.conf(5).\n");
}

static void print_errors(const struct aigw_config_errors *e) {
    for (size_t i = 0; i < e->n; i++)
        fprintf(stderr, "%s\n", e->lines[i]);
}

/* Parse and resolve secrets; every problem goes into *errors. */
static int load_config(const char *path, struct aigw_config **ret, struct aigw_config_errors *errors) {
    struct aigw_config *c = NULL;
    int r = config_parse_file(path, &c, errors);
    if (r < 0)
        return r;
    r = config_load_secrets(c, errors);
    if (r >= 0)
        r = app_check_config(c, errors);
    if (r < 0) {
        config_unref(c);
        return r;
    }
    *ret = c;
    return 0;
}

static void notify_status(struct aigw_server *s) {
    unsigned inflight = server_requests_inflight(s);
    uint64_t served = server_requests_served(s);
    sd_notifyf(0, "STATUS=Serving on %u workers: %" PRIu64 " requests served, %u in flight", s->n_workers,
               served, inflight);
}

static void reload(struct aigw_server *s, const char *path, struct aigw_config **current) {
    struct aigw_config_errors errors = {0};
    struct aigw_config *c = NULL;

    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=Reloading %s", now_monotonic_usec(), path);
    int r = load_config(path, &c, &errors);
    if (r < 0) {
        for (size_t i = 0; i < errors.n; i++)
            log_struct(LOG_ERR, NULL, NULL, 0, "reload: %s", errors.lines[i]);
        log_struct(LOG_ERR, LOG_MID_RELOAD_FAILED, NULL, 0,
                   "reload of %s failed with %zu error(s); keeping the running configuration", path, errors.n);
    } else {
        struct aigw_config *old = *current;
        if (strcmp(old->server.listen, c->server.listen) != 0 || old->server.workers != c->server.workers ||
            !!old->server.tls_certificate != !!c->server.tls_certificate)
            log_warning("reload: [server] listen, workers and tls_* take effect only at the next restart");
        app_config_applied(c);
        server_set_config(s, c);
        log_set_level((int)c->log.level);
        *current = c;
        config_unref(old);
        log_struct(LOG_NOTICE, LOG_MID_RELOADED, NULL, 0, "configuration reloaded from %s (%zu models)", path,
                   c->n_models);
    }
    config_errors_clear(&errors);
    sd_notify(0, "READY=1");
    notify_status(s);
}

static int run(const char *config_path, const char *listen_override) {
    struct aigw_config_errors errors = {0};
    struct aigw_config *config = NULL;
    struct aigw_server server;
    struct listen_set listeners = {0};
    uint64_t exec_usec = now_monotonic_usec();
    int r;

    log_setup();
    r = load_config(config_path, &config, &errors);
    if (r < 0) {
        for (size_t i = 0; i < errors.n; i++)
            log_error("%s", errors.lines[i]);
        log_error("cannot start: %zu configuration error(s) in %s", errors.n, config_path);
        config_errors_clear(&errors);
        return 1;
    }
    log_set_level((int)config->log.level);
    if (listen_override) {
        free(config->server.listen);
        config->server.listen = strdup(listen_override);
    }

    r = listen_collect(config->server.listen, config->server.metrics_listen, &listeners);
    if (r < 0) {
        log_error("cannot listen on %s: %s", config->server.listen, strerror(-r));
        config_unref(config);
        return 1;
    }

    /* Workers inherit this mask: signals arrive only through the signalfd. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        log_error("signalfd: %m");
        return 1;
    }

    r = app_init(config);
    if (r < 0) {
        log_error("cannot initialise: %s", strerror(-r));
        return 1;
    }
    r = server_init(&server, config, &listeners);
    if (r >= 0)
        r = server_start(&server);
    if (r < 0) {
        log_error("cannot start workers: %s", strerror(-r));
        return 1;
    }

    uint64_t ready_usec = now_monotonic_usec();
    char addrs[512] = "";
    size_t alen = 0;
    for (size_t i = 0; i < listeners.n && alen < sizeof(addrs); i++) {
        int n = snprintf(addrs + alen, sizeof(addrs) - alen, "%s%s%s", i ? ", " : "",
                         listeners.sockets[i].name,
                         listeners.sockets[i].role == LISTEN_METRICS ? " (metrics)" : "");
        if (n > 0)
            alen += (size_t)n;
    }
    sd_notify(0, "READY=1");
    log_struct(LOG_NOTICE, LOG_MID_STARTED, NULL, 0,
               "aigw %s started in %" PRIu64 " us: %u workers, %s sockets %s, %zu models", AIGW_VERSION,
               ready_usec - exec_usec, server.n_workers, listeners.from_systemd ? "systemd" : "own", addrs,
               config->n_models);
    app_started(config);
    notify_status(&server);

    uint64_t wd_usec = 0;
    if (sd_watchdog_enabled(0, &wd_usec) <= 0)
        wd_usec = 0;
    uint64_t wd_interval = wd_usec / 2;
    uint64_t next_ping = wd_interval ? now_monotonic_usec() + wd_interval : UINT64_MAX;
    uint64_t next_status = now_monotonic_usec() + STATUS_INTERVAL_USEC;
    uint64_t *heartbeats = calloc(server.n_workers, sizeof(uint64_t));
    bool stopping = false, stalled_logged = false;
    unsigned exited = 0;

    for (;;) {
        uint64_t now = now_monotonic_usec();
        uint64_t next = MIN(next_ping, next_status);
        int timeout = next > now ? (int)MIN((next - now) / USEC_PER_MSEC + 1, 1000ULL) : 0;
        struct pollfd pfd = {.fd = sfd, .events = POLLIN};
        int n = poll(&pfd, 1, stopping ? MIN(timeout, 50) : timeout);
        if (n < 0 && errno != EINTR) {
            log_error("poll: %m");
            break;
        }
        if (n > 0) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
                if (si.ssi_signo == SIGHUP && !stopping)
                    reload(&server, config_path, &config);
                else if ((si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) && !stopping) {
                    stopping = true;
                    sd_notifyf(0, "STOPPING=1\nSTATUS=Draining %u in-flight requests",
                               server_requests_inflight(&server));
                    log_struct(LOG_NOTICE, LOG_MID_STOPPING, NULL, 0,
                               "received %s: draining %u in-flight requests (up to %" PRIu64 " ms)",
                               strsignal((int)si.ssi_signo), server_requests_inflight(&server),
                               config->server.drain_timeout_usec / USEC_PER_MSEC);
                    server_begin_drain(&server, now_monotonic_usec() + config->server.drain_timeout_usec);
                }
            }
        }

        now = now_monotonic_usec();
        if (now >= next_ping) {
            /* Ping only while every loop proves it turns: a wedged worker
             * must get the whole process restarted. */
            if (server_heartbeats_advanced(&server, heartbeats, server.n_workers)) {
                sd_notify(0, "WATCHDOG=1");
                stalled_logged = false;
            } else if (!stalled_logged) {
                log_warning("a worker loop has not turned for %" PRIu64 " ms; withholding the watchdog ping",
                            wd_interval / USEC_PER_MSEC);
                stalled_logged = true;
            }
            next_ping = now + wd_interval;
        }
        if (now >= next_status) {
            app_tick(now);
            if (stopping)
                sd_notifyf(0, "STATUS=Draining %u in-flight requests", server_requests_inflight(&server));
            else
                notify_status(&server);
            next_status = now + STATUS_INTERVAL_USEC;
        }
        if (stopping) {
            exited = 0;
            for (unsigned i = 0; i < server.n_workers; i++)
                exited += atomic_load(&server.workers[i].exited);
            if (exited == server.n_workers)
                break;
        }
    }

    unsigned cut = server_requests_inflight(&server);
    r = server_join(&server);
    if (r == -ETIMEDOUT)
        log_warning("drain timeout: %u requests were still in flight", cut);
    log_struct(LOG_NOTICE, LOG_MID_STOPPED, NULL, 0, "aigw stopped after serving %" PRIu64 " requests",
               server_requests_served(&server));
    free(heartbeats);
    server_done(&server);
    app_done();
    listen_set_close(&listeners);
    config_unref(config);
    close(sfd);
    return 0;
}

static int check_config(const char *path) {
    struct aigw_config_errors errors = {0};
    struct aigw_config *c = NULL;
    int r = load_config(path, &c, &errors);
    if (r < 0) {
        print_errors(&errors);
        fprintf(stderr, "%s: %zu error(s)\n", path, errors.n);
        config_errors_clear(&errors);
        return 1;
    }
    printf("%s: OK (%zu backends, %zu models)\n", path, c->n_backends, c->n_models);
    for (size_t i = 0; i < c->n_models; i++) {
        const struct aigw_model_conf *m = &c->models[i];
        const char *state = m->backend->type != AIGW_BACKEND_MOCK && !m->backend->api_key &&
                                    (m->backend->api_key_credential || m->backend->api_key_env ||
                                     m->backend->api_key_file || m->backend->type == AIGW_BACKEND_GEMINI)
                                ? " (API key not configured)"
                                : "";
        printf("  model %s -> %s (%s)%s\n", m->name, m->backend->name, backend_type_to_string(m->backend->type),
               state);
    }
    config_unref(c);
    return 0;
}

/* ExecReload= helper (the unit needs NotifyAccess=exec). systemd 252 waits
 * for the main process's READY=1 only if it has seen RELOADING=1 when the
 * last ExecReload= command exits; the main process's own RELOADING=1 can
 * come too late, and `systemctl reload` then returns before the switch. */
static int signal_reload(const char *arg) {
    char *end;
    errno = 0;
    long pid = strtol(arg, &end, 10);
    if (errno != 0 || end == arg || *end || pid <= 1) {
        fprintf(stderr, "aigw signal-reload: '%s' is not a PID\n", arg);
        return 2;
    }
    int r = sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, now_monotonic_usec());
    if (r > 0)
        r = sd_notify_barrier(0, 5 * USEC_PER_SEC);
    if (r < 0)
        fprintf(stderr, "aigw signal-reload: sd_notify: %s\n", strerror(-r));
    if (kill((pid_t)pid, SIGHUP) < 0) {
        fprintf(stderr, "aigw signal-reload: kill %ld: %s\n", pid, strerror(errno));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    enum { ARG_CHECK_CONFIG = 0x100 };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, ARG_CHECK_CONFIG},
        {"listen", required_argument, NULL, 'l'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    const char *config_path = DEFAULT_CONFIG, *listen = NULL;
    bool check = false;
    int c;

    if (argc >= 2 && strcmp(argv[1], "keygen") == 0)
        return app_keygen(argc - 1, argv + 1);
    if (argc == 3 && strcmp(argv[1], "signal-reload") == 0)
        return signal_reload(argv[2]);

    while ((c = getopt_long(argc, argv, "c:l:Vh", options, NULL)) >= 0) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 'l':
            listen = optarg;
            break;
        case ARG_CHECK_CONFIG:
            check = true;
            break;
        case 'V':
            printf("aigw %s\n", AIGW_VERSION);
            return 0;
        case 'h':
            help();
            return 0;
        default:
            fprintf(stderr, "Try 'aigw --help'.\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "aigw: unexpected argument '%s'. Try 'aigw --help'.\n", argv[optind]);
        return 2;
    }
    if (listen) {
        struct sockaddr_storage ss;
        unsigned len;
        if (listen_parse_address(listen, &ss, &len) < 0) {
            fprintf(stderr, "aigw: --listen: '%s' is not ADDR:PORT (e.g. 127.0.0.1:5002, [::1]:5002)\n", listen);
            return 2;
        }
    }

    curl_global_init(CURL_GLOBAL_DEFAULT);
    int ret = check ? check_config(config_path) : run(config_path, listen);
    curl_global_cleanup();
    return ret;
}

#ifdef __SANITIZE_ADDRESS__
/* Sanitizer builds: h2o 2.2.5 cannot destroy an event loop, so its
 * per-loop allocations are still held when the workers end at exit. Built
 * in, so it also applies where the environment is not passed through
 * (systemd-socket-activate, systemd units). tests/lsan.supp says the same. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:libh2o-evloop.so\n";
}
#endif
