/* SPDX-License-Identifier: MIT */
#include <pthread.h>
#include <time.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigw/app.h"
#include "aigw/backend-state.h"
#include "aigw/keys.h"
#include "aigw/log.h"
#include "aigw/macro.h"
#include "aigw/metrics.h"
#include "aigw/netaddr.h"
#include "aigw/ratelimit.h"
#include "aigw/session-store.h"

#define RATELIMIT_ENTRIES 100000
#define KEYS_FILE_MAX (16 << 20)

static struct backend_states backend_states;
static struct aigw_metrics *metrics;
static struct aigw_ratelimit *ratelimit;
static struct aigw_session_store *sessions;

/* process_* metrics come from /proc: read by the main thread every two
 * seconds, so that a scrape on a worker's loop reads no file */
static pthread_mutex_t proc_lock = PTHREAD_MUTEX_INITIALIZER;
static struct aigw_process_stats proc_stats;
static bool proc_valid;

bool app_process_stats(struct aigw_process_stats *ret) {
    pthread_mutex_lock(&proc_lock);
    bool valid = proc_valid;
    if (valid)
        *ret = proc_stats;
    pthread_mutex_unlock(&proc_lock);
    return valid;
}

static uint64_t start_realtime_usec;

static void refresh_process_stats(void) {
    struct aigw_process_stats st;
    static bool warned;
    int r = aigw_process_stats_read(&st);
    bool ok = r >= 0;
    if (!ok && !warned) {
        warned = true;
        log_warning("cannot read /proc for the process_* metrics: %s", strerror(-r));
    }
    if (ok && st.start_time_usec == 0)
        st.start_time_usec = start_realtime_usec;
    pthread_mutex_lock(&proc_lock);
    if (ok)
        proc_stats = st;
    proc_valid = ok;
    pthread_mutex_unlock(&proc_lock);
}

struct backend_states *app_backend_states(void) {
    return &backend_states;
}

struct aigw_metrics *app_metrics(void) {
    return metrics;
}

struct aigw_ratelimit *app_ratelimit(void) {
    return ratelimit;
}

struct aigw_session_store *app_sessions(void) {
    return sessions;
}

#define SESSION_BYTES_MAX (16 * 1024)
#define SESSIONS_TOTAL_BYTES_MAX (256u << 20)

struct aigw_session_limits app_session_limits(const struct aigw_config *c) {
    size_t n = MAX(c->webhook.max_sessions, 1u);
    return (struct aigw_session_limits){
        .max_sessions = n,
        .max_turns = MAX(c->webhook.max_turns, 1u),
        .max_session_bytes = SESSION_BYTES_MAX,
        .max_total_bytes = MIN((size_t)n * SESSION_BYTES_MAX, (size_t)SESSIONS_TOTAL_BYTES_MAX),
        .idle_ttl_usec = c->webhook.session_ttl_usec,
    };
}

static int read_text(const char *path, size_t max, char **ret, size_t *ret_len) {
    FILE *f = fopen(path, "re");
    if (!f)
        return negative_errno();
    char *buf = malloc(max + 1);
    if (!buf) {
        fclose(f);
        return -ENOMEM;
    }
    size_t n = fread(buf, 1, max + 1, f);
    int err = ferror(f);
    fclose(f);
    if (err || n > max) {
        free(buf);
        return err ? -EIO : -EFBIG;
    }
    buf[n] = 0;
    *ret = buf;
    *ret_len = n;
    return 0;
}

_printf_(2, 3) static void push_error(struct aigw_config_errors *errors, const char *fmt, ...) {
    char *msg;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    char **grown = realloc(errors->lines, (errors->n + 1) * sizeof(char *));
    if (!grown) {
        free(msg);
        return;
    }
    errors->lines = grown;
    errors->lines[errors->n++] = msg;
}

/* A secret named by a credential id: $CREDENTIALS_DIRECTORY/ID. */
static int load_credential(const char *id, const char *what, struct aigw_config *c, char **ret,
                           struct aigw_config_errors *errors) {
    _cleanup_free_ char *path = NULL;
    int r = config_credential_path(id, &path);
    if (r == -ENXIO) {
        push_error(errors,
                   "%s: %s: credential \"%s\" not available (no $CREDENTIALS_DIRECTORY; run under systemd "
                   "with LoadCredential=%s)",
                   c->path, what, id, id);
        return -ENOENT;
    }
    if (r < 0)
        return r;
    r = config_read_secret(path, ret);
    if (r < 0)
        push_error(errors, "%s: %s: cannot read credential %s: %s", c->path, what, path,
                   r == -EINVAL ? "empty or binary" : strerror(-r));
    return r;
}

