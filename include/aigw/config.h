/* SPDX-License-Identifier: MIT */
#pragma once

/* aigw.conf → a checked, immutable struct. The parser does nothing else:
 * no sockets, no threads; reading API key files/credentials is a separate
 * step (config_load_secrets) so that parsing stays testable. A loaded
 * config is shared by the workers through a reference count; a reload
 * builds a new one and in-flight requests keep the one they started with. */

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aigw/chat.h"

enum aigw_backend_type {
    AIGW_BACKEND_OPENAI,
    AIGW_BACKEND_GEMINI,
    AIGW_BACKEND_MOCK,
};

enum aigw_log_level {
    AIGW_LOG_ERR = 3,
    AIGW_LOG_WARNING = 4,
    AIGW_LOG_NOTICE = 5,
    AIGW_LOG_INFO = 6,
    AIGW_LOG_DEBUG = 7,
};

struct aigw_backend_conf {
    char *name;
    unsigned line; /* of its section header, for messages */
    enum aigw_backend_type type;
    char *url; /* base URL, no trailing slash */
    char *api_key_credential;
    char *api_key_env;
    char *api_key_file;
    char *api_key; /* resolved by config_load_secrets; never logged */
    uint64_t connect_timeout_usec;
    uint64_t timeout_usec;      /* the whole upstream request */
    uint64_t idle_timeout_usec; /* max gap between bytes of a response */
    unsigned max_connections;
    unsigned max_retries;
    uint64_t retry_base_usec;
    unsigned breaker_threshold; /* consecutive failures that open the breaker */
    uint64_t breaker_cooldown_usec;
    uint64_t probe_interval_usec; /* 0: no background health probe */
    /* mock backend */
    uint64_t mock_latency_usec;
    uint64_t mock_chunk_interval_usec;
    unsigned mock_chunks;
};

struct aigw_model_conf {
    char *name;
    unsigned line;
    char *backend_name;
    struct aigw_backend_conf *backend; /* resolved after parsing */
    char *upstream_model;
    char **fallbacks;
    size_t n_fallbacks;
    struct aigw_model_defaults defaults;
};

struct aigw_webhook_override {
    char *match; /* [webhook "tag:NAME"] or [webhook "intent:NAME"] */
    char *model;
    char *system_prompt;
};

struct aigw_keys;
struct aigw_netaddr_list;

struct aigw_config {
    atomic_uint refcount;
    char *path;

    /* Loaded by app_check_config (files and credentials), freed with the
     * config: a reload swaps them together with everything else. */
    struct aigw_keys *keys;                /* NULL: no API keys configured */
    struct aigw_netaddr_list *trusted;     /* [server] trusted_proxies */
    char *metrics_key;                     /* secret */
    char *webhook_basic_auth;              /* secret "user:password" */
    char *webhook_header_value;            /* secret */

    struct {
        char *listen; /* ADDR:PORT, used without socket activation */
        char *metrics_listen;
        unsigned workers; /* 0 = one per CPU */
        uint64_t drain_timeout_usec;
        uint64_t max_body;
        char *tls_certificate;
        char *tls_key;
        char *default_model;
        unsigned max_inflight;
        char *trusted_proxies; /* parsed by netaddr at apply time */
        uint64_t request_timeout_usec; /* headers and body must arrive within it */
        uint64_t idle_timeout_usec; /* idle HTTP/2 and keep-alive connections */
        unsigned max_messages;
        unsigned max_json_depth;
        uint64_t max_upstream_response;
        uint64_t max_sse_event;
    } server;

    struct {
        enum aigw_log_level level;
        bool access_log;
    } log;

    struct aigw_backend_conf *backends;
    size_t n_backends;
    struct aigw_model_conf *models;
    size_t n_models;

    struct {
        bool required;
        char *keys_file;
        char *keys_credential;
        char *metrics_key_credential;
    } auth;

    struct {
        unsigned requests_per_minute;
        unsigned tokens_per_minute;
        unsigned max_inflight_per_key;
    } ratelimit;

    struct {
        char *model;
        char *system_prompt;
        unsigned max_reply_chars;
        uint64_t time_budget_usec;
        char *fallback_text;
        char *basic_auth_credential; /* file content "user:password" */
        char *header_name;
        char *header_value_credential;
        unsigned max_sessions;
        unsigned max_turns;
        uint64_t session_ttl_usec;
        struct aigw_webhook_override *overrides;
        size_t n_overrides;
    } webhook;
};

/* Collected errors: each one names file and line. */
struct aigw_config_errors {
    char **lines;
    size_t n;
};

void config_errors_clear(struct aigw_config_errors *e);

/* Parse text (path is only used in messages). Returns 0 and a config with
 * refcount 1, or -EINVAL with every problem in *errors. */
int config_parse_string(const char *text, const char *path, struct aigw_config **ret,
                        struct aigw_config_errors *errors);
int config_parse_file(const char *path, struct aigw_config **ret, struct aigw_config_errors *errors);

/* Resolve API keys from credentials/env/files. Missing keys are not an
 * error (the model answers 503 saying which setting to fill); unreadable
 * configured files are. */
int config_load_secrets(struct aigw_config *c, struct aigw_config_errors *errors);

/* A secret file's content minus trailing newlines; -EINVAL if empty or binary. */
int config_read_secret(const char *path, char **ret);
/* $CREDENTIALS_DIRECTORY/ID, or -ENXIO when not run with credentials. */
int config_credential_path(const char *id, char **ret);

struct aigw_config *config_ref(struct aigw_config *c);
struct aigw_config *config_unref(struct aigw_config *c);

const struct aigw_model_conf *config_find_model(const struct aigw_config *c, const char *name);
const struct aigw_backend_conf *config_find_backend(const struct aigw_config *c, const char *name);

/* "30s" → usec, "64K" → bytes. Exposed for tests. */
int parse_duration(const char *s, uint64_t *ret_usec);
int parse_size(const char *s, uint64_t *ret_bytes);
int parse_bool(const char *s, bool *ret);

const char *backend_type_to_string(enum aigw_backend_type t);
