/* SPDX-License-Identifier: MIT */
#pragma once

/* The client-facing OpenAI wire format: chat requests in (validated the way
 * OpenAI validates them), responses, stream chunks, errors and the model
 * list out; plus the OpenAI-compatible upstream side (LiteLLM, Ollama,
 * vLLM): request bodies out, responses, stream events and errors in.
 * Pure: no sockets, no logging.
 *
 * Every function that takes a struct aigw_error (err may be NULL) fills it
 * on failure, also on -ENOMEM (500 server_error), and leaves its ret_*
 * parameters untouched. Errno values: -EINVAL the client's request is
 * invalid (400, size limits included), -EBADMSG upstream sent something
 * unusable (502), -EREMOTEIO upstream reported an error (mapped through
 * aigw_openai_map_error()), -ENOMEM. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aigw/chat.h"

struct aigw_chat_limits {
    size_t max_messages;    /* length of messages[] */
    size_t max_total_chars; /* Unicode code points over all message text parts */
    int64_t max_n;          /* n must be in 1..max_n */
    size_t max_stop;        /* stop sequences; values above AIGW_MAX_STOP count as that */
};

/* Defaults: OpenAI's own limits for messages (2048) and stop (4); n up to 8
 * (Gemini's candidateCount maximum); 1 Mi code points of message text.
 * A field left 0 in a caller's struct takes its default, so
 *     struct aigw_chat_limits lim = AIGW_CHAT_LIMITS_DEFAULT;
 * and passing NULL for the limits are the same. */
#define AIGW_CHAT_LIMITS_DEFAULT                                                                   \
    { .max_messages = 2048, .max_total_chars = 1048576, .max_n = 8, .max_stop = 4 }

/* Upper bound for max_tokens / max_completion_tokens: every backend stores
 * it as a 32-bit integer (Gemini's maxOutputTokens is int32). */
#define AIGW_MAX_TOKENS_LIMIT INT64_C(2147483647)

/* Parse and validate a chat completion request (the body of POST
 * /v1/chat/completions and /chat). lim may be NULL (defaults). On success
 * *ret owns everything, including ret->raw, the parsed body; release it with
 * aigw_chat_request_free().
 *
 * Validation follows OpenAI's: every failure is -EINVAL with a 400
 * invalid_request_error whose message names the field and whose param is
 * its path ("messages[2].content[0].type"), with OpenAI's codes
 * (invalid_type, invalid_value, missing_required_parameter, empty_array,
 * array_above_max_length, integer_above_max_value, ...). A JSON null for an
 * optional field means "not given". Integers may be written as 5.0, not
 * 5.5; nothing is coerced from strings.
 * Choices made where OpenAI is silent or lenient:
 * - a body with a duplicated key anywhere is rejected (code duplicate_key):
 *   aigw reads the first occurrence while OpenAI-type upstreams take the
 *   last, which would let a client slip unvalidated values past the gateway;
 * - max_tokens and max_completion_tokens may both be given only when equal
 *   (code invalid_value, param "max_tokens"): there is no right guess which
 *   one the client meant, and upstreams disagree on precedence;
 * - only text content parts are accepted; an assistant message may omit
 *   content (or give null) only if it has tool_calls or function_call;
 * - more than lim->max_total_chars characters of message text: 400,
 *   code context_length_exceeded, param "messages". */
int aigw_chat_request_parse(const char *body, size_t len, const struct aigw_chat_limits *lim,
                            struct aigw_chat_request *ret, struct aigw_error *err);

/* Body for an OpenAI-compatible upstream: req->raw (so unknown fields pass
 * through, in the client's order) with
 * - "model" set to upstream_model;
 * - role "developer" sent as "system" (chat templates of vLLM and Ollama
 *   models know only that one);
 * - defaults (may be NULL) applied where the client gave no value or null;
 *   the default max_tokens goes out as "max_tokens", which every such
 *   backend understands;
 * - when streaming, stream_options.include_usage forced to true: the
 *   gateway needs usage for token rate limits. Whether the client asked
 *   stays in req->include_usage; the stream relay must drop usage chunks
 *   when it is false.
 * *ret_body is compact JSON, to be freed with free(). -EINVAL if req->raw
 * is not an object or upstream_model is NULL or empty; -ENOMEM. */
int aigw_openai_build_request(const struct aigw_chat_request *req, const char *upstream_model,
                              const struct aigw_model_defaults *defaults, char **ret_body);