int app_check_config(struct aigw_config *c, struct aigw_config_errors *errors) {
    size_t before = errors->n;
    char errbuf[256];

    if (c->server.trusted_proxies && *c->server.trusted_proxies) {
        if (aigw_netaddr_list_parse(c->server.trusted_proxies, &c->trusted, errbuf, sizeof(errbuf)) < 0)
            push_error(errors, "%s: [server] trusted_proxies: %s", c->path, errbuf);
    }

    if (c->auth.keys_file || c->auth.keys_credential) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        size_t len = 0;
        int r = 0;
        if (c->auth.keys_credential) {
            r = config_credential_path(c->auth.keys_credential, &path);
            if (r == -ENXIO)
                push_error(errors, "%s: [auth] keys_credential: credential \"%s\" not available (run under "
                                   "systemd with LoadCredential=)",
                           c->path, c->auth.keys_credential);
        } else
            path = strdup(c->auth.keys_file);
        if (path) {
            r = read_text(path, KEYS_FILE_MAX, &text, &len);
            if (r < 0)
                push_error(errors, "%s: [auth] cannot read the keys file %s", c->path, path);
            else if (aigw_keys_parse(text, len, &c->keys, errbuf, sizeof(errbuf)) < 0)
                push_error(errors, "%s: %s", path, errbuf);
        }
    }

    if (c->auth.metrics_key_credential)
        (void)load_credential(c->auth.metrics_key_credential, "[auth] metrics_key_credential", c, &c->metrics_key,
                              errors);
    if (c->webhook.basic_auth_credential) {
        int r = load_credential(c->webhook.basic_auth_credential, "[webhook] basic_auth_credential", c,
                                &c->webhook_basic_auth, errors);
        if (r >= 0 && c->webhook_basic_auth && !strchr(c->webhook_basic_auth, ':'))
            push_error(errors, "%s: [webhook] basic_auth_credential %s must contain user:password", c->path,
                       c->webhook.basic_auth_credential);
    }
    if (c->webhook.header_value_credential)
        (void)load_credential(c->webhook.header_value_credential, "[webhook] header_value_credential", c,
                              &c->webhook_header_value, errors);

    return errors->n > before ? -EINVAL : 0;
}

int app_init(struct aigw_config *c) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    start_realtime_usec = (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
    int r = aigw_ratelimit_new(RATELIMIT_ENTRIES, &ratelimit);
    if (r < 0)
        return r;
    unsigned workers = c->server.workers;
    if (workers == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        workers = cpus > 0 ? (unsigned)cpus : 1;
    }
    metrics = aigw_metrics_new(workers, AIGW_VERSION);
    if (!metrics)
        return -ENOMEM;
    struct aigw_session_limits sl = app_session_limits(c);
    r = aigw_session_store_new(&sl, &sessions);
    if (r < 0)
        return r;
    app_config_applied(c);
    refresh_process_stats();
    return 0;
}

void app_config_applied(struct aigw_config *c) {
    for (size_t i = 0; i < c->n_backends; i++)
        if (!backend_states_get(&backend_states, c->backends[i].name))
            log_warning("too many backends: health of %s is not tracked", c->backends[i].name);
    if (sessions) {
        struct aigw_session_limits sl = app_session_limits(c);
        aigw_session_store_set_limits(sessions, &sl);
    }
}

void app_started(const struct aigw_config *c) {
    if (!c->keys)
        log_warning("no API keys are configured: the chat endpoints are open to every client that can "
                    "reach this socket ([auth] keys_file or keys_credential turns keys on)");
    else
        log_info("%zu API keys loaded; keys %s", aigw_keys_count(c->keys),
                 c->auth.required ? "required" : "optional");
    if (!c->webhook_basic_auth && !c->webhook_header_value)
        log_warning("/webhook has no authentication configured ([webhook] basic_auth_credential or "
                    "header_name + header_value_credential)");
    for (size_t i = 0; i < c->n_backends; i++) {
        const struct aigw_backend_conf *b = &c->backends[i];
        if (b->type == AIGW_BACKEND_GEMINI && !b->api_key)
            log_notice("backend %s has no API key: its models answer 503 until %s is provided", b->name,
                       b->api_key_credential ? "the credential" : "a key");
    }
}

void app_tick(uint64_t now_usec) {
    refresh_process_stats();
    /* idle webhook sessions go even if nobody touches them again */
    if (sessions)
        (void)aigw_session_store_expire(sessions, now_usec);
}

void app_done(void) {
    sessions = aigw_session_store_free(sessions);
    aigw_ratelimit_free(ratelimit);
    ratelimit = NULL;
    metrics = aigw_metrics_free(metrics);
}

int app_keygen(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "Usage: aigw keygen NAME\n");
        return 2;
    }
    char *key = NULL, *line = NULL;
    int r = aigw_keygen(argv[1], &key, &line);
    if (r < 0) {
        fprintf(stderr, "aigw keygen: %s\n",
                r == -EINVAL ? "NAME must be 1-64 characters of A-Z a-z 0-9 . _ -" : strerror(-r));
        return 1;
    }
    printf("API key (give it to the client; it is not stored anywhere):\n  %s\n"
           "Line for the keys file:\n  %s\n",
           key, line);
    explicit_bzero(key, strlen(key));
    free(key);
    free(line);
    return 0;
}
