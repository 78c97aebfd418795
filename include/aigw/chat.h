/* SPDX-License-Identifier: MIT */
#pragma once

/* Canonical chat types: what every backend translates to and from.
 * The OpenAI wire format is the client-facing one (chat-model.c);
 * backend-gemini.c maps these to and from Gemini's. Pure data, no I/O. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

enum aigw_role {
    AIGW_ROLE_SYSTEM, /* also OpenAI's "developer" */
    AIGW_ROLE_USER,
    AIGW_ROLE_ASSISTANT,
    AIGW_ROLE_TOOL, /* accepted for OpenAI-type passthrough only */
};

struct aigw_chat_message {
    enum aigw_role role;
    char **parts; /* text parts, in order; a string content is one part */
    size_t n_parts;
};

#define AIGW_MAX_STOP 16

struct aigw_chat_request {
    char *model; /* NULL when the client sent none */
    struct aigw_chat_message *messages;
    size_t n_messages;

    bool has_temperature;
    double temperature;
    bool has_top_p;
    double top_p;
    bool has_max_tokens; /* max_tokens or max_completion_tokens */
    int64_t max_tokens;
    char **stop;
    size_t n_stop;
    bool has_n;
    int64_t n;
    bool stream;
    bool include_usage; /* stream_options.include_usage */
    char *user;

    /* The request as the client sent it. OpenAI-type backends forward it
     * (with "model" replaced), so fields aigw does not know pass through. */
    cJSON *raw;
};

/* Optional per-model defaults from [model "NAME"]. */
struct aigw_model_defaults {
    bool has_max_tokens;
    int64_t max_tokens;
    bool has_temperature;
    double temperature;
};

struct aigw_usage {
    bool present;
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t total_tokens;
};

/* finish_reason values as OpenAI spells them; NULL means "not finished". */
#define AIGW_FINISH_STOP "stop"
#define AIGW_FINISH_LENGTH "length"
#define AIGW_FINISH_CONTENT_FILTER "content_filter"
#define AIGW_FINISH_TOOL_CALLS "tool_calls"

struct aigw_chat_choice {
    int index;
    char *content;             /* never NULL after a successful parse ("" if empty) */
    const char *finish_reason; /* one of AIGW_FINISH_* (static string) */
};

struct aigw_chat_response {
    char *id;    /* may be NULL: the caller fills in "chatcmpl-<request id>" */
    char *model; /* upstream's model name, may be NULL */
    int64_t created;
    struct aigw_chat_choice *choices;
    size_t n_choices;
    struct aigw_usage usage;

    /* OpenAI-type backends: the parsed upstream body (owned), so the
     * renderer can pass through what aigw does not model (tool_calls,
     * logprobs, system_fingerprint, usage details). choices[i] corresponds
     * to raw's choices[i]. NULL for other backends. */
    cJSON *raw;
};

/* One streamed delta. */
struct aigw_chat_chunk {
    int index;
    bool role;                 /* the delta carries "role":"assistant" */
    char *content;             /* NULL: no content in this delta */
    const char *finish_reason; /* NULL until the last chunk of the choice */
    struct aigw_usage usage;   /* present only on the usage chunk */

    /* OpenAI-type backends: the upstream choice object (or, on the usage
     * chunk, the upstream usage object), owned; its extra fields (e.g.
     * delta.tool_calls, logprobs) are passed through by the renderer, so a
     * chunk with raw set must be forwarded even when it has no content.
     * NULL for other backends. */
    cJSON *raw;
};

/* An error in OpenAI's shape: {"error":{"message","type","param","code"}}.
 * type is one of: invalid_request_error, authentication_error,
 * permission_error, not_found_error, rate_limit_error, api_error,
 * server_error, timeout_error. */
struct aigw_error {
    int status; /* HTTP status aigw answers with */
    const char *type;
    const char *code;  /* may be NULL */
    const char *param; /* may be NULL; points to param_buf after aigw_error_set() */
    char message[512];
    /* aigw_error_set() copies param here, so a param built at run time
     * ("messages[2].content") needs no storage of the caller's. The
     * renderer reads param_buf, so a struct copied by value still renders
     * right; set param only through aigw_error_set(). */
    char param_buf[96];
};

/* These free what the struct owns (not the struct itself, which is usually
 * the caller's) and leave it zeroed. Accept NULL. Structs must have been
 * zero-initialized before being filled. */
void aigw_chat_request_free(struct aigw_chat_request *req);
void aigw_chat_response_free(struct aigw_chat_response *resp);
void aigw_chat_chunk_clear(struct aigw_chat_chunk *chunk);

/* Fill *err; the message is printf-formatted and truncated to fit. */
void aigw_error_set(struct aigw_error *err, int status, const char *type, const char *code,
                    const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Copy src to dst with dst->param pointing into dst's own param_buf. */
void aigw_error_copy(struct aigw_error *dst, const struct aigw_error *src);