/* Parse a non-streaming chat.completion from an OpenAI-compatible upstream
 * into *ret (release with aigw_chat_response_free()); ret->raw keeps the
 * parsed body for pass-through of fields aigw does not model.
 * - content null or missing (tool calls) -> ""; index missing -> position;
 * - finish_reason: stop, length, content_filter, tool_calls, function_call
 *   kept; null/missing and anything else -> "stop" (content_filter for an
 *   unknown value would make clients blame a policy);
 * - usage: fields absent or not a non-negative integer count as 0, and
 *   total_tokens is at least prompt + completion;
 * - an {"error":...} body: -EREMOTEIO, 502 api_error with upstream's
 *   message; not JSON, not an object, choices missing or empty, a field of
 *   the wrong type: -EBADMSG, 502 api_error "upstream sent an invalid
 *   response: ...". */
int aigw_openai_parse_response(const char *body, size_t len, struct aigw_chat_response *ret,
                               struct aigw_error *err);

/* Translate one SSE event's data from an OpenAI-compatible upstream.
 * "[DONE]" sets *ret_done and yields no chunk. Otherwise one chunk per
 * choice, in order (chunk.raw = the upstream choice), then, if the event
 * carries a non-null usage object, one usage chunk (index -1,
 * usage.present, raw = the upstream usage). Events with no choice and no
 * usage yield nothing. *ret_chunks is NULL when *ret_n is 0; release with
 * aigw_chat_chunks_free(). An "error" object: -EREMOTEIO with err mapped
 * (status from error.code when it is an HTTP status, else 502); garbage:
 * -EBADMSG, 502. */
int aigw_openai_parse_chunk(const char *data, size_t len, struct aigw_chat_chunk **ret_chunks,
                            size_t *ret_n, bool *ret_done, struct aigw_error *err);

/* Clear each chunk and free the array. Accepts NULL. */
void aigw_chat_chunks_free(struct aigw_chat_chunk *chunks, size_t n);

/* Map a non-2xx answer of an OpenAI-compatible upstream to aigw's error.
 * The message is upstream's when the body has one (error.message, or the
 * "error"/"detail"/"message" string some backends send), bounded, valid
 * UTF-8, control characters replaced; param and well-known codes are kept
 * for 400. Status:
 *   400, 413, 422 -> 400 invalid_request_error;
 *   401, 403 -> 502 api_error "backend rejected aigw's credentials" (the
 *     client's key is not the problem; upstream's text is not shown, as it
 *     may quote the key);
 *   404 -> 404 not_found_error, code model_not_found;
 *   408, 504 -> 504 timeout_error; 429 -> 429 rate_limit_error;
 *   503 -> 503 api_error (temporary, as for Gemini);
 *   any other -> 502 api_error. */
void aigw_openai_map_error(long http_status, const char *body, size_t len, struct aigw_error *err);

struct aigw_render_opts {
    const char *id;      /* "chatcmpl-<request id>"; NULL: the response's id, else "chatcmpl-aigw" */
    int64_t created;     /* unix seconds; 0: the response's */
    const char *model;   /* client-facing model name; NULL: the response's, else "unknown" */
    const char *backend; /* backend name, rendered only with chat_shape */
    bool chat_shape;     /* /chat: add top-level "backend" (the old gateway's shape) */
};

/* {"id","object":"chat.completion","created","model","choices":[{"index",
 * "message":{"role":"assistant","content"},"logprobs":null,"finish_reason"}],
 * "usage":{...} only if present}, plus "backend" with chat_shape. When
 * resp->raw is set, fields of the upstream body that this does not render
 * are added (top level, each choice, its message, usage); id, object,
 * created, model and backend are always aigw's. NULL on -ENOMEM. free(). */
char *aigw_chat_response_render(const struct aigw_chat_response *resp,
                                const struct aigw_render_opts *o);

/* {"id","object":"chat.completion.chunk","created","model","choices":[{"index",
 * "delta":{"role"?,"content"?},"logprobs":null,"finish_reason"}]}; delta is
 * {} rather than absent when empty. A chunk with usage.present renders as
 * {...,"choices":[],"usage":{...}}. chunk->raw extras are passed through as
 * for responses. NULL on -ENOMEM. free(). */
char *aigw_chat_chunk_render(const struct aigw_chat_chunk *c, const struct aigw_render_opts *o);

/* {"error":{"message","type","param","code"}}, null for absent param and
 * code. NULL on -ENOMEM. free(). */
char *aigw_error_render(const struct aigw_error *e);

/* {"object":"list","data":[{"id","object":"model","created","owned_by"}]};
 * owners may be NULL, as may each owner: "aigw". NULL on -ENOMEM. free(). */
char *aigw_models_render(const char *const *names, size_t n, const char *const *owners,
                         int64_t created);
